"""A test backend that fails: after `words_before_failure` words of its reply, or at once
(`unavailable`: even model_info fails, like a server that is down)."""

from __future__ import annotations

import time
from collections.abc import Iterator

from pydantic import BaseModel, ConfigDict

from dziri.core.errors import BackendError
from dziri.core.hookspecs import hookimpl
from dziri.core.models import ChatMessage, GenerationOptions, ModelInfo, PluginContext

ENTRY_POINTS = "[dziri.backends]\nfailing = failing_backend:FailingBackend\n"


class FailingBackend:
    class Settings(BaseModel):
        model_config = ConfigDict(extra="forbid")

        words_before_failure: int = 2
        delay_s: float = 0.0
        unavailable: bool = False

    def __init__(self, settings: Settings, context: PluginContext):
        self.settings = settings

    def _check(self) -> None:
        if self.settings.unavailable:
            raise BackendError("cannot reach the model server at 127.0.0.1:9 (connection refused)")

    @hookimpl
    def backend_chat(self, messages: list[ChatMessage], options: GenerationOptions) -> Iterator[str]:
        self._check()
        return self._stream()

    def _stream(self) -> Iterator[str]:
        for index in range(self.settings.words_before_failure):
            time.sleep(self.settings.delay_s)
            yield "partial" if index == 0 else " words"
        raise RuntimeError("the model crashed")

    @hookimpl
    def backend_count_tokens(self, messages: list[ChatMessage]) -> int:
        self._check()
        return sum(len(m.content.split()) + 2 for m in messages)

    @hookimpl
    def backend_model_info(self) -> ModelInfo:
        self._check()
        return ModelInfo(name="failing", context_length=2048, backend="failing")
