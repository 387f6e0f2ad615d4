"""dziri's model behind the OpenAI API: `GET /v1/models` and `POST /v1/chat/completions`
(streamed as `data: {chunk}` lines ending with `data: [DONE]`, or one JSON answer), in
OpenAI's request, response and error shapes, so that the `openai` SDK, Open WebUI or any
OpenAI-compatible client can use it.

Authenticated by a user's API key (`Authorization: Bearer dz-…`) alone: the site's session
cookie does not count here, so no CSRF token either. Stateless, as OpenAI's API is: the
client sends the whole conversation and nothing is stored. Replies take turns for the
model in the same queue as the site's (a full queue is 503 with Retry-After).
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator, Callable

from asgiref.sync import sync_to_async
from django.http import JsonResponse, StreamingHttpResponse
from django.views.decorators.csrf import csrf_exempt

from dziri.core import apikeys
from dziri.core.completion import Completion
from dziri.core.errors import DziriError, MessageTooLongError
from dziri.core.models import ChatMessage, Role, User

from ..errors import with_retry_after
from ..host import Host, current_host
from .streaming import KEEPALIVE_S, Emit, start_worker

MODEL_ID = "dziri"  # what /v1/models lists; the backend's own model name is accepted too
MAX_MESSAGES = 500
OWNER = "dziri"


class OpenAIError(Exception):
    """An error in OpenAI's shape: {"error": {"message", "type", "param", "code"}}."""

    def __init__(self, status: int, message: str, kind: str = "invalid_request_error", code: str | None = None,
                 param: str | None = None, retry_after_s: float | None = None):
        super().__init__(message)
        self.status, self.kind, self.code, self.param, self.retry_after_s = status, kind, code, param, retry_after_s

    def body(self) -> dict:
        return {"error": {"message": str(self), "type": self.kind, "param": self.param, "code": self.code}}

    def response(self) -> JsonResponse:
        response = with_retry_after(JsonResponse(self.body(), status=self.status), self.retry_after_s)
        if self.status == 401:
            response["WWW-Authenticate"] = 'Bearer realm="dziri"'
        return response


def from_dziri(exc: DziriError) -> OpenAIError:
    """dziri's error, said the OpenAI way."""
    status = exc.http_status
    if isinstance(exc, MessageTooLongError):
        return OpenAIError(400, str(exc), code="context_length_exceeded", param="messages")
    if status == 401:
        return OpenAIError(401, str(exc), code="invalid_api_key")
    kind = "server_error" if status >= 500 else "invalid_request_error"
    return OpenAIError(status, str(exc), kind, code=exc.code, retry_after_s=getattr(exc, "retry_after_s", None))


def openai_view(method: str, handler: Callable) -> Callable:
    """An async view for one method that answers every failure in OpenAI's shape, and
    only to a key."""

    @csrf_exempt
    async def view(request, **kwargs):
        try:
            if request.method != method:
                response = OpenAIError(405, f"{request.method} is not allowed here; use {method}").response()
                response["Allow"] = method
                return response
            user = await sync_to_async(key_user)(request)
            return await handler(request, user, **kwargs)
        except OpenAIError as exc:
            return exc.response()
        except DziriError as exc:
            return from_dziri(exc).response()

    view.allowed_methods = [method]
    return view


def key_user(request) -> User:
    header = request.headers.get("Authorization", "")
    scheme, _, secret = header.partition(" ")
    if scheme.lower() != "bearer" or not secret.strip():
        raise OpenAIError(401, "no API key: send Authorization: Bearer <key> (make one in the site's settings,"
                               " or with `dziri apikeys create USERNAME`)", code="invalid_api_key")
    user = apikeys.authenticate(current_host().app.store, secret.strip())
    if user is None:
        raise OpenAIError(401, "the API key is wrong or was revoked", code="invalid_api_key")
    return user


async def list_models(request, user: User):
    host = current_host()
    info = await sync_to_async(host.app.backend.model_info, thread_sensitive=False)()
    # context_length is not OpenAI's, but clients that size prompts read it (dziri's own openai backend does).
    model = {"id": MODEL_ID, "object": "model", "created": int(host.started_at), "owned_by": OWNER,
             "context_length": info.context_length}
    return JsonResponse({"object": "list", "data": [model]})


async def chat_completions(request, user: User):
    host = current_host()
    body = parse_body(request)
    info = await sync_to_async(host.app.backend.model_info, thread_sensitive=False)()
    if body.get("model") not in (MODEL_ID, info.name):
        raise OpenAIError(400, f"the model {body.get('model')!r} does not exist; this server has {MODEL_ID!r}",
                          code="model_not_found", param="model")
    messages = parse_messages(body.get("messages"))
    options = parse_options(host, body, info.context_length)
    ticket = host.gate.admit()  # Busy (503, Retry-After) before anything is generated
    try:
        completion = await sync_to_async(host.app.chat.complete, thread_sensitive=False)(messages, options)
    except BaseException:
        ticket.release()
        raise
    queue = start_worker(host, ticket, "dziri-v1-completion", lambda emit: _produce(completion, emit),
                         stop=completion.stop, skip=lambda: None)
    answer = Answer(completion, queue)
    if body.get("stream"):
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        response = StreamingHttpResponse(answer.chunks(include_usage), content_type="text/event-stream")
        response["Cache-Control"] = "no-cache"
        response["X-Accel-Buffering"] = "no"
        return response
    return JsonResponse(await answer.whole())


def _produce(completion: Completion, emit: Emit) -> tuple[str, object]:
    try:
        for piece in completion:
            emit("token", piece)
    finally:
        completion.close()
    return "done", None


class Answer:
    """The completion's pieces, from the worker's queue, as OpenAI's chunks or one answer."""

    def __init__(self, completion: Completion, queue: asyncio.Queue):
        self.completion = completion
        self.queue = queue
        self.id = f"chatcmpl-{uuid.uuid4().hex}"
        self.created = int(time.time())

    async def pieces(self) -> AsyncIterator[str | None]:
        """The text pieces; None now and then while waiting (for a keep-alive)."""
        while True:
            try:
                kind, payload = await asyncio.wait_for(self.queue.get(), KEEPALIVE_S)
            except TimeoutError:
                yield None
                continue
            if kind == "token":
                yield payload
            elif kind == "error":
                raise payload
            else:
                return

    def usage(self) -> dict:
        c = self.completion
        return {"prompt_tokens": c.prompt_tokens, "completion_tokens": c.completion_tokens,
                "total_tokens": c.prompt_tokens + c.completion_tokens}

    def _chunk(self, delta: dict, finish_reason: str | None = None, **extra) -> bytes:
        chunk = {"id": self.id, "object": "chat.completion.chunk", "created": self.created, "model": MODEL_ID,
                 "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}], **extra}
        return f"data: {json.dumps(chunk, ensure_ascii=False)}\n\n".encode()

    async def chunks(self, include_usage: bool) -> AsyncIterator[bytes]:
        try:
            yield self._chunk({"role": "assistant", "content": ""})
            async for piece in self.pieces():
                yield b": waiting\n\n" if piece is None else self._chunk({"content": piece})
            yield self._chunk({}, self.completion.finish_reason or "stop")
            if include_usage:
                usage = {"id": self.id, "object": "chat.completion.chunk", "created": self.created,
                         "model": MODEL_ID, "choices": [], "usage": self.usage()}
                yield f"data: {json.dumps(usage)}\n\n".encode()
            yield b"data: [DONE]\n\n"
        except DziriError as exc:  # after the status line: the error goes in the stream, as OpenAI does
            yield f"data: {json.dumps(from_dziri(exc).body(), ensure_ascii=False)}\n\n".encode()
        finally:
            self.completion.stop()  # the client left, or the end: the worker stops at the next piece

    async def whole(self) -> dict:
        try:
            text = "".join([piece async for piece in self.pieces() if piece is not None])
        finally:
            self.completion.stop()
        return {"id": self.id, "object": "chat.completion", "created": self.created, "model": MODEL_ID,
                "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                             "finish_reason": self.completion.finish_reason or "stop"}],
                "usage": self.usage()}


# ---- the request ---------------------------------------------------------------------------

def parse_body(request) -> dict:
    if request.content_type != "application/json":
        raise OpenAIError(400, "the body must be JSON (Content-Type: application/json)")
    try:
        body = json.loads(request.body)
    except (ValueError, UnicodeDecodeError):
        raise OpenAIError(400, "the body is not valid JSON") from None
    if not isinstance(body, dict):
        raise OpenAIError(400, "the body must be a JSON object")
    return body


def parse_messages(value: object) -> list[ChatMessage]:
    if not isinstance(value, list) or not value:
        raise OpenAIError(400, "messages must be a non-empty list", param="messages")
    if len(value) > MAX_MESSAGES:
        raise OpenAIError(400, f"at most {MAX_MESSAGES} messages", param="messages")
    roles = {"system": Role.SYSTEM, "developer": Role.SYSTEM, "user": Role.USER, "assistant": Role.ASSISTANT}
    messages = []
    for index, message in enumerate(value):
        where = f"messages[{index}]"
        if not isinstance(message, dict) or message.get("role") not in roles:
            raise OpenAIError(400, f"{where} must be an object with a role of {', '.join(roles)}", param=where)
        messages.append(ChatMessage(role=roles[message["role"]], content=_text(message.get("content"), where)))
    return messages


def _text(content: object, where: str) -> str:
    """A message's content: a string, or OpenAI's list of parts, of which text parts only."""
    if isinstance(content, str):
        return content
    if isinstance(content, list) and all(isinstance(p, dict) for p in content):
        if any(p.get("type") != "text" or not isinstance(p.get("text"), str) for p in content):
            raise OpenAIError(400, f"{where}: only text content is supported", param=f"{where}.content")
        return "".join(p["text"] for p in content)
    if content is None:
        return ""
    raise OpenAIError(400, f"{where}.content must be a string or a list of text parts", param=f"{where}.content")


def parse_options(host: Host, body: dict, context_length: int):
    """OpenAI's sampling fields as dziri's GenerationOptions (unset ones: the served defaults)."""
    if body.get("n", 1) != 1:
        raise OpenAIError(400, "only n = 1 is supported", param="n")
    overrides: dict = {}
    max_tokens = body.get("max_completion_tokens", body.get("max_tokens"))
    if max_tokens is not None:
        overrides["max_tokens"] = _number(max_tokens, "max_tokens", 1, context_length, integer=True)
    for name, low, high in (("temperature", 0.0, 2.0), ("top_p", 0.0, 1.0)):
        if body.get(name) is not None:
            overrides[name] = _number(body[name], name, low, high)
    if overrides.get("top_p") == 0.0:
        overrides["top_p"] = 1e-6  # "only the likeliest token": dziri's options need top_p > 0
    stop = body.get("stop")
    if stop is not None:
        stops = [stop] if isinstance(stop, str) else stop
        if not isinstance(stops, list) or len(stops) > 4 or not all(isinstance(s, str) and s for s in stops):
            raise OpenAIError(400, "stop must be a string or a list of at most 4 strings", param="stop")
        overrides["stop"] = stops
    if body.get("seed") is not None:
        overrides["seed"] = _number(body["seed"], "seed", -(2**63), 2**63 - 1, integer=True)
    try:
        return host.app.chat.default_options(**overrides)
    except ValueError as exc:  # pydantic's, for a value the checks above let through
        raise OpenAIError(400, f"invalid options: {exc}") from None


def _number(value: object, name: str, low: float, high: float, integer: bool = False):
    if isinstance(value, bool) or not isinstance(value, int | float) or (integer and not isinstance(value, int)):
        raise OpenAIError(400, f"{name} must be {'an integer' if integer else 'a number'}", param=name)
    if not low <= value <= high:
        raise OpenAIError(400, f"{name} must be between {low:g} and {high:g}", param=name)
    return value


@csrf_exempt
def not_found(request, path: str = ""):
    return OpenAIError(404, f"nothing at {request.path}: dziri serves GET /v1/models and POST /v1/chat/completions"
                       ).response()


__all__ = ["MODEL_ID", "chat_completions", "list_models", "not_found", "openai_view"]
