"""dziri-echo: a complete, small dziri plugin.

A backend that answers by echoing the user's last message, word by word. It needs no
model, which makes it handy for trying a frontend or a store; it also shows an event
hook: CLI commands, one of which reads the configured store through `get_app()`. Read
docs/plugins.md for the walk-through.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import click
from pydantic import BaseModel, ConfigDict, Field

from dziri.core.cli import get_app
from dziri.core.hookspecs import hookimpl
from dziri.core.models import ChatMessage, GenerationOptions, ModelInfo, PluginContext, Role, Segment


class EchoBackend:
    class Settings(BaseModel):
        """`[backend.echo]` in dziri.toml."""

        model_config = ConfigDict(extra="forbid")

        prefix: str = "echo: "
        delay_s: float = Field(default=0.0, ge=0.0, le=5.0)  # pause between words, to watch streaming
        context_length: int = Field(default=2048, ge=16)

    def __init__(self, settings: Settings, context: PluginContext):
        self.settings = settings

    @hookimpl
    def backend_chat(self, messages: list[ChatMessage], options: GenerationOptions) -> Iterator[str]:
        last_user = next((m.content for m in reversed(messages) if m.role == Role.USER), "")
        text = self.settings.prefix + last_user
        for stop in options.stop:
            text = text.split(stop, 1)[0]  # the reply ends before the first stop sequence
        return self._stream(text.split(" ")[: options.max_tokens])

    def _stream(self, words: list[str]) -> Iterator[str]:
        for index, word in enumerate(words):
            if self.settings.delay_s:
                time.sleep(self.settings.delay_s)
            yield word if index == 0 else " " + word

    @hookimpl
    def backend_count_tokens(self, messages: list[ChatMessage]) -> int:
        # One token per word plus two per turn for the role markers: this backend's "template".
        return sum(len(m.content.split()) + 2 for m in messages)

    @hookimpl
    def backend_model_info(self) -> ModelInfo:
        return ModelInfo(name="echo", context_length=self.settings.context_length, backend="echo")


class EchoTranslator:
    """An identity "translator": returns each text as its own translation. Useful to
    try the translation pipeline's plumbing without a service."""

    class Settings(BaseModel):
        model_config = ConfigDict(extra="forbid")

    def __init__(self, settings: Settings, context: PluginContext):
        self.settings = settings

    @hookimpl
    def translator_translate(self, segments: list[Segment]) -> list[Segment]:
        return [segment.model_copy(update={"translation": segment.text}) for segment in segments]


# An extension hook at module level: the entry point `echo = dziri_echo` in the
# `dziri.plugins` group registers this module, so the command exists whichever
# backend is active.
@hookimpl
def register_commands(cli: click.Group) -> None:
    @cli.command("echo-hello")
    def echo_hello() -> None:
        """Say hello from the dziri-echo plugin."""
        click.echo("hello from dziri-echo")

    @cli.command("echo-stats")
    def echo_stats() -> None:
        """Count your conversations and messages in the configured store."""
        app = get_app()  # the configured store, backend, ChatService and config
        user = app.chat.local_user()
        conversations, messages = 0, 0
        while page := app.store.list_conversations(user.id, limit=100, offset=conversations):
            conversations += len(page)
            for conversation in page:
                before = None
                while older := app.store.list_messages(user.id, conversation.id, limit=200, before=before):
                    messages += len(older)
                    before = older[0].id  # oldest first: page on to the ones before it
        click.echo(f"{conversations} conversations, {messages} messages in the {app.store.name} store"
                   f" (backend: {app.backend.name})")
