"""From translated segments and conversations to training examples, and the held-out split.

An example is a conversation (`{"messages": [...]}`) with the loss on every assistant turn:

- translation tasks, from the pairs: Darija → English and English → Darija, each one user
  turn in the one prompt wording `translation_messages` that `dziri eval` also uses, so the
  adapter is measured on exactly what it learnt;
- chat, from the conversations: the served system prompt (what `ChatService` sends), then
  every turn, the model learning each of its replies, not only the last.

`tokenize_example` renders an example with the base model's chat template (Gemma: the turn
format in plugins/backends/turn_formats.py, the one the llama.cpp backend serves) and marks
the tokens of each reply, its end-of-turn included, as the ones to learn.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence

from dziri.core.errors import TrainingError
from dziri.core.models import ChatMessage, Role, Segment

from .conversations import Conversation

DARIJA = "Algerian Darija"
ENGLISH = "English"
TRANSLATION_TASKS = ("darija_to_english", "english_to_darija")
TASKS = (*TRANSLATION_TASKS, "chat")


def translation_messages(text: str, source: str = DARIJA, target: str = ENGLISH) -> list[ChatMessage]:
    """The one prompt for a translation, in training and in evaluation."""
    prompt = f"Translate this {source} text into {target}. Reply with the translation only.\n\n{text}"
    return [ChatMessage(role=Role.USER, content=prompt)]


def split_heldout(items: Sequence, fraction: float) -> tuple[list, list]:
    """(train, held-out) by a hash of each item's id (segments, conversations): stable across
    runs and independent of order, so an item held out once is never trained on by a later
    run of the same data."""
    if not 0 <= fraction < 1:
        raise ValueError(f"the held-out fraction must be in [0, 1), got {fraction}")
    threshold = int(fraction * 10_000)
    train, heldout = [], []
    for item in items:
        (heldout if _bucket(item.id, "heldout") < threshold else train).append(item)
    return train, heldout


def translation_examples(segments: Iterable[Segment], tasks: Sequence[str] = TRANSLATION_TASKS) -> list[dict]:
    """One example per pair and translation task asked for."""
    unknown = set(tasks) - set(TASKS)
    if unknown:
        raise ValueError(f"unknown task(s) {sorted(unknown)}; choose from {', '.join(TASKS)}")
    examples = []
    for segment in segments:
        if not segment.translation:
            continue
        text, translation = segment.text.strip(), segment.translation.strip()
        if "darija_to_english" in tasks:
            examples.append(_example(translation_messages(text, DARIJA, ENGLISH), translation, segment.id))
        if "english_to_darija" in tasks:
            examples.append(_example(translation_messages(translation, ENGLISH, DARIJA), text, segment.id))
    return examples


def chat_examples(conversations: Iterable[Conversation], system_prompt: str) -> list[dict]:
    """Each conversation under the served system prompt, every reply learnt."""
    examples = []
    for conversation in conversations:
        if not conversation.has_replies:
            continue
        messages = [{"role": "system", "content": system_prompt}, *(dict(m) for m in conversation.messages)]
        examples.append({"messages": messages, "source": f"chat:{conversation.id}"})
    return examples


def mix_examples(translation: list[dict], chat: list[dict], translation_share: float | None) -> list[dict]:
    """Chat and translation examples together. `translation_share` (of all examples) keeps
    that share of translation examples, drawn by a hash of each (or repeated, when there
    are too few); None keeps every example as it is."""
    if translation_share is None or not chat or not translation:
        return [*chat, *translation]
    if not 0 <= translation_share < 1:
        raise ValueError(f"translation_share must be in [0, 1), got {translation_share}")
    wanted = round(translation_share / (1 - translation_share) * len(chat))
    ranked = sorted(translation, key=lambda e: _bucket(e["source"] + e["messages"][0]["content"], "mix"))
    chosen = ranked * (wanted // len(ranked)) + ranked[: wanted % len(ranked)]
    return [*chat, *chosen]


def _example(prompt: list[ChatMessage], answer: str, source_id: str) -> dict:
    messages = [{"role": m.role.value, "content": m.content} for m in prompt]
    return {"messages": [*messages, {"role": "assistant", "content": answer}], "source": f"pair:{source_id}"}


def tokenize_example(messages: list[dict], tokenizer) -> dict:
    """{"input_ids", "assistant_masks"}: the conversation as the chat template renders it, 1
    on the tokens of every assistant reply (through its end-of-turn marker), 0 elsewhere."""
    text = tokenizer.apply_chat_template(messages, tokenize=False)
    spans = []
    for index, message in enumerate(messages):
        if message["role"] != "assistant":
            continue
        before = tokenizer.apply_chat_template(messages[:index], tokenize=False, add_generation_prompt=True)
        through = tokenizer.apply_chat_template(messages[: index + 1], tokenize=False)
        if not (through.startswith(before) and text.startswith(through)):
            raise TrainingError("the chat template does not render a conversation turn by turn; "
                                "the replies to learn cannot be located")
        spans.append((len(before), len(through.rstrip())))  # the newline after the turn is not the reply's
    encoded = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    mask = [int(any(start <= begin < end for start, end in spans)) for begin, _ in encoded["offset_mapping"]]
    return {"input_ids": encoded["input_ids"], "assistant_masks": mask}


def _bucket(key: str, purpose: str) -> int:
    digest = hashlib.sha256(f"{purpose}:{key}".encode()).digest()
    return int.from_bytes(digest[:4], "big") % 10_000
