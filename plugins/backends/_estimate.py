"""A conservative token count for backends whose server has no tokenizer endpoint
(Ollama's API has none; most OpenAI-compatible servers have none either).

ChatService uses the count to keep a conversation's history inside the model's context
window, so an under-count is the dangerous error: the prompt would overflow, and the
server would cut it (Ollama drops the oldest turns, not always the ones we would) or
refuse it (vLLM). An over-count only keeps a little less history. The estimate is
therefore an upper bound calibrated on the *least* efficient tokenizer dziri meets,
SmolLM2's English-centric 49k BPE (the embedded model), which splits many Arabic letters
into their two UTF-8 bytes and every digit on its own. Measured on Darija samples it
spends 0.9–1.2 tokens per Arabic-script character and 0.45–0.55 per Arabizi letter. The
estimate is at or above it on every sample in the tests (2–35% above on Darija in either
script; a test checks this whenever the embedded model is installed). Larger
vocabularies — Gemma 3 (262k), Qwen 2.5 (152k), Llama 3 (128k) — need fewer tokens for
the same text, so for them the estimate errs on the safe side; on plain English it is
about 2.5× too high.

Per character, in tokens:

- an ASCII letter: 0.6;
- an ASCII digit, punctuation mark or symbol: 1;
- a space before a letter: 0.25 (BPE merges it into the word's first token); any other
  whitespace: 1 (spaces before digits or punctuation, newlines and tabs stand alone);
- an Arabic-script letter or mark: 1.25; an Arabic-Indic digit: 2;
- an accented Latin letter (é, ç, à …): 1;
- anything else (other scripts, emoji): one per byte of its UTF-8 encoding, what a
  byte-level BPE with no merges for that script spends.

Each message adds `PER_MESSAGE` tokens for the chat template's role markers (ChatML's
`<|im_start|>user\\n … <|im_end|>\\n`, Gemma's and Llama 3's are five tokens), and the
prompt `PER_PROMPT` for the begin-of-text token and the header that opens the reply.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

from dziri.core.models import ChatMessage

PER_MESSAGE = 5
PER_PROMPT = 6

ASCII_LETTER = 0.6
ASCII_OTHER = 1.0
SPACE_BEFORE_LETTER = 0.25
OTHER_WHITESPACE = 1.0
ARABIC = 1.25
ARABIC_DIGIT = 2.0
LATIN_ACCENTED = 1.0

_ARABIC_BLOCKS = ((0x0600, 0x06FF), (0x0750, 0x077F), (0x08A0, 0x08FF), (0xFB50, 0xFDFF), (0xFE70, 0xFEFF))
_ARABIC_DIGITS = ((0x0660, 0x0669), (0x06F0, 0x06F9))


def _within(code: int, blocks: tuple[tuple[int, int], ...]) -> bool:
    return any(low <= code <= high for low, high in blocks)


def _char_tokens(char: str, following: str) -> float:
    if char.isspace():
        return SPACE_BEFORE_LETTER if char == " " and following.isalpha() else OTHER_WHITESPACE
    if char.isascii():
        return ASCII_LETTER if char.isalpha() else ASCII_OTHER
    code = ord(char)
    if _within(code, _ARABIC_DIGITS):
        return ARABIC_DIGIT
    if _within(code, _ARABIC_BLOCKS):
        return ARABIC
    if code < 0x0250:  # Latin-1 Supplement and Latin Extended-A/B
        return LATIN_ACCENTED
    return float(len(char.encode("utf-8")))


def estimate_text_tokens(text: str) -> int:
    """An upper estimate of the tokens `text` takes on its own."""
    total = sum(_char_tokens(char, text[i + 1 : i + 2]) for i, char in enumerate(text))
    return math.ceil(total)


def estimate_prompt_tokens(messages: Iterable[ChatMessage]) -> int:
    """An upper estimate of the tokens of a chat prompt made of `messages`."""
    return PER_PROMPT + sum(PER_MESSAGE + estimate_text_tokens(m.content) for m in messages)
