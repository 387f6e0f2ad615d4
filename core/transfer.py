"""Conversations out of dziri and back in: a JSON file that round-trips exactly (titles,
settings, roles, statuses, errors, timestamps, figures; new ids on the way in), Markdown
for reading, and a user's whole data in one JSON file.

An import is checked whole before anything is stored: a malformed file changes nothing.
A conversation already there (the same start time and title: the file was imported
before) is refused unless `again`.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from pydantic import ValidationError as PydanticValidationError

from .errors import ConflictError, ValidationError
from .models import Conversation, Message, MessageStatus, Role, utcnow
from .roles import Store

FORMAT = "dziri-conversations"
VERSION = 1
PAGE = 200
MAX_CONVERSATIONS = 10_000
MAX_MESSAGES = 100_000


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ExportedMessage(_Strict):
    role: Role
    content: str
    status: MessageStatus = MessageStatus.COMPLETE
    error: str | None = None
    timestamp: datetime
    tokens: int | None = Field(default=None, ge=0)
    tokens_per_second: float | None = Field(default=None, ge=0)


class ExportedConversation(_Strict):
    id: str = ""  # the id it had where it was exported; a new one is given on import
    title: str = Field(default="", max_length=200)
    started_at: datetime
    updated_at: datetime
    system_prompt: str = Field(default="", max_length=4000)
    temperature: float | None = Field(default=None, ge=0, le=2)
    messages: list[ExportedMessage] = Field(default_factory=list, max_length=MAX_MESSAGES)


class ExportFile(_Strict):
    format: str
    version: int
    exported_at: datetime | None = None
    user: dict[str, str] | None = None  # username and email, in "all my data"
    api_keys: list[dict[str, str]] | None = None  # their names and first characters, in "all my data"
    conversations: list[ExportedConversation] = Field(max_length=MAX_CONVERSATIONS)


def all_messages(store: Store, user_id: str, conversation_id: str) -> list[Message]:
    """Every message of a conversation, oldest first, paged out of the store."""
    messages: list[Message] = []
    before = None
    while page := store.list_messages(user_id, conversation_id, limit=PAGE, before=before):
        messages = [*page, *messages]
        before = page[0].id
    return messages


def all_conversations(store: Store, user_id: str) -> list[Conversation]:
    conversations: list[Conversation] = []
    while page := store.list_conversations(user_id, limit=PAGE, offset=len(conversations)):
        conversations += page
    return conversations


def exported(store: Store, user_id: str, conversation: Conversation) -> dict[str, Any]:
    messages = [m.model_dump(mode="json", include=set(ExportedMessage.model_fields))
                for m in all_messages(store, user_id, conversation.id)]
    fields = set(ExportedConversation.model_fields) - {"messages"}
    return {**conversation.model_dump(mode="json", include=fields), "messages": messages}


def export(store: Store, user_id: str, conversation_ids: list[str] | None = None,
           user: dict[str, str] | None = None) -> dict[str, Any]:
    """The file for some of the user's conversations (None: all of them, newest first;
    with `user`, the whole of the user's data: who they are and their API keys too)."""
    if conversation_ids is None:
        conversations = all_conversations(store, user_id)
    else:
        conversations = [store.get_conversation(user_id, cid) for cid in conversation_ids]
    return {"format": FORMAT, "version": VERSION, "exported_at": utcnow().isoformat().replace("+00:00", "Z"),
            **({"user": user, "api_keys": [key.model_dump(mode="json", include={"name", "prefix", "created_at"})
                                            for key in store.list_api_keys(user_id)]} if user else {}),
            "conversations": [exported(store, user_id, c) for c in conversations]}


def to_markdown(data: dict[str, Any]) -> str:
    """For reading: each conversation a section, each message a paragraph under its speaker."""
    lines = []
    for conversation in data["conversations"]:
        lines += [f"# {conversation['title'] or 'Untitled conversation'}", "",
                  f"*{conversation['started_at']} – {conversation['updated_at']}*", ""]
        if conversation.get("system_prompt"):
            lines += [f"> System prompt: {conversation['system_prompt']}", ""]
        for message in conversation["messages"]:
            who = "You" if message["role"] == "user" else "dziri" if message["role"] == "assistant" else "System"
            note = ""
            if message["status"] != "complete":
                reason = f": {message['error']}" if message.get("error") else ""
                note = f" *({message['status']}{reason})*"
            lines += [f"**{who}** · {message['timestamp']}{note}", "", message["content"] or "*(empty)*", ""]
    return "\n".join(lines).rstrip() + "\n"


def parse(text: str | bytes) -> ExportFile:
    """Check a whole export file; ValidationError naming the first problem."""
    try:
        data = json.loads(text)
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise ValidationError("the file is not valid JSON") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise ValidationError(f"this is not a dziri export (its \"format\" must be {FORMAT!r})")
    if data.get("version") != VERSION:
        raise ValidationError(f"export version {data.get('version')!r} is not one this dziri reads ({VERSION})")
    try:
        return ExportFile.model_validate(data)
    except PydanticValidationError as exc:
        error = exc.errors()[0]
        where = ".".join(str(part) for part in error["loc"])
        raise ValidationError(f"the file is not a valid export: {where}: {error['msg']}") from None


def import_file(store: Store, user_id: str, text: str | bytes, again: bool = False) -> list[Conversation]:
    """Store every conversation of an export file for the user; the stored ones."""
    parsed = parse(text)
    if not parsed.conversations:
        raise ValidationError("the file holds no conversations")
    if not again:
        there = {_key(c) for c in all_conversations(store, user_id)}
        repeated = [c for c in parsed.conversations if _key(c) in there]
        if repeated:
            raise ConflictError(f"{len(repeated)} of its {len(parsed.conversations)} conversations are already"
                                f" here (\"{repeated[0].title}\", started {repeated[0].started_at:%Y-%m-%d %H:%M}):"
                                " it was imported before; import it again on purpose with --again")
    stored = []
    for c in parsed.conversations:
        conversation = Conversation(id="import", user_id=user_id, title=c.title, started_at=c.started_at,
                                    updated_at=c.updated_at, system_prompt=c.system_prompt, temperature=c.temperature)
        messages = [Message(id="import", conversation_id="import", user_id=user_id, **m.model_dump())
                    for m in c.messages]
        stored.append(store.import_conversation(user_id, conversation, messages))
    return stored


def _key(conversation) -> tuple[datetime, str]:
    """What tells an imported conversation again: its start, to the millisecond (what
    every store keeps), and its title."""
    started = conversation.started_at
    return started.replace(microsecond=started.microsecond // 1000 * 1000), conversation.title
