"""Segment files: the seed's `{"segments": [{"id", "text", "translation"?}]}`.

`read_segments` also takes a JSON list of segment objects or JSONL (one object a line);
`write_segments` writes one segment a line (readable, diffable) and atomically: a temp
file in the same directory, fsynced, then `os.replace`, so a reader — or a crash —
never sees half a file.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from pydantic import ValidationError as PydanticValidationError

from dziri.core.errors import ValidationError
from dziri.core.models import Segment


def write_segments(path: str | Path, segments: Iterable[Segment]) -> None:
    lines = [json.dumps(_segment_dict(segment), ensure_ascii=False) for segment in segments]
    body = "{\"segments\": [\n" + ",\n".join(lines) + ("\n" if lines else "") + "]}\n"
    write_atomically(Path(path), body)


def _segment_dict(segment: Segment) -> dict[str, Any]:
    data = {"id": segment.id, "text": segment.text}
    if segment.translation is not None:
        data["translation"] = segment.translation
    return data


def write_atomically(path: Path, text: str) -> None:
    """Replace `path` with `text` in one step; a crash leaves the old file or the new one."""
    directory = path.parent if str(path.parent) else Path(".")
    if not directory.is_dir():
        raise ValidationError(f"cannot write {path}: the directory {directory} does not exist")
    fd, temp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise
    fsync_directory(directory)


def fsync_directory(directory: Path) -> None:
    """Make a rename or unlink in `directory` durable (POSIX; a no-op where unsupported)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def read_segments(path: str | Path, what: str = "input") -> list[Segment]:
    """Segments from a JSON (`{"segments": [...]}` or a list) or JSONL file; one line of
    error naming the file and the line or record for anything else."""
    path = Path(path)
    if not path.is_file():
        problem = "does not exist" if not path.exists() else "is not a file"
        raise ValidationError(f"{what} file {path} {problem}")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ValidationError(f"{path} is not UTF-8 text (byte {exc.start})") from None
    except OSError as exc:
        raise ValidationError(f"cannot read {path}: {exc.strerror}") from None
    if path.suffix.lower() in (".jsonl", ".ndjson"):
        items = [(f"line {number}", load_json(line, path, number - 1))
                 for number, line in enumerate(text.splitlines(), 1) if line.strip()]
    else:
        data = load_json(text, path)
        if isinstance(data, dict) and isinstance(data.get("segments"), list):
            data = data["segments"]
        if not isinstance(data, list):
            raise ValidationError(f"{path}: expected {{\"segments\": [{{\"id\", \"text\"}}, ...]}}")
        items = [(f"segment {number}", item) for number, item in enumerate(data, 1)]
    segments = []
    for where, item in items:
        if not isinstance(item, dict) or "id" not in item or "text" not in item:
            raise ValidationError(f"{path}, {where}: expected an object with \"id\" and \"text\" "
                                  "(make one with `dziri data clean`)")
        try:
            segments.append(Segment.model_validate(
                {key: item[key] for key in ("id", "text", "translation") if key in item}, strict=True))
        except PydanticValidationError as exc:
            problem = exc.errors()[0]
            field = ".".join(str(part) for part in problem["loc"])
            raise ValidationError(f"{path}, {where}: {field}: {problem['msg']}") from None
    return segments


def load_json(text: str, path: Path, line_offset: int = 0) -> Any:
    """Parse JSON; a syntax error becomes one line naming the file, line and column."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValidationError(
            f"{path} is not valid JSON: line {exc.lineno + line_offset}, column {exc.colno}: {exc.msg}"
        ) from None
