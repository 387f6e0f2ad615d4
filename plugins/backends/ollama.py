"""The Ollama backend: the fine-tuned model served by a local or remote `ollama serve`,
through the `ollama` Python package.

Ollama has no tokenize endpoint, so token counts are a conservative estimate (see
`_estimate`). The model's description comes from `/api/show` and is cached briefly.
Every failure is one typed line that names the host; a stream that breaks mid-reply
raises from the iterator, so ChatService keeps what was generated, marked error.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from typing import Any

import httpx
import ollama
import pydantic
from pydantic import BaseModel, ConfigDict, Field, field_validator

from dziri.core.errors import BackendError, DziriError, ModelError
from dziri.core.hookspecs import hookimpl
from dziri.core.models import ChatMessage, GenerationOptions, ModelInfo, PluginContext

from ._estimate import estimate_prompt_tokens
from ._remote import ModelInfoCache, one_line, transport_error

DEFAULT_HOST = "http://127.0.0.1:11434"
# What we assume when neither dziri (num_ctx) nor the Modelfile sets the context size:
# the server then uses its own default, which we cannot read over the API. 2048 is the
# smallest default any Ollama release has used (later ones use 4096 or more), so the
# history dziri keeps always fits. Set num_ctx to know instead of assume.
ASSUMED_SERVER_NUM_CTX = 2048
START_HINT = "is `ollama serve` running there?"

# Go's time.ParseDuration syntax ("5m", "1h30m", "-1s"), which is what Ollama parses.
_DURATION = re.compile(r"-?((\d+(\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h))+")
_NUMBER = re.compile(r"-?\d+(\.\d+)?")


def _default_host() -> str:
    # The same variable the `ollama` CLI and Python package read, so a machine set up for
    # one is set up for the other; `[backend.ollama] host` wins over it.
    return os.environ.get("OLLAMA_HOST") or DEFAULT_HOST


class OllamaSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    host: str = Field(
        default_factory=_default_host,
        min_length=1,
        description=f"the Ollama server; not set: $OLLAMA_HOST, else {DEFAULT_HOST}",
    )
    model: str = Field("dziri", min_length=1, description="a model on that server (`ollama list`)")
    keep_alive: str = Field(
        "5m",
        description='how long the server keeps the model loaded after a reply: "5m", "1h", "0" (unload at once),'
        ' "-1" (forever); empty: the server default',
    )
    num_ctx: int = Field(0, ge=0, description="context window in tokens sent with every request; 0: the server's")
    timeout_s: float = Field(
        300.0, gt=0, description="longest wait for the next piece of a reply (the first one includes loading the model)"
    )
    connect_timeout_s: float = Field(5.0, gt=0, description="longest wait to open a connection to the server")

    @field_validator("keep_alive", mode="before")
    @classmethod
    def _keep_alive_is_a_duration(cls, value: Any) -> Any:
        if isinstance(value, int | float) and not isinstance(value, bool):
            value = str(value)
        if isinstance(value, str) and value and not (_DURATION.fullmatch(value) or _NUMBER.fullmatch(value)):
            raise ValueError('expected a duration such as "5m", "1h30m", "0" or "-1"')
        return value


class OllamaBackend:
    Settings = OllamaSettings

    def __init__(self, settings: OllamaSettings, context: PluginContext):
        self.settings = settings
        self.host = settings.host
        # Connecting is bounded separately, so a server that is down fails in seconds even
        # though a reply from a model that is still loading may take minutes to start.
        timeout = httpx.Timeout(settings.timeout_s, connect=settings.connect_timeout_s)
        self.client = ollama.Client(host=settings.host, timeout=timeout)
        self._info = ModelInfoCache()

    # -- hooks --------------------------------------------------------------------------

    @hookimpl
    def backend_chat(self, messages: list[ChatMessage], options: GenerationOptions) -> Iterator[str]:
        return self._stream([{"role": m.role.value, "content": m.content} for m in messages], options)

    @hookimpl
    def backend_count_tokens(self, messages: list[ChatMessage]) -> int:
        return estimate_prompt_tokens(messages)

    @hookimpl
    def backend_model_info(self) -> ModelInfo:
        return self._info.get(self._fetch_model_info)

    # -- generation ---------------------------------------------------------------------

    def request_options(self, options: GenerationOptions) -> dict[str, Any]:
        """dziri's generation options in Ollama's names."""
        mapped: dict[str, Any] = {
            "temperature": options.temperature,
            "top_p": options.top_p,
            "num_predict": options.max_tokens,
        }
        if options.stop:
            mapped["stop"] = list(options.stop)
        if options.seed is not None:
            mapped["seed"] = options.seed
        if self.settings.num_ctx:
            mapped["num_ctx"] = self.settings.num_ctx
        return mapped

    def keep_alive(self) -> str | float | None:
        value = self.settings.keep_alive
        if not value:
            return None
        # Ollama reads a JSON number as seconds; a bare number in a string is not a Go duration.
        return float(value) if _NUMBER.fullmatch(value) else value

    def _stream(self, messages: list[dict], options: GenerationOptions) -> Iterator[str]:
        # Nothing is sent until the first piece is asked for; closing this generator closes
        # the HTTP response (through the ollama package's own generator), which makes the
        # server stop generating.
        parts = None
        done = False
        try:
            parts = self.client.chat(
                model=self.settings.model,
                messages=messages,
                stream=True,
                options=self.request_options(options),
                keep_alive=self.keep_alive(),
            )
            for part in parts:
                piece = part.message.content if part.message is not None else None
                if piece:
                    yield piece
                if part.done:
                    done = True
                    break
            if not done:
                raise BackendError(
                    f"Ollama at {self.host} ended the reply before it was done: the server failed or a proxy"
                    " cut the stream; the server's log says why"
                )
        except DziriError:
            raise
        except ollama.ResponseError as exc:
            raise self._response_error(exc, generating=True) from None
        except (json.JSONDecodeError, pydantic.ValidationError) as exc:
            raise BackendError(f"Ollama at {self.host} sent a malformed reply: {one_line(exc, 120)}") from None
        except (httpx.HTTPError, OSError) as exc:
            raise self._transport_error(exc) from None
        finally:
            if parts is not None:
                parts.close()

    # -- model info ---------------------------------------------------------------------

    def _fetch_model_info(self) -> ModelInfo:
        try:
            shown = self.client.show(self.settings.model)
        except ollama.ResponseError as exc:
            raise self._response_error(exc, generating=False) from None
        except pydantic.ValidationError as exc:
            raise BackendError(f"Ollama at {self.host} described the model in an unexpected form: "
                               f"{one_line(exc, 120)}") from None
        except (httpx.HTTPError, OSError) as exc:
            raise self._transport_error(exc) from None
        model_info = dict(shown.modelinfo or {})
        details = shown.details
        architecture = str(model_info.get("general.architecture") or (details.family if details else "") or "")
        trained = _positive_int(model_info.get(f"{architecture}.context_length"))
        if trained is None:  # an architecture that names its keys differently
            trained = next((_positive_int(v) for k, v in model_info.items() if k.endswith(".context_length")), None)
        from_modelfile = _positive_int(_parameter(shown.parameters or "", "num_ctx"))
        if self.settings.num_ctx:
            context, source = self.settings.num_ctx, "num_ctx setting"
        elif from_modelfile:
            context, source = from_modelfile, "Modelfile num_ctx"
        else:
            context, source = ASSUMED_SERVER_NUM_CTX, "assumed server default"
        if trained:
            context = min(context, trained)  # Ollama clamps a larger num_ctx to the trained size
        described = {
            "host": self.host,
            "family": (details.family if details else None) or architecture,
            "parameter_size": details.parameter_size if details else None,
            "quantization": details.quantization_level if details else None,
            "format": details.format if details else None,
            "trained_context_length": str(trained) if trained else None,
            "context_source": source,
            "keep_alive": self.settings.keep_alive,
        }
        return ModelInfo(
            name=self.settings.model,
            context_length=context,
            backend="ollama",
            details={k: str(v) for k, v in described.items() if v},
        )

    # -- errors -------------------------------------------------------------------------

    def _response_error(self, exc: ollama.ResponseError, generating: bool) -> DziriError:
        message = one_line(exc.error)
        if exc.status_code == 404:
            model = self.settings.model
            return ModelError(
                f"model '{model}' is not on the Ollama server at {self.host} ({message}): create it with"
                f" `ollama create {model} -f Modelfile` (the Modelfile `dziri export` writes), or"
                f" `ollama pull {model}` for a public model"
            )
        if exc.status_code < 0:  # an {"error": ...} line inside the stream
            return BackendError(f"Ollama at {self.host} failed while generating: {message}")
        doing = "generating" if generating else "describing the model"
        return BackendError(f"Ollama at {self.host} failed while {doing} (HTTP {exc.status_code}): {message}")

    def _transport_error(self, exc: BaseException) -> BackendError:
        return transport_error(
            exc, "Ollama", self.host, self.settings.connect_timeout_s, self.settings.timeout_s, START_HINT
        )


def _parameter(parameters: str, name: str) -> str | None:
    """A value from `/api/show`'s `parameters` ("num_ctx    4096" per line)."""
    for line in parameters.splitlines():
        key, _, value = line.strip().partition(" ")
        if key == name:
            return value.strip()
    return None


def _positive_int(value: Any) -> int | None:
    try:
        number = int(value)
    except (TypeError, ValueError):
        return None
    return number if number > 0 else None
