"""The Groq translator: Darija → English (or any pair) with a model served by Groq.

Where the seed sent one request per segment and spent its whole free quota on one pass,
this sends `batch_size` segments per request as a JSON object of numbered texts and
expects the same keys back. An answer that does not validate (not JSON, a key missing,
doubled or extra, an empty translation, cut off) is not trusted at all: the batch is
split in halves and each half asked again, down to one segment per request, which uses
the seed's plain "only the translation" prompt.

Rate limits: a 429 waits what `retry-after` says (else the `x-ratelimit-reset-*`
headers, in Groq's "2m59.56s" format); the same headers on successful answers pause
the next request before the server has to refuse it. 5xx, timeouts and connection
failures back off exponentially with jitter. Every request has `max_tries`; any other
error (a bad key, a wrong model, a bad request) stops with one TranslatorError line.

The API key is read from the environment only (GROQ_API_KEY) and handed to the groq
client; it is kept out of settings, logs, error messages and repr.
"""

from __future__ import annotations

import email.utils
import json
import logging
import math
import os
import random
import re
import time
from collections.abc import Callable
from dataclasses import dataclass

import groq
import httpx
from pydantic import BaseModel, ConfigDict, Field, field_validator

from dziri.core.errors import ConfigError, TranslatorError
from dziri.core.hookspecs import hookimpl
from dziri.core.models import PluginContext, Segment

from .cleaning import clean_translation

log = logging.getLogger(__name__)

GROQ_API = "https://api.groq.com"
KEYS_PAGE = "https://console.groq.com/keys"
RETRYABLE_STATUSES = {408, 409, 498, 500, 502, 503, 504}  # 498: Groq's flex tier is at capacity

BATCH_PROMPT = (
    "You are a translation engine. Translate from {source} into {target}. The user sends a JSON object "
    "whose keys are numbers and whose values are texts. Reply with only a JSON object with exactly the same "
    "keys, each mapped to the {target} translation of its text. Translate every text on its own; never merge, "
    "split, skip or add entries. Only the translation, no commentary, no notes, no quotes around it."
)
SINGLE_PROMPT = (
    "You are a translation engine. Translate the user's message from {source} into {target}. "
    "Reply with only the translation, no commentary, no notes, no quotes around it."
)


def _default_base_url() -> str:
    return os.environ.get("GROQ_BASE_URL") or GROQ_API


class GroqSettings(BaseModel):
    """`[translator.groq]` in dziri.toml."""

    model_config = ConfigDict(extra="forbid")

    model: str = Field("llama-3.3-70b-versatile", min_length=1, description="a chat model served by Groq")
    base_url: str = Field(
        default_factory=_default_base_url,
        description="empty or absent: $GROQ_BASE_URL when set, else https://api.groq.com",
    )
    api_key_env: str = Field("GROQ_API_KEY", min_length=1, description="the environment variable holding the key")
    batch_size: int = Field(25, ge=1, le=100, description="segments per request (1,000 segments: 40 requests)")
    max_batch_chars: int = Field(6000, ge=100, description="characters of source text per request at most")
    max_tries: int = Field(6, ge=1, le=20, description="tries per request on 429, 5xx, timeouts")
    timeout_s: float = Field(60.0, gt=0, description="seconds to wait for one answer")
    backoff_base_s: float = Field(1.0, ge=0, description="first back-off after a 5xx or timeout; doubles each try")
    backoff_max_s: float = Field(60.0, ge=0, description="longest back-off")
    max_wait_s: float = Field(
        600.0, ge=0, description="longest rate-limit pause; a longer one (a spent daily quota) stops the run"
    )

    @field_validator("base_url", mode="before")
    @classmethod
    def _empty_base_url_means_the_default(cls, value):
        return value.strip() or _default_base_url() if isinstance(value, str) else value


@dataclass
class GroqStats:
    """What a run cost; `bench/translate.py` and the tests read it."""

    requests: int = 0  # HTTP requests sent, retries included
    rate_limited: int = 0  # 429 answers
    retried_errors: int = 0  # 5xx, timeouts, connection failures that were retried
    invalid_answers: int = 0  # answers that did not validate (the batch was split)
    waited_s: float = 0.0  # time slept on rate limits and back-off
    prompt_tokens: int = 0  # as the server reports them in `usage`
    completion_tokens: int = 0


@dataclass
class _Answer:
    content: str
    finish_reason: str | None


class _TooLarge(Exception):
    """The server refused the request as too large (413): a smaller batch may pass."""


class GroqTranslator:
    Settings = GroqSettings

    def __init__(
        self,
        settings: GroqSettings,
        context: PluginContext,
        *,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
        http_client: httpx.Client | None = None,
    ):
        """`sleep`, `clock` and `rng` drive waits and jitter (tests inject them)."""
        self.settings = settings
        key = os.environ.get(settings.api_key_env, "").strip()
        if not key:
            raise ConfigError(
                f"the Groq translator needs an API key in the environment variable {settings.api_key_env}, "
                f"which is not set: create a key at {KEYS_PAGE} and export {settings.api_key_env}=..."
            )
        self._secret = key
        self._client = groq.Groq(
            api_key=key, base_url=settings.base_url, max_retries=0, timeout=settings.timeout_s, http_client=http_client
        )
        self._sleep, self._clock = sleep, clock
        self._rng = rng or random.Random()
        self._not_before = 0.0  # clock time before which no request goes out (a known rate limit)
        self._tokens_left: int | None = None  # the token budget the last answer reported ...
        self._tokens_reset_at = 0.0  # ... and when it refills
        self.stats = GroqStats()

    def __repr__(self) -> str:
        return f"GroqTranslator(model={self.settings.model!r}, base_url={self.settings.base_url!r})"

    @hookimpl
    def translator_translate(
        self, segments: list[Segment], source_language: str, target_language: str
    ) -> list[Segment]:
        translations: dict[int, str] = {}
        work = [(index, segment) for index, segment in enumerate(segments) if segment.text.strip()]
        done, started = 0, self.stats.requests
        for batch in self._batches(work):
            translations.update(self._translate_batch(batch, source_language, target_language))
            done += len(batch)
            log.info("Groq: translated %d/%d segments (%d requests)", done, len(work), self.stats.requests - started)
        # A blank text's translation is blank; it costs no request.
        return [segment.model_copy(update={"translation": translations.get(index, "")})
                for index, segment in enumerate(segments)]

    # -- batching and validation ---------------------------------------------------------
    def _batches(self, work: list[tuple[int, Segment]]) -> list[list[tuple[int, Segment]]]:
        batches: list[list[tuple[int, Segment]]] = []
        current: list[tuple[int, Segment]] = []
        chars = 0
        for item in work:
            size = len(item[1].text)
            if current and (len(current) >= self.settings.batch_size or chars + size > self.settings.max_batch_chars):
                batches.append(current)
                current, chars = [], 0
            current.append(item)
            chars += size
        if current:
            batches.append(current)
        return batches

    def _translate_batch(self, batch: list[tuple[int, Segment]], source: str, target: str) -> dict[int, str]:
        if len(batch) == 1:
            index, segment = batch[0]
            return {index: self._translate_one(segment, source, target)}
        texts = {str(number): segment.text for number, (_, segment) in enumerate(batch, start=1)}
        messages = [
            {"role": "system", "content": BATCH_PROMPT.format(source=source, target=target)},
            {"role": "user", "content": json.dumps(texts, ensure_ascii=False)},
        ]
        try:
            answer = self._complete(messages, _max_tokens(texts.values()))
            by_number, problem = parse_batch_answer(answer.content, list(texts), answer.finish_reason)
        except _TooLarge:
            by_number, problem = None, "the request was too large (413)"
        if by_number is not None:
            return {index: by_number[str(number)] for number, (index, _) in enumerate(batch, start=1)}
        self.stats.invalid_answers += 1
        half = len(batch) // 2
        log.warning("Groq: the answer for a batch of %d did not validate (%s); asking again in batches of %d and %d",
                    len(batch), problem, half, len(batch) - half)
        return {**self._translate_batch(batch[:half], source, target),
                **self._translate_batch(batch[half:], source, target)}

    def _translate_one(self, segment: Segment, source: str, target: str) -> str:
        messages = [
            {"role": "system", "content": SINGLE_PROMPT.format(source=source, target=target)},
            {"role": "user", "content": segment.text},
        ]
        problem = ""
        for _ in range(2):  # temperature 0 is not fully deterministic on Groq: one more try
            try:
                answer = self._complete(messages, _max_tokens([segment.text]))
            except _TooLarge:
                raise TranslatorError(
                    f"Groq refused segment {segment.id!r} as too large (413): split the text"
                ) from None
            translation = clean_translation(answer.content, single_line="\n" not in segment.text.strip())
            if answer.finish_reason == "length":
                problem = "the answer was cut off"
            elif not translation:
                problem = "the answer was empty"
            else:
                return translation
            self.stats.invalid_answers += 1
            log.warning("Groq: no usable translation for segment %r (%s)", segment.id, problem)
        raise TranslatorError(f"Groq gave no usable translation for segment {segment.id!r}: {problem}")

    # -- one request, with retries --------------------------------------------------------
    def _complete(self, messages: list[dict[str, str]], max_tokens: int) -> _Answer:
        estimated_tokens = math.ceil(sum(len(m["content"]) for m in messages) / 4) + max_tokens // 2
        reason = ""
        for attempt in range(1, self.settings.max_tries + 1):
            self._wait_for_quota(estimated_tokens)
            self.stats.requests += 1
            try:
                raw = self._client.chat.completions.with_raw_response.create(
                    model=self.settings.model, messages=messages, temperature=0, max_tokens=max_tokens
                )
                self._note_rate_limits(raw.headers)
                completion = raw.parse()
                choice = completion.choices[0]
                if completion.usage is not None:
                    self.stats.prompt_tokens += completion.usage.prompt_tokens or 0
                    self.stats.completion_tokens += completion.usage.completion_tokens or 0
                return _Answer(choice.message.content or "", choice.finish_reason)
            except groq.RateLimitError as exc:
                self.stats.rate_limited += 1
                wait, reason = self._rate_limit_wait(exc.response.headers, attempt), "rate limited (429)"
            except groq.APIStatusError as exc:
                if exc.status_code == 413:
                    raise _TooLarge() from None
                if exc.status_code not in RETRYABLE_STATUSES:
                    raise TranslatorError(self._describe_refusal(exc)) from None
                wait, reason = self._backoff(attempt), f"server error {exc.status_code}{self._detail(exc)}"
            except groq.APITimeoutError:
                wait, reason = self._backoff(attempt), f"no answer within {self.settings.timeout_s:g}s"
            except groq.APIConnectionError as exc:
                cause = exc.__cause__ or exc
                why = self._scrub(str(cause)) or type(cause).__name__
                wait, reason = self._backoff(attempt), f"cannot connect: {why}"
            except (groq.APIResponseValidationError, ValueError, IndexError, AttributeError):
                wait, reason = self._backoff(attempt), "the response was not a chat completion"
            if attempt == self.settings.max_tries:
                break
            log.warning("Groq at %s: %s; trying again in %.2fs (try %d of %d)",
                        self.settings.base_url, reason, wait, attempt + 1, self.settings.max_tries)
            if reason.startswith("rate limited"):
                continue  # _wait_for_quota waits until the time the server named
            self.stats.retried_errors += 1
            self._pause(wait)
        raise TranslatorError(
            f"Groq at {self.settings.base_url} failed {self.settings.max_tries} times in a row; last: {reason}"
        )

    def _backoff(self, attempt: int) -> float:
        ceiling = min(self.settings.backoff_max_s, self.settings.backoff_base_s * 2 ** (attempt - 1))
        return ceiling * (0.5 + 0.5 * self._rng.random())  # jitter: the waits of parallel runs drift apart

    def _rate_limit_wait(self, headers: httpx.Headers, attempt: int) -> float:
        """How long a 429 asks us to wait: retry-after, else the reset of the exhausted
        limit, else back-off. Later requests respect it too."""
        wait = parse_retry_after(headers.get("retry-after"))
        if wait is None:
            resets = {kind: parse_duration(headers.get(f"x-ratelimit-reset-{kind}")) for kind in ("requests", "tokens")}
            exhausted = [resets[k] for k in resets if headers.get(f"x-ratelimit-remaining-{k}") == "0"
                         and resets[k] is not None]
            known = [value for value in resets.values() if value is not None]
            wait = max(exhausted) if exhausted else min(known) if known else None
        if wait is None:
            wait = self._backoff(attempt)
        self._not_before = max(self._not_before, self._clock() + wait)
        return wait

    def _note_rate_limits(self, headers: httpx.Headers) -> None:
        """Pause before the server would refuse: a spent request budget waits for its reset."""
        now = self._clock()
        if headers.get("x-ratelimit-remaining-requests") == "0":
            reset = parse_duration(headers.get("x-ratelimit-reset-requests"))
            if reset:
                self._not_before = max(self._not_before, now + reset)
        tokens_left = headers.get("x-ratelimit-remaining-tokens")
        reset = parse_duration(headers.get("x-ratelimit-reset-tokens"))
        if tokens_left is not None and tokens_left.isdigit() and reset is not None:
            self._tokens_left, self._tokens_reset_at = int(tokens_left), now + reset

    def _wait_for_quota(self, estimated_tokens: int) -> None:
        now = self._clock()
        until = self._not_before
        if self._tokens_left is not None and estimated_tokens > self._tokens_left and now < self._tokens_reset_at:
            until = max(until, self._tokens_reset_at)
        if until > now:
            self._check_wait(until - now)
            log.info("Groq: rate limit reached; waiting %.2fs", until - now)
            self._pause(until - now)
        self._tokens_left = None  # spent on this request; the answer reports the new figure

    def _check_wait(self, wait: float) -> None:
        if wait > self.settings.max_wait_s:
            raise TranslatorError(
                f"Groq's rate limit asks to wait {wait:.0f}s, more than max_wait_s={self.settings.max_wait_s:g}"
                " (a daily quota is probably spent): try again later"
            )

    def _pause(self, seconds: float) -> None:
        self.stats.waited_s += seconds
        self._sleep(seconds)

    # -- messages that never carry the key -------------------------------------------------
    def _scrub(self, text: str) -> str:
        text = text.replace(self._secret, "***") if self._secret else text
        return " ".join(re.sub(r"gsk_[A-Za-z0-9]{8,}", "gsk_***", text).split())

    def _detail(self, exc: groq.APIStatusError) -> str:
        """': <the server's own message>', one short line, or ''."""
        body = exc.body
        message = ""
        if isinstance(body, dict):
            error = body.get("error", body)
            message = str(error.get("message", "")) if isinstance(error, dict) else str(error)
        message = self._scrub(message)
        if len(message) > 200:
            message = message[:197] + "..."
        return f": {message}" if message else ""

    def _describe_refusal(self, exc: groq.APIStatusError) -> str:
        status, detail, where = exc.status_code, self._detail(exc), self.settings.base_url
        if status == 401:
            return (f"Groq at {where} rejected the API key in {self.settings.api_key_env} (401{detail}): "
                    f"check it, or create a new one at {KEYS_PAGE}")
        if status == 403:
            return (f"Groq at {where} refused access (403{detail}): the key in {self.settings.api_key_env} may not "
                    f"be allowed to use model '{self.settings.model}'")
        if status == 404:
            return (f"Groq at {where} has no model '{self.settings.model}' or no chat-completions endpoint "
                    f"(404{detail}): check [translator.groq] model and base_url")
        return f"Groq at {where} rejected the request for model '{self.settings.model}' ({status}{detail})"


def _max_tokens(texts) -> int:
    """Room for the answer: translations run about as long as their source (Arabic script
    takes more tokens than the English it becomes), plus the JSON around them."""
    texts = list(texts)
    return min(8192, max(256, sum(math.ceil(len(t) / 2) + 12 for t in texts) + 32))


def parse_batch_answer(content: str, keys: list[str], finish_reason: str | None = "stop"
                       ) -> tuple[dict[str, str] | None, str]:
    """The answer to a batch as {key: cleaned translation}, or (None, what is wrong).
    It must be one JSON object with every key exactly once and nothing else."""
    if finish_reason == "length":
        return None, "the answer was cut off"
    text = content.strip()
    start, end = text.find("{"), text.rfind("}")
    if start < 0 or end < start:
        return None, "the answer is not a JSON object"
    try:
        pairs = json.loads(text[start: end + 1], object_pairs_hook=lambda p: p)
    except ValueError:
        return None, "the answer is not valid JSON"
    if not isinstance(pairs, list):
        return None, "the answer is not a JSON object"
    seen: dict[str, str] = {}
    for key, value in pairs:
        if key in seen:
            return None, f"id {key} came back twice"
        if not isinstance(value, str):
            return None, f"id {key} is not a text"
        seen[key] = value
    missing = [k for k in keys if k not in seen]
    extra = [k for k in seen if k not in set(keys)]
    if missing:
        return None, f"id(s) {', '.join(missing)} missing"
    if extra:
        return None, f"unexpected id(s) {', '.join(extra)}"
    cleaned = {key: clean_translation(value) for key, value in seen.items()}
    empty = [k for k in keys if not cleaned[k]]
    if empty:
        return None, f"empty translation for id(s) {', '.join(empty)}"
    return cleaned, ""


_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|h|m|s)")


def parse_duration(value: str | None) -> float | None:
    """Seconds in Groq's x-ratelimit-reset-* format ("2m59.56s", "7.66s", "120ms",
    "1h2m3s") or a plain number of seconds; None if absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    parts = _DURATION_PART.findall(value)
    if not parts or "".join(n + u for n, u in parts) != value:
        return None
    scale = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}
    return sum(float(number) * scale[unit] for number, unit in parts)


def parse_retry_after(value: str | None, now: Callable[[], float] = time.time) -> float | None:
    """Seconds from a retry-after header: a number of seconds or an HTTP date."""
    if not value:
        return None
    seconds = parse_duration(value)
    if seconds is not None:
        return seconds
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - now())
