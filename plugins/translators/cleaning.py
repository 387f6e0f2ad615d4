"""Tidying what a chat model returns as "the translation": models wrap it in quotes or
code fences, put a label in front ("Translation:") or a note after it, however strictly
they are told not to. Shared by the Groq and the backend translators."""

from __future__ import annotations

import re

# Pairs a model wraps a whole answer in.
WRAPPERS = [('"', '"'), ("'", "'"), ("`", "`"), ("“", "”"), ("‘", "’"), ("«", "»"), ("„", "“"), ("**", "**")]
# Quote characters that are stray when they appear an odd number of times at an edge.
STRAY = '"`“”«»„'

_FENCE = re.compile(r"^```[\w-]*\s*\n?(.*?)\n?```$", re.DOTALL)
_LABEL = re.compile(
    r"^\s*(?:"
    r"(?:(?:sure|okay|ok)[,!.]?\s+)?here(?:'s| is| are)\s+(?:the|my|your)\s+"
    r"(?:english\s+|french\s+)?translations?\b[^:\n]*:"
    r"|(?:the\s+)?(?:english\s+|french\s+)?translation(?:\s+(?:in|into|to)\s+\w+)?\s*:"
    r"|(?:english|french|output)\s*:"
    r")\s*",
    re.IGNORECASE,
)
_NOTE_PARAGRAPH = re.compile(
    r"^\s*[(*_]*\s*(?:note|notes|explanation|translation note|literally|lit\.)\b", re.IGNORECASE
)
_TRAILING_NOTE = re.compile(r"\s*\((?:note|literally|lit\.|i\.e\.)[^()]*\)\s*$", re.IGNORECASE)


def clean_translation(text: str, single_line: bool = False) -> str:
    """The translation itself: fences, labels, trailing notes and wrapping or stray quotes
    removed. `single_line`: the source had one line, so only the answer's first line is
    the translation (small models go on to explain it on the next ones)."""
    text = text.strip()
    fenced = _FENCE.match(text)
    if fenced:
        text = fenced.group(1).strip()
    previous = None
    while text != previous:
        previous = text
        text = _LABEL.sub("", text, count=1).strip()
        text = _unwrap(text)
    paragraphs = [p.strip() for p in re.split(r"\n\s*\n", text) if p.strip()]
    kept = []
    for paragraph in paragraphs:
        if kept and _NOTE_PARAGRAPH.match(paragraph):
            break
        kept.append(paragraph)
    if single_line and kept:
        kept = [next(line.strip() for line in kept[0].splitlines() if line.strip())]
    text = "\n\n".join(kept)
    text = _TRAILING_NOTE.sub("", text).strip()
    return _strip_stray(_unwrap(text)).strip()


def _unwrap(text: str) -> str:
    changed = True
    while changed and text:
        changed = False
        for opening, closing in WRAPPERS:
            if len(text) >= len(opening) + len(closing) and text.startswith(opening) and text.endswith(closing):
                inner = text[len(opening): len(text) - len(closing)]
                # '"a" and "b"' is not wrapped in one pair of quotes
                if opening == closing and opening in inner:
                    continue
                text, changed = inner.strip(), True
                break
    return text


def _strip_stray(text: str) -> str:
    if text and text[0] in STRAY and text.count(text[0]) % 2 == 1:
        text = text[1:].lstrip()
    if text and text[-1] in STRAY and text.count(text[-1]) % 2 == 1:
        text = text[:-1].rstrip()
    return text
