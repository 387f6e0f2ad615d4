"""The translate step's checkpoint: an append-only JSONL file next to the output, one
line `{"id", "text", "translation"}` per translated segment.

Each batch's lines go out in one write, then flush and fsync, before the next batch is
asked for: whatever was translated before a crash or a `kill -9` is on disk, and a
re-run skips it. A torn last line (power loss, a full disk) is dropped on opening and
cut from the file, so the next append starts on a clean line. An exclusive lock keeps
two runs from writing the same checkpoint.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from dziri.core.errors import ValidationError
from dziri.core.models import Segment

from .segments import fsync_directory

try:  # POSIX; elsewhere two runs on one output are the user's to avoid
    import fcntl
except ImportError:  # pragma: no cover
    fcntl = None

SUFFIX = ".partial.jsonl"


def checkpoint_path(output: str | Path) -> Path:
    output = Path(output)
    return output.with_name(output.name + SUFFIX)


@dataclass
class Recovered:
    """What opening found in an existing checkpoint."""

    segments: dict[str, Segment]  # id → translated segment (a later line wins)
    torn_bytes: int = 0  # an unfinished last line, cut off
    unreadable_lines: int = 0  # complete lines that are not a translated segment, skipped


class Checkpoint:
    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._file: BinaryIO | None = None

    def open(self) -> Recovered:
        """Lock the checkpoint (creating it), read what it holds, cut a torn tail."""
        try:
            self._file = open(self.path, "a+b")  # noqa: SIM115 - held open for the whole run
        except OSError as exc:
            raise ValidationError(f"cannot open the checkpoint {self.path}: {exc.strerror}") from None
        if fcntl is not None:
            try:
                fcntl.flock(self._file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                self.close()
                raise ValidationError(
                    f"another `dziri data translate` is writing {self.path} (it is locked): "
                    "wait for it to finish, or pick another output file"
                ) from None
        self._file.seek(0)
        data = self._file.read()
        recovered = Recovered(segments={})
        complete_end = data.rfind(b"\n") + 1
        for line in data[:complete_end].splitlines():
            segment = _parse(line)
            if segment is None:
                recovered.unreadable_lines += int(bool(line.strip()))
            else:
                recovered.segments[segment.id] = segment
        tail = data[complete_end:]
        if tail:
            segment = _parse(tail)
            if segment is not None:  # complete but for its newline: keep it, finish the line
                recovered.segments[segment.id] = segment
                self._write(b"\n")
            else:
                recovered.torn_bytes = len(tail)
                self._file.truncate(complete_end)
                os.fsync(self._file.fileno())
        return recovered

    def append(self, segments: list[Segment]) -> None:
        """Record translated segments durably, in one write."""
        if not segments:
            return
        lines = b"".join(
            json.dumps({"id": s.id, "text": s.text, "translation": s.translation}, ensure_ascii=False)
            .encode("utf-8") + b"\n"
            for s in segments
        )
        self._write(lines)

    def _write(self, data: bytes) -> None:
        assert self._file is not None, "open() the checkpoint first"
        self._file.write(data)
        self._file.flush()
        os.fsync(self._file.fileno())

    def remove(self) -> None:
        """Delete the checkpoint (its contents are in the output now), then release it."""
        self.path.unlink(missing_ok=True)
        fsync_directory(self.path.parent)
        self.close()

    def close(self, discard_if_empty: bool = False) -> None:
        if self._file is None:
            return
        if discard_if_empty and self._file.seek(0, os.SEEK_END) == 0:
            self.path.unlink(missing_ok=True)  # while still locked: no other run is using it
        self._file.close()  # closing releases the lock
        self._file = None


def _parse(line: bytes) -> Segment | None:
    try:
        item = json.loads(line.decode("utf-8"))
        segment = Segment.model_validate(item, strict=True)
    except (UnicodeDecodeError, ValueError):  # pydantic's ValidationError is a ValueError
        return None
    if not isinstance(segment.translation, str) or not segment.translation.strip():
        return None
    return segment
