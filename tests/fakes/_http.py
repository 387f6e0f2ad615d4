"""What the fake servers share: a threaded HTTP server on 127.0.0.1 (a free port), the
record of every request, streaming helpers, and a deterministic "model".

Every response is sent with `Connection: close`, so each handler thread ends after one
request and `stop()` can join them all: a test never leaks a thread. Every wait inside a
handler is bounded and ends early when the server stops.
"""

from __future__ import annotations

import json
import re
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar

# Long enough for any test, short enough that a bug cannot hang the suite.
HANDLER_SOCKET_TIMEOUT_S = 10.0
STOP_JOIN_TIMEOUT_S = 10.0


@dataclass
class RecordedRequest:
    method: str
    path: str
    headers: dict[str, str]  # names lower-cased
    body: Any  # the parsed JSON body, or None


@dataclass
class Reply:
    """What the fake model answers to one chat request."""

    pieces: list[str]
    finish_reason: str  # "stop" or "length", as both APIs report it
    prompt_tokens: int

    @property
    def text(self) -> str:
        return "".join(self.pieces)


def fake_reply(messages: list[dict], max_tokens: int | None, stop: list[str] | None, script: str | None) -> Reply:
    """Deterministic generation: `script` if given, else the last user message echoed.

    A "token" is a word with the whitespace before it; the reply ends before the first
    stop sequence and after `max_tokens` tokens, as a real server's would.
    """
    if script is not None:
        text = script
    else:
        text = next((m.get("content") or "" for m in reversed(messages) if m.get("role") == "user"), "")
    for sequence in stop or []:
        if sequence:
            text = text.split(sequence, 1)[0]
    pieces = re.findall(r"\s*\S+", text) or ([text] if text else [])
    finish_reason = "stop"
    if max_tokens is not None and len(pieces) > max_tokens:
        pieces, finish_reason = pieces[:max_tokens], "length"
    prompt_tokens = sum(len((m.get("content") or "").split()) + 4 for m in messages)
    return Reply(pieces=pieces, finish_reason=finish_reason, prompt_tokens=prompt_tokens)


class _Server(ThreadingHTTPServer):
    # socketserver only tracks (and server_close() only joins) non-daemon handler threads.
    # Every wait in a handler is bounded and ends when the server stops, so joining is quick.
    daemon_threads = False
    block_on_close = True
    fake: FakeServer


class FakeHandler(BaseHTTPRequestHandler):
    """Base request handler: subclasses implement `route(method, path, body)`."""

    protocol_version = "HTTP/1.1"  # chunked streams, as the real servers send
    timeout = HANDLER_SOCKET_TIMEOUT_S
    server: _Server

    @property
    def fake(self) -> FakeServer:
        return self.server.fake

    def log_message(self, format, *args):  # keep pytest's output clean
        pass

    def do_GET(self):
        self._handle("GET")

    def do_POST(self):
        self._handle("POST")

    def do_DELETE(self):
        self._handle("DELETE")

    def _handle(self, method: str) -> None:
        self.close_connection = True
        path = self.path.split("?", 1)[0]
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = None
        self.fake.record(RecordedRequest(method, path, {k.lower(): v for k, v in self.headers.items()}, body))
        if self.fake.pause(self.fake.delay_before_response_s):
            return
        self.route(method, path, body)

    def route(self, method: str, path: str, body: Any) -> None:
        raise NotImplementedError

    # -- responses ----------------------------------------------------------------------

    def send_json(self, status: int, payload: Any) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Connection", "close")
        self.end_headers()
        self._write(data)

    def send_text(self, status: int, text: str) -> None:
        data = text.encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Connection", "close")
        self.end_headers()
        self._write(data)

    def start_stream(self, content_type: str) -> None:
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Transfer-Encoding", "chunked")
        self.send_header("Connection", "close")
        self.end_headers()

    def write_chunk(self, data: bytes) -> bool:
        """Send one chunk; False if the client has gone (it closed the stream)."""
        return self._write(b"%x\r\n%s\r\n" % (len(data), data))

    def end_stream(self) -> None:
        self._write(b"0\r\n\r\n")

    def abort(self) -> None:
        """Drop the connection mid-stream, without the chunk that ends the body."""
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def _write(self, data: bytes) -> bool:
        try:
            self.wfile.write(data)
            self.wfile.flush()
            return True
        except (BrokenPipeError, ConnectionResetError, ConnectionAbortedError):
            self.fake.client_gone.set()
            return False

    def stream_pieces(self, reply: Reply, encode_piece, encode_error, malformed: bytes) -> bool:
        """Send the reply's pieces as chunks, with the failures the test asked for.
        False if the stream was cut (the caller then sends no final line)."""
        fake = self.fake
        for index, piece in enumerate(reply.pieces):
            if fake.break_after is not None and index == fake.break_after:
                self.abort()
                return False
            if fake.error_after is not None and index == fake.error_after:
                self.write_chunk(encode_error(fake.error_message))
                self.end_stream()
                return False
            if fake.malformed_after is not None and index == fake.malformed_after:
                self.write_chunk(malformed)
            if fake.pause(fake.token_delay_s):
                return False
            if not self.write_chunk(encode_piece(piece)):
                return False
        if fake.end_without_done:
            self.end_stream()
            return False
        return True


@dataclass
class FakeServer:
    """Start with `with FakeX() as server:` (or the pytest fixtures); set the attributes
    below to script replies and inject failures; read `requests` to see what was sent."""

    handler: ClassVar[type[FakeHandler]]

    # Scripted behaviour, all off by default.
    reply: str | None = None  # the reply text; None: echo the last user message
    token_delay_s: float = 0.0  # pause before each piece (a slow model)
    delay_before_response_s: float = 0.0  # pause before answering at all (a hung server)
    chat_status: int | None = None  # answer every chat request with this HTTP error status
    chat_error: str = "the fake server was told to fail"
    break_after: int | None = None  # drop the connection after this many pieces
    error_after: int | None = None  # send an error event after this many pieces
    error_message: str = "the fake model crashed"
    malformed_after: int | None = None  # send a line that is not valid JSON after this many pieces
    end_without_done: bool = False  # end the body cleanly but without the final "done" event

    requests: list[RecordedRequest] = field(default_factory=list)
    client_gone: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self):
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._httpd: _Server | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle ----------------------------------------------------------------------

    def start(self) -> FakeServer:
        self._httpd = _Server(("127.0.0.1", 0), self.handler)
        self._httpd.fake = self
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, name=type(self).__name__, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is None:
            return
        self._stopping.set()
        self._httpd.shutdown()
        self._httpd.server_close()  # joins the handler threads
        self._thread.join(STOP_JOIN_TIMEOUT_S)
        self._httpd = None

    def __enter__(self) -> FakeServer:
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()

    @property
    def port(self) -> int:
        assert self._httpd is not None, "the fake server is not running"
        return self._httpd.server_address[1]

    @property
    def root_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    # -- used by handlers ---------------------------------------------------------------

    def record(self, request: RecordedRequest) -> None:
        with self._lock:
            self.requests.append(request)

    def pause(self, seconds: float) -> bool:
        """Sleep, bounded; True if the server is stopping (the handler should return)."""
        return self._stopping.wait(seconds) if seconds > 0 else self._stopping.is_set()

    # -- for tests ----------------------------------------------------------------------

    def requests_to(self, path: str) -> list[RecordedRequest]:
        with self._lock:
            return [r for r in self.requests if r.path == path]

    def last_request(self, path: str) -> RecordedRequest:
        found = self.requests_to(path)
        assert found, f"no request to {path}; got {[r.path for r in self.requests]}"
        return found[-1]


def free_port() -> int:
    """A port on 127.0.0.1 that nothing listens on (for "the server is down" tests)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextmanager
def unanswered_port(fillers: int = 4) -> Iterator[int]:
    """A port on 127.0.0.1 whose connection queue is full, so a new connection is neither
    accepted nor refused: what a firewalled or unreachable host looks like to a client
    (it waits for its connect timeout)."""
    listener = socket.socket()
    held: list[socket.socket] = []
    try:
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        port = listener.getsockname()[1]
        for _ in range(fillers):
            filler = socket.socket()
            filler.setblocking(False)
            try:
                filler.connect(("127.0.0.1", port))
            except BlockingIOError:
                pass
            held.append(filler)
        yield port
    finally:
        for filler in held:
            filler.close()
        listener.close()
