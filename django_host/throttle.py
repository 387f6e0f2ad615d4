"""Slowing down repeated failed logins.

Counted per (username, client address): the first FREE_FAILURES cost nothing; after more,
the next attempt must wait 2^(failures - FREE_FAILURES) seconds after the last failure
(2 s, 4 s, 8 s, … up to MAX_DELAY_S), and gets 429 with Retry-After until then (the password is not even
checked). A success clears the count; a count untouched for FORGET_AFTER_S is dropped.

The counters live in process memory: cheap, and enough for one machine. With several
server processes an attacker's budget is multiplied by their number; the cap still
holds per process, and the password hasher (PBKDF2, ~0.3 s a try) bounds the rate too.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

FREE_FAILURES = 5
MAX_DELAY_S = 15 * 60
FORGET_AFTER_S = 60 * 60
MAX_ENTRIES = 100_000  # bounded memory: the oldest counters go first


@dataclass
class _Failures:
    count: int
    last: float


class LoginThrottle:
    def __init__(self, clock: Callable[[], float] = time.monotonic, free_failures: int = FREE_FAILURES,
                 max_delay_s: float = MAX_DELAY_S, max_entries: int = MAX_ENTRIES):
        self.clock = clock
        self.free_failures = free_failures
        self.max_delay_s = max_delay_s
        self.max_entries = max_entries
        self._lock = threading.Lock()
        self._failures: OrderedDict[tuple[str, str], _Failures] = OrderedDict()

    @staticmethod
    def key(username: str, address: str) -> tuple[str, str]:
        return (username.casefold(), address)

    def retry_after_s(self, key: tuple[str, str]) -> float:
        """0 when an attempt is allowed now, else the seconds to wait."""
        with self._lock:
            entry = self._current(key)
            if entry is None or entry.count <= self.free_failures:
                return 0.0
            delay = min(self.max_delay_s, 2.0 ** (entry.count - self.free_failures))
            return max(0.0, entry.last + delay - self.clock())

    def failed(self, key: tuple[str, str]) -> None:
        with self._lock:
            entry = self._current(key)
            if entry is None:
                entry = self._failures[key] = _Failures(0, 0.0)
            entry.count += 1
            entry.last = self.clock()
            self._failures.move_to_end(key)
            while len(self._failures) > self.max_entries:
                self._failures.popitem(last=False)

    def succeeded(self, key: tuple[str, str]) -> None:
        with self._lock:
            self._failures.pop(key, None)

    def _current(self, key: tuple[str, str]) -> _Failures | None:
        entry = self._failures.get(key)
        if entry is not None and self.clock() - entry.last > FORGET_AFTER_S:
            del self._failures[key]
            return None
        return entry
