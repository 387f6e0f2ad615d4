"""A fake OpenAI-compatible server (the subset vLLM, llama.cpp's llama-server, LM Studio
and Groq all serve), under `/v1`:

- `POST /v1/chat/completions`: with `"stream": true`, server-sent events — one
  `data: {"object": "chat.completion.chunk", "choices": [{"index": 0, "delta": {...},
  "finish_reason": null}]}` event per piece (the first delta carries the role), a last
  chunk with `finish_reason`, then `data: [DONE]`; a comment line (`: keep-alive`) first,
  as some proxies send. Without streaming, one `chat.completion` object. Errors are
  `{"error": {"message", "type", "code"}}`: 401 for a wrong key, 404 for an unknown model;
  a failure mid-stream is a `data: {"error": {...}}` event, as vLLM sends it.
- `GET /v1/models`: `{"object": "list", "data": [{"id", "object": "model", "owned_by",
  ...model_fields}]}` (vLLM adds `max_model_len`, Groq `context_window`).

Replies are deterministic (see `fake_reply`); every request is recorded in `requests`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from ._http import FakeHandler, FakeServer, Reply, fake_reply

CREATED = 1_735_689_600  # 2025-01-01, fixed so replies are deterministic


@dataclass
class FakeOpenAI(FakeServer):
    models: list[str] = field(default_factory=lambda: ["dziri"])
    model_fields: dict[str, dict] = field(default_factory=dict)  # extra fields per model in /v1/models
    api_key: str | None = None  # when set, requests must carry `Authorization: Bearer <api_key>`
    models_endpoint: bool = True  # False: /v1/models answers 404, as some servers do
    ignore_stream: bool = False  # answer one whole completion even when asked to stream

    @property
    def base_url(self) -> str:
        """What `[backend.openai] base_url` should be set to."""
        return f"{self.root_url}/v1"


class OpenAIHandler(FakeHandler):
    fake: FakeOpenAI

    def route(self, method: str, path: str, body: Any) -> None:
        if not self._authorised():
            self._error(401, "Incorrect API key provided.", "invalid_request_error", "invalid_api_key")
        elif method == "GET" and path == "/v1/models" and self.fake.models_endpoint:
            data = [
                {"id": name, "object": "model", "created": CREATED, "owned_by": "fake",
                 **self.fake.model_fields.get(name, {})}
                for name in self.fake.models
            ]
            self.send_json(200, {"object": "list", "data": data})
        elif method == "POST" and path == "/v1/chat/completions":
            self._chat(body if isinstance(body, dict) else {})
        else:
            self._error(404, f"no route for {method} {path}", "invalid_request_error", "not_found")

    def _authorised(self) -> bool:
        key = self.fake.api_key
        return key is None or self.headers.get("Authorization") == f"Bearer {key}"

    def _error(self, status: int, message: str, kind: str, code: Any) -> None:
        self.send_json(status, {"error": {"message": message, "type": kind, "param": None, "code": code}})

    def _chat(self, body: dict) -> None:
        fake, name = self.fake, body.get("model")
        if not isinstance(body.get("messages"), list) or not body["messages"]:
            self._error(400, "'messages' must be a non-empty list", "invalid_request_error", None)
            return
        if name not in fake.models:
            self._error(404, f"The model `{name}` does not exist.", "NotFoundError", 404)
            return
        if fake.chat_status is not None:
            self._error(fake.chat_status, fake.chat_error, "server_error", fake.chat_status)
            return
        stop = body.get("stop")
        reply = fake_reply(body["messages"], body.get("max_tokens"), [stop] if isinstance(stop, str) else stop,
                           fake.reply)
        if not body.get("stream") or fake.ignore_stream:
            self.send_json(200, {
                "id": "chatcmpl-fake", "object": "chat.completion", "created": CREATED, "model": name,
                "choices": [{"index": 0, "message": {"role": "assistant", "content": reply.text},
                             "finish_reason": reply.finish_reason}],
                "usage": _usage(reply),
            })
            return
        self.start_stream("text/event-stream; charset=utf-8")
        self.write_chunk(b": keep-alive\n\n")
        self.write_chunk(_event(_chunk(name, {"role": "assistant", "content": ""})))
        if self.stream_pieces(
            reply,
            encode_piece=lambda piece: _event(_chunk(name, {"content": piece})),
            encode_error=lambda message: _event({"error": {"message": message, "type": "InternalServerError",
                                                           "code": 500}}),
            malformed=b"data: {this is not json\n\n",
        ):
            self.write_chunk(_event(_chunk(name, {}, reply.finish_reason)))
            if (body.get("stream_options") or {}).get("include_usage"):
                self.write_chunk(_event({**_chunk(name, {}), "choices": [], "usage": _usage(reply)}))
            self.write_chunk(b"data: [DONE]\n\n")
            self.end_stream()


FakeOpenAI.handler = OpenAIHandler


def _chunk(name: str, delta: dict, finish_reason: str | None = None) -> dict:
    return {
        "id": "chatcmpl-fake",
        "object": "chat.completion.chunk",
        "created": CREATED,
        "model": name,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}],
    }


def _usage(reply: Reply) -> dict:
    completion = len(reply.pieces)
    return {"prompt_tokens": reply.prompt_tokens, "completion_tokens": completion,
            "total_tokens": reply.prompt_tokens + completion}


def _event(payload: dict) -> bytes:
    return f"data: {json.dumps(payload, ensure_ascii=False)}\n\n".encode()
