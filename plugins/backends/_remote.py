"""What the backends that talk to a server over HTTP share: one-line error messages for
transport failures, and a short-lived cache of the model's description."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import httpx

from dziri.core.errors import BackendError
from dziri.core.models import ModelInfo

# ChatService asks for the model's context length before every reply; asking the server
# each time would add a round trip per message, and caching it for good would miss a
# model re-created with another context size while the web host runs.
MODEL_INFO_TTL_S = 30.0


def one_line(text: object, limit: int = 300) -> str:
    """A server's message as one bounded line (errors are shown on one line)."""
    line = " ".join(str(text).split())
    return line if len(line) <= limit else line[: limit - 1] + "…"


def transport_error(
    exc: BaseException, service: str, where: str, connect_timeout_s: float, timeout_s: float, start_hint: str
) -> BackendError:
    """A BackendError that names the server for an exception from httpx (or the OS).
    `start_hint` says how to start the service, for when nothing answers."""
    if isinstance(exc, httpx.ConnectTimeout):
        return BackendError(
            f"cannot connect to {service} at {where}: no answer within {connect_timeout_s:g} s; {start_hint}"
        )
    if type(exc) is ConnectionError:  # the ollama package's own, with a generic message
        return BackendError(f"cannot connect to {service} at {where}; {start_hint}")
    if isinstance(exc, (httpx.ConnectError, ConnectionRefusedError)):
        return BackendError(f"cannot connect to {service} at {where} ({_reason(exc)}); {start_hint}")
    if isinstance(exc, httpx.ReadTimeout):
        return BackendError(f"{service} at {where} sent nothing for {timeout_s:g} s (timeout_s)")
    if isinstance(exc, httpx.TimeoutException):
        return BackendError(f"{service} at {where} timed out: {_reason(exc)}")
    if isinstance(exc, (httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError, ConnectionError)):
        return BackendError(f"the connection to {service} at {where} broke: {_reason(exc)}")
    return BackendError(f"{service} at {where} failed: {type(exc).__name__}: {_reason(exc)}")


def _reason(exc: BaseException) -> str:
    return one_line(exc, 200) or type(exc).__name__


class ModelInfoCache:
    """Remembers a successful answer for MODEL_INFO_TTL_S; failures are never cached, so
    the model a user has just created or pulled is seen at the next message."""

    def __init__(self, ttl_s: float = MODEL_INFO_TTL_S):
        self.ttl_s = ttl_s
        self._lock = threading.Lock()
        self._value: ModelInfo | None = None
        self._expires = 0.0

    def get(self, fetch: Callable[[], ModelInfo]) -> ModelInfo:
        with self._lock:
            if self._value is not None and time.monotonic() < self._expires:
                return self._value
        value = fetch()  # outside the lock: a slow server must not serialise every caller
        with self._lock:
            self._value, self._expires = value, time.monotonic() + self.ttl_s
        return value
