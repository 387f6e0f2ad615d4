"""The ASGI application uvicorn runs: Django's handler behind a thin wrapper that

- binds requests to a Host (the process's own, or the one a test built it for),
- refuses a request body over MAX_BODY_BYTES before it is read into memory or onto disk
  (Django's ASGI handler would spool any size), and
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
                await _send_json(send, 400, "invalid_input",
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
        for name, value in scope.get("headers", []):
            if name == b"content-length" and value.isdigit() and int(value) > self.max_body_bytes:
                return b"", True
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return None, False
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body_bytes:
                return b"", True
            chunks.append(chunk)
            if not message.get("more_body", False):
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


async def _send_json(send, status: int, code: str, message: str) -> None:
    body = json.dumps({"error": {"code": code, "message": message}}).encode()
    await send({"type": "http.response.start", "status": status, "headers": [
        (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
        (b"x-content-type-options", b"nosniff"), (b"connection", b"close"),
    ]})
    await send({"type": "http.response.body", "body": body})
