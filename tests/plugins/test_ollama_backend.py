"""The Ollama backend against a fake Ollama server on 127.0.0.1 (tests/fakes): the shared
backend contract, the mapping of dziri's options onto Ollama's, model info from
/api/show, and every failure as one clear line — down to a reply cut off mid-stream
being stored as partial through the real App. A last class runs the contract against a
real server when DZIRI_TEST_OLLAMA_HOST is set."""

from __future__ import annotations

import os
import threading
import time

import pytest
from fakes.fixtures import FakeModel, FakeOllama, free_port, unanswered_port

from dziri.core.app import App
from dziri.core.errors import BackendError, ConfigError, ModelError
from dziri.core.models import ChatMessage, GenerationOptions, MessageStatus, PluginContext, Role
from dziri.core.registry import create_plugin
from dziri.core.roles import facade_for
from dziri.core.testing import BackendContract
from dziri.plugins.backends.ollama import DEFAULT_HOST, OllamaBackend


def make(host: str, tmp_path, **settings) -> OllamaBackend:
    return OllamaBackend(OllamaBackend.Settings(host=host, **settings), PluginContext(data_dir=tmp_path))


def user(text: str) -> ChatMessage:
    return ChatMessage(role=Role.USER, content=text)


def reply(plugin: OllamaBackend, text: str = "salam khouya", **options) -> str:
    return "".join(plugin.backend_chat([user(text)], GenerationOptions(**options)))


def one_line(exc: pytest.ExceptionInfo) -> str:
    message = str(exc.value)
    assert "\n" not in message and message.strip(), f"not one line: {message!r}"
    return message


class TestOllamaContract(BackendContract):
    reply_timeout_s = 10.0

    @pytest.fixture
    def backend_plugin(self, fake_ollama, tmp_path):
        return make(fake_ollama.host, tmp_path)


# -- what is sent -------------------------------------------------------------------------


def test_options_are_mapped_onto_ollamas(fake_ollama, tmp_path):
    plugin = make(fake_ollama.host, tmp_path, keep_alive="10m", num_ctx=8192)
    history = [ChatMessage(role=Role.SYSTEM, content="Answer in Darija."), user("wach rak?")]
    options = GenerationOptions(max_tokens=7, temperature=0.2, top_p=0.5, stop=["\n\n", "###"], seed=42)
    assert "".join(plugin.backend_chat(history, options)) == "wach rak?"
    body = fake_ollama.last_request("/api/chat").body
    assert body["model"] == "dziri" and body["stream"] is True
    assert body["messages"] == [{"role": "system", "content": "Answer in Darija."},
                                {"role": "user", "content": "wach rak?"}]
    assert body["options"] == {"temperature": 0.2, "top_p": 0.5, "num_predict": 7, "stop": ["\n\n", "###"],
                               "seed": 42, "num_ctx": 8192}
    assert body["keep_alive"] == "10m"


def test_unset_options_are_not_sent(fake_ollama, tmp_path):
    reply(make(fake_ollama.host, tmp_path, keep_alive=""))
    body = fake_ollama.last_request("/api/chat").body
    assert set(body["options"]) == {"temperature", "top_p", "num_predict"}  # no stop, seed, num_ctx
    assert "keep_alive" not in body  # the server's default


@pytest.mark.parametrize(("setting", "sent"), [("-1", -1.0), ("0", 0.0), ("300", 300.0), ("1h30m", "1h30m")])
def test_keep_alive_numbers_are_sent_as_seconds(fake_ollama, tmp_path, setting, sent):
    reply(make(fake_ollama.host, tmp_path, keep_alive=setting))
    assert fake_ollama.last_request("/api/chat").body["keep_alive"] == sent


def test_a_keep_alive_that_is_not_a_duration_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match=r"backend\.ollama\.keep_alive.*duration"):
        create_plugin("backend", "ollama", {"keep_alive": "soon"}, PluginContext(data_dir=tmp_path))


def test_max_tokens_and_stop_end_the_reply(fake_ollama, tmp_path):
    plugin = make(fake_ollama.host, tmp_path)
    assert reply(plugin, "one two three four five", max_tokens=3) == "one two three"
    assert reply(plugin, "one two. three four", stop=["."]) == "one two"


# -- host ---------------------------------------------------------------------------------


def test_the_host_comes_from_the_setting_then_ollama_host_then_the_default(monkeypatch, tmp_path):
    monkeypatch.delenv("OLLAMA_HOST", raising=False)
    assert OllamaBackend.Settings().host == DEFAULT_HOST == "http://127.0.0.1:11434"
    monkeypatch.setenv("OLLAMA_HOST", "http://gpu-box:11434")
    assert OllamaBackend.Settings().host == "http://gpu-box:11434"
    assert OllamaBackend.Settings(host="http://other:1234").host == "http://other:1234"


def test_ollama_host_reaches_the_server(fake_ollama, monkeypatch, tmp_path):
    monkeypatch.setenv("OLLAMA_HOST", fake_ollama.host)
    plugin = OllamaBackend(OllamaBackend.Settings(), PluginContext(data_dir=tmp_path))
    assert reply(plugin, "salam") == "salam"


# -- model info ---------------------------------------------------------------------------


def test_model_info_from_api_show(fake_ollama, tmp_path):
    info = facade_for("backend", make(fake_ollama.host, tmp_path)).model_info()
    assert (info.name, info.backend, info.context_length) == ("dziri", "ollama", 4096)  # the Modelfile's num_ctx
    assert info.details["family"] == "gemma3"
    assert info.details["parameter_size"] == "268.10M"
    assert info.details["quantization"] == "Q4_K_M"
    assert info.details["trained_context_length"] == "32768"
    assert info.details["context_source"] == "Modelfile num_ctx"
    assert info.details["host"] == fake_ollama.host
    assert fake_ollama.last_request("/api/show").body == {"model": "dziri"}


@pytest.mark.parametrize(
    ("num_ctx_setting", "modelfile_num_ctx", "trained", "expected", "source"),
    [
        (8192, 4096, 32768, 8192, "num_ctx setting"),
        (65536, 4096, 32768, 32768, "num_ctx setting"),  # Ollama clamps to the trained length
        (0, None, 131072, 2048, "assumed server default"),
        (0, None, 1024, 1024, "assumed server default"),
    ],
)
def test_context_length_is_what_the_server_will_use(
    fake_ollama, tmp_path, num_ctx_setting, modelfile_num_ctx, trained, expected, source
):
    fake_ollama.models["dziri"] = FakeModel(num_ctx=modelfile_num_ctx, context_length=trained, family="llama")
    info = make(fake_ollama.host, tmp_path, num_ctx=num_ctx_setting).backend_model_info()
    assert info.context_length == expected
    assert info.details["context_source"] == source


def test_model_info_is_cached_briefly(fake_ollama, tmp_path):
    plugin = make(fake_ollama.host, tmp_path)
    assert plugin.backend_model_info() == plugin.backend_model_info()
    assert len(fake_ollama.requests_to("/api/show")) == 1


def test_a_model_tag_is_accepted(fake_ollama, tmp_path):
    plugin = make(fake_ollama.host, tmp_path, model="dziri:latest")
    assert plugin.backend_model_info().name == "dziri:latest"
    assert reply(plugin, "salam") == "salam"


# -- failures -----------------------------------------------------------------------------


def test_a_model_that_is_not_on_the_server_says_how_to_create_it(fake_ollama, tmp_path):
    plugin = make(fake_ollama.host, tmp_path, model="nope")
    with pytest.raises(ModelError) as info_error:
        plugin.backend_model_info()
    message = one_line(info_error)
    assert "model 'nope' is not on the Ollama server at " + fake_ollama.host in message
    assert "ollama create nope -f Modelfile" in message and "ollama pull nope" in message
    with pytest.raises(ModelError) as chat_error:
        reply(plugin)
    assert "ollama create nope -f Modelfile" in one_line(chat_error)


def test_a_failed_model_info_is_not_cached(fake_ollama, tmp_path):
    plugin = make(fake_ollama.host, tmp_path, model="later")
    with pytest.raises(ModelError):
        plugin.backend_model_info()
    fake_ollama.models["later"] = FakeModel()  # `ollama create later -f Modelfile`
    assert plugin.backend_model_info().name == "later"


def test_a_server_that_is_down_fails_quickly_naming_the_host(tmp_path):
    host = f"http://127.0.0.1:{free_port()}"
    plugin = make(host, tmp_path)
    started = time.monotonic()
    with pytest.raises(BackendError) as info_error:
        plugin.backend_model_info()
    with pytest.raises(BackendError) as chat_error:
        reply(plugin)
    assert time.monotonic() - started < 5
    for error in (info_error, chat_error):
        message = one_line(error)
        assert f"cannot connect to Ollama at {host}" in message and "ollama serve" in message


def test_a_host_that_does_not_accept_the_connection_times_out(tmp_path):
    with unanswered_port() as port:
        host = f"http://127.0.0.1:{port}"
        started = time.monotonic()
        with pytest.raises(BackendError) as error:
            make(host, tmp_path, connect_timeout_s=0.3).backend_model_info()
        assert time.monotonic() - started < 3
    assert f"cannot connect to Ollama at {host}: no answer within 0.3 s" in one_line(error)


def test_a_server_that_does_not_answer_times_out(fake_ollama, tmp_path):
    fake_ollama.delay_before_response_s = 5
    plugin = make(fake_ollama.host, tmp_path, timeout_s=0.3)
    started = time.monotonic()
    with pytest.raises(BackendError) as error:
        reply(plugin)
    assert time.monotonic() - started < 3
    assert f"Ollama at {fake_ollama.host} sent nothing for 0.3 s" in one_line(error)


def test_a_server_error_is_a_backend_error_with_its_message(fake_ollama, tmp_path):
    fake_ollama.chat_status, fake_ollama.chat_error = 500, "model requires more system memory (9.1 GiB)"
    with pytest.raises(BackendError) as error:
        reply(make(fake_ollama.host, tmp_path))
    message = one_line(error)
    assert "HTTP 500" in message and "model requires more system memory" in message and fake_ollama.host in message


@pytest.mark.parametrize(
    ("failure", "expected"),
    [
        ({"break_after": 2}, "the connection to Ollama at {host} broke"),
        ({"error_after": 2, "error_message": "the runner crashed"}, "failed while generating: the runner crashed"),
        ({"malformed_after": 2}, "sent a malformed reply"),
        ({"end_without_done": True}, "ended the reply before it was done"),
    ],
    ids=["connection-dropped", "error-line", "malformed-line", "no-done-line"],
)
def test_a_stream_that_breaks_mid_reply_raises_from_the_iterator(fake_ollama, tmp_path, failure, expected):
    for name, value in failure.items():
        setattr(fake_ollama, name, value)
    stream = make(fake_ollama.host, tmp_path).backend_chat([user("one two three four five")], GenerationOptions())
    received = []
    with pytest.raises(BackendError) as error:
        for piece in stream:
            received.append(piece)
    assert expected.format(host=fake_ollama.host) in one_line(error)
    if "end_without_done" not in failure:
        assert "".join(received) == "one two"


def test_closing_the_stream_early_closes_the_http_response(fake_ollama, tmp_path):
    fake_ollama.token_delay_s = 0.02
    stream = make(fake_ollama.host, tmp_path).backend_chat([user("kelma " * 400)], GenerationOptions(max_tokens=400))
    assert next(stream) == "kelma"
    stream.close()
    # The server notices at its next writes, long before its 400 pieces (8 s) are sent.
    assert fake_ollama.client_gone.wait(5), "the server kept streaming to a closed response"


def test_the_fake_server_stops_with_no_thread_left_behind(tmp_path):
    # What every test using `fake_ollama` relies on, even when it leaves a stream open.
    with FakeOllama() as fake:
        fake.token_delay_s = 0.05
        open_stream = make(fake.host, tmp_path).backend_chat([user("kelma " * 100)], GenerationOptions())
        next(open_stream)
    assert not [t for t in threading.enumerate() if "process_request" in t.name or t.name == "FakeOllama"]
    open_stream.close()


# -- through the application --------------------------------------------------------------


@pytest.fixture
def ollama_app(fake_ollama, monkeypatch):
    monkeypatch.setenv("DZIRI_BACKEND", "ollama")
    monkeypatch.setenv("DZIRI_BACKEND__OLLAMA__HOST", fake_ollama.host)
    app = App()
    yield app
    app.close()


def test_a_reply_through_the_app_is_stored_complete(ollama_app, fake_ollama):
    fake_ollama.reply = "labas, hamdoullah"
    user_id = ollama_app.chat.local_user().id
    stream = ollama_app.chat.send(user_id, "wach rak?")
    assert stream.text() == "labas, hamdoullah"
    assert stream.message.status == MessageStatus.COMPLETE
    body = fake_ollama.last_request("/api/chat").body
    assert body["messages"][0]["role"] == "system" and body["messages"][-1] == {"role": "user", "content": "wach rak?"}
    assert body["options"]["num_predict"] == ollama_app.config.chat.max_tokens


def test_a_stream_broken_mid_reply_is_stored_as_error_with_what_was_generated(ollama_app, fake_ollama):
    fake_ollama.reply, fake_ollama.break_after = "one two three four five", 3
    user_id = ollama_app.chat.local_user().id
    stream = ollama_app.chat.send(user_id, "3odd m3aya")
    received = []
    with pytest.raises(BackendError, match="broke"):
        for piece in stream:
            received.append(piece)
    assert "".join(received) == "one two three"
    stored = ollama_app.store.list_messages(user_id, stream.conversation.id)
    assert [(m.role, m.status) for m in stored] == [(Role.USER, MessageStatus.COMPLETE),
                                                    (Role.ASSISTANT, MessageStatus.ERROR)]
    assert stored[1].content == "one two three"
    assert fake_ollama.host in stored[1].error


def test_a_missing_model_stores_nothing(ollama_app, fake_ollama, monkeypatch):
    fake_ollama.models.clear()
    user_id = ollama_app.chat.local_user().id
    with pytest.raises(ModelError, match="ollama create dziri -f Modelfile"):
        ollama_app.chat.send(user_id, "salam")
    assert ollama_app.store.list_conversations(user_id) == []


# -- a real server ------------------------------------------------------------------------

REAL_HOST = os.environ.get("DZIRI_TEST_OLLAMA_HOST", "")  # read now: the isolation fixture clears DZIRI_*
REAL_MODEL = os.environ.get("DZIRI_TEST_OLLAMA_MODEL", "dziri")


@pytest.mark.skipif(not REAL_HOST, reason="set DZIRI_TEST_OLLAMA_HOST (and DZIRI_TEST_OLLAMA_MODEL, default"
                    " 'dziri') to run the contract against a real Ollama server")
class TestRealOllamaContract(BackendContract):
    reply_timeout_s = 300.0

    @pytest.fixture
    def backend_plugin(self, tmp_path):
        return make(REAL_HOST, tmp_path, model=REAL_MODEL)
