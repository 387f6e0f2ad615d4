"""The project-made Darija chat set in data/darija-chat/: its size, mixes and split, that the
built files are the build of the sources, and that its replies follow the user's language
(read by the same detector `dziri eval --task chat` scores with)."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from dziri.training.chat_eval import accepted_languages
from dziri.training.conversations import read_conversations
from dziri.training.language import detect

DATA = Path(__file__).resolve().parents[2] / "data" / "darija-chat"


@pytest.fixture(scope="module")
def build(build_script):
    return build_script(DATA)


@pytest.fixture(scope="module")
def built(build):
    return build.load_conversations()


@pytest.fixture(scope="module")
def splits() -> dict[str, list[dict]]:
    return {name: [json.loads(line) for line in (DATA / f"{name}.jsonl").read_text(encoding="utf-8").splitlines()]
            for name in ("train", "test")}


def test_size_turns_and_memory(built):
    assert len(built) >= 3000
    assert sum(len(c["messages"]) // 2 for c in built) >= 5000  # assistant turns
    with_memory = [c for c in built if "memory" in c]
    assert len(with_memory) >= len(built) / 4
    assert all(2 <= len(c["messages"]) // 2 <= 4 for c in with_memory)


def test_language_mix_is_how_algerians_write(built):
    share = Counter(c["lang"] for c in built)
    n = len(built)
    assert 0.40 <= share["arabizi"] / n <= 0.50
    assert 0.25 <= share["arabic"] / n <= 0.35
    assert 0.12 <= share["mixed"] / n <= 0.18
    assert 0.07 <= (share["french"] + share["english"]) / n <= 0.13


def test_at_least_40_domains_each_with_many_conversations(built):
    domains = Counter(c["domain"] for c in built)
    assert len(domains) >= 40
    assert min(domains.values()) >= 25, domains.most_common()[-5:]


def test_no_reply_skeleton_is_reused_much(build, built):
    # The same three opening words on more than 1% of the replies would be a template.
    replies = sum(len(c["messages"]) // 2 for c in built)
    assert all(count < replies / 100 for _, count in build.repeated_openings(built))


def test_the_test_split_is_fixed_by_id_and_large_enough(build, splits):
    every = splits["train"] + splits["test"]
    assert len(splits["test"]) >= 200
    assert not {c["id"] for c in splits["train"]} & {c["id"] for c in splits["test"]}
    for conversation in every:
        assert conversation["id"] == build.conversation_id(conversation["messages"])
        assert build.is_test(conversation["id"]) == (conversation in splits["test"])


def test_outputs_match_the_sources(build, built, splits):
    """train.jsonl and test.jsonl are the current build of source/ (re-run build.py after editing it)."""
    train, test = build.split(built)
    assert train == splits["train"] and test == splits["test"]


def test_replies_follow_the_users_language(built):
    """The data teaches what the eval asks: nearly every last reply is read as the language
    the item expects (the rest are mostly bare quotations, a translation asked for)."""
    conversations = read_conversations(DATA / "test.jsonl") + read_conversations(DATA / "train.jsonl")
    matching = [detect(c.messages[-1]["content"]) in accepted_languages(c) for c in conversations]
    assert sum(matching) / len(matching) >= 0.97


def test_files_load_as_conversation_files():
    for name in ("train", "test"):
        conversations = read_conversations(DATA / f"{name}.jsonl", need_replies=True)
        assert all(c.lang and c.has_replies for c in conversations)
