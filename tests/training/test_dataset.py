"""The project-made Darija→English set in data/darija-en/: size, uniqueness, the fixed
split, the mix of scripts, and that train.json/test.json read as segment files."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from dziri.training.segments import read_segments

DATA = Path(__file__).resolve().parents[2] / "data" / "darija-en"


@pytest.fixture(scope="module")
def build(build_script):
    return build_script(DATA)


@pytest.fixture(scope="module")
def splits() -> dict[str, list[dict]]:
    return {name: json.loads((DATA / f"{name}.json").read_text(encoding="utf-8"))["segments"]
            for name in ("train", "test")}


def test_at_least_3000_pairs(splits):
    assert len(splits["train"]) + len(splits["test"]) >= 3000


def test_every_pair_has_text_and_translation(splits):
    for segment in splits["train"] + splits["test"]:
        assert set(segment) == {"id", "text", "translation"}
        assert segment["text"].strip() and segment["translation"].strip(), segment


def test_ids_and_texts_are_unique_and_no_id_in_both_splits(splits):
    every = splits["train"] + splits["test"]
    assert len({s["id"] for s in every}) == len(every)
    assert len({s["text"] for s in every}) == len(every)
    assert not {s["id"] for s in splits["train"]} & {s["id"] for s in splits["test"]}


def test_split_is_what_build_py_produces(build, splits):
    every = splits["train"] + splits["test"]
    for segment in every:
        assert segment["id"] == build.segment_id(segment["text"])
    train, test = build.split(every)
    assert [s["id"] for s in train] == [s["id"] for s in splits["train"]]
    assert [s["id"] for s in test] == [s["id"] for s in splits["test"]]
    assert 0.05 <= len(test) / len(every) <= 0.15


def test_outputs_match_the_sources(build, splits):
    """train.json and test.json are the current build of source/ (re-run build.py after editing it)."""
    train, test = build.split(build.load_pairs())
    for built, name in ((train, "train"), (test, "test")):
        assert [(p["id"], p["text"], p["translation"]) for p in built] == [
            (s["id"], s["text"], s["translation"]) for s in splits[name]]


def test_each_script_is_at_least_15_percent(build):
    pairs = build.load_pairs()
    counts = Counter(p["script"] for p in pairs)
    for script in build.SCRIPTS:
        assert counts[script] / len(pairs) >= 0.15, (script, counts)


def test_files_load_as_segment_files(splits):
    for name in ("train", "test"):
        segments = read_segments(DATA / f"{name}.json")
        assert len(segments) == len(splits[name])
        assert all(s.translation for s in segments)
