"""A fake Groq server: OpenAI-style chat completions on 127.0.0.1, for the Groq
translator's tests and bench/translate.py.

It speaks `POST /openai/v1/chat/completions` (the path the `groq` client uses) and
"translates" deterministically with `fake_translate`: a small Darija→English word list
plus a tag derived from the text, so a test can tell exactly which text a translation
belongs to. A user message that is a JSON object of texts (`{"1": "...", "2": "..."}`,
the translator's batch format) gets a JSON object with the same keys back; any other
message is one text (what follows "Translate ...:\n\n" if it starts so, as the seed's
prompt did) and gets its translation as plain text.

What a test can make it do:
  - check the API key (`Authorization: Bearer <api_key>`: 401 otherwise) and the model
    (404 for one it does not know), with Groq's error bodies;
  - enforce requests-per-minute and tokens-per-minute limits on a clock it is given
    (a fake or scaled clock, so no test really waits), answering 429 with `retry-after`
    and Groq's `x-ratelimit-*` headers, which it also sends on every answer;
  - misbehave on the next requests (`fail_next(Fault...)`) or on any request a
    predicate picks (`fault_for`): 429, 5xx or any status, slow answers (client
    timeouts), a body that is not JSON, and answers a model gets wrong — not JSON,
    an id missing, duplicated or extra, commentary around the answer, empty, cut off;
  - record every request (`requests`) with its headers and body.
Tokens are counted the way the benchmark reports them: ceil(characters / 4).
"""

from __future__ import annotations

import json
import math
import re
import socket
import threading
import time
import zlib
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

CHAT_PATH = "/openai/v1/chat/completions"
FAKE_KEY = "test-key-not-real"
KNOWN_MODELS = frozenset({"llama-3.3-70b-versatile", "llama-3.1-8b-instant"})

DICTIONARY = {
    # Arabizi
    "wach": "what", "wesh": "what", "rak": "are you", "rani": "I am", "ana": "I", "nta": "you", "nti": "you",
    "hna": "we", "houma": "they", "mlih": "good", "labas": "fine", "hamdoullah": "thank God", "khouya": "my brother",
    "khti": "my sister", "sa7a": "health", "saha": "thanks", "ftourek": "your meal", "3lach": "why",
    "kifach": "how", "bzaf": "a lot", "chwiya": "a little", "lyoum": "today", "ghodwa": "tomorrow",
    "lbareh": "yesterday", "bghit": "I want", "nrouh": "to go", "dar": "house", "khedma": "work",
    "flous": "money", "drahem": "money", "mazal": "still", "kayen": "there is", "makanch": "there is not",
    "ntaya": "yours", "dyali": "mine", "sahbi": "my friend", "wahed": "one", "zouj": "two", "bark": "only",
    "daba": "now", "tani": "again", "yaatik": "may God give you", "bessah": "truly", "ma3lich": "never mind",
    "9a3": "all", "7aja": "thing", "9rib": "near", "b3id": "far", "nakol": "I eat", "nechreb": "I drink",
    # Arabic script
    "واش": "what", "راك": "are you", "راني": "I am", "انا": "I", "خويا": "my brother", "مليح": "good",
    "بزاف": "a lot", "شوية": "a little", "اليوم": "today", "غدوة": "tomorrow", "شكرا": "thanks",
    "صحة": "health", "كيفاش": "how", "علاش": "why", "نروح": "I go", "الدار": "the house", "خدمة": "work",
    "دراهم": "money", "مازال": "still", "كاين": "there is", "بصح": "truly",
    # French
    "merci": "thanks", "bonjour": "hello", "travail": "work", "demain": "tomorrow", "voiture": "car",
    "maison": "house", "beaucoup": "a lot", "aujourd'hui": "today", "toujours": "always", "oui": "yes",
    "non": "no", "bien": "well", "ça": "that", "va": "goes",
}
_PUNCTUATION = "?!.,;:\"'«»“”()؟،"


def fake_translate(text: str) -> str:
    """The fake "translation" of `text`: known words translated, others kept, and a tag
    that depends on the whole text."""
    words = [DICTIONARY.get(word.lower().strip(_PUNCTUATION), word) for word in text.split()]
    return " ".join(words) + f" #{zlib.crc32(text.encode()) & 0xFFFF:04x}"


def count_tokens(text: str) -> int:
    return math.ceil(len(text) / 4)


def format_duration(seconds: float) -> str:
    """Groq's format for x-ratelimit-reset-*: "2m59.56s", "7.66s", "120ms"."""
    seconds = max(0.0, seconds)
    if seconds < 1:
        return f"{round(seconds * 1000)}ms"
    minutes, rest = divmod(seconds, 60)
    hours, minutes = divmod(int(minutes), 60)
    text = f"{rest:.2f}".rstrip("0").rstrip(".") + "s"
    if minutes or hours:
        text = f"{minutes}m" + text
    if hours:
        text = f"{hours}h" + text
    return text


@dataclass
class Fault:
    """One misbehaviour. `kind` is one of:
    rate_limit (429; `retry_after` seconds, `headers` extra or replacing ones — pass
    retry_after=None to send none), status (`status` with a Groq error body), slow
    (answer after `delay_s` real seconds), bad_body (200, not JSON), and, for the
    content of a correct-looking answer: malformed (not JSON), missing_id,
    duplicate_id, extra_id, commentary (text around the answer), empty, truncated
    (finish_reason "length")."""

    kind: str
    status: int = 500
    retry_after: float | None = 1.0
    headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0
    message: str = ""

    @classmethod
    def rate_limited(cls, retry_after: float | None = 1.0, **headers: str) -> Fault:
        return cls("rate_limit", status=429, retry_after=retry_after,
                   headers={name.replace("_", "-"): value for name, value in headers.items()})

    @classmethod
    def error(cls, status: int = 500, message: str = "Internal Server Error") -> Fault:
        return cls("status", status=status, message=message)

    @classmethod
    def slow(cls, delay_s: float) -> Fault:
        return cls("slow", delay_s=delay_s)


@dataclass
class RecordedRequest:
    path: str
    headers: dict[str, str]  # names lower-cased
    raw: bytes
    body: Any  # parsed JSON, or None
    texts: dict[str, str]  # the texts asked for: {"1": ...} for a batch, {"": text} for one text
    prompt_tokens: int
    at: float  # the server's clock
    completion_tokens: int = 0
    status: int = 0  # the status it was answered with
    fault: str = ""

    @property
    def batch(self) -> bool:
        return "" not in self.texts


class FakeGroqServer:
    def __init__(
        self,
        *,
        api_key: str | None = FAKE_KEY,
        models: frozenset[str] = KNOWN_MODELS,
        requests_per_minute: int | None = None,
        tokens_per_minute: int | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        latency: Callable[[int, int], float] | None = None,
    ):
        """`clock`/`sleep` run the rate-limit windows and `latency(prompt_tokens,
        completion_tokens)` (seconds the answer takes, slept with `sleep`)."""
        self.api_key = api_key
        self.models = models
        self.requests_per_minute = requests_per_minute
        self.tokens_per_minute = tokens_per_minute
        self.clock = clock
        self.sleep = sleep
        self.latency = latency
        self.faults: deque[Fault] = deque()
        self.fault_for: Callable[[RecordedRequest], Fault | None] | None = None
        self.requests: list[RecordedRequest] = []
        self._request_times: deque[float] = deque()  # accepted requests in the last minute
        self._token_times: deque[tuple[float, int]] = deque()
        self._lock = threading.Lock()
        self._httpd: ThreadingHTTPServer | None = None
        self._connections: set[socket.socket] = set()  # open keep-alive connections, closed by stop()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    # -- life cycle ---------------------------------------------------------------------
    def start(self) -> FakeGroqServer:
        handler = type("Handler", (_Handler,), {"fake": self})
        self._stopping.clear()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        # socketserver tracks, and server_close() joins, only non-daemon handler threads.
        self._httpd.daemon_threads = False
        self._httpd.block_on_close = True
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, name="fake-groq", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and leave no thread behind, even where a client keeps its
        connection open (a translator's HTTP client is never closed by the tests)."""
        if self._httpd is None:
            return
        self._stopping.set()  # a slow answer in progress ends now
        self._httpd.shutdown()
        with self._lock:
            connections = list(self._connections)
        for connection in connections:
            try:
                connection.shutdown(socket.SHUT_RDWR)  # the handler's next read sees the end
            except OSError:
                pass
        self._httpd.server_close()
        if self._thread is not None:
            self._thread.join()
        self._httpd = self._thread = None

    def __enter__(self) -> FakeGroqServer:
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()

    @property
    def url(self) -> str:
        assert self._httpd is not None, "start the server first"
        return f"http://127.0.0.1:{self._httpd.server_address[1]}"

    # -- scripting and figures ----------------------------------------------------------
    def reset(self) -> None:
        """Forget every request and empty the rate-limit windows (a fresh minute)."""
        with self._lock:
            self.requests.clear()
            self.faults.clear()
            self._request_times.clear()
            self._token_times.clear()

    def fail_next(self, *faults: Fault | str) -> None:
        self.faults.extend(Fault(f) if isinstance(f, str) else f for f in faults)

    @property
    def answered(self) -> list[RecordedRequest]:
        return [r for r in self.requests if r.status == 200]

    @property
    def prompt_tokens(self) -> int:
        """Tokens sent, in every request (refused ones too)."""
        return sum(r.prompt_tokens for r in self.requests)

    @property
    def completion_tokens(self) -> int:
        return sum(r.completion_tokens for r in self.requests)

    def status_counts(self) -> dict[int, int]:
        counts: dict[int, int] = {}
        for request in self.requests:
            counts[request.status] = counts.get(request.status, 0) + 1
        return counts

    # -- the protocol -------------------------------------------------------------------
    def handle(self, path: str, headers: dict[str, str], raw: bytes) -> tuple[int, dict[str, str], bytes]:
        try:
            body = json.loads(raw)
        except ValueError:
            body = None
        messages = body.get("messages", []) if isinstance(body, dict) else []
        contents = [m.get("content") or "" for m in messages if isinstance(m, dict)]
        user = next((m.get("content") or "" for m in reversed(messages) if m.get("role") == "user"), "")
        request = RecordedRequest(path=path, headers=headers, raw=raw, body=body, texts=_texts_of(user),
                                  prompt_tokens=count_tokens("".join(contents)), at=self.clock())
        with self._lock:
            self.requests.append(request)
        status, extra, payload = self._answer(request)
        request.status = status
        return status, extra, payload

    def _answer(self, request: RecordedRequest) -> tuple[int, dict[str, str], bytes]:
        if request.path != CHAT_PATH:
            return _error(404, f"Unknown request URL: POST {request.path}", "unknown_url")
        if self.api_key is not None and request.headers.get("authorization") != f"Bearer {self.api_key}":
            return _error(401, "Invalid API Key", "invalid_api_key")
        body = request.body
        if not isinstance(body, dict) or not isinstance(body.get("messages"), list):
            return _error(400, "'messages' : property 'messages' is missing", "invalid_request_error")
        model = body.get("model")
        if model not in self.models:
            return _error(404, f"The model `{model}` does not exist or you do not have access to it.",
                          "model_not_found")
        with self._lock:
            fault = self.faults.popleft() if self.faults else None
        if fault is None and self.fault_for is not None:
            fault = self.fault_for(request)
        request.fault = fault.kind if fault else ""
        if fault is not None and fault.kind == "rate_limit":
            headers = self._limit_headers(self.clock())
            if fault.retry_after is not None:
                headers["retry-after"] = f"{fault.retry_after:g}"
            headers.update(fault.headers)
            return _error(429, "Rate limit reached (injected).", "rate_limit_exceeded", headers)
        if fault is not None and fault.kind == "status":
            return _error(fault.status, fault.message or f"error {fault.status}", "server_error")
        if fault is not None and fault.kind == "slow":
            self._stopping.wait(fault.delay_s)  # real time: it is the client's real timeout under test
        limited = self._admit(request)
        if limited is not None:
            return limited
        content, finish_reason = self._content(request, fault)
        completion_tokens = request.completion_tokens = count_tokens(content)
        with self._lock:
            self._token_times.append((request.at, request.prompt_tokens + completion_tokens))
        if self.latency is not None:
            self.sleep(self.latency(request.prompt_tokens, completion_tokens))
        if fault is not None and fault.kind == "bad_body":
            return 200, {}, b"<html>upstream hiccup</html>"
        answer = {
            "id": f"chatcmpl-fake-{len(self.requests)}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body["model"],
            "choices": [{"index": 0, "message": {"role": "assistant", "content": content},
                         "logprobs": None, "finish_reason": finish_reason}],
            "usage": {"prompt_tokens": request.prompt_tokens, "completion_tokens": completion_tokens,
                      "total_tokens": request.prompt_tokens + completion_tokens},
            "system_fingerprint": "fp_fake",
            "x_groq": {"id": "req_fake"},
        }
        return 200, self._limit_headers(self.clock()), json.dumps(answer, ensure_ascii=False).encode()

    def _admit(self, request: RecordedRequest) -> tuple[int, dict[str, str], bytes] | None:
        """Count the request against the limits, or answer 429 as Groq does."""
        now = request.at
        with self._lock:
            self._expire(now)
            rpm, tpm = self.requests_per_minute, self.tokens_per_minute
            if rpm is not None and len(self._request_times) >= rpm:
                wait = self._request_times[0] + 60 - now
                what = f"requests per minute (RPM): Limit {rpm}, Used {len(self._request_times)}, Requested 1"
            elif tpm is not None and self._tokens_used() + request.prompt_tokens > tpm and self._token_times:
                wait = self._token_times[0][0] + 60 - now
                what = f"tokens per minute (TPM): Limit {tpm}, Used {self._tokens_used()}, " \
                       f"Requested {request.prompt_tokens}"
            else:
                self._request_times.append(now)
                return None
            headers = self._limit_headers(now, locked=True)
        headers["retry-after"] = str(max(1, math.ceil(wait)))
        message = (f"Rate limit reached for model `{request.body['model']}` in organization `org_fake` on {what}. "
                   f"Please try again in {format_duration(wait)}.")
        return _error(429, message, "rate_limit_exceeded", headers)

    def _expire(self, now: float) -> None:
        while self._request_times and self._request_times[0] <= now - 60:
            self._request_times.popleft()
        while self._token_times and self._token_times[0][0] <= now - 60:
            self._token_times.popleft()

    def _tokens_used(self) -> int:
        return sum(tokens for _, tokens in self._token_times)

    def _limit_headers(self, now: float, locked: bool = False) -> dict[str, str]:
        if not locked:
            with self._lock:
                self._expire(now)
                return self._limit_headers(now, locked=True)
        headers: dict[str, str] = {}
        if self.requests_per_minute is not None:
            reset = self._request_times[0] + 60 - now if self._request_times else 0.0
            headers["x-ratelimit-limit-requests"] = str(self.requests_per_minute)
            headers["x-ratelimit-remaining-requests"] = str(max(0, self.requests_per_minute - len(self._request_times)))
            headers["x-ratelimit-reset-requests"] = format_duration(reset)
        if self.tokens_per_minute is not None:
            reset = self._token_times[0][0] + 60 - now if self._token_times else 0.0
            headers["x-ratelimit-limit-tokens"] = str(self.tokens_per_minute)
            headers["x-ratelimit-remaining-tokens"] = str(max(0, self.tokens_per_minute - self._tokens_used()))
            headers["x-ratelimit-reset-tokens"] = format_duration(reset)
        return headers

    def _content(self, request: RecordedRequest, fault: Fault | None) -> tuple[str, str]:
        kind = fault.kind if fault else ""
        if not request.batch:
            translation = fake_translate(request.texts[""])
            if kind in {"malformed", "missing_id", "duplicate_id", "extra_id", "empty"}:
                return "", "stop"
            if kind == "commentary":
                return f'Here is the translation: "{translation}"\n\nNote: this is informal Darija.', "stop"
            if kind == "truncated":
                return translation[: len(translation) // 2], "length"
            return translation, "stop"
        pairs = [(key, fake_translate(text)) for key, text in request.texts.items()]
        if kind == "malformed":
            return "Sure! Here are the translations:\n" + "\n".join(f"{k}. {v}" for k, v in pairs), "stop"
        if kind == "missing_id":
            pairs = pairs[:-1]
        elif kind == "duplicate_id":
            pairs = [*pairs, (pairs[0][0], pairs[-1][1])]
        elif kind == "extra_id":
            pairs = [*pairs, (str(len(pairs) + 1), "an extra sentence")]
        elif kind == "empty":
            pairs = [(pairs[0][0], ""), *pairs[1:]]
        # Built by hand so that a duplicated key really appears twice.
        content = "{" + ", ".join(f"{json.dumps(k)}: {json.dumps(v, ensure_ascii=False)}" for k, v in pairs) + "}"
        if kind == "commentary":
            return f"Here are the translations:\n```json\n{content}\n```\nLet me know if you need more!", "stop"
        if kind == "truncated":
            return content[: len(content) // 2], "length"
        return content, "stop"


_INSTRUCTION = re.compile(r"^Translate [^\n]*:\n\n(.*)$", re.DOTALL)


def _texts_of(user_message: str) -> dict[str, str]:
    """The texts a request asks to translate: a batch, or one text (after an instruction
    line such as the seed's "Translate the following ... text into English:", if any)."""
    instructed = _INSTRUCTION.match(user_message)
    if instructed:
        return {"": instructed.group(1)}
    try:
        parsed = json.loads(user_message)
    except ValueError:
        parsed = None
    if isinstance(parsed, dict) and parsed and all(isinstance(v, str) for v in parsed.values()):
        return dict(parsed)
    return {"": user_message}


def _error(status: int, message: str, code: str, headers: dict[str, str] | None = None):
    error_type = "tokens" if status == 429 and "TPM" in message else "invalid_request_error"
    body = {"error": {"message": message, "type": error_type, "code": code}}
    return status, headers or {}, json.dumps(body).encode()


class _Handler(BaseHTTPRequestHandler):
    fake: FakeGroqServer
    protocol_version = "HTTP/1.1"
    wbufsize = 1 << 16  # headers and body leave in one write: no Nagle/delayed-ACK stall per answer

    def setup(self) -> None:
        super().setup()
        with self.fake._lock:
            self.fake._connections.add(self.connection)

    def finish(self) -> None:
        with self.fake._lock:
            self.fake._connections.discard(self.connection)
        try:
            super().finish()
        except OSError:
            pass

    def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
        length = int(self.headers.get("content-length") or 0)
        raw = self.rfile.read(length)
        headers = {name.lower(): value for name, value in self.headers.items()}
        status, extra, payload = self.fake.handle(self.path, headers, raw)
        try:
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(payload)))
            for name, value in extra.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(payload)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (a timeout under test)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (the base class's name)
        pass

