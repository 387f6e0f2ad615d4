"""An API client for tests: httpx over ASGI in this process, with real streaming (httpx's
own ASGITransport buffers the whole response, so it can neither read events as they
come nor disconnect), the CSRF header handled like the SPA does, and SSE parsing."""

from __future__ import annotations

import asyncio
import json
from contextlib import asynccontextmanager

import httpx

from dziri.django_host.application import DziriASGI
from dziri.django_host.host import Host

BASE_URL = "http://127.0.0.1:8000"
SAFE_METHODS = {"GET", "HEAD", "OPTIONS"}
PASSWORD = "correct horse battery"


def asgi_for(host: Host) -> DziriASGI:
    """One ASGI application per host, as one server process has one."""
    if not hasattr(host, "_test_asgi"):
        host._test_asgi = DziriASGI(host)
    return host._test_asgi


class StreamingASGITransport(httpx.AsyncBaseTransport):
    def __init__(self, app, client=("127.0.0.1", 40000)):
        self.app = app
        self.client = client

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        body = b"".join([chunk async for chunk in request.stream])
        scope = {
            "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": request.method,
            "headers": [(k.lower(), v) for k, v in request.headers.raw], "scheme": request.url.scheme,
            "path": request.url.path, "raw_path": request.url.raw_path.split(b"?")[0],
            "query_string": request.url.query, "server": (request.url.host, request.url.port),
            "client": self.client, "root_path": "",
        }
        disconnected = asyncio.Event()
        chunks: asyncio.Queue[bytes | None] = asyncio.Queue()
        started: asyncio.Future = asyncio.get_running_loop().create_future()
        body_sent = False

        async def receive():
            nonlocal body_sent
            if not body_sent:
                body_sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            await disconnected.wait()
            return {"type": "http.disconnect"}

        async def send(message):
            if message["type"] == "http.response.start":
                started.set_result(message)
            elif message["type"] == "http.response.body":
                chunks.put_nowait(message.get("body", b""))
                if not message.get("more_body", False):
                    chunks.put_nowait(None)

        async def run():
            try:
                await self.app(scope, receive, send)
            except BaseException as exc:
                if not started.done():
                    started.set_exception(exc)
                raise
            finally:
                chunks.put_nowait(None)

        task = asyncio.create_task(run())
        start = await started
        return httpx.Response(start["status"], headers=start.get("headers", []),
                              stream=_ResponseBody(chunks, disconnected, task))


class _ResponseBody(httpx.AsyncByteStream):
    def __init__(self, chunks, disconnected, task):
        self.chunks, self.disconnected, self.task = chunks, disconnected, task

    async def __aiter__(self):
        while (chunk := await self.chunks.get()) is not None:
            yield chunk

    async def aclose(self):
        self.disconnected.set()  # like a browser closing the connection
        await asyncio.wait_for(self.task, 10)


def parse_events(text: str) -> list[tuple[str, dict]]:
    events = []
    for block in text.split("\n\n"):
        lines = [line for line in block.split("\n") if line and not line.startswith(":")]
        if not lines:
            continue
        fields = dict(line.split(": ", 1) for line in lines)
        events.append((fields["event"], json.loads(fields["data"])))
    return events


class ApiClient:
    def __init__(self, host: Host):
        self.host = host
        self.http = httpx.AsyncClient(transport=StreamingASGITransport(asgi_for(host)), base_url=BASE_URL)

    async def aclose(self) -> None:
        await self.http.aclose()

    def headers(self, method: str, csrf: bool = True) -> dict:
        token = self.http.cookies.get("csrftoken")
        return {"X-CSRFToken": token} if csrf and token and method not in SAFE_METHODS else {}

    async def request(self, method: str, path: str, json=None, csrf: bool = True, **kwargs) -> httpx.Response:
        if csrf and method not in SAFE_METHODS and "csrftoken" not in self.http.cookies:
            await self.http.get("/api/auth/csrf")
        headers = {**self.headers(method, csrf), **kwargs.pop("headers", {})}
        return await self.http.request(method, path, json=json, headers=headers, **kwargs)

    async def get(self, path: str, **kwargs) -> httpx.Response:
        return await self.request("GET", path, **kwargs)

    async def post(self, path: str, json=None, **kwargs) -> httpx.Response:
        return await self.request("POST", path, json=json, **kwargs)

    async def patch(self, path: str, json=None, **kwargs) -> httpx.Response:
        return await self.request("PATCH", path, json=json, **kwargs)

    async def delete(self, path: str, **kwargs) -> httpx.Response:
        return await self.request("DELETE", path, **kwargs)

    @asynccontextmanager
    async def stream(self, path: str, json=None):
        """POST and read the answer as it comes; leaving the block early disconnects."""
        if "csrftoken" not in self.http.cookies:
            await self.http.get("/api/auth/csrf")
        async with self.http.stream("POST", path, json=json, headers=self.headers("POST")) as response:
            yield response

    # ---- shortcuts ----

    async def register(self, username: str, password: str = PASSWORD, email: str | None = None) -> dict:
        response = await self.post("/api/auth/register", {
            "username": username, "email": email or f"{username}@example.org", "password": password})
        assert response.status_code == 201, response.text
        return response.json()["user"]

    async def login(self, username: str, password: str = PASSWORD) -> httpx.Response:
        return await self.post("/api/auth/login", {"username": username, "password": password})

    async def new_conversation(self, title: str | None = None) -> dict:
        response = await self.post("/api/conversations", {} if title is None else {"title": title})
        assert response.status_code == 201, response.text
        return response.json()

    async def send(self, conversation_id: str, content: str) -> list[tuple[str, dict]]:
        """Send a message and read the whole reply stream."""
        response = await self.post(f"/api/conversations/{conversation_id}/messages", {"content": content})
        assert response.status_code == 200, response.text
        assert response.headers["content-type"].startswith("text/event-stream")
        return parse_events(response.text)

    async def messages(self, conversation_id: str, **params) -> list[dict]:
        response = await self.get(f"/api/conversations/{conversation_id}/messages", params=params)
        assert response.status_code == 200, response.text
        return response.json()["items"]
