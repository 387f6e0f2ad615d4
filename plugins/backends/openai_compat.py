"""The OpenAI-compatible backend: any server that speaks `POST /v1/chat/completions`
with server-sent events — vLLM, llama.cpp's llama-server, LM Studio, Groq, a load
balancer in front of several of them. This is how dziri scales out to a serving cluster:
the host stays stateless and sends each reply to whichever replica the balancer picks.

Talks HTTP with httpx directly. The API key, if the server wants one, comes from the
environment variable named by `api_key_env`, never from a file, and is never shown in a
message. Token counts are a conservative estimate (see `_estimate`): most of these
servers have no tokenize endpoint, and those that do disagree on it.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable, Iterator
from typing import Any

import httpx
from pydantic import BaseModel, ConfigDict, Field

from dziri.core.errors import BackendError, ConfigError, DziriError, ModelError
from dziri.core.hookspecs import hookimpl
from dziri.core.models import ChatMessage, GenerationOptions, ModelInfo, PluginContext

from ._estimate import estimate_prompt_tokens
from ._remote import ModelInfoCache, one_line, transport_error

DEFAULT_CONTEXT_LENGTH = 4096
# Where servers say how long a context the model takes, in /v1/models: vLLM, Groq,
# OpenRouter and LM Studio respectively.
CONTEXT_FIELDS = ("max_model_len", "context_window", "context_length", "max_context_length")
START_HINT = "is the server running, and does base_url end in /v1?"
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class OpenAICompatSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    base_url: str = Field("http://127.0.0.1:8000/v1", min_length=1, description="the API root, ending in /v1")
    model: str = Field("dziri", min_length=1, description="the served model name (vLLM's --served-model-name)")
    api_key_env: str = Field(
        "", description='the NAME of the environment variable holding the API key, e.g. "OPENAI_API_KEY"; empty: none'
    )
    context_length: int = Field(
        0, ge=0, description=f"the model's context window; 0: what /v1/models reports, else {DEFAULT_CONTEXT_LENGTH}"
    )
    timeout_s: float = Field(300.0, gt=0, description="longest wait for the next piece of a reply")
    connect_timeout_s: float = Field(5.0, gt=0, description="longest wait to open a connection to the server")
    headers: dict[str, str] = Field(
        default_factory=dict, description="extra HTTP headers (no secrets here: use api_key_env)"
    )


class OpenAICompatBackend:
    Settings = OpenAICompatSettings

    def __init__(self, settings: OpenAICompatSettings, context: PluginContext):
        self.settings = settings
        self.base_url = settings.base_url.rstrip("/")
        self._api_key = _api_key(settings.api_key_env)
        headers = {"Accept": "application/json"}
        for name, value in settings.headers.items():
            if name.lower() in {"authorization", "api-key", "x-api-key"}:
                raise ConfigError(
                    f"backend.openai.headers.{name}: put the key in an environment variable and name it in"
                    " backend.openai.api_key_env instead"
                )
            headers[name] = value
        if self._api_key:
            headers["Authorization"] = f"Bearer {self._api_key}"
        self.client = httpx.Client(
            base_url=self.base_url,
            headers=headers,
            timeout=httpx.Timeout(settings.timeout_s, connect=settings.connect_timeout_s),
        )
        self._info = ModelInfoCache()

    # -- hooks --------------------------------------------------------------------------

    @hookimpl
    def backend_chat(self, messages: list[ChatMessage], options: GenerationOptions) -> Iterator[str]:
        return self._stream(self.request_body(messages, options))

    @hookimpl
    def backend_count_tokens(self, messages: list[ChatMessage]) -> int:
        return estimate_prompt_tokens(messages)

    @hookimpl
    def backend_model_info(self) -> ModelInfo:
        return self._info.get(self._fetch_model_info)

    # -- generation ---------------------------------------------------------------------

    def request_body(self, messages: list[ChatMessage], options: GenerationOptions) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": self.settings.model,
            "messages": [{"role": m.role.value, "content": m.content} for m in messages],
            "stream": True,
            "max_tokens": options.max_tokens,
            "temperature": options.temperature,
            "top_p": options.top_p,
        }
        if options.stop:
            body["stop"] = list(options.stop)
        if options.seed is not None:
            body["seed"] = options.seed
        return body

    def _stream(self, body: dict[str, Any]) -> Iterator[str]:
        # Nothing is sent until the first piece is asked for; closing this generator leaves
        # the `with` block, which closes the HTTP response and so ends the generation.
        try:
            with self.client.stream("POST", "/chat/completions", json=body,
                                    headers={"Accept": "text/event-stream"}) as response:
                if response.status_code >= 400:
                    response.read()
                    raise self._status_error(response, "generating")
                if response.headers.get("content-type", "").startswith("application/json"):
                    # A server that ignored "stream": one whole completion.
                    response.read()
                    yield from self._whole_completion(response)
                    return
                finished = False
                for data in _sse_data(response.iter_lines()):
                    if data.strip() == "[DONE]":
                        finished = True
                        break
                    event = self._event(data)
                    for choice in event.get("choices") or []:
                        if not isinstance(choice, dict) or choice.get("index", 0) != 0:
                            continue
                        piece = (choice.get("delta") or {}).get("content")
                        if isinstance(piece, str) and piece:
                            yield piece
                        if choice.get("finish_reason"):
                            finished = True
                if not finished:
                    raise BackendError(
                        f"{self.base_url} ended the reply before it was done (no [DONE]): the server failed or"
                        " a proxy cut the stream; the server's log says why"
                    )
        except DziriError:
            raise
        except (httpx.HTTPError, OSError) as exc:
            raise self._transport_error(exc) from None

    def _event(self, data: str) -> dict:
        try:
            event = json.loads(data)
        except ValueError:
            event = None
        if not isinstance(event, dict):
            raise BackendError(f"{self.base_url} sent a malformed event: {one_line(data, 80)!r}")
        if event.get("error"):
            raise BackendError(f"{self.base_url} failed while generating: {self._error_text(event)}")
        return event

    def _whole_completion(self, response: httpx.Response) -> Iterator[str]:
        try:
            content = response.json()["choices"][0]["message"]["content"]
        except (ValueError, LookupError, TypeError):
            raise BackendError(f"{self.base_url} sent a malformed completion") from None
        if isinstance(content, str) and content:
            yield content

    # -- model info ---------------------------------------------------------------------

    def _fetch_model_info(self) -> ModelInfo:
        try:
            response = self.client.get("/models")
        except (httpx.HTTPError, OSError) as exc:
            raise self._transport_error(exc) from None
        entry: dict | None = None
        listed = False
        if response.status_code in (404, 405, 501):
            pass  # a server without a models list: trust the settings
        elif response.status_code >= 400:
            raise self._status_error(response, "listing models")
        else:
            served = _model_entries(response)
            if served:
                listed = True
                entry = next((m for m in served if m.get("id") == self.settings.model), None)
                if entry is None:
                    names = ", ".join(str(m.get("id")) for m in served[:10])
                    raise ModelError(
                        f"model '{self.settings.model}' is not served at {self.base_url}; it serves: {names}"
                        " (set backend.openai.model to one of them)"
                    )
        reported = _reported_context(entry)
        if self.settings.context_length:
            context, source = self.settings.context_length, "context_length setting"
        elif reported:
            context, source = reported, "reported by the server"
        else:
            context, source = DEFAULT_CONTEXT_LENGTH, "default (set context_length)"
        details = {
            "base_url": self.base_url,
            "context_source": source,
            "listed_by_server": "yes" if listed else "no models list",
            "owned_by": str(entry.get("owned_by") or "") if entry else "",
        }
        return ModelInfo(
            name=self.settings.model,
            context_length=context,
            backend="openai",
            details={k: v for k, v in details.items() if v},
        )

    # -- errors -------------------------------------------------------------------------

    def _status_error(self, response: httpx.Response, doing: str) -> DziriError:
        status = response.status_code
        where = self.base_url
        if status in (401, 403):
            # The server's own text is left out: some quote part of the key back.
            if self._api_key:
                return BackendError(
                    f"{where} rejected the API key from ${self.settings.api_key_env} (HTTP {status})"
                )
            return BackendError(
                f"{where} wants an API key (HTTP {status}): put it in an environment variable and set"
                " backend.openai.api_key_env to that variable's name"
            )
        message = self._error_text(_json_or_text(response))
        if status == 404:
            return ModelError(
                f"model '{self.settings.model}' is not served at {where} (HTTP 404: {message}); check"
                " backend.openai.model and that base_url ends in /v1"
            )
        if status == 429:
            retry = response.headers.get("retry-after")
            after = f", retry after {retry} s" if retry else ""
            return BackendError(f"{where} is rate-limiting requests (HTTP 429{after}): {message}")
        if status >= 500:
            return BackendError(f"{where} failed while {doing} (HTTP {status}): {message}")
        return BackendError(f"{where} refused the request while {doing} (HTTP {status}): {message}")

    def _error_text(self, payload: Any) -> str:
        """The server's error message, on one line, with the key (if any) blanked out."""
        error = payload.get("error") if isinstance(payload, dict) else None
        if isinstance(error, dict):
            text = error.get("message") or json.dumps(error)
        elif isinstance(error, str):
            text = error
        elif isinstance(payload, dict):
            text = payload.get("detail") or payload.get("message") or json.dumps(payload)
        else:
            text = str(payload)
        text = str(text)
        if self._api_key:
            text = text.replace(self._api_key, "***")
        return one_line(text) or "(no message)"

    def _transport_error(self, exc: BaseException) -> BackendError:
        return transport_error(
            exc, "the OpenAI-compatible server", self.base_url, self.settings.connect_timeout_s,
            self.settings.timeout_s, START_HINT,
        )


def _api_key(variable: str) -> str | None:
    if not variable:
        return None
    if not _ENV_NAME.fullmatch(variable):
        # The value is not repeated: it may be a key pasted into the wrong setting.
        raise ConfigError(
            "backend.openai.api_key_env must be the NAME of an environment variable (letters, digits and _),"
            " not the key itself"
        )
    key = os.environ.get(variable, "").strip()
    if not key:
        raise ConfigError(
            f"backend.openai.api_key_env is {variable}, but the environment variable {variable} is not set"
        )
    return key


def _sse_data(lines: Iterable[str]) -> Iterator[str]:
    """The data of each server-sent event (fields joined by newlines, comments skipped)."""
    data: list[str] = []
    for line in lines:
        if not line:
            if data:
                yield "\n".join(data)
                data = []
            continue
        if line.startswith(":"):
            continue
        name, _, value = line.partition(":")
        if name == "data":
            data.append(value[1:] if value.startswith(" ") else value)
    if data:
        yield "\n".join(data)


def _json_or_text(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return response.text


def _model_entries(response: httpx.Response) -> list[dict]:
    try:
        data = response.json().get("data")
    except (ValueError, AttributeError):
        return []
    return [m for m in data if isinstance(m, dict) and "id" in m] if isinstance(data, list) else []


def _reported_context(entry: dict | None) -> int | None:
    for name in CONTEXT_FIELDS:
        value = (entry or {}).get(name)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
    return None
