"""Full-text search over a user's messages: the folding both sides share, the query's
terms, and the snippet shown for a hit.

Darija is written many ways: "Chorba", "chorba" and "CHORBA"; "été" and "ete"; "أكل" and
"اكل", "مدينة" and "مدينه", with or without harakat. Stores index `folded_words(content)`
and match each of the query's `terms` (folded the same way) against the start of a word,
so "chorb" finds "Chorba" and "اكل" finds "أكلة". The store matches; the snippet and its
highlights are made here, on the original text.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

from .errors import ValidationError
from .models import Conversation, Message

QUERY_MAX_CHARS = 200
TERMS_MAX = 8
SNIPPET_CHARS = 160  # around the first match

_LETTER_VARIANTS = str.maketrans({"أ": "ا", "إ": "ا", "آ": "ا", "ٱ": "ا", "ة": "ه", "ى": "ي", "ـ": None,
                                  "ؤ": "و", "ئ": "ي"})


def fold(text: str) -> str:
    """Lowercase, without diacritics, Arabic letter variants unified: for matching words
    across the spellings people use (é/e, أ/إ/آ/ا, ة/ه, ى/ي, tatweel and harakat dropped)."""
    text = unicodedata.normalize("NFKD", text.casefold())
    return "".join(ch for ch in text if not unicodedata.combining(ch)).translate(_LETTER_VARIANTS)


# A word: letters and digits ("_" separates, as in FTS5), with the combining marks and the
# tatweel that sit in it (harakat, shadda, Latin accents written apart).
_WORD = re.compile(r"(?:[^\W_]|[\u0300-\u036f\u0610-\u061a\u064b-\u065f\u0670\u06d6-\u06dc\u06df-\u06e4"
                   r"\u06e7\u06e8\u06ea-\u06ed\u0640])+")


def words(text: str) -> list[tuple[int, int, str]]:
    """(start, end, folded) of every word of `text`."""
    found = []
    for match in _WORD.finditer(text):
        folded = "".join(c for c in fold(match.group()) if c.isalnum())
        if folded:
            found.append((match.start(), match.end(), folded))
    return found


def folded_words(text: str) -> str:
    """What a store indexes for a message: its folded words, one space apart."""
    return " ".join(word for _, _, word in words(text))


def terms(query: object) -> list[str]:
    """The folded words a search looks for (each must start a word of a hit); a
    ValidationError for an empty or too long query."""
    if not isinstance(query, str) or not query.strip():
        raise ValidationError("the search is empty: type a word to look for")
    if len(query) > QUERY_MAX_CHARS:
        raise ValidationError(f"the search has {len(query)} characters; at most {QUERY_MAX_CHARS}")
    unique = list(dict.fromkeys(word for _, _, word in words(query)))
    if not unique:
        raise ValidationError("the search has no letters or digits to look for")
    return unique[:TERMS_MAX]


@dataclass(frozen=True)
class SearchHit:
    message: Message
    conversation: Conversation
    snippet: str
    highlights: list[tuple[int, int]]  # [start, end) in `snippet` of each matching word

    def to_json(self) -> dict:
        return {"conversation": self.conversation.model_dump(mode="json", include={"id", "title"}),
                "message": self.message.model_dump(mode="json", include={"id", "role", "timestamp"}),
                "snippet": self.snippet, "highlights": [list(span) for span in self.highlights]}

    def marked(self, before: str = "[", after: str = "]") -> str:
        """The snippet with each match between `before` and `after` (for a terminal)."""
        out, last = [], 0
        for start, end in self.highlights:
            out += [self.snippet[last:start], before, self.snippet[start:end], after]
            last = end
        return "".join([*out, self.snippet[last:]])


def snippet(content: str, wanted: list[str]) -> tuple[str, list[tuple[int, int]]]:
    """About SNIPPET_CHARS of `content` around its first matching word, cut at word
    boundaries ("…" where cut), and where the matching words are in it."""
    found = words(content)
    matching = [(s, e) for s, e, w in found if any(w.startswith(t) for t in wanted)]
    if not matching:  # the store matched what this cannot see (another folding): show the start
        matching = [(0, 0)]
    first = matching[0][0]
    start = max(0, first - SNIPPET_CHARS // 3)
    end = min(len(content), start + SNIPPET_CHARS)
    # Move the cuts out of the middle of a word.
    start = next((s for s, e, _ in found if s <= start < e), start)
    end = next((e for s, e, _ in found if s < end <= e), end)
    text = content[start:end]
    lead = "…" if start > 0 else ""
    spans = [(s - start + len(lead), e - start + len(lead)) for s, e in matching if start <= s and e <= end and e > s]
    shown = f"{lead}{text}{'…' if end < len(content) else ''}".replace("\n", " ")  # one line, same offsets
    return shown, spans


def hits(store, user_id: str, query: str, limit: int, offset: int) -> list[SearchHit]:
    """The user's messages that match `query`, newest first, with their conversations
    and snippets."""
    wanted = terms(query)
    messages = store.search_messages(user_id, wanted, limit=limit, offset=offset)
    conversations: dict[str, Conversation] = {}
    found = []
    for message in messages:
        if message.conversation_id not in conversations:
            conversations[message.conversation_id] = store.get_conversation(user_id, message.conversation_id)
        text, spans = snippet(message.content, wanted)
        found.append(SearchHit(message, conversations[message.conversation_id], text, spans))
    return found
