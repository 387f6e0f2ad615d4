"""Build the dziri Darija chat set: source/part-*.jsonl → train.jsonl + test.jsonl.

Stdlib only and deterministic: the same parts always give the same files.

    python data/darija-chat/build.py            # check the sources, write the splits, print counts
    python data/darija-chat/build.py --check [PART ...]
                                # check (all parts, or the ones named) and print counts and
                                # repeated reply openings; write nothing

One conversation a source line:

    {"domain": "cooking", "lang": "arabizi",
     "messages": [{"role": "user", "content": "…"}, {"role": "assistant", "content": "…"}, …],
     "memory": ["Karim"], "keywords": ["frik", "l7am"], "reply_lang": "english"}

`memory`, `keywords` and `reply_lang` are optional and describe the *last* reply: a string of
`memory` must appear in it (it depends on an earlier turn), `keywords` are topical stems of
which a good reply contains at least one, `reply_lang` is its language when it differs from the
one `lang` implies (a translation asked into another language).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import sys
import tempfile
from collections import Counter
from pathlib import Path

HERE = Path(__file__).resolve().parent
SOURCE = HERE / "source"
LANGS = ("arabizi", "arabic", "mixed", "french", "english")
# The language a reply is in when the user writes in `lang` (the reply follows the user;
# Darija with French mixed in is answered in Latin-letter Darija, French words welcome).
REPLY_LANG = {"arabizi": "arabizi", "arabic": "arabic", "mixed": "arabizi", "french": "french", "english": "english"}
REPLY_LANGS = ("arabizi", "arabic", "french", "english")
FIELDS = {"domain", "lang", "messages", "memory", "keywords", "reply_lang"}
TEST_MODULUS = 12  # a conversation whose id mod 12 == 0 goes to test (~8%)
MAX_USER_TURNS = 4


def conversation_id(messages: list[dict]) -> str:
    """First 16 hex digits of the SHA-256 of the user turns: a conversation keeps its id (and
    so its split) when only its replies are edited."""
    users = "\n".join(m["content"] for m in messages if m["role"] == "user")
    return hashlib.sha256(users.encode("utf-8")).hexdigest()[:16]


def is_test(conv_id: str) -> bool:
    return int(conv_id, 16) % TEST_MODULUS == 0


def _clean(text) -> str:
    return " ".join(str(text).split()) if isinstance(text, str) else ""


def parse(rec: dict, where: str) -> dict:
    """One source record, checked and normalised; every problem is a ValueError naming `where`."""
    if not isinstance(rec, dict):
        raise ValueError(f"{where}: a line must be a JSON object")
    unknown = set(rec) - FIELDS
    if unknown:
        raise ValueError(f"{where}: unknown field(s) {sorted(unknown)}; allowed: {sorted(FIELDS)}")
    domain = _clean(rec.get("domain"))
    if not re.fullmatch(r"[a-z][a-z0-9_]*", domain):
        raise ValueError(f"{where}: domain must be a snake_case name, got {rec.get('domain')!r}")
    lang = rec.get("lang")
    if lang not in LANGS:
        raise ValueError(f"{where}: lang must be one of {LANGS}, got {lang!r}")
    raw = rec.get("messages")
    if not isinstance(raw, list) or len(raw) < 2 or len(raw) % 2:
        raise ValueError(f"{where}: messages must be user/assistant pairs")
    messages = []
    for i, message in enumerate(raw):
        expected = "user" if i % 2 == 0 else "assistant"
        if not isinstance(message, dict) or set(message) != {"role", "content"}:
            raise ValueError(f"{where}: message {i + 1} must be {{\"role\", \"content\"}}")
        if message["role"] != expected:
            raise ValueError(f"{where}: message {i + 1} must be from the {expected} (turns alternate, user first)")
        content = _clean(message["content"])
        if not content:
            raise ValueError(f"{where}: message {i + 1} is empty")
        messages.append({"role": expected, "content": content})
    if len(messages) // 2 > MAX_USER_TURNS:
        raise ValueError(f"{where}: at most {MAX_USER_TURNS} user turns")
    out = {"id": conversation_id(messages), "domain": domain, "lang": lang, "messages": messages}
    for key in ("memory", "keywords"):
        if key in rec:
            values = rec[key]
            if not isinstance(values, list) or not values or not all(_clean(v) for v in values):
                raise ValueError(f"{where}: {key} must be a non-empty list of strings")
            out[key] = [_clean(v) for v in values]
    if "memory" in out:
        if len(messages) < 4:
            raise ValueError(f"{where}: memory needs an earlier turn to remember (2 or more user turns)")
        last = messages[-1]["content"].lower()
        if not any(v.lower() in last for v in out["memory"]):
            raise ValueError(f"{where}: the last reply contains none of its memory strings {out['memory']}")
    if "keywords" in out:
        last = messages[-1]["content"].lower()
        if not any(v.lower() in last for v in out["keywords"]):
            raise ValueError(f"{where}: the last reply contains none of its keywords {out['keywords']}")
    if "reply_lang" in rec:
        if rec["reply_lang"] not in REPLY_LANGS:
            raise ValueError(f"{where}: reply_lang must be one of {REPLY_LANGS}, got {rec['reply_lang']!r}")
        out["reply_lang"] = rec["reply_lang"]
    return out


def load_conversations(source: Path = SOURCE, parts: list[Path] | None = None) -> list[dict]:
    """Every conversation of every part (or of `parts`), in file then line order; a repeated
    conversation (the same user turns) is an error, so that a copy never hides in the data."""
    conversations: list[dict] = []
    seen: dict[str, str] = {}
    for part in parts if parts is not None else sorted(source.glob("part-*.jsonl")):
        for lineno, line in enumerate(part.read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip():
                continue
            where = f"{part.name}:{lineno}"
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ValueError(f"{where}: not JSON ({exc.msg})") from None
            conversation = parse(rec, where)
            if conversation["id"] in seen:
                raise ValueError(f"{where}: the same user turns as {seen[conversation['id']]}")
            seen[conversation["id"]] = where
            conversations.append(conversation)
    return conversations


def reply_lang(conversation: dict) -> str:
    """The language the conversation's last reply is in."""
    return conversation.get("reply_lang") or REPLY_LANG[conversation["lang"]]


def split(conversations: list[dict]) -> tuple[list[dict], list[dict]]:
    train = [c for c in conversations if not is_test(c["id"])]
    test = [c for c in conversations if is_test(c["id"])]
    return train, test


def _write_atomic(path: Path, conversations: list[dict]) -> None:
    text = "".join(json.dumps(c, ensure_ascii=False) + "\n" for c in conversations)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def opening(text: str, words: int = 3) -> str:
    """A reply's first words, lowercased: the same opening many times is a reused skeleton."""
    return " ".join(re.findall(r"\w+", text.lower())[:words])


def stats(conversations: list[dict]) -> str:
    n = len(conversations) or 1
    langs = Counter(c["lang"] for c in conversations)
    replies = [m["content"] for c in conversations for m in c["messages"] if m["role"] == "assistant"]
    multi = sum(1 for c in conversations if len(c["messages"]) >= 4)
    memory = sum(1 for c in conversations if "memory" in c)
    domains = Counter(c["domain"] for c in conversations)
    lines = [
        f"conversations {len(conversations)}, assistant turns {len(replies)}, "
        f"multi-turn {multi} ({multi / n:.0%}), with a memory check {memory} ({memory / n:.0%})",
        "lang: " + ", ".join(f"{lang} {langs[lang]} ({langs[lang] / n:.0%})" for lang in LANGS),
        f"domains ({len(domains)}): " + ", ".join(f"{d} {k}" for d, k in sorted(domains.items())),
    ]
    return "\n".join(lines)


def repeated_openings(conversations: list[dict], more_than: int = 4) -> list[tuple[str, int]]:
    counts = Counter(opening(m["content"]) for c in conversations for m in c["messages"] if m["role"] == "assistant")
    return [(o, k) for o, k in counts.most_common() if k > more_than]


def main(argv: list[str]) -> int:
    named = [Path(a) for a in argv if a != "--check"]
    try:
        conversations = load_conversations(parts=named or None)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if "--check" not in argv and not named:
        train, test = split(conversations)
        _write_atomic(HERE / "train.jsonl", train)
        _write_atomic(HERE / "test.jsonl", test)
        print(f"train {len(train)}, test {len(test)}")
    print(stats(conversations))
    repeats = repeated_openings(conversations)
    if repeats:
        print("reply openings used more than 4 times: " + "; ".join(f"{o!r} ×{k}" for o, k in repeats[:30]))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
