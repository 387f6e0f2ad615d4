"""`dziri data translate`: batches through the translator plugin, the checkpoint, resuming
(after a failure, a Ctrl+C, a torn line and a real `kill -9` of the command), --limit,
failures and their report, input errors, the CLI."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
from collections import Counter
from pathlib import Path

import pytest
from fakes.translators import RecordingTranslator

from dziri.core.errors import ConfigError, ValidationError
from dziri.core.hookspecs import hookimpl
from dziri.core.models import PluginContext
from dziri.core.roles import facade_for
from dziri.training.checkpoint import Checkpoint, checkpoint_path
from dziri.training.translate import translate_file

TEXTS = [
    "wach rak khouya?", "3lach ma jitch lbareh?", "واش راك؟", "c'est vrai, had l7aja ta3 9lbi", "sa7a ftourek",
    "وين راك ساكن؟", "rani f la fac", "ana mlih w nta?", "kilo ta3 tmatem b 200 da", "nhabek bzaf a yemma",
    "ma3lich, ghodwa nchoufou", "الجو سخون اليوم",
]


def make_input(path: Path, texts=TEXTS, **extra) -> list[dict]:
    segments = [{"id": f"s{n:02d}", "text": text, **extra} for n, text in enumerate(texts)]
    path.write_text(json.dumps({"segments": segments}, ensure_ascii=False), encoding="utf-8")
    return segments


def recording(tmp_path, **settings) -> tuple[RecordingTranslator, object]:
    plugin = RecordingTranslator(RecordingTranslator.Settings(**settings), PluginContext(data_dir=tmp_path))
    return plugin, facade_for("translator", plugin, "recording")


def read_output(path: Path) -> list[dict]:
    return json.loads(path.read_text(encoding="utf-8"))["segments"]


@pytest.fixture
def data(tmp_path):
    make_input(tmp_path / "in.json")
    return tmp_path / "in.json", tmp_path / "out.json"


def test_translates_every_segment_in_batches_and_keeps_input_order(tmp_path, data):
    source, out = data
    plugin, translator = recording(tmp_path)
    report = translate_file(source, out, translator, batch_size=5)
    assert [len(call) for call in plugin.calls] == [5, 5, 2]
    segments = read_output(out)
    assert [s["id"] for s in segments] == [f"s{n:02d}" for n in range(12)]
    assert all(s["translation"] == "EN: " + s["text"] for s in segments)
    assert (report.total, report.translated, report.done_before, report.failed, report.missing) == (12, 12, 0, 0, 0)
    assert report.translator == "recording"
    assert not checkpoint_path(out).exists()
    assert "all 12 segments are translated" in report.render()


def test_the_checkpoint_grows_one_fsynced_batch_at_a_time(tmp_path, data):
    source, out = data
    seen = []

    class Watching(RecordingTranslator):
        @hookimpl
        def translator_translate(self, segments):
            path = checkpoint_path(out)
            seen.append(len(path.read_text(encoding="utf-8").splitlines()))
            return super().translator_translate(segments)

    plugin = Watching(Watching.Settings(), PluginContext(data_dir=tmp_path))
    translate_file(source, out, facade_for("translator", plugin, "watching"), batch_size=4)
    assert seen == [0, 4, 8]  # what was on disk when each call began


def test_resumes_from_the_checkpoint_and_sends_only_the_rest(tmp_path, data):
    source, out = data
    Path(checkpoint_path(out)).write_text(
        json.dumps({"id": "s00", "text": TEXTS[0], "translation": "How are you, brother?"}) + "\n"
        + json.dumps({"id": "s03", "text": TEXTS[3], "translation": "it's true"}) + "\n", encoding="utf-8")
    plugin, translator = recording(tmp_path)
    report = translate_file(source, out, translator, batch_size=20)
    assert sorted(i for call in plugin.calls for i in call) == [f"s{n:02d}" for n in range(12) if n not in (0, 3)]
    by_id = {s["id"]: s["translation"] for s in read_output(out)}
    assert by_id["s00"] == "How are you, brother?" and by_id["s03"] == "it's true"
    assert report.done_before == 2 and report.translated == 10


def test_a_torn_last_line_is_ignored_and_cut_off(tmp_path, data):
    source, out = data
    good = json.dumps({"id": "s01", "text": TEXTS[1], "translation": "why didn't you come?"}) + "\n"
    torn = json.dumps({"id": "s02", "text": TEXTS[2], "translation": "how are you?"}, ensure_ascii=False)[:25]
    path = checkpoint_path(out)
    path.write_bytes(good.encode() + torn.encode())

    checkpoint = Checkpoint(path)
    recovered = checkpoint.open()
    assert list(recovered.segments) == ["s01"] and recovered.torn_bytes == len(torn.encode())
    assert path.read_bytes() == good.encode()  # cut: the next line starts clean
    checkpoint.close()

    path.write_bytes(good.encode() + torn.encode())
    plugin, translator = recording(tmp_path)
    report = translate_file(source, out, translator)
    assert report.recovered_torn_bytes == len(torn.encode()) and report.done_before == 1
    assert Counter(i for call in plugin.calls for i in call)["s02"] == 1
    assert [s["id"] for s in read_output(out)] == [f"s{n:02d}" for n in range(12)]


def test_a_last_line_missing_only_its_newline_is_kept_and_unreadable_lines_skipped(tmp_path, data):
    source, out = data
    line = json.dumps({"id": "s05", "text": TEXTS[5], "translation": "where do you live?"})
    checkpoint_path(out).write_text("\x00\x00garbage\n" + line, encoding="utf-8")
    plugin, translator = recording(tmp_path)
    report = translate_file(source, out, translator)
    assert report.done_before == 1 and report.unreadable_checkpoint_lines == 1
    assert "s05" not in {i for call in plugin.calls for i in call}


def test_a_finished_output_is_not_translated_again(tmp_path, data):
    source, out = data
    translate_file(source, out, recording(tmp_path)[1])

    def must_not_be_created():
        raise AssertionError("the translator is created only when something is left to translate")

    report = translate_file(source, out, must_not_be_created)
    assert report.done_before == 12 and report.translated == 0 and report.translator == ""
    assert all(s["translation"] for s in read_output(out))


def test_a_crash_between_writing_the_output_and_removing_the_checkpoint(tmp_path, data):
    source, out = data
    plugin, translator = recording(tmp_path)
    translate_file(source, out, translator, batch_size=5)
    lines = [json.dumps(s, ensure_ascii=False) for s in read_output(out)]
    checkpoint_path(out).write_text("\n".join(lines) + "\n", encoding="utf-8")
    again, translator = recording(tmp_path)
    report = translate_file(source, out, translator)
    assert again.calls == [] and report.missing == 0 and not checkpoint_path(out).exists()


def test_a_segment_whose_text_changed_is_translated_again(tmp_path, data):
    source, out = data
    translate_file(source, out, recording(tmp_path)[1])
    texts = list(TEXTS)
    texts[4] = "sa7a ftourek ya l7aja"
    make_input(source, texts)
    plugin, translator = recording(tmp_path)
    report = translate_file(source, out, translator)
    assert plugin.calls == [["s04"]] and report.stale == 1
    assert read_output(out)[4]["translation"] == "EN: sa7a ftourek ya l7aja"


def test_translations_already_in_the_input_are_kept(tmp_path):
    segments = make_input(tmp_path / "in.json")
    segments[0]["translation"] = "How are you, brother?"
    (tmp_path / "in.json").write_text(json.dumps({"segments": segments}), encoding="utf-8")
    plugin, translator = recording(tmp_path)
    translate_file(tmp_path / "in.json", tmp_path / "out.json", translator)
    assert "s00" not in {i for call in plugin.calls for i in call}
    assert read_output(tmp_path / "out.json")[0]["translation"] == "How are you, brother?"


def test_limit_translates_at_most_n_more(tmp_path, data):
    source, out = data
    plugin, translator = recording(tmp_path)
    report = translate_file(source, out, translator, batch_size=2, limit=5)
    assert [len(call) for call in plugin.calls] == [2, 2, 1]
    assert (report.translated, report.left, report.missing) == (5, 7, 7)
    assert [("translation" in s) for s in read_output(out)] == [True] * 5 + [False] * 7
    assert "7 segments still without a translation" in report.render()
    plugin.calls.clear()
    report = translate_file(source, out, translator, batch_size=2, limit=5)
    assert [i for call in plugin.calls for i in call] == [f"s{n:02d}" for n in range(5, 10)]
    assert translate_file(source, out, translator, limit=0).translated == 0
    translate_file(source, out, translator)
    assert all(s["translation"] for s in read_output(out))


def test_a_failed_batch_is_reported_the_run_goes_on_and_a_rerun_retries_only_it(tmp_path, data):
    source, out = data
    plugin, translator = recording(tmp_path, fail_marker="l7aja")  # in s03, so the batch s02..s03 fails
    report = translate_file(source, out, translator, batch_size=2)
    assert len(plugin.calls) == 6
    assert [(f.ids, f.reason) for f in report.failures] == [
        (["s02", "s03"], "the fake service refused a text with 'l7aja'")]
    assert (report.translated, report.failed, report.missing) == (10, 2, 2)
    assert "FAILED 2: s02, s03: the fake service refused" in report.render()
    assert [("translation" in s) for s in read_output(out)] == [True, True, False, False] + [True] * 8
    plugin, translator = recording(tmp_path)
    report = translate_file(source, out, translator, batch_size=2)
    assert plugin.calls == [["s02", "s03"]] and report.missing == 0


def test_missing_and_empty_translations_fail_those_segments_alone(tmp_path, data):
    source, out = data
    plugin, translator = recording(tmp_path, drop_marker="fac", empty_marker="200 da")
    report = translate_file(source, out, translator, batch_size=20)
    assert [(f.ids, f.reason) for f in report.failures] == [
        (["s06"], "the translator returned no translation for them"),
        (["s08"], "the translator returned an empty translation"),
    ]
    assert report.translated == 10


def test_the_run_stops_after_failed_batches_in_a_row(tmp_path, data):
    source, out = data
    plugin, translator = recording(tmp_path, fail_marker=" ")  # every batch fails
    report = translate_file(source, out, translator, batch_size=2, max_failed_batches=2)
    assert len(plugin.calls) == 2
    assert report.stopped.startswith("2 batches in a row failed (last: the fake service refused")
    assert (report.failed, report.left, report.missing) == (4, 8, 12)


def test_ctrl_c_keeps_the_finished_batches(tmp_path, data):
    source, out = data

    class Interrupted(RecordingTranslator):
        @hookimpl
        def translator_translate(self, segments):
            if len(self.calls) == 2:
                raise KeyboardInterrupt
            return super().translator_translate(segments)

    plugin = Interrupted(Interrupted.Settings(), PluginContext(data_dir=tmp_path))
    with pytest.raises(KeyboardInterrupt):
        translate_file(source, out, facade_for("translator", plugin, "interrupted"), batch_size=3)
    assert not out.exists()
    assert len(checkpoint_path(out).read_text().splitlines()) == 6
    plugin, translator = recording(tmp_path)
    translate_file(source, out, translator, batch_size=3)
    assert [i for call in plugin.calls for i in call] == [f"s{n:02d}" for n in range(6, 12)]


def test_a_translator_that_cannot_start_leaves_no_checkpoint(tmp_path, data):
    source, out = data

    def no_key():
        raise ConfigError("the Groq translator needs an API key")

    with pytest.raises(ConfigError):
        translate_file(source, out, no_key)
    assert not checkpoint_path(out).exists() and not out.exists()


def test_two_runs_on_one_output_cannot_interleave(tmp_path, data):
    source, out = data
    held = Checkpoint(checkpoint_path(out))
    held.open()
    try:
        with pytest.raises(ValidationError, match="another `dziri data translate` is writing"):
            translate_file(source, out, recording(tmp_path)[1])
    finally:
        held.close()


def test_jsonl_input(tmp_path):
    lines = [json.dumps({"id": f"j{n}", "text": text}, ensure_ascii=False) for n, text in enumerate(TEXTS[:3])]
    (tmp_path / "in.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    translate_file(tmp_path / "in.jsonl", tmp_path / "out.json", recording(tmp_path)[1])
    assert [s["id"] for s in read_output(tmp_path / "out.json")] == ["j0", "j1", "j2"]


@pytest.mark.parametrize(("content", "message"), [
    (None, "input file in.json does not exist"),
    ('{"segments": [{"id": "a", "text": "x"},\n{"id": "b" "text": "y"}]}', "in.json is not valid JSON: line 2"),
    ('["wach rak", "labas"]', 'segment 1: expected an object with "id" and "text"'),
    ('{"segments": [{"id": 1.5, "text": "x"}]}', "segment 1: id: Value error, must be a string or an integer"),
    ('{"segments": [{"id": true, "text": "x"}]}', "segment 1: id: Value error, must be a string or an integer"),
    ('{"segments": [{"id": "a", "text": "x"}, {"id": "a", "text": "y"}]}', "the id 'a' is used by more than one"),
    ('{"segments": [{"id": "a", "text": "  "}]}', "segment 'a' has an empty text"),
])
def test_bad_input_is_one_clear_error(tmp_path, content, message):
    if content is not None:
        (tmp_path / "in.json").write_text(content, encoding="utf-8")
    with pytest.raises(ValidationError) as caught:
        translate_file("in.json", "out.json", recording(tmp_path)[1])
    assert message in str(caught.value) and "\n" not in str(caught.value)
    assert not (tmp_path / "out.json").exists() and not checkpoint_path(tmp_path / "out.json").exists()


def test_the_seeds_integer_ids_are_read_and_written_back_as_integers(tmp_path):
    """The seed's cleaned_data.json numbers its segments; its result.json adds "translation"."""
    seed = {"segments": [{"id": 1073, "text": "wach rak?"}, {"id": 1074, "text": "واش راك؟"},
                         {"id": "x1", "text": "labas"}]}
    (tmp_path / "cleaned_data.json").write_text(json.dumps(seed, ensure_ascii=False), encoding="utf-8")
    plugin, translator = recording(tmp_path, fail_marker="واش")
    first = translate_file(tmp_path / "cleaned_data.json", tmp_path / "result.json", translator, batch_size=1)
    assert first.failed == 1
    written = read_output(tmp_path / "result.json")
    assert [s["id"] for s in written] == [1073, 1074, "x1"] and "translation" not in written[1]
    translate_file(tmp_path / "cleaned_data.json", tmp_path / "result.json", recording(tmp_path)[1], batch_size=1)
    assert [s["id"] for s in read_output(tmp_path / "result.json")] == [1073, 1074, "x1"]
    # 1 and "1" are two ids, as JSON keeps them apart.
    (tmp_path / "two.json").write_text('{"segments": [{"id": 1, "text": "a"}, {"id": "1", "text": "b"}]}')
    translate_file(tmp_path / "two.json", tmp_path / "two-out.json", recording(tmp_path)[1])
    assert [s["id"] for s in read_output(tmp_path / "two-out.json")] == [1, "1"]


def test_an_existing_output_that_is_not_a_segments_file_is_not_overwritten(tmp_path, data):
    source, out = data
    out.write_text("my notes, not segments", encoding="utf-8")
    with pytest.raises(ValidationError, match="already exists and is not a segments file"):
        translate_file(source, out, recording(tmp_path)[1])
    assert out.read_text(encoding="utf-8") == "my notes, not segments"


def test_an_output_directory_that_does_not_exist(tmp_path, data):
    source, _ = data
    with pytest.raises(ValidationError, match="cannot write .*out.json: the directory .*nowhere does not exist"):
        translate_file(source, tmp_path / "nowhere" / "out.json", recording(tmp_path)[1])


def test_progress_bar_when_asked(tmp_path, data, capsys):
    source, out = data
    translate_file(source, out, recording(tmp_path)[1], progress=True)
    assert "translating" in capsys.readouterr().err


# -- the command, in a subprocess ------------------------------------------------------------
def test_cli_translates_with_the_configured_translator(tmp_path, dziri):
    make_input(tmp_path / "in.json")
    result = dziri("data", "translate", "in.json", "out.json", "--batch-size", "5", env={"DZIRI_TRANSLATOR": "echo"})
    assert result.returncode == 0, result.stderr
    assert "with the echo translator" in result.stdout and "all 12 segments are translated" in result.stdout
    assert all(s["translation"] == s["text"] for s in read_output(tmp_path / "out.json"))
    result = dziri("data", "translate", "in.json", "out.json", "--json", env={"DZIRI_TRANSLATOR": "echo"})
    report = json.loads(result.stdout)
    assert (report["done_before"], report["translated"], report["missing"]) == (12, 0, 0)


def test_cli_lists_failures_exits_1_and_a_rerun_retries_only_those(tmp_path, dziri, one_line_error):
    make_input(tmp_path / "in.json")
    log = tmp_path / "calls.log"
    env = {"DZIRI_TRANSLATOR": "recording", "DZIRI_TRANSLATOR__RECORDING__LOG_PATH": str(log),
           "DZIRI_TRANSLATOR__RECORDING__FAIL_MARKER": "l7aja"}
    result = dziri("data", "translate", "in.json", "out.json", "--batch-size", "2", env=env)
    one_line_error(result, "2 segment(s) failed to translate", "run the same command again")
    assert "FAILED 2: s02, s03: the fake service refused a text with 'l7aja'" in result.stdout
    log.unlink()
    result = dziri("data", "translate", "in.json", "out.json", "--batch-size", "2",
                   env={**env, "DZIRI_TRANSLATOR__RECORDING__FAIL_MARKER": ""})
    assert result.returncode == 0, result.stderr
    assert log.read_text().splitlines() == ["start s02 s03", "done s02", "done s03"]


def test_cli_errors_are_one_line(tmp_path, dziri, one_line_error):
    one_line_error(dziri("data", "translate", "nope.json", "out.json"), "Error: input file nope.json does not exist")
    make_input(tmp_path / "in.json")
    one_line_error(dziri("data", "translate", "in.json", "out.json", env={"DZIRI_TRANSLATOR": "groq"}),
                   "needs an API key in the environment variable GROQ_API_KEY")
    assert not checkpoint_path(tmp_path / "out.json").exists()


# -- kill -9 ---------------------------------------------------------------------------------
def start_translate(dziri, tmp_path, log: Path, delay_s: float, batch_size: int) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": dziri.pythonpath, "DZIRI_TRANSLATOR": "recording",
           "DZIRI_TRANSLATOR__RECORDING__LOG_PATH": str(log), "DZIRI_TRANSLATOR__RECORDING__DELAY_S": str(delay_s)}
    return subprocess.Popen([dziri.executable, "data", "translate", "in.json", "out.json", "--batch-size",
                             str(batch_size)], cwd=tmp_path, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)


def log_lines(log: Path) -> list[str]:
    return log.read_text(encoding="utf-8").splitlines() if log.exists() else []


def wait_until(condition, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up after {timeout} s")
        time.sleep(0.005)


def kill(process: subprocess.Popen) -> None:
    process.send_signal(signal.SIGKILL)
    assert process.wait(timeout=30) == -signal.SIGKILL


def check_output_complete(out: Path, count: int) -> None:
    segments = read_output(out)
    assert [s["id"] for s in segments] == [f"s{n:02d}" for n in range(count)]  # none lost, none twice, in order
    assert all(s["translation"] == "EN: " + s["text"] for s in segments)
    assert not checkpoint_path(out).exists()


def test_kill_9_during_a_translator_call_then_rerun_loses_nothing_and_translates_nothing_twice(tmp_path, dziri):
    texts = [f"{TEXTS[n % len(TEXTS)]} ({n})" for n in range(30)]
    make_input(tmp_path / "in.json", texts)
    log = tmp_path / "calls.log"
    process = start_translate(dziri, tmp_path, log, delay_s=0.5, batch_size=3)
    try:
        # Killed while the 4th call (or a later one, on a slow machine) is in flight.
        wait_until(lambda: (lines := log_lines(log)) and sum(x.startswith("start") for x in lines) >= 4
                   and lines[-1].startswith("start"))
    finally:
        kill(process)
    lines = log_lines(log)
    assert lines[-1].startswith("start")  # the kill came in the middle of a call
    finished = 3 * (sum(x.startswith("start") for x in lines) - 1)
    assert not (tmp_path / "out.json").exists()
    assert len(checkpoint_path(tmp_path / "out.json").read_text().splitlines()) == finished

    result = dziri("data", "translate", "in.json", "out.json", "--batch-size", "3",
                   env={"DZIRI_TRANSLATOR": "recording", "DZIRI_TRANSLATOR__RECORDING__LOG_PATH": str(log)})
    assert result.returncode == 0, result.stderr
    assert re.search(rf"done before +{finished}\n +translated now +{30 - finished} ", result.stdout)
    check_output_complete(tmp_path / "out.json", 30)
    done = Counter(line.split()[1] for line in log_lines(log) if line.startswith("done"))
    assert sorted(done) == [f"s{n:02d}" for n in range(30)] and set(done.values()) == {1}


def test_kill_9_at_any_moment_then_rerun_finishes_the_job(tmp_path, dziri):
    count, batch_size = 24, 2
    make_input(tmp_path / "in.json", [f"{TEXTS[n % len(TEXTS)]} ({n})" for n in range(count)])
    log = tmp_path / "calls.log"
    kills = 0
    # Kill after the command has made 1, 3, 5, … calls, plus a short random wait: at a start, inside a
    # call, between a call and its checkpoint write, while the output is written.
    for calls_before_kill in (1, 3, 5, 7, 9, 11, 12):
        process = start_translate(dziri, tmp_path, log, delay_s=0.02, batch_size=batch_size)
        try:
            wait_until(lambda n=calls_before_kill, p=process: p.poll() is not None
                       or sum(x.startswith("start") for x in log_lines(log)) >= n)
            time.sleep(0.002 * calls_before_kill)
        finally:
            if process.poll() is None:
                kill(process)
                kills += 1
        lines = checkpoint_path(tmp_path / "out.json").read_text().splitlines() \
            if checkpoint_path(tmp_path / "out.json").exists() else []
        ids = [json.loads(line)["id"] for line in lines if line.endswith("}")]
        assert len(ids) == len(set(ids))  # never a segment twice in the checkpoint
    assert kills >= 3
    result = dziri("data", "translate", "in.json", "out.json", "--batch-size", str(batch_size),
                   env={"DZIRI_TRANSLATOR": "recording", "DZIRI_TRANSLATOR__RECORDING__LOG_PATH": str(log)})
    assert result.returncode == 0, result.stderr
    check_output_complete(tmp_path / "out.json", count)
    done = Counter(line.split()[1] for line in log_lines(log) if line.startswith("done"))
    assert sorted(done) == [f"s{n:02d}" for n in range(count)]
    # A kill can only cost the batch in flight: at most one batch redone per kill.
    assert sum(done.values()) - count <= kills * batch_size
