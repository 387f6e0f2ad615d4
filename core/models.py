"""The data that crosses a plugin contract. Ids are strings; datetimes are UTC-aware."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator


def utcnow() -> datetime:
    return datetime.now(UTC)



def parse_enum(kind: type[StrEnum], value: object, name: str):
    """`value` as a member of `kind` (a member or its string value); ValidationError, with
    the allowed values, otherwise."""
    from .errors import ValidationError

    try:
        return kind(value)
    except ValueError:
        allowed = ", ".join(member.value for member in kind)
        raise ValidationError(f"{name} must be one of {allowed}, not {value!r}") from None

class _Record(BaseModel):
    model_config = ConfigDict(frozen=True)

    @field_validator("*", mode="after")
    @classmethod
    def _datetimes_are_utc(cls, value):
        # Stores hand back naive datetimes (SQLite text, BSON); the contract is UTC-aware.
        if isinstance(value, datetime):
            return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
        return value


class Role(StrEnum):
    SYSTEM = "system"
    USER = "user"
    ASSISTANT = "assistant"


class MessageStatus(StrEnum):
    COMPLETE = "complete"
    PARTIAL = "partial"  # cut off by a stop or a crash; content holds what was generated
    ERROR = "error"  # the backend failed; content holds what was generated, `error` says why


class User(_Record):
    id: str
    username: str
    email: str
    password_hash: str
    created_at: datetime = Field(default_factory=utcnow)


class Conversation(_Record):
    id: str
    user_id: str
    title: str = ""
    started_at: datetime
    updated_at: datetime
    # Its own settings, used by ChatService for its replies; empty / None: the [chat] defaults.
    system_prompt: str = ""
    temperature: float | None = Field(default=None, ge=0.0, le=2.0)


class Message(_Record):
    id: str
    conversation_id: str
    user_id: str
    role: Role
    content: str
    timestamp: datetime
    status: MessageStatus = MessageStatus.COMPLETE
    error: str | None = None
    # A reply's figures, once it has ended: the tokens it took (the pieces the backend
    # streamed, one per token with llama.cpp) and its decoding speed, first token to last.
    tokens: int | None = None
    tokens_per_second: float | None = None


class Session(_Record):
    """A web login session. `key` is the secret the browser's cookie holds; `data` is
    the host's own encoding of the session dict, opaque to the store."""

    key: str
    data: str
    expires_at: datetime


class ApiKey(_Record):
    """A user's key for the OpenAI-compatible API (`Authorization: Bearer <key>`). The key
    itself is shown once, when it is made; a store keeps only its SHA-256 (`key_hash`) and
    its first characters (`prefix`), so that a list can tell keys apart."""

    id: str
    user_id: str
    name: str
    prefix: str
    key_hash: str
    created_at: datetime


class ChatMessage(BaseModel):
    """One turn of a prompt as a backend sees it."""

    role: Role
    content: str


class GenerationOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    max_tokens: int = Field(default=512, ge=1)
    temperature: float = Field(default=0.7, ge=0.0, le=2.0)
    top_p: float = Field(default=0.95, gt=0.0, le=1.0)
    stop: list[str] = Field(default_factory=list)
    seed: int | None = None


class ModelInfo(BaseModel):
    name: str
    context_length: int = Field(ge=1)
    backend: str
    details: dict[str, str] = Field(default_factory=dict)


class Segment(BaseModel):
    """A unit of text to translate, as in the seed's {"segments": [{"id", "text"}]}.

    The id is a string or an integer (the seed's files number their segments: `"id": 1073`)
    and stays what it was in every file dziri writes."""

    id: str | int
    text: str
    translation: str | None = None

    @field_validator("id", mode="before")
    @classmethod
    def _string_or_integer(cls, value):
        if isinstance(value, bool) or not isinstance(value, (str, int)):
            raise ValueError("must be a string or an integer")
        return value


class PluginContext(BaseModel):
    """What the core hands every role plugin besides its own settings:
    `plugin = PluginClass(settings, context)`."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    data_dir: Path  # where a plugin keeps files it owns (databases, caches); already created
    # The App's configured Backend facade (dziri.core.roles.Backend), created on first call:
    # a translator that translates with the chat model calls it when it needs it, never in
    # its constructor. None where no App is behind the plugin (a bare plugin in a test).
    backend: Callable[[], Any] | None = None
