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


class ScriptedSettings(BaseModel):
    replies: dict[str, str] = {}  # the last user message → the reply
    default: str = "ma3labalich, sma7li"


class ScriptedBackend:
    """Answers from a script keyed by the last user message; `prompts` keeps every prompt
    it was sent (the history the chat service built)."""

    Settings = ScriptedSettings

    def __init__(self, settings: ScriptedSettings, context=None):
        self.settings = settings
        self.prompts: list[list] = []

    @hookimpl
    def backend_chat(self, messages, options) -> Iterator[str]:
        self.prompts.append(list(messages))
        reply = self.settings.replies.get(messages[-1].content, self.settings.default)
        for word in reply.split(" "):
            yield word + " "

    @hookimpl
    def backend_count_tokens(self, messages):
        return sum(len(m.content.split()) + 4 for m in messages)

    @hookimpl
    def backend_model_info(self):
        return ModelInfo(name="scripted", context_length=4096, backend="test")
