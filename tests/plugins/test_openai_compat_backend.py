"""The OpenAI-compatible backend against a fake `/v1` server on 127.0.0.1 (tests/fakes):
the shared backend contract, the request it sends, the API key (from the environment,
never shown), the SSE stream and every failure as one clear line. A last class runs the
contract against a real server when DZIRI_TEST_OPENAI_BASE_URL and
DZIRI_TEST_OPENAI_MODEL are set."""

from __future__ import annotations

import os
import time

import pytest
from fakes.fixtures import free_port, unanswered_port

from dziri.core.app import App
from dziri.core.errors import BackendError, ConfigError, ModelError
from dziri.core.models import ChatMessage, GenerationOptions, MessageStatus, PluginContext, Role
from dziri.core.testing import BackendContract
from dziri.plugins.backends.openai_compat import OpenAICompatBackend, _sse_data

FAKE_KEY = "not-a-real-key-0123456789"  # never a real key, anywhere


def make(base_url: str, tmp_path, **settings) -> OpenAICompatBackend:
    return OpenAICompatBackend(OpenAICompatBackend.Settings(base_url=base_url, **settings),
                               PluginContext(data_dir=tmp_path))


def user(text: str) -> ChatMessage:
    return ChatMessage(role=Role.USER, content=text)


def reply(plugin: OpenAICompatBackend, text: str = "salam khouya", **options) -> str:
    return "".join(plugin.backend_chat([user(text)], GenerationOptions(**options)))


def one_line(exc: pytest.ExceptionInfo) -> str:
    message = str(exc.value)
    assert "\n" not in message and message.strip(), f"not one line: {message!r}"
    assert FAKE_KEY not in message
    return message


class TestOpenAICompatContract(BackendContract):
    reply_timeout_s = 10.0

    @pytest.fixture
    def backend_plugin(self, fake_openai, tmp_path):
        return make(fake_openai.base_url, tmp_path)


# -- what is sent -------------------------------------------------------------------------


def test_the_request_maps_dziris_options(fake_openai, tmp_path):
    plugin = make(fake_openai.base_url, tmp_path, headers={"X-Title": "dziri"})
    history = [ChatMessage(role=Role.SYSTEM, content="Answer in Darija."), user("wach rak?")]
    options = GenerationOptions(max_tokens=7, temperature=0.2, top_p=0.5, stop=["\n\n", "###"], seed=42)
    assert "".join(plugin.backend_chat(history, options)) == "wach rak?"
    request = fake_openai.last_request("/v1/chat/completions")
    assert request.body == {
        "model": "dziri",
        "messages": [{"role": "system", "content": "Answer in Darija."}, {"role": "user", "content": "wach rak?"}],
        "stream": True,
        "max_tokens": 7,
        "temperature": 0.2,
        "top_p": 0.5,
        "stop": ["\n\n", "###"],
        "seed": 42,
    }
    assert request.headers["accept"] == "text/event-stream"
    assert request.headers["x-title"] == "dziri"
    assert "authorization" not in request.headers


def test_unset_options_are_not_sent(fake_openai, tmp_path):
    reply(make(fake_openai.base_url, tmp_path))
    assert "stop" not in fake_openai.last_request("/v1/chat/completions").body
    assert "seed" not in fake_openai.last_request("/v1/chat/completions").body


def test_max_tokens_and_stop_end_the_reply(fake_openai, tmp_path):
    plugin = make(fake_openai.base_url, tmp_path)
    assert reply(plugin, "one two three four five", max_tokens=3) == "one two three"
    assert reply(plugin, "one two. three four", stop=["."]) == "one two"


def test_a_trailing_slash_in_base_url_is_fine(fake_openai, tmp_path):
    assert reply(make(fake_openai.base_url + "/", tmp_path), "salam") == "salam"


def test_a_server_that_does_not_stream_still_answers(fake_openai, tmp_path):
    fake_openai.ignore_stream = True
    assert reply(make(fake_openai.base_url, tmp_path), "one two three") == "one two three"


# -- the API key --------------------------------------------------------------------------


def test_the_key_comes_from_the_environment_variable_named_in_the_settings(fake_openai, tmp_path, monkeypatch):
    fake_openai.api_key = FAKE_KEY
    monkeypatch.setenv("DZIRI_TEST_KEY", FAKE_KEY)
    plugin = make(fake_openai.base_url, tmp_path, api_key_env="DZIRI_TEST_KEY")
    assert reply(plugin, "salam") == "salam"
    assert plugin.backend_model_info().name == "dziri"
    for request in fake_openai.requests:
        assert request.headers["authorization"] == f"Bearer {FAKE_KEY}"
    assert FAKE_KEY not in repr(plugin.settings)


def test_a_wrong_key_is_named_by_its_variable_never_shown(fake_openai, tmp_path, monkeypatch):
    fake_openai.api_key = "the-right-key"
    monkeypatch.setenv("DZIRI_TEST_KEY", FAKE_KEY)
    plugin = make(fake_openai.base_url, tmp_path, api_key_env="DZIRI_TEST_KEY")
    for call in (plugin.backend_model_info, lambda: reply(plugin)):
        with pytest.raises(BackendError) as error:
            call()
        message = one_line(error)
        assert "rejected the API key from $DZIRI_TEST_KEY (HTTP 401)" in message
        assert fake_openai.base_url in message


def test_a_server_that_wants_a_key_says_how_to_give_it(fake_openai, tmp_path):
    fake_openai.api_key = "the-right-key"
    with pytest.raises(BackendError) as error:
        reply(make(fake_openai.base_url, tmp_path))
    assert "wants an API key (HTTP 401)" in one_line(error) and "api_key_env" in str(error.value)


def test_a_missing_key_variable_is_a_config_error_before_any_request(fake_openai, tmp_path, monkeypatch):
    monkeypatch.delenv("DZIRI_TEST_KEY", raising=False)
    with pytest.raises(ConfigError, match="DZIRI_TEST_KEY.*not set"):
        make(fake_openai.base_url, tmp_path, api_key_env="DZIRI_TEST_KEY")
    assert fake_openai.requests == []


def test_a_key_pasted_into_api_key_env_is_refused_without_repeating_it(tmp_path):
    with pytest.raises(ConfigError) as error:
        make("http://127.0.0.1:1/v1", tmp_path, api_key_env=f"sk-{FAKE_KEY}")
    assert "NAME of an environment variable" in one_line(error)


def test_a_key_in_the_extra_headers_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="api_key_env"):
        make("http://127.0.0.1:1/v1", tmp_path, headers={"Authorization": f"Bearer {FAKE_KEY}"})


def test_a_server_message_that_quotes_the_key_is_blanked(fake_openai, tmp_path, monkeypatch):
    monkeypatch.setenv("DZIRI_TEST_KEY", FAKE_KEY)
    fake_openai.chat_status, fake_openai.chat_error = 500, f"upstream refused key {FAKE_KEY}"
    with pytest.raises(BackendError) as error:
        reply(make(fake_openai.base_url, tmp_path, api_key_env="DZIRI_TEST_KEY"))
    assert "upstream refused key ***" in one_line(error)


# -- model info ---------------------------------------------------------------------------


def test_model_info_confirms_the_model_is_served(fake_openai, tmp_path):
    info = make(fake_openai.base_url, tmp_path).backend_model_info()
    assert (info.name, info.backend, info.context_length) == ("dziri", "openai", 4096)
    assert info.details["listed_by_server"] == "yes" and info.details["owned_by"] == "fake"
    assert info.details["base_url"] == fake_openai.base_url


@pytest.mark.parametrize("field", ["max_model_len", "context_window"])  # vLLM, Groq
def test_model_info_takes_the_context_length_the_server_reports(fake_openai, tmp_path, field):
    fake_openai.model_fields["dziri"] = {field: 8192}
    assert make(fake_openai.base_url, tmp_path).backend_model_info().context_length == 8192
    assert make(fake_openai.base_url, tmp_path, context_length=2048).backend_model_info().context_length == 2048


def test_model_info_without_a_models_list_uses_the_settings(fake_openai, tmp_path):
    fake_openai.models_endpoint = False
    info = make(fake_openai.base_url, tmp_path, context_length=16384).backend_model_info()
    assert info.context_length == 16384 and info.details["listed_by_server"] == "no models list"


def test_a_model_that_is_not_served_is_a_model_error(fake_openai, tmp_path):
    fake_openai.models = ["dziri", "qwen2.5-7b"]
    plugin = make(fake_openai.base_url, tmp_path, model="nope")
    with pytest.raises(ModelError) as info_error:
        plugin.backend_model_info()
    assert "model 'nope' is not served at" in one_line(info_error) and "it serves: dziri, qwen2.5-7b" in str(
        info_error.value)
    with pytest.raises(ModelError) as chat_error:
        reply(plugin)
    assert "HTTP 404" in one_line(chat_error) and "The model `nope` does not exist" in str(chat_error.value)


# -- failures -----------------------------------------------------------------------------


def test_a_server_that_is_down_fails_quickly_naming_the_url(tmp_path):
    base_url = f"http://127.0.0.1:{free_port()}/v1"
    plugin = make(base_url, tmp_path)
    started = time.monotonic()
    for call in (plugin.backend_model_info, lambda: reply(plugin)):
        with pytest.raises(BackendError) as error:
            call()
        assert f"cannot connect to the OpenAI-compatible server at {base_url}" in one_line(error)
    assert time.monotonic() - started < 5


def test_a_host_that_does_not_accept_the_connection_times_out(tmp_path):
    with unanswered_port() as port:
        base_url = f"http://127.0.0.1:{port}/v1"
        started = time.monotonic()
        with pytest.raises(BackendError) as error:
            reply(make(base_url, tmp_path, connect_timeout_s=0.3))
        assert time.monotonic() - started < 3
    assert f"at {base_url}: no answer within 0.3 s" in one_line(error)


def test_a_server_that_does_not_answer_times_out(fake_openai, tmp_path):
    fake_openai.delay_before_response_s = 5
    started = time.monotonic()
    with pytest.raises(BackendError) as error:
        reply(make(fake_openai.base_url, tmp_path, timeout_s=0.3))
    assert time.monotonic() - started < 3
    assert "sent nothing for 0.3 s" in one_line(error)


@pytest.mark.parametrize(
    ("status", "expected"),
    [(500, "failed while generating (HTTP 500): boom"), (503, "(HTTP 503): boom"),
     (429, "rate-limiting requests (HTTP 429)"), (400, "refused the request while generating (HTTP 400): boom")],
)
def test_http_errors_are_backend_errors_with_the_servers_message(fake_openai, tmp_path, status, expected):
    fake_openai.chat_status, fake_openai.chat_error = status, "boom"
    with pytest.raises(BackendError) as error:
        reply(make(fake_openai.base_url, tmp_path))
    assert expected in one_line(error)


@pytest.mark.parametrize(
    ("failure", "expected"),
    [
        ({"break_after": 2}, "the connection to the OpenAI-compatible server at {url} broke"),
        ({"error_after": 2, "error_message": "CUDA out of memory"}, "failed while generating: CUDA out of memory"),
        ({"malformed_after": 2}, "sent a malformed event"),
        ({"end_without_done": True}, "ended the reply before it was done"),
    ],
    ids=["connection-dropped", "error-event", "malformed-event", "no-done-event"],
)
def test_a_stream_that_breaks_mid_reply_raises_from_the_iterator(fake_openai, tmp_path, failure, expected):
    for name, value in failure.items():
        setattr(fake_openai, name, value)
    stream = make(fake_openai.base_url, tmp_path).backend_chat([user("one two three four five")], GenerationOptions())
    received = []
    with pytest.raises(BackendError) as error:
        for piece in stream:
            received.append(piece)
    assert expected.format(url=fake_openai.base_url) in one_line(error)
    if "end_without_done" not in failure:
        assert "".join(received) == "one two"


def test_closing_the_stream_early_closes_the_http_response(fake_openai, tmp_path):
    fake_openai.token_delay_s = 0.02
    plugin = make(fake_openai.base_url, tmp_path)
    stream = plugin.backend_chat([user("kelma " * 400)], GenerationOptions(max_tokens=400))
    assert next(stream) == "kelma"
    stream.close()
    assert fake_openai.client_gone.wait(5), "the server kept streaming to a closed response"


@pytest.mark.parametrize(
    ("lines", "events"),
    [
        (["data: a", "", "data: b", ""], ["a", "b"]),
        ([": keep-alive", "", "event: message", "id: 1", "data:x", ""], ["x"]),
        (["data: one", "data: two", ""], ["one\ntwo"]),
        (["data: last, with no blank line after it"], ["last, with no blank line after it"]),
    ],
    ids=["events", "comments-and-other-fields", "multi-line-data", "unterminated"],
)
def test_server_sent_events_are_parsed_as_the_spec_says(lines, events):
    assert list(_sse_data(lines)) == events


# -- through the application --------------------------------------------------------------


def test_a_stream_broken_mid_reply_is_stored_as_error_through_the_app(fake_openai, monkeypatch):
    monkeypatch.setenv("DZIRI_BACKEND", "openai")
    monkeypatch.setenv("DZIRI_BACKEND__OPENAI__BASE_URL", fake_openai.base_url)
    fake_openai.reply, fake_openai.error_after = "one two three four five", 3
    app = App()
    try:
        user_id = app.chat.local_user().id
        stream = app.chat.send(user_id, "3odd m3aya")
        with pytest.raises(BackendError, match="failed while generating"):
            stream.text()
        stored = app.store.list_messages(user_id, stream.conversation.id)[-1]
        assert (stored.status, stored.content) == (MessageStatus.ERROR, "one two three")
    finally:
        app.close()


# -- a real server ------------------------------------------------------------------------

REAL_BASE_URL = os.environ.get("DZIRI_TEST_OPENAI_BASE_URL", "")
REAL_MODEL = os.environ.get("DZIRI_TEST_OPENAI_MODEL", "")
REAL_KEY_ENV = os.environ.get("DZIRI_TEST_OPENAI_API_KEY_ENV", "")
# Read now: the isolation fixture clears DZIRI_* and GROQ_API_KEY before each test.
REAL_KEY = os.environ.get(REAL_KEY_ENV, "") if REAL_KEY_ENV else ""


@pytest.mark.skipif(not (REAL_BASE_URL and REAL_MODEL), reason="set DZIRI_TEST_OPENAI_BASE_URL and"
                    " DZIRI_TEST_OPENAI_MODEL (and DZIRI_TEST_OPENAI_API_KEY_ENV, the name of the variable"
                    " holding a key, if the server wants one) to run the contract against a real server")
class TestRealOpenAICompatContract(BackendContract):
    reply_timeout_s = 300.0

    @pytest.fixture
    def backend_plugin(self, tmp_path, monkeypatch):
        if REAL_KEY_ENV:
            monkeypatch.setenv(REAL_KEY_ENV, REAL_KEY)
        return make(REAL_BASE_URL, tmp_path, model=REAL_MODEL, api_key_env=REAL_KEY_ENV)
