"""One `Host` per server process: the dziri App and what the web layer keeps beside it —
the model's bounded queue, the replies in flight (what POST …/stop reaches) and the
login-failure counters.

Requests find their Host through `current_host()`: the ASGI application sets a context
variable when it was built for a given Host (tests run two hosts in one process);
otherwise it is the process's own, created from dziri's configuration on first use.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import deque
from collections.abc import Callable
from contextvars import ContextVar

from dziri.core.app import App
from dziri.core.chat import ReplyStream
from dziri.core.errors import ConflictError

from .errors import Busy
from .throttle import LoginThrottle

log = logging.getLogger(__name__)

RETRY_AFTER_RANGE_S = (1, 60)


class ReplyGate:
    """Replies take turns for the model: `concurrency` generate at once, up to `max_waiting`
    more wait in arrival order, and beyond that `admit` refuses at once (the API answers
    503 with Retry-After before anything is stored) instead of letting requests pile up."""

    def __init__(self, concurrency: int, max_waiting: int, first_guess_s: float = 2.0):
        self.concurrency = concurrency
        self.max_waiting = max_waiting
        self._cond = threading.Condition()
        self._waiting: deque[Ticket] = deque()
        self.running = 0
        self._average_s = first_guess_s  # moving average of a reply's duration, for Retry-After

    @property
    def waiting(self) -> int:
        return len(self._waiting)

    def admit(self) -> Ticket:
        with self._cond:
            if self.running + len(self._waiting) >= self.concurrency + self.max_waiting:
                retry_after_s = self.retry_after_s()
                raise Busy(
                    f"the model is busy with other replies ({self.running} generating, {len(self._waiting)}"
                    f" waiting): try again in {retry_after_s} s",
                    retry_after_s=retry_after_s,
                )
            ticket = Ticket(self)
            self._waiting.append(ticket)
            return ticket

    def retry_after_s(self) -> int:
        """About when a place should be free again: one reply's duration."""
        low, high = RETRY_AFTER_RANGE_S
        return min(high, max(low, math.ceil(self._average_s)))

    def _finished(self, duration_s: float) -> None:
        self._average_s = 0.8 * self._average_s + 0.2 * duration_s


class Ticket:
    """One admitted reply's place in the gate. `wait_turn` blocks the worker thread that
    will generate; `cancel` (from any thread) gives the place up while waiting; `release`
    ends it either way and may be called more than once."""

    def __init__(self, gate: ReplyGate):
        self._gate = gate
        self.state = "waiting"
        self._cancelled = False
        self._started = 0.0

    def wait_turn(self) -> bool:
        gate = self._gate
        with gate._cond:
            while not self._cancelled and not (gate._waiting[0] is self and gate.running < gate.concurrency):
                gate._cond.wait()
            if self._cancelled:
                return False
            gate._waiting.popleft()
            gate.running += 1
            self.state, self._started = "running", time.monotonic()
            gate._cond.notify_all()  # the next in line may start too when concurrency allows
            return True

    def cancel(self) -> None:
        with self._gate._cond:
            self._cancelled = True
            self._gate._cond.notify_all()

    def release(self) -> None:
        gate = self._gate
        with gate._cond:
            if self.state == "waiting":
                gate._waiting.remove(self)
            elif self.state == "running":
                gate.running -= 1
                gate._finished(time.monotonic() - self._started)
            self.state = "done"
            gate._cond.notify_all()


class ActiveStreams:
    """The replies being generated in this process, one per (user id, conversation id).

    This is what POST …/stop reaches. It is in-process on purpose: with several server
    processes a stop request may land on another process (it then answers
    `{"stopped": false}`), while closing the connection always reaches the right one."""

    def __init__(self):
        self._lock = threading.Lock()
        self._streams: dict[tuple[str, str], ReplyStream | None] = {}

    def reserve(self, user_id: str, conversation_id: str) -> tuple[str, str]:
        key = (user_id, conversation_id)
        with self._lock:
            if key in self._streams:
                raise ConflictError("a reply is already being generated in this conversation: stop it or wait")
            self._streams[key] = None
        return key

    def attach(self, key: tuple[str, str], stream: ReplyStream) -> None:
        with self._lock:
            self._streams[key] = stream

    def release(self, key: tuple[str, str]) -> None:
        with self._lock:
            self._streams.pop(key, None)

    def stop(self, user_id: str, conversation_id: str) -> bool:
        with self._lock:
            stream = self._streams.get((user_id, conversation_id))
        if stream is None:
            return False
        stream.stop()
        return True

    def stop_all(self) -> None:
        with self._lock:
            streams = [s for s in self._streams.values() if s is not None]
        for stream in streams:
            stream.stop()

    def __len__(self) -> int:
        with self._lock:
            return len(self._streams)


class Host:
    def __init__(self, app: App):
        self.app = app
        web = app.config.web
        self.gate = ReplyGate(web.max_concurrent_replies, web.max_waiting)
        self.streams = ActiveStreams()
        self.login_throttle = LoginThrottle()
        self._workers: set[threading.Thread] = set()
        self._workers_lock = threading.Lock()
        self.last_session_purge = float("-inf")  # expired sessions are purged at the first login
        self.started_at = time.time()  # the OpenAI API's model "created" time

    def start_worker(self, target: Callable[[], None], name: str) -> threading.Thread:
        """Run `target` in a thread of its own, tracked so that shutdown can wait for it."""

        def run():
            try:
                target()
            finally:
                with self._workers_lock:
                    self._workers.discard(thread)

        thread = threading.Thread(target=run, name=name, daemon=True)
        with self._workers_lock:
            self._workers.add(thread)
        thread.start()
        return thread

    def drain(self, timeout_s: float = 10.0) -> bool:
        """Stop every reply in flight and wait for their threads to store what they have."""
        self.streams.stop_all()
        deadline = time.monotonic() + timeout_s
        while True:
            with self._workers_lock:
                workers = list(self._workers)
            if not workers:
                return True
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            workers[0].join(remaining)

    def close(self) -> None:
        if not self.drain():
            log.warning("replies still running at shutdown; their last saved text stays partial in the store")
        self.app.close()


_current: ContextVar[Host | None] = ContextVar("dziri_host", default=None)
_process_host: Host | None = None
_process_lock = threading.Lock()


def current_host() -> Host:
    return _current.get() or process_host()


def process_host() -> Host:
    """This process's Host, created from dziri's configuration on first use."""
    global _process_host
    with _process_lock:
        if _process_host is None:
            _process_host = Host(App())
        return _process_host


def close_process_host() -> None:
    global _process_host
    with _process_lock:
        host, _process_host = _process_host, None
    if host is not None:
        host.close()


def use_host(host: Host | None):
    """Make `host` current in this context (returns the token for `reset_host`)."""
    return _current.set(host)


def reset_host(token) -> None:
    _current.reset(token)
