"""A test backend for the failure path: two pieces, then the error a dropped connection gives."""

from __future__ import annotations

from collections.abc import Iterator

from pydantic import BaseModel

from dziri.core.hookspecs import hookimpl
from dziri.core.models import ModelInfo


class _NoSettings(BaseModel):
    pass


class DroppedConnectionBackend:
    Settings = _NoSettings

    @hookimpl
    def backend_chat(self, messages, options) -> Iterator[str]:
        yield "nus "
        yield "jawab"
        raise ConnectionError("connection reset by peer")

    @hookimpl
    def backend_count_tokens(self, messages):
        return sum(len(m.content.split()) for m in messages)

    @hookimpl
    def backend_model_info(self):
        return ModelInfo(name="dropped", context_length=1000, backend="test")
