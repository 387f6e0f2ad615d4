"""The ASGI application uvicorn runs: Django's handler behind a thin wrapper that

- binds requests to a Host (the process's own, or the one a test built it for),
- refuses a request body over MAX_BODY_BYTES with a 413 before it is kept in memory or on
  disk (Django's ASGI handler would spool any size), after reading the rest of it (up
  to a bound) and dropping it, so that the client, still writing, reads the 413 and not a
  connection reset, and
- answers the lifespan protocol: warm the model up at start-up, and at shutdown stop
  the replies in flight, let them store what they have, and close the store.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import os

import django

from .host import Host, close_process_host, process_host, reset_host, use_host

log = logging.getLogger("dziri.django_host")

# How much of a too-large body is read (and dropped) before the 413, so that the socket
# closes with nothing unread in it: the kernel answers unread data with a reset, which
# would take the 413 with it. A client sending more than this may get the reset.
DISCARD_LIMIT_BYTES = 64 * 1024 * 1024


class DziriASGI:
    def __init__(self, host: Host | None = None):
        os.environ.setdefault("DJANGO_SETTINGS_MODULE", "dziri.django_host.settings")
        django.setup(set_prefix=False)
        from django.conf import settings
        from django.core.handlers.asgi import ASGIHandler

        self.host = host
        self.handler = ASGIHandler()
        self.max_body_bytes: int = settings.MAX_BODY_BYTES

    async def __call__(self, scope, receive, send):
        if scope["type"] == "lifespan":
            return await self._lifespan(receive, send)
        if scope["type"] != "http":  # no websockets here
            await receive()
            await send({"type": "websocket.close", "code": 1003})
            return
        token = use_host(self.host)
        try:
            body, too_large = await self._read_body(scope, receive)
            if body is None:
                return  # the client left while sending
            if too_large:
                await _send_json(send, 413, "too_large",
                                 f"the request body is larger than {self.max_body_bytes} bytes")
                return
            replayed = False

            async def replay():
                nonlocal replayed
                if not replayed:
                    replayed = True
                    return {"type": "http.request", "body": body, "more_body": False}
                return await receive()  # what follows is the disconnect Django listens for

            await self.handler(scope, replay, send)
        finally:
            reset_host(token)

    async def _read_body(self, scope, receive) -> tuple[bytes | None, bool]:
        """(body, too_large); body None when the client left while sending. A body over the
        limit is read to its end and dropped before the 413 goes out: uvicorn hands out no
        more of a body once the response is complete, and then closes with it unread."""
        for name, value in scope.get("headers", []):
            if name == b"content-length" and value.isdigit() and int(value) > self.max_body_bytes:
                if int(value) <= DISCARD_LIMIT_BYTES:
                    await _discard_body(receive)
                return b"", True
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return None, False
            chunk = message.get("body", b"")
            size += len(chunk)
            more = message.get("more_body", False)
            if size > self.max_body_bytes:
                if more:
                    await _discard_body(receive)
                return b"", True
            chunks.append(chunk)
            if not more:
                return b"".join(chunks), False

    async def _lifespan(self, receive, send):
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                host = self.host or process_host()
                # Load the model now, in the background, not on the first user's message.
                host.start_worker(functools.partial(_warm_up, host), name="dziri-warm-up")
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                if self.host is None:
                    await asyncio.to_thread(close_process_host)
                await send({"type": "lifespan.shutdown.complete"})
                return


def _warm_up(host: Host) -> None:
    try:
        info = host.app.backend.model_info()
        log.info("model ready: %s via %s", info.name, info.backend)
    except Exception as exc:  # /api/health reports it; the server still serves the rest
        log.warning("the backend is not ready: %s", exc)


async def _discard_body(receive) -> None:
    """Read the rest of a request body (to its end, the client's leaving, or
    DISCARD_LIMIT_BYTES), keeping none of it."""
    read = 0
    while read <= DISCARD_LIMIT_BYTES:
        message = await receive()
        if message["type"] == "http.disconnect" or not message.get("more_body", False):
            return
        read += len(message.get("body", b""))


async def _send_json(send, status: int, code: str, message: str) -> None:
    body = json.dumps({"error": {"code": code, "message": message}}).encode()
    await send({"type": "http.response.start", "status": status, "headers": [
        (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
        (b"x-content-type-options", b"nosniff"), (b"connection", b"close"),
    ]})
    await send({"type": "http.response.body", "body": body})
