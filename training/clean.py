"""`dziri data clean`: raw Darija texts → the seed's `{"segments": [{"id", "text"}]}`.

Each text goes through the rules of `RULES` in order; each rule counts the texts it
changed. Then texts with no letter left are dropped (`empty`), and so are texts equal,
ignoring case, to one kept before (`duplicates`). What is always kept: Arabic script
(presentation forms become the letters they stand for), Latin script with its accents,
and every digit — Arabizi writes letters with them ("3lach", "7aja", "9lbi", "sa7a").

Ids are a hash of the cleaned text, so the same text has the same id in every run and
in every file: the translate step and its checkpoint rely on that.
"""

from __future__ import annotations

import hashlib
import html
import re
import unicodedata
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from dziri.core.models import Segment

from .segments import write_segments
from .sources import open_source

ID_LENGTH = 16  # hex digits of sha256: 64 bits, so a collision needs billions of texts (and is still handled)

# -- normalisation -------------------------------------------------------------------------
TATWEEL = "\u0640"
# NFKC turns an isolated harakah (U+FE70…FE7E, U+FC5E…FC63) into a space plus the mark,
# which would leave the mark on the space, away from its letter: map those to the mark alone.
_HARAKAT_FORMS = {
    cp: unicodedata.normalize("NFKC", chr(cp)).lstrip(" ")
    for cp in [*range(0xFB50, 0xFE00), *range(0xFE70, 0xFF00)]
    if unicodedata.normalize("NFKC", chr(cp)).startswith(" ")
}
# Ligatures of whole phrases that NFKC leaves alone (they are symbols): write out the words.
_PHRASES = {0xFDFD: "بسم الله الرحمن الرحيم"}
_BEFORE_NFKC = {**_HARAKAT_FORMS, **_PHRASES}


def normalise_unicode(text: str) -> str:
    """HTML entities decoded; NFKC (Arabic presentation forms → letters, fullwidth and
    styled Latin → plain letters, composed accents); tatweel (elongation) removed."""
    text = html.unescape(text) if "&" in text else text
    text = unicodedata.normalize("NFKC", text.translate(_BEFORE_NFKC))
    return text.replace(TATWEEL, "")


# -- links, mentions, hashtags -------------------------------------------------------------
_LINK = re.compile(r"(?i)(?:\b(?:https?://|www\.)\S+|[\w.+-]+@[\w-]+(?:\.[\w-]+)*\.[a-z]{2,}\b)")
_MENTION = re.compile(r"(?<![\w@])@\w+(?:\.\w+)*")
_HASHTAG = re.compile(r"(?<![\w&#])#+(\w+)")


def remove_links(text: str) -> str:
    """http://, https:// and www. links, and e-mail addresses."""
    return _LINK.sub(" ", text)


def remove_mentions(text: str) -> str:
    return _MENTION.sub(" ", text)


def strip_hashtags(text: str) -> str:
    """`#wach_rak` → `wach rak`: the word stays, the sign goes."""
    return _HASHTAG.sub(lambda match: match.group(1).replace("_", " "), text)


# -- emojis and other symbols ---------------------------------------------------------------
_PICTOGRAPHS = (
    "\U0001f000-\U0001fbff"  # mahjong … flags, faces, people, animals, food, objects, symbols
    "\u2600-\u27bf"  # miscellaneous symbols and dingbats (☀ ☺ ✌ ❤ ✔)
    "\u2300-\u23ff"  # miscellaneous technical (⌚ ⏰ ⏳)
    "\u2b00-\u2bff"  # arrows and stars (⬅ ⭐ ⭕)
    "\u3030\u303d\u3297\u3299"
)
_MODIFIERS = "\ufe0e\ufe0f\u20e3\U000e0020-\U000e007f"  # presentation selectors, keycap, tags (skin tones are above)
_EMOJI = re.compile(
    rf"[0-9#*][\ufe0f]?\u20e3"  # keycaps: 3️⃣ is an emoji, not an Arabizi 3
    rf"|[{_PICTOGRAPHS}][{_MODIFIERS}]*(?:\u200d[{_PICTOGRAPHS}][{_MODIFIERS}]*)*"
    rf"|[{_MODIFIERS}]"
)
# ASCII emoticons standing alone: :) :-( ;) :D :p xD <3 ^^ ^_^
_EMOTICON = re.compile(r"(?<!\S)(?:[:;=][-']?[()\[\]DPpOo/\\|*]+|<3+|\^[_-]?\^|[xX][dD]+)(?!\S)")


def remove_emojis(text: str) -> str:
    return _EMOTICON.sub(" ", _EMOJI.sub(" ", text))


_SPACE_LIKE = {"\u200b"}  # zero-width space separates words: it becomes a space


def remove_symbols(text: str) -> str:
    """Other pictographic symbols (★ ♫ ۞), private-use and unassigned code points, lone
    surrogates, control characters and invisible format characters (bidi marks, ZWJ, BOM)."""
    if text.isascii() and text.isprintable():
        return text
    out = []
    for char in text:
        category = unicodedata.category(char)
        if char.isspace():
            out.append(char)  # the whitespace rule's business
        elif char in _SPACE_LIKE or category in ("So", "Co", "Cn", "Cs"):
            out.append(" ")
        elif category in ("Cc", "Cf"):
            continue
        else:
            out.append(char)
    return "".join(out)


_SPACES = re.compile(r"\s+")


def collapse_whitespace(text: str) -> str:
    """Runs of spaces, tabs and newlines become one space; none at either end."""
    return _SPACES.sub(" ", text).strip()


def has_letters(text: str) -> bool:
    return any(char.isalpha() for char in text)


# The rules that change a text, in the order they run: links before mentions and
# emojis (a URL holds "@", "#" and ":/"), whitespace last (the others leave gaps).
RULES: dict[str, Callable[[str], str]] = {
    "unicode": normalise_unicode,
    "links": remove_links,
    "mentions": remove_mentions,
    "hashtags": strip_hashtags,
    "emojis": remove_emojis,
    "symbols": remove_symbols,
    "whitespace": collapse_whitespace,
}
DROPS = ("empty", "duplicates")
DESCRIPTIONS = {
    "unicode": "normalised (NFKC, Arabic presentation forms, HTML entities, tatweel)",
    "links": "links and e-mail addresses removed",
    "mentions": "@mentions removed",
    "hashtags": "hashtag signs removed (the word stays)",
    "emojis": "emojis and emoticons removed",
    "symbols": "other symbols and invisible characters removed",
    "whitespace": "whitespace collapsed or trimmed",
    "empty": "dropped: empty or no letters left",
    "duplicates": "dropped: duplicate of an earlier text (ignoring case)",
}


def clean_text(text: str) -> tuple[str, list[str]]:
    """The cleaned text and the names of the rules that changed it."""
    touched = []
    for name, rule in RULES.items():
        cleaned = rule(text)
        if cleaned != text:
            touched.append(name)
            text = cleaned
    return text, touched


# -- ids -------------------------------------------------------------------------------------
def text_id(text: str, length: int = ID_LENGTH) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:length]


class IdAllocator:
    """Hash ids, lengthened on the (astronomically rare) collision of two different texts."""

    def __init__(self, length: int = ID_LENGTH):
        self.length = length
        self._texts: dict[str, str] = {}

    def __call__(self, text: str) -> str:
        digest = hashlib.sha256(text.encode("utf-8")).hexdigest()
        for length in range(self.length, len(digest) + 1, 4):
            candidate = digest[:length]
            if self._texts.setdefault(candidate, text) == text:
                return candidate
        raise AssertionError("a full sha256 collision")  # pragma: no cover


# -- the whole step --------------------------------------------------------------------------
@dataclass
class CleanReport:
    source: str = ""
    output: str = ""
    lines_in: int = 0
    lines_out: int = 0
    changed: dict[str, int] = field(default_factory=lambda: dict.fromkeys(RULES, 0))
    removed: dict[str, int] = field(default_factory=lambda: dict.fromkeys(DROPS, 0))

    def to_dict(self) -> dict:
        return asdict(self)

    def render(self) -> str:
        width = max(len(name) for name in DESCRIPTIONS)
        lines = [f"cleaned {self.source} → {self.output}",
                 f"  {'lines in':<{width}} {self.lines_in:>7,}",
                 f"  {'lines out':<{width}} {self.lines_out:>7,}",
                 f"  {'rule':<{width}} {'lines':>7}"]
        for name, count in [*self.changed.items(), *self.removed.items()]:
            lines.append(f"  {name:<{width}} {count:>7,}  {DESCRIPTIONS[name]}")
        return "\n".join(lines)


def clean_texts(texts: Iterable[str | None], report: CleanReport | None = None,
                id_length: int = ID_LENGTH) -> tuple[list[Segment], CleanReport]:
    """Clean raw texts (None counts as an empty line) into segments with stable ids."""
    report = report or CleanReport()
    new_id = IdAllocator(id_length)
    seen: set[str] = set()
    segments: list[Segment] = []
    for raw in texts:
        report.lines_in += 1
        text, touched = clean_text(raw or "")
        for name in touched:
            report.changed[name] += 1
        if not has_letters(text):
            report.removed["empty"] += 1
            continue
        key = text.casefold()
        if key in seen:
            report.removed["duplicates"] += 1
            continue
        seen.add(key)
        segments.append(Segment(id=new_id(text), text=text))
    report.lines_out = len(segments)
    return segments, report


def clean_file(source: str, output: str | Path, *, fmt: str | None = None, column: str | None = None,
               split: str = "train", progress: bool | None = None) -> CleanReport:
    """Read `source`, clean it, write `output` atomically; return the report.
    `progress`: a tqdm bar (None: only when stderr is a terminal)."""
    from tqdm import tqdm

    opened = open_source(source, fmt=fmt, column=column, split=split)
    report = CleanReport(source=opened.description, output=str(output))
    with tqdm(opened.records, total=opened.total, unit=" lines", desc="cleaning", disable=_no_bar(progress),
              leave=False) as records:
        segments, report = clean_texts((text for _, text in records), report)
    write_segments(output, segments)
    return report


def _no_bar(progress: bool | None) -> bool | None:
    return None if progress is None else not progress  # tqdm: disable=None means "only on a terminal"
