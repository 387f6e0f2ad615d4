"""`dziri eval --task chat`: does the served model answer like a chat assistant?

Each conversation's user turns go through `ChatService`, one after the other, with the
served generation settings ([chat] and the backend's own), into a throwaway store: the
model sees its own earlier replies, as a user's chat would. The last reply is scored
automatically:

- language: in the language and script the reply should be in (the user's own, or the
  item's `reply_lang`; Darija with French mixed in may be answered in French too);
- memory: contains one of the item's `memory` strings (it depends on an earlier turn);
- topical: contains one of the item's `keywords`;
- echo: not (almost) the user's message again;
- translation: not the user's message turned into English when nobody asked for English,
  nor a reply that announces a translation ("In English: …");
- looping: no phrase repeated over and over.

A reply is good when it passes every check that applies to its item.
"""

from __future__ import annotations

import difflib
import json
import re
import tempfile
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

from dziri.core.config import DziriConfig, RoleSection
from dziri.core.errors import ValidationError

from .conversations import Conversation, read_conversations
from .language import ENGLISH, FRENCH, detect, fold
from .segments import write_atomically

SEED = 0
CHECKS = ("good", "language", "memory", "topical", "echo", "translation", "looping")
_ANNOUNCES_TRANSLATION = re.compile(r"^\W*(in english|it means|translation)\b", re.IGNORECASE)


@dataclass(frozen=True)
class ReplyCheck:
    language: str  # as detected
    language_ok: bool
    memory_ok: bool | None  # None: the item has no memory strings
    topical_ok: bool | None  # None: the item has no keywords
    echo: bool
    translation: bool
    looping: bool

    @property
    def good(self) -> bool:
        return (self.language_ok and self.memory_ok is not False and self.topical_ok is not False
                and not (self.echo or self.translation or self.looping))


def accepted_languages(conversation: Conversation) -> set[str]:
    expected = conversation.expected_reply_lang
    if expected is None:
        raise ValidationError(f"conversation {conversation.id}: give its \"lang\" (or \"reply_lang\") to score it")
    accepted = {expected}
    if conversation.lang == "mixed":
        accepted.add(FRENCH)
    return accepted


def check_reply(reply: str, conversation: Conversation) -> ReplyCheck:
    message = conversation.user_turns[-1]
    language = detect(reply)
    accepted = accepted_languages(conversation)
    return ReplyCheck(
        language=language,
        language_ok=language in accepted,
        memory_ok=contains_any(reply, conversation.memory) if conversation.memory else None,
        topical_ok=contains_any(reply, conversation.keywords) if conversation.keywords else None,
        echo=is_echo(reply, message),
        translation=(language == ENGLISH and ENGLISH not in accepted) or bool(_ANNOUNCES_TRANSLATION.match(reply)),
        looping=is_looping(reply),
    )


def contains_any(text: str, needles) -> bool:
    folded = fold(text)
    return any(fold(needle) in folded for needle in needles)


def is_echo(reply: str, message: str) -> bool:
    """The reply is the message again, or nearly (case, accents and spacing aside)."""
    a, b = " ".join(fold(reply).split()), " ".join(fold(message).split())
    if not a:
        return False
    return a == b or (len(b) >= 12 and b in a and len(a) < 1.5 * len(b)) or \
        difflib.SequenceMatcher(None, a, b).ratio() >= 0.8


def is_looping(text: str, n: int = 3) -> bool:
    """A phrase of `n` words said three times or more, or a reply that is mostly repeats."""
    words = re.findall(r"\w+", fold(text))
    grams = [tuple(words[i:i + n]) for i in range(len(words) - n + 1)]
    if not grams:
        return False
    counts = Counter(grams)
    if counts.most_common(1)[0][1] >= 3:
        return True
    return len(grams) >= 12 and len(counts) / len(grams) < 0.6


# ---- running the conversations -------------------------------------------------------------


def with_scratch_store(config: DziriConfig, directory: Path) -> DziriConfig:
    """A copy of `config` whose store is a fresh SQLite file in `directory`: evaluating never
    touches a user's history."""
    changed = config.model_copy(deep=True)
    changed.store = RoleSection(use="sqlite", sqlite={"path": str(directory / "eval.sqlite3")})
    return changed


def converse(service, user_id: str, conversation: Conversation, options) -> list[str]:
    """Send the user turns one by one; the replies, in order."""
    replies, conversation_id = [], None
    for turn in conversation.user_turns:
        with service.send(user_id, turn, conversation_id, options) as stream:
            replies.append(stream.text().strip())
            conversation_id = stream.conversation.id
    return replies


@dataclass
class SystemRun:
    name: str
    model: str
    adapter: str
    replies: list[list[str]] = field(default_factory=list)
    checks: list[ReplyCheck] = field(default_factory=list)

    def rates(self) -> dict[str, float | None]:
        """The share of replies that pass each check (bad ones: that fail it), over the items
        the check applies to."""
        rates = {}
        for check, attribute in _CHECK_ATTRIBUTES.items():
            values = [getattr(x, attribute) for x in self.checks if getattr(x, attribute) is not None]
            rates[check] = sum(values) / len(values) if values else None
        return rates


# What each rate in CHECKS counts, on a ReplyCheck.
_CHECK_ATTRIBUTES = {"good": "good", "language": "language_ok", "memory": "memory_ok", "topical": "topical_ok",
                     "echo": "echo", "translation": "translation", "looping": "looping"}


@dataclass
class ChatEvaluation:
    data: Path
    conversations: list[Conversation]
    settings: dict
    systems: dict[str, SystemRun] = field(default_factory=dict)

    def counts(self) -> dict[str, int]:
        return {"conversations": len(self.conversations),
                "with_memory": sum(1 for c in self.conversations if c.memory),
                "with_keywords": sum(1 for c in self.conversations if c.keywords)}

    def to_dict(self) -> dict:
        return {
            "data": str(self.data), "task": "chat", **self.counts(), "settings": self.settings,
            "systems": {name: {"rates": {k: None if v is None else round(v, 4) for k, v in run.rates().items()},
                               "model": run.model, "adapter": run.adapter} for name, run in self.systems.items()},
        }

    def render(self) -> str:
        counts = self.counts()
        width = max([10, *(len(name) + 2 for name in self.systems)])
        lines = [f"{self.data}: {counts['conversations']} conversations ({counts['with_memory']} with a memory "
                 f"check, {counts['with_keywords']} with keywords), the last reply scored",
                 f"{'':<18}" + "".join(f"{name:>{width}}" for name in self.systems)]
        rates = {name: run.rates() for name, run in self.systems.items()}
        for check in CHECKS:
            label = check if check in ("good", "language", "memory", "topical") else f"{check} (bad)"
            lines.append(f"{label:<18}" + "".join(f"{_percent(rates[name][check]):>{width}}" for name in self.systems))
        for name, run in self.systems.items():
            lines.append(f"{name}: {run.model}" + (f" + {run.adapter}" if run.adapter else ""))
        return "\n".join(lines)

    def rows(self) -> list[dict]:
        rows = []
        for i, conversation in enumerate(self.conversations):
            rows.append({
                "id": conversation.id, "lang": conversation.lang, "domain": conversation.domain,
                "user_turns": conversation.user_turns,
                "expected": {"languages": sorted(accepted_languages(conversation)),
                             "memory": list(conversation.memory), "keywords": list(conversation.keywords)},
                "systems": {name: {"replies": run.replies[i], **asdict(run.checks[i]), "good": run.checks[i].good}
                            for name, run in self.systems.items()},
            })
        return rows


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.0f}%"


def read_chat_items(path: str | Path, limit: int | None = None) -> list[Conversation]:
    conversations = read_conversations(path, "chat evaluation data")
    for number, conversation in enumerate(conversations, 1):
        if conversation.expected_reply_lang is None:  # every item must say what language its reply is in
            raise ValidationError(f"{path}, conversation {number}: give its \"lang\" (or \"reply_lang\") to score it")
    return conversations[:limit] if limit is not None else conversations


def evaluate_chat(data: str | Path, configs: dict[str, DziriConfig], *, limit: int | None = None,
                  max_tokens: int | None = None, seed: int = SEED, progress: bool = True) -> ChatEvaluation:
    """Score the configured systems ({name: config}, as `evaluate.system_configs` makes them)."""
    from tqdm import tqdm

    from .evaluate import loaded_systems

    conversations = read_chat_items(data, limit)
    with tempfile.TemporaryDirectory(prefix="dziri-chat-eval-") as scratch:
        scratch_configs = {}
        for index, (name, config) in enumerate(configs.items()):
            folder = Path(scratch) / str(index)
            folder.mkdir()
            scratch_configs[name] = with_scratch_store(config, folder)
        with loaded_systems(scratch_configs) as systems:
            evaluation = ChatEvaluation(Path(data), conversations, settings={})
            for system in systems:
                service = system.app.chat
                options = service.default_options(seed=seed, **({"max_tokens": max_tokens} if max_tokens else {}))
                evaluation.settings.update(options.model_dump(exclude={"stop"}))
                user = service.local_user("dziri-eval")
                run = SystemRun(system.name, system.model, system.adapter)
                for conversation in tqdm(conversations, desc=system.name, unit="conversation", leave=False,
                                         disable=not progress):
                    replies = converse(service, user.id, conversation, options)
                    run.replies.append(replies)
                    run.checks.append(check_reply(replies[-1], conversation))
                evaluation.systems[system.name] = run
    return evaluation


def write_chat_outputs(evaluation: ChatEvaluation, path: str | Path) -> Path:
    path = Path(path)
    write_atomically(path, "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in evaluation.rows()))
    return path
