"""From translated segments to instruction examples, and the held-out split.

One prompt wording, `translation_messages`, is shared by training and by `dziri eval`, so
the adapter is measured on exactly what it learnt. Each pair gives up to three examples:
Darija → English, English → Darija, and a chat turn under the chat's system prompt (what
the served model sees), all rendered with the base model's chat template (Gemma: the turn
format in plugins/backends/turn_formats.py). The loss is on the answer only.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence

from dziri.core.config import DEFAULT_SYSTEM_PROMPT
from dziri.core.models import ChatMessage, Role, Segment

DARIJA = "Algerian Darija"
ENGLISH = "English"
TASKS = ("darija_to_english", "english_to_darija", "chat")
CHAT_SHARE = 3_334  # of 10,000: the pairs that also give a chat turn

# The chat turn's wording varies with the pair (chosen by its id), so the model learns the
# task, not one sentence; the wording mixes Arabizi, Arabic script and French as users do.
_CHAT_QUESTIONS = (
    "chno ya3ni hadi b l'anglais: {text}",
    "kifach nqoulou b l'anglais: {text}",
    "traduisi liya: {text}",
    "واش معناها بالإنجليزية: {text}",
)
_CHAT_ANSWERS = ("In English: {translation}", "It means: {translation}")


def translation_messages(text: str, source: str = DARIJA, target: str = ENGLISH) -> list[ChatMessage]:
    """The one prompt for a translation, in training and in evaluation."""
    prompt = f"Translate this {source} text into {target}. Reply with the translation only.\n\n{text}"
    return [ChatMessage(role=Role.USER, content=prompt)]


def split_heldout(segments: Sequence[Segment], fraction: float) -> tuple[list[Segment], list[Segment]]:
    """(train, held-out) by a hash of each id: stable across runs and independent of order,
    so a segment that is held out once is never trained on by a later run of the same data."""
    if not 0 <= fraction < 1:
        raise ValueError(f"the held-out fraction must be in [0, 1), got {fraction}")
    threshold = int(fraction * 10_000)
    train, heldout = [], []
    for segment in segments:
        (heldout if _bucket(segment.id, "heldout") < threshold else train).append(segment)
    return train, heldout


def build_examples(segments: Iterable[Segment], tasks: Sequence[str] = TASKS) -> list[dict]:
    """trl's conversational prompt–completion rows: {"prompt": [...], "completion": [...]}."""
    unknown = set(tasks) - set(TASKS)
    if unknown:
        raise ValueError(f"unknown task(s) {sorted(unknown)}; choose from {', '.join(TASKS)}")
    rows = []
    for segment in segments:
        if not segment.translation:
            continue
        text, translation = segment.text.strip(), segment.translation.strip()
        if "darija_to_english" in tasks:
            rows.append(_row(translation_messages(text, DARIJA, ENGLISH), translation))
        if "english_to_darija" in tasks:
            rows.append(_row(translation_messages(translation, ENGLISH, DARIJA), text))
        # A chat turn repeats the ~50-token system prompt; one pair in three carries it, which
        # teaches the served format at a third of the cost.
        if "chat" in tasks and _bucket(segment.id, "chat") < CHAT_SHARE:
            question = _CHAT_QUESTIONS[_bucket(segment.id, "question") % len(_CHAT_QUESTIONS)]
            answer = _CHAT_ANSWERS[_bucket(segment.id, "answer") % len(_CHAT_ANSWERS)]
            prompt = [
                ChatMessage(role=Role.SYSTEM, content=DEFAULT_SYSTEM_PROMPT),
                ChatMessage(role=Role.USER, content=question.format(text=text)),
            ]
            rows.append(_row(prompt, answer.format(translation=translation)))
    return rows


def _row(prompt: list[ChatMessage], answer: str) -> dict:
    return {
        "prompt": [{"role": m.role.value, "content": m.content} for m in prompt],
        "completion": [{"role": "assistant", "content": answer}],
    }


def _bucket(segment_id: str, purpose: str) -> int:
    digest = hashlib.sha256(f"{purpose}:{segment_id}".encode()).digest()
    return int.from_bytes(digest[:4], "big") % 10_000
