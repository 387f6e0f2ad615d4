"""Conversation files: what `dziri train` learns to chat from and what `dziri eval --task
chat` scores (data/darija-chat/ is one).

JSONL (one conversation a line) or a JSON list, or `{"conversations": [...]}`:

    {"id": "…", "lang": "arabizi",
     "messages": [{"role": "user", "content": "…"}, {"role": "assistant", "content": "…"}, …],
     "memory": ["Karim"], "keywords": ["frik"], "reply_lang": "english"}

Only `messages` is required. Turns alternate, the user first; for training every user turn
has its reply, for evaluation the replies may be left out (only user turns are sent, the
model answers each). `lang` is how the user writes (arabizi, arabic, mixed, french,
english); `memory`, `keywords` and `reply_lang` describe what a good *last* reply must do:
contain one of the memory strings (it depends on an earlier turn), contain one of the
topical keywords, be in `reply_lang` when that is not the user's own language.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from dziri.core.errors import ValidationError

USER_LANGS = ("arabizi", "arabic", "mixed", "french", "english")
REPLY_LANGS = ("arabizi", "arabic", "french", "english")
# The reply follows the user; Darija with French mixed in is answered in Latin-letter Darija.
REPLY_LANG_OF = {"arabizi": "arabizi", "arabic": "arabic", "mixed": "arabizi", "french": "french",
                 "english": "english"}


@dataclass(frozen=True)
class Conversation:
    id: str
    messages: tuple[dict, ...]  # {"role": "user" | "assistant", "content": str}
    lang: str | None = None
    reply_lang: str | None = None
    memory: tuple[str, ...] = ()
    keywords: tuple[str, ...] = ()
    domain: str = ""

    @property
    def user_turns(self) -> list[str]:
        return [m["content"] for m in self.messages if m["role"] == "user"]

    @property
    def has_replies(self) -> bool:
        return any(m["role"] == "assistant" for m in self.messages)

    def to_record(self) -> dict:
        """The line `read_conversations` reads back: only the fields that are set."""
        record = {"id": self.id, "domain": self.domain, "lang": self.lang, "messages": list(self.messages),
                  "memory": list(self.memory), "keywords": list(self.keywords), "reply_lang": self.reply_lang}
        return {key: value for key, value in record.items() if value not in (None, "", [])}

    @property
    def expected_reply_lang(self) -> str | None:
        if self.reply_lang:
            return self.reply_lang
        return REPLY_LANG_OF.get(self.lang) if self.lang else None


def read_conversations(path: str | Path, what: str = "conversations", *,
                       need_replies: bool = False) -> list[Conversation]:
    """Every conversation in `path`, checked; a problem is one ValidationError naming the item."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ValidationError(f"{what} file not found: {path}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ValidationError(f"cannot read {what} file {path}: {exc}") from None
    records = _records(text, path)
    if not records:
        raise ValidationError(f"{path} has no conversations")
    conversations, seen = [], set()
    for number, record in enumerate(records, 1):
        conversation = _parse(record, f"{path}, conversation {number}", need_replies)
        if conversation.id in seen:
            raise ValidationError(f"{path}, conversation {number}: id {conversation.id!r} is used twice")
        seen.add(conversation.id)
        conversations.append(conversation)
    return conversations


def _records(text: str, path: Path) -> list:
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        data = None  # not one JSON document: JSONL, one conversation a line
    if isinstance(data, dict) and isinstance(data.get("conversations"), list):
        return data["conversations"]
    if isinstance(data, dict) and "messages" in data:
        return [data]  # JSONL of a single conversation
    if isinstance(data, list):
        return data
    if data is not None:
        raise ValidationError(f"{path}: expected conversations (JSONL, a JSON list or {{\"conversations\": [...]}})")
    records = []
    for lineno, line in enumerate(text.splitlines(), 1):
        if line.strip():
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise ValidationError(f"{path}, line {lineno}: not valid JSON ({exc.msg})") from None
    return records


def _parse(record, where: str, need_replies: bool) -> Conversation:
    if not isinstance(record, dict):
        raise ValidationError(f"{where}: must be an object with \"messages\"")
    raw = record.get("messages")
    if not isinstance(raw, list) or not raw:
        raise ValidationError(f"{where}: \"messages\" must be a non-empty list")
    messages = []
    for i, message in enumerate(raw, 1):
        if not isinstance(message, dict) or not isinstance(message.get("content"), str):
            raise ValidationError(f"{where}, message {i}: must be {{\"role\", \"content\"}} with text content")
        role, content = message.get("role"), message["content"].strip()
        if role not in ("user", "assistant"):
            raise ValidationError(f"{where}, message {i}: role must be \"user\" or \"assistant\", got {role!r}")
        if not content:
            raise ValidationError(f"{where}, message {i}: the content is empty")
        messages.append({"role": role, "content": content})
    with_replies = any(m["role"] == "assistant" for m in messages)
    if with_replies:
        expected = ["user" if i % 2 == 0 else "assistant" for i in range(len(messages))]
        if [m["role"] for m in messages] != expected or messages[-1]["role"] != "assistant":
            raise ValidationError(f"{where}: turns must alternate user/assistant, the user first and a reply last")
    elif need_replies:
        raise ValidationError(f"{where}: has no assistant reply to learn from")
    lang, reply_lang = record.get("lang"), record.get("reply_lang")
    if lang is not None and lang not in USER_LANGS:
        raise ValidationError(f"{where}: lang must be one of {', '.join(USER_LANGS)}, got {lang!r}")
    if reply_lang is not None and reply_lang not in REPLY_LANGS:
        raise ValidationError(f"{where}: reply_lang must be one of {', '.join(REPLY_LANGS)}, got {reply_lang!r}")
    lists = {}
    for key in ("memory", "keywords"):
        values = record.get(key, [])
        if not isinstance(values, list) or not all(isinstance(v, str) and v.strip() for v in values):
            raise ValidationError(f"{where}: {key} must be a list of non-empty strings")
        lists[key] = tuple(v.strip() for v in values)
    conv_id = record.get("id")
    if conv_id is None:
        conv_id = conversation_id(messages)
    elif not isinstance(conv_id, (str, int)) or isinstance(conv_id, bool) or not str(conv_id).strip():
        raise ValidationError(f"{where}: id must be a string or an integer")
    return Conversation(id=str(conv_id), messages=tuple(messages), lang=lang, reply_lang=reply_lang,
                        memory=lists["memory"], keywords=lists["keywords"], domain=str(record.get("domain") or ""))


def conversation_id(messages: list[dict]) -> str:
    """As data/darija-chat/build.py gives it: a hash of the user turns."""
    users = "\n".join(m["content"] for m in messages if m["role"] == "user")
    return hashlib.sha256(users.encode("utf-8")).hexdigest()[:16]
