"""The Groq translator against a fake Groq server on 127.0.0.1 (tests/fakes/groq_server.py):
the shared translator contract, then batching, validation and fallback, rate limits,
back-off, refusals and the API key's secrecy. Waits go through an injected clock, so
nothing here really sleeps except the one client-timeout test (a fraction of a second).

The test against the real Groq API runs only with DZIRI_TEST_GROQ=1 and GROQ_API_KEY set."""

from __future__ import annotations

import logging
import os
import random
import socket
import threading

import pytest
from fakes.groq_server import FakeGroqServer, Fault, fake_translate, format_duration

from dziri.core.app import App
from dziri.core.errors import ConfigError, TranslatorError
from dziri.core.models import PluginContext, Segment
from dziri.core.testing import TranslatorContract
from dziri.plugins.translators.groq import GROQ_API, GroqTranslator, parse_batch_answer, parse_duration

KEY = "test-key-not-real"
# Read before the suite's autouse fixture clears GROQ_API_KEY from every test's environment.
REAL_GROQ_KEY = os.environ.get("GROQ_API_KEY", "") if os.environ.get("DZIRI_TEST_GROQ") == "1" else ""
REAL_GROQ_BASE_URL = os.environ.get("GROQ_BASE_URL", "")

WORDS = ["wach", "rak", "khouya", "ana", "mlih", "merci", "sa7a", "3lach", "bzaf", "lyoum", "واش", "راك",
         "خويا", "بزاف", "travail", "demain", "voiture", "kifach", "nrouh", "dar"]


def segments(count: int, words: int = 8) -> list[Segment]:
    rng = random.Random(count)
    return [Segment(id=f"seg-{i}", text=" ".join(rng.choice(WORDS) for _ in range(words)) + f" {i}")
            for i in range(count)]


class FakeTime:
    """A clock that only moves when the translator sleeps; every sleep is recorded."""

    def __init__(self) -> None:
        self.now = 1_000.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


@pytest.fixture(autouse=True)
def groq_environment(monkeypatch):
    monkeypatch.setenv("GROQ_API_KEY", KEY)
    monkeypatch.delenv("GROQ_BASE_URL", raising=False)


@pytest.fixture
def fake_time() -> FakeTime:
    return FakeTime()


@pytest.fixture
def server(fake_time):
    with FakeGroqServer(api_key=KEY, clock=fake_time.clock) as fake:
        yield fake


@pytest.fixture
def make(server, fake_time, tmp_path):
    def make(**settings) -> GroqTranslator:
        settings.setdefault("base_url", server.url)
        return GroqTranslator(GroqTranslator.Settings(**settings), PluginContext(data_dir=tmp_path),
                              sleep=fake_time.sleep, clock=fake_time.clock, rng=random.Random(0))
    return make


def translate(plugin: GroqTranslator, items: list[Segment]) -> list[Segment]:
    return plugin.translator_translate(items, "Algerian Arabic (Darija)", "English")


def assert_translated(items: list[Segment], result: list[Segment]) -> None:
    assert [s.id for s in result] == [s.id for s in items]
    for segment in result:
        assert segment.translation == fake_translate(segment.text), segment.id


class TestGroqContract(TranslatorContract):
    @pytest.fixture
    def translator_plugin(self, make):
        return make()


# -- batching -------------------------------------------------------------------------------

def test_segments_are_sent_in_batches_and_come_back_to_their_own_ids(make, server):
    items = segments(60)
    result = translate(make(batch_size=25), items)
    assert_translated(items, result)
    assert [len(r.texts) for r in server.requests] == [25, 25, 10]
    assert all(r.batch for r in server.requests)


def test_the_defaults_send_at_most_60_requests_per_1000_segments(make, server):
    plugin = make()
    items = segments(1000, words=18)
    assert_translated(items, translate(plugin, items))
    assert len(server.requests) == plugin.stats.requests <= 60
    assert len(server.requests) == 40  # batch_size 25


def test_a_batch_also_stops_at_max_batch_chars(make, server):
    items = [Segment(id=str(i), text="wach rak " * 30) for i in range(6)]  # 270 characters each
    translate(make(batch_size=25, max_batch_chars=600), items)
    assert [len(r.texts) for r in server.requests] == [2, 2, 2]


def test_the_batch_request_is_strict_json_at_temperature_0(make, server):
    translate(make(batch_size=3, model="llama-3.1-8b-instant"), segments(3))
    body = server.requests[0].body
    assert body["model"] == "llama-3.1-8b-instant"
    assert body["temperature"] == 0
    system = body["messages"][0]["content"]
    assert "only the translation, no commentary" in system.lower()
    assert "json" in system.lower()
    assert server.requests[0].texts.keys() == {"1", "2", "3"}


def test_blank_texts_cost_no_request(make, server):
    items = [Segment(id="a", text="  "), Segment(id="b", text="wach rak"), Segment(id="c", text="")]
    result = translate(make(), items)
    assert [s.translation for s in result] == ["", fake_translate("wach rak"), ""]
    assert len(server.requests) == 1 and not server.requests[0].batch


# -- answers that do not validate ---------------------------------------------------------------

@pytest.mark.parametrize("fault", ["malformed", "missing_id", "duplicate_id", "extra_id", "empty", "truncated"])
def test_a_batch_whose_answer_does_not_validate_is_split_in_halves(make, server, fault):
    items = segments(4)
    server.fail_next(fault)
    plugin = make(batch_size=4)
    assert_translated(items, translate(plugin, items))
    assert [len(r.texts) for r in server.requests] == [4, 2, 2]
    assert plugin.stats.invalid_answers == 1


def test_a_batch_that_never_validates_ends_one_segment_per_request(make, server):
    items = segments(4)
    server.fault_for = lambda request: Fault("malformed") if request.batch else None
    assert_translated(items, translate(make(batch_size=4), items))
    assert [len(r.texts) for r in server.requests] == [4, 2, 1, 1, 2, 1, 1]  # depth first
    # A single segment goes with the plain one-text prompt.
    assert [r.batch for r in server.requests] == [True, True, False, False, True, False, False]


def test_commentary_around_a_valid_batch_answer_is_ignored(make, server):
    items = segments(5)
    server.fail_next("commentary")
    assert_translated(items, translate(make(batch_size=5), items))
    assert len(server.requests) == 1


def test_a_single_answer_loses_its_label_quotes_and_note(make, server):
    server.fail_next("commentary")  # 'Here is the translation: "…"\n\nNote: …'
    item = Segment(id="x", text="wach rak khouya?")
    assert translate(make(), [item])[0].translation == fake_translate(item.text)


def test_a_segment_without_a_usable_answer_stops_with_its_id(make, server):
    server.fault_for = lambda request: Fault("empty")
    with pytest.raises(TranslatorError, match="segment 'lonely'"):
        translate(make(), [Segment(id="lonely", text="wach rak")])
    assert len(server.requests) == 2


def test_a_batch_refused_as_too_large_is_split(make, server):
    items = segments(4)
    server.fail_next(Fault.error(413, "Request Entity Too Large"))
    assert_translated(items, translate(make(batch_size=4), items))
    assert [len(r.texts) for r in server.requests] == [4, 2, 2]


@pytest.mark.parametrize(("content", "problem"), [
    ('{"1": "a", "2": "b"}', ""),
    ('```json\n{"1": "a", "2": "b"}\n```', ""),
    ('{"1": "a"}', "id(s) 2 missing"),
    ('{"1": "a", "1": "b", "2": "c"}', "id 1 came back twice"),
    ('{"1": "a", "2": "b", "3": "c"}', "unexpected id(s) 3"),
    ('{"1": "a", "2": 7}', "id 2 is not a text"),
    ('{"1": "a", "2": "\\"\\""}', "empty translation for id(s) 2"),
    ("1. a\n2. b", "the answer is not a JSON object"),
    ('{"1": "a", "2": "b"', "the answer is not a JSON object"),
    ('{"1": "a", "2": }', "the answer is not valid JSON"),
    ('["a", "b"]', "the answer is not a JSON object"),
])
def test_parse_batch_answer(content, problem):
    parsed, found = parse_batch_answer(content, ["1", "2"])
    assert found == problem
    assert (parsed is None) == bool(problem)


def test_a_cut_off_answer_never_validates():
    assert parse_batch_answer('{"1": "a", "2": "b"}', ["1", "2"], "length") == (None, "the answer was cut off")


# -- rate limits -------------------------------------------------------------------------------

@pytest.mark.parametrize(("value", "seconds"), [
    ("2m59.56s", 179.56), ("7.66s", 7.66), ("120ms", 0.12), ("1h2m3s", 3723.0), ("59s", 59.0), ("3", 3.0),
    ("0.5", 0.5), ("", None), (None, None), ("soon", None), ("5x", None),
])
def test_parse_duration_reads_groqs_formats(value, seconds):
    assert parse_duration(value) == (pytest.approx(seconds) if seconds is not None else None)


def test_the_fake_server_writes_durations_the_way_groq_does():
    assert [format_duration(s) for s in (179.56, 7.66, 0.12, 3723)] == ["2m59.56s", "7.66s", "120ms", "1h2m3s"]
    assert all(parse_duration(format_duration(s)) == pytest.approx(s) for s in (179.56, 7.66, 0.12, 3723))


def test_a_429_waits_exactly_what_retry_after_says(make, server, fake_time):
    items = segments(3)
    server.fail_next(Fault.rate_limited(retry_after=7))
    plugin = make()
    assert_translated(items, translate(plugin, items))
    assert fake_time.sleeps == [pytest.approx(7)]
    assert server.status_counts() == {429: 1, 200: 1}
    assert plugin.stats.rate_limited == 1


@pytest.mark.parametrize(("headers", "expected"), [
    ({"x_ratelimit_remaining_tokens": "0", "x_ratelimit_reset_tokens": "7.66s",
      "x_ratelimit_remaining_requests": "14", "x_ratelimit_reset_requests": "2m59.56s"}, 7.66),
    ({"x_ratelimit_remaining_requests": "0", "x_ratelimit_reset_requests": "2m59.56s",
      "x_ratelimit_remaining_tokens": "5000", "x_ratelimit_reset_tokens": "120ms"}, 179.56),
    ({"x_ratelimit_reset_tokens": "120ms"}, 0.12),
])
def test_without_retry_after_a_429_waits_for_the_spent_limit_to_reset(make, server, fake_time, headers, expected):
    server.fail_next(Fault.rate_limited(retry_after=None, **headers))
    assert_translated(segments(2), translate(make(), segments(2)))
    assert fake_time.sleeps == [pytest.approx(expected)]


def test_a_429_with_no_hint_backs_off(make, server, fake_time):
    server.fail_next(Fault.rate_limited(retry_after=None))
    translate(make(backoff_base_s=2.0), segments(2))
    assert len(fake_time.sleeps) == 1 and 1.0 <= fake_time.sleeps[0] <= 2.0


def test_a_wait_longer_than_max_wait_s_stops_the_run_instead_of_sleeping(make, server, fake_time):
    server.fail_next(Fault.rate_limited(retry_after=3600))
    with pytest.raises(TranslatorError, match=r"wait 3600s.*max_wait_s=600"):
        translate(make(max_wait_s=600), segments(2))
    assert fake_time.sleeps == []


def test_the_rate_limit_headers_pause_before_the_server_refuses(fake_time, tmp_path):
    with FakeGroqServer(api_key=KEY, clock=fake_time.clock, requests_per_minute=3) as server:
        plugin = GroqTranslator(GroqTranslator.Settings(base_url=server.url, batch_size=2),
                                PluginContext(data_dir=tmp_path), sleep=fake_time.sleep, clock=fake_time.clock)
        items = segments(10)
        assert_translated(items, translate(plugin, items))
    assert server.status_counts() == {200: 5}  # never refused
    assert len(fake_time.sleeps) == 1 and 59 <= fake_time.sleeps[0] <= 60  # the window's reset


def test_a_requests_per_minute_limit_is_met_by_honouring_retry_after(fake_time, tmp_path):
    # This server hides its remaining budget until it refuses: only 429s tell the client.
    with FakeGroqServer(api_key=KEY, clock=fake_time.clock, requests_per_minute=2) as server:
        plugin = GroqTranslator(GroqTranslator.Settings(base_url=server.url, batch_size=1),
                                PluginContext(data_dir=tmp_path), sleep=fake_time.sleep, clock=fake_time.clock)
        plugin._note_rate_limits = lambda headers: None
        items = segments(5)
        assert_translated(items, translate(plugin, items))
    assert server.status_counts() == {200: 5, 429: 2}
    assert fake_time.sleeps == [60, 60]


def test_a_tokens_per_minute_limit_is_honoured(fake_time, tmp_path):
    with FakeGroqServer(api_key=KEY, clock=fake_time.clock, tokens_per_minute=1500) as server:
        plugin = GroqTranslator(GroqTranslator.Settings(base_url=server.url, batch_size=10),
                                PluginContext(data_dir=tmp_path), sleep=fake_time.sleep, clock=fake_time.clock)
        items = segments(40, words=12)
        assert_translated(items, translate(plugin, items))
    assert server.status_counts().get(200) == 4
    assert fake_time.sleeps  # it waited for the token budget to refill


# -- server errors, timeouts, connection failures ----------------------------------------------

def test_5xx_answers_are_retried_with_growing_jittered_back_off(make, server, fake_time):
    items = segments(3)
    server.fail_next(Fault.error(500), Fault.error(503), Fault.error(502))
    plugin = make(backoff_base_s=1.0)
    assert_translated(items, translate(plugin, items))
    assert len(fake_time.sleeps) == 3
    for attempt, slept in enumerate(fake_time.sleeps, start=1):
        ceiling = 2 ** (attempt - 1)
        assert ceiling / 2 <= slept <= ceiling
    assert plugin.stats.retried_errors == 3


def test_back_off_is_bounded_in_tries_and_length(make, server, fake_time):
    server.fault_for = lambda request: Fault.error(500, "Internal Server Error")
    with pytest.raises(TranslatorError) as info:
        translate(make(max_tries=5, backoff_base_s=10, backoff_max_s=15), segments(2))
    message = str(info.value)
    assert "failed 5 times" in message and "500" in message and "\n" not in message
    assert len(server.requests) == 5
    assert len(fake_time.sleeps) == 4 and max(fake_time.sleeps) <= 15


def test_a_slow_answer_times_out_and_is_retried(make, server):
    items = segments(2)
    server.fail_next(Fault.slow(1.0))
    plugin = make(timeout_s=0.2)
    assert_translated(items, translate(plugin, items))
    assert plugin.stats.retried_errors == 1
    assert plugin.stats.requests == 2


def test_a_body_that_is_not_json_is_retried(make, server):
    items = segments(2)
    server.fail_next("bad_body")
    assert_translated(items, translate(make(), items))
    assert len(server.requests) == 2


def test_a_server_that_is_down_fails_naming_it(make, tmp_path):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(TranslatorError, match=rf"127\.0\.0\.1:{port} failed 2 times.*cannot connect"):
        translate(make(base_url=f"http://127.0.0.1:{port}", max_tries=2), segments(1))


# -- refusals: one clear line, no retry --------------------------------------------------------

def test_a_wrong_key_is_a_clear_error_without_the_key(make, server, monkeypatch):
    monkeypatch.setenv("GROQ_API_KEY", "wrong-key-not-real")
    with pytest.raises(TranslatorError) as info:
        translate(make(), segments(2))
    message = str(info.value)
    assert "401" in message and "GROQ_API_KEY" in message and "Invalid API Key" in message
    assert "wrong-key-not-real" not in message
    assert len(server.requests) == 1


def test_an_unknown_model_is_a_clear_error(make, server):
    with pytest.raises(TranslatorError, match=r"no model 'llama-9-imaginary'.*404"):
        translate(make(model="llama-9-imaginary"), segments(2))
    assert len(server.requests) == 1


def test_a_bad_request_is_not_retried(make, server):
    server.fail_next(Fault.error(400, "'messages.1' : property 'content' is too long"))
    with pytest.raises(TranslatorError, match=r"rejected the request .*\(400: 'messages\.1'"):
        translate(make(), segments(2))
    assert len(server.requests) == 1


# -- the key -----------------------------------------------------------------------------------

@pytest.mark.parametrize("value", [None, "", "   "])
def test_a_missing_key_fails_when_the_plugin_is_created(monkeypatch, server, tmp_path, value):
    if value is None:
        monkeypatch.delenv("GROQ_API_KEY")
    else:
        monkeypatch.setenv("GROQ_API_KEY", value)
    with pytest.raises(ConfigError, match="GROQ_API_KEY, which is not set"):
        GroqTranslator(GroqTranslator.Settings(base_url=server.url), PluginContext(data_dir=tmp_path))
    assert server.requests == []


def test_a_missing_key_fails_before_the_app_does_any_work(monkeypatch):
    monkeypatch.delenv("GROQ_API_KEY")
    monkeypatch.setenv("DZIRI_TRANSLATOR", "groq")
    with pytest.raises(ConfigError, match="GROQ_API_KEY"):
        App().translator  # noqa: B018 (creating it is the test)


def test_the_key_goes_only_in_the_authorization_header(make, server):
    translate(make(batch_size=2), segments(4))
    assert server.requests
    for request in server.requests:
        assert request.headers["authorization"] == f"Bearer {KEY}"
        others = {name: value for name, value in request.headers.items() if name != "authorization"}
        assert KEY not in repr(others)
        assert KEY.encode() not in request.raw


def test_the_key_never_appears_in_logs_errors_or_repr(make, server, caplog):
    caplog.set_level(logging.DEBUG)  # the groq client's and httpx's debug logs too
    plugin = make(max_tries=3)
    server.fail_next(Fault.rate_limited(retry_after=1), Fault.error(500), "malformed", "bad_body")
    translate(plugin, segments(6))
    # A proxy that echoes the key back in its error message.
    server.fail_next(Fault.error(400, f"bad header Authorization: Bearer {KEY}"))
    with pytest.raises(TranslatorError) as info:
        translate(plugin, segments(2))
    assert "***" in str(info.value)
    everything = " ".join([caplog.text, str(info.value), repr(info.value), repr(plugin), repr(plugin.settings),
                           plugin.settings.model_dump_json(), repr(plugin.stats)])
    assert caplog.text and KEY not in everything


# -- where the server is -----------------------------------------------------------------------

def test_base_url_defaults_to_groq_or_the_groq_base_url_variable(monkeypatch, server, tmp_path):
    assert GroqTranslator.Settings().base_url == GROQ_API == "https://api.groq.com"
    monkeypatch.setenv("GROQ_BASE_URL", server.url)
    settings = GroqTranslator.Settings()
    assert settings.base_url == server.url
    plugin = GroqTranslator(settings, PluginContext(data_dir=tmp_path))
    assert_translated(segments(2), translate(plugin, segments(2)))
    assert GroqTranslator.Settings(base_url="").base_url == server.url
    assert GroqTranslator.Settings(base_url="http://127.0.0.1:1").base_url == "http://127.0.0.1:1"  # config wins


def test_the_app_translates_through_the_configured_groq_plugin(monkeypatch, server):
    monkeypatch.setenv("DZIRI_TRANSLATOR", "groq")
    monkeypatch.setenv("DZIRI_TRANSLATOR__GROQ__BASE_URL", server.url)
    monkeypatch.setenv("DZIRI_TRANSLATOR__GROQ__BATCH_SIZE", "2")
    app = App()
    items = segments(3)
    assert_translated(items, app.translator.translate(items, "Darija", "English"))
    assert [len(r.texts) for r in server.requests] == [2, 1]


# -- the real service --------------------------------------------------------------------------

@pytest.mark.skipif(not REAL_GROQ_KEY, reason="set DZIRI_TEST_GROQ=1 and GROQ_API_KEY to test against real Groq")
def test_the_real_groq_api_translates_a_small_batch(monkeypatch, tmp_path):
    monkeypatch.setenv("GROQ_API_KEY", REAL_GROQ_KEY)
    settings = GroqTranslator.Settings(base_url=REAL_GROQ_BASE_URL or GROQ_API, max_wait_s=120)
    plugin = GroqTranslator(settings, PluginContext(data_dir=tmp_path))
    items = [Segment(id="a", text="wach rak khouya?"), Segment(id="b", text="واش راك اليوم؟"),
             Segment(id="c", text="ana mlih, merci")]
    result = plugin.translator_translate(items, "Algerian Arabic (Darija)", "English")
    assert [s.id for s in result] == ["a", "b", "c"]
    assert all(s.translation and s.translation.strip() for s in result)
    assert plugin.stats.requests >= 1


def test_the_fake_server_stops_with_no_thread_left_behind(fake_time, tmp_path):
    # Other suites check that no HTTP handler thread outlives its test.
    def make(url: str, **settings) -> GroqTranslator:
        return GroqTranslator(GroqTranslator.Settings(base_url=url, **settings), PluginContext(data_dir=tmp_path),
                              sleep=fake_time.sleep, clock=fake_time.clock)

    with FakeGroqServer(api_key=KEY, clock=fake_time.clock) as fake:
        translate(make(fake.url), segments(3))  # its client keeps the connection open
        fake.fail_next(Fault.slow(30))
        with pytest.raises(TranslatorError):
            translate(make(fake.url, timeout_s=0.1, max_tries=1), segments(1))
    assert not [t for t in threading.enumerate() if "process_request" in t.name or t.name == "fake-groq"]
