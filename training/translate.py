"""`dziri data translate`: add a `translation` to every segment, through the configured
translator plugin, crash-safe and resumable.

What counts as done, on start: translations already in the input, in an earlier output
(same id, same text) and in the checkpoint (`OUT.partial.jsonl`). Only the rest is sent,
`batch_size` segments per translator call, in input order; `limit` caps how many are
sent in this run. Each finished batch is appended to the checkpoint (fsynced) before the
next call, so a kill at any moment loses at most the batch in flight. A batch whose call
raises TranslatorError is recorded as failed (ids and reason) and the run goes on; after
`max_failed_batches` failed batches in a row (a spent quota, a dead server) it stops. At
the end the output is written atomically — every input segment in input order, those
not (yet) translated without `translation` — and the checkpoint is removed; a re-run
sends only what is still missing.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from dziri.core.errors import TranslatorError, ValidationError
from dziri.core.models import Segment
from dziri.core.roles import Translator

from .checkpoint import Checkpoint, checkpoint_path
from .segments import read_segments, write_segments

SOURCE_LANGUAGE = "Algerian Arabic (Darija)"
TARGET_LANGUAGE = "English"
BATCH_SIZE = 20
MAX_FAILED_BATCHES = 3


@dataclass
class Failure:
    ids: list[str]
    reason: str


@dataclass
class TranslateReport:
    source: str
    output: str
    checkpoint: str
    translator: str = ""  # the plugin's name; empty when nothing had to be sent
    total: int = 0  # segments in the input
    done_before: int = 0  # translated by an earlier run (input, output or checkpoint)
    translated: int = 0  # by this run
    failures: list[Failure] = field(default_factory=list)
    left: int = 0  # not sent in this run (--limit, or the run stopped)
    seconds: float = 0.0
    stopped: str = ""  # why the run stopped early, if it did
    recovered_torn_bytes: int = 0
    unreadable_checkpoint_lines: int = 0
    stale: int = 0  # earlier translations ignored because their segment's text changed

    @property
    def failed(self) -> int:
        return sum(len(failure.ids) for failure in self.failures)

    @property
    def missing(self) -> int:
        return self.total - self.done_before - self.translated

    @property
    def rate(self) -> float:
        return self.translated / self.seconds if self.seconds > 0 else 0.0

    def to_dict(self) -> dict:
        return {
            "source": self.source, "output": self.output, "translator": self.translator, "total": self.total,
            "done_before": self.done_before, "translated": self.translated, "failed": self.failed,
            "left": self.left, "missing": self.missing, "seconds": round(self.seconds, 3),
            "segments_per_second": round(self.rate, 3), "stopped": self.stopped or None,
            "failures": [{"ids": f.ids, "reason": f.reason} for f in self.failures],
            "stale": self.stale, "recovered_torn_bytes": self.recovered_torn_bytes,
            "unreadable_checkpoint_lines": self.unreadable_checkpoint_lines,
        }

    def render(self) -> str:
        via = f" with the {self.translator} translator" if self.translator else ""
        lines = [f"translated {self.source} → {self.output}{via}",
                 f"  segments        {self.total:>8,}",
                 f"  done before     {self.done_before:>8,}",
                 f"  translated now  {self.translated:>8,}  in {self.seconds:.1f} s ({self.rate:.2f} segments/s)",
                 f"  failed          {self.failed:>8,}",
                 f"  not sent        {self.left:>8,}"]
        if self.stale:
            lines.append(f"  ({self.stale} earlier translations were of a different text and are redone)")
        if self.recovered_torn_bytes or self.unreadable_checkpoint_lines:
            lines.append(f"  (the checkpoint had a torn last line of {self.recovered_torn_bytes} bytes and "
                         f"{self.unreadable_checkpoint_lines} unreadable lines; they were skipped)")
        for failure in self.failures:
            lines.append(f"  FAILED {len(failure.ids)}: {_ids(failure.ids)}: {failure.reason}")
        if self.stopped:
            lines.append(f"  STOPPED: {self.stopped}")
        if self.missing == 0:
            lines.append(f"  all {self.total:,} segments are translated")
        else:
            lines.append(f"  {self.missing:,} segments still without a translation: run the same command again "
                         "to translate only those")
        return "\n".join(lines)


def _ids(ids: list[str], shown: int = 8) -> str:
    return ", ".join(str(i) for i in ids[:shown]) + (f", … ({len(ids) - shown} more)" if len(ids) > shown else "")


def translate_file(
    source: str | Path,
    output: str | Path,
    translator: Translator | Callable[[], Translator],
    *,
    batch_size: int = BATCH_SIZE,
    limit: int | None = None,
    source_language: str = SOURCE_LANGUAGE,
    target_language: str = TARGET_LANGUAGE,
    max_failed_batches: int = MAX_FAILED_BATCHES,
    progress: bool | None = None,
) -> TranslateReport:
    """Translate `source` into `output` (see the module docstring). `translator`: a
    Translator facade, or a function that makes one (called only if something is left
    to translate). `progress`: a tqdm bar; None shows it only on a terminal."""
    if batch_size < 1:
        raise ValidationError("the batch size must be at least 1")
    output = Path(output)
    segments = read_segments(source)
    _check_input(segments, source)
    if not output.absolute().parent.is_dir():
        raise ValidationError(f"cannot write {output}: the directory {output.parent} does not exist")
    checkpoint = Checkpoint(checkpoint_path(output))
    report = TranslateReport(source=str(source), output=str(output), checkpoint=str(checkpoint.path),
                             total=len(segments))
    texts = {segment.id: segment.text for segment in segments}
    done: dict[str, str] = {s.id: s.translation for s in segments if s.translation and s.translation.strip()}
    if output.exists():
        earlier = _earlier_output(output)
        report.stale += _take(done, earlier, texts)
    recovered = checkpoint.open()
    try:
        report.recovered_torn_bytes = recovered.torn_bytes
        report.unreadable_checkpoint_lines = recovered.unreadable_lines
        report.stale += _take(done, list(recovered.segments.values()), texts)
        report.done_before = len(done)
        todo = [segment for segment in segments if segment.id not in done]
        if limit is not None:
            todo = todo[:limit]
        report.left = report.total - report.done_before - len(todo)
        if todo:
            facade = translator if hasattr(translator, "translate") else translator()
            report.translator = getattr(facade, "name", "")
            _run_batches(todo, facade, checkpoint, done, report, batch_size=batch_size,
                         languages=(source_language, target_language), max_failed_batches=max_failed_batches,
                         progress=progress)
        write_segments(output, [segment.model_copy(update={"translation": done.get(segment.id)})
                                for segment in segments])
        checkpoint.remove()  # everything it held is in the output now
    finally:
        checkpoint.close(discard_if_empty=True)  # a run that failed before its first batch leaves no file
    return report


def _check_input(segments: list[Segment], source: str | Path) -> None:
    seen: set[str] = set()
    for segment in segments:
        if segment.id in seen:
            raise ValidationError(f"{source}: the id {segment.id!r} is used by more than one segment "
                                  "(ids must be unique: `dziri data clean` makes them so)")
        seen.add(segment.id)
        if not segment.text.strip():
            raise ValidationError(f"{source}: segment {segment.id!r} has an empty text "
                                  "(`dziri data clean` drops those)")


def _earlier_output(output: Path) -> list[Segment]:
    try:
        return read_segments(output, what="output")
    except ValidationError as exc:
        raise ValidationError(f"the output {output} already exists and is not a segments file, so it cannot be "
                              f"resumed from ({exc}): move it away or pick another output") from None


def _take(done: dict[str, str], earlier: list[Segment], texts: dict[str, str]) -> int:
    """Add earlier translations of segments still in the input with the same text;
    return how many were of a changed text (and so are translated again)."""
    stale = 0
    for segment in earlier:
        if not segment.translation or not segment.translation.strip() or segment.id not in texts:
            continue
        if texts[segment.id] != segment.text:
            stale += 1
            continue
        done.setdefault(segment.id, segment.translation)
    return stale


def _run_batches(todo: list[Segment], translator: Translator, checkpoint: Checkpoint, done: dict[str, str],
                 report: TranslateReport, *, batch_size: int, languages: tuple[str, str],
                 max_failed_batches: int, progress: bool | None) -> None:
    from tqdm import tqdm

    failed_in_a_row = 0
    started = time.monotonic()
    with tqdm(total=len(todo), unit=" seg", desc="translating", disable=None if progress is None else not progress,
              dynamic_ncols=True) as bar:
        for start in range(0, len(todo), batch_size):
            batch = todo[start:start + batch_size]
            try:
                results = translator.translate([s.model_copy(update={"translation": None}) for s in batch],
                                               *languages)
            except TranslatorError as exc:
                translated, failures = [], [Failure([s.id for s in batch], str(exc))]
            else:
                translated, failures = _match(batch, results)
            checkpoint.append(translated)
            for segment in translated:
                done[segment.id] = segment.translation
            report.translated += len(translated)
            report.failures += failures
            report.seconds = time.monotonic() - started
            bar.update(len(batch))
            bar.set_postfix(failed=report.failed, refresh=False)
            failed_in_a_row = 0 if translated else failed_in_a_row + 1
            if failed_in_a_row >= max_failed_batches and start + batch_size < len(todo):
                report.stopped = (f"{failed_in_a_row} batches in a row failed (last: {failures[-1].reason}); "
                                  "the rest was not sent")
                report.left += len(todo) - start - len(batch)
                break


def _match(batch: list[Segment], results: list[Segment] | None) -> tuple[list[Segment], list[Failure]]:
    """The batch's segments with the translations the plugin returned, by id; a missing
    or empty translation fails that segment alone."""
    by_id = {segment.id: segment.translation for segment in results or [] if isinstance(segment, Segment)}
    translated, missing, empty = [], [], []
    for segment in batch:
        translation = by_id.get(segment.id)
        if translation is None:
            missing.append(segment.id)
        elif not translation.strip():
            empty.append(segment.id)
        else:
            translated.append(segment.model_copy(update={"translation": translation}))
    failures = []
    if missing:
        failures.append(Failure(missing, "the translator returned no translation for them"))
    if empty:
        failures.append(Failure(empty, "the translator returned an empty translation"))
    return translated, failures
