"""Reading raw texts for `dziri data clean`: a local JSON, JSONL, CSV/TSV or text file, or
a Hugging Face dataset (only where `datasets` is installed).

Every reader yields `(where, text)` pairs: `where` names the record for error messages
("line 12", "record 3"), `text` is the record's text or None when it has none.
"""

from __future__ import annotations

import csv
import logging
import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dziri.core.errors import ValidationError

from .segments import load_json

FORMATS = ("json", "jsonl", "csv", "tsv", "txt", "hf")
EXTENSIONS = {".json": "json", ".jsonl": "jsonl", ".ndjson": "jsonl", ".csv": "csv", ".tsv": "tsv", ".txt": "txt"}
# Column names a text column goes by, in order of preference (matched case-insensitively).
TEXT_COLUMNS = ("text", "darija", "sentence", "content", "message", "tweet", "comment", "body", "post", "review")
HF_PREFIX = "hf:"
_HF_NAME = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")
_TRAIN_EXTRA = "pip install 'dziri[train]'"


@dataclass
class TextSource:
    """What `open_source` found: the records, how many (if known up front), and where from."""

    records: Iterator[tuple[str, str | None]]
    total: int | None
    description: str


def open_source(source: str, *, fmt: str | None = None, column: str | None = None,
                split: str = "train") -> TextSource:
    """Open `source` (a path, or a Hugging Face dataset name: `hf:owner/name`, or
    `owner/name` where no such local path exists) and return its texts."""
    fmt = fmt or _detect_format(source)
    if fmt == "hf":
        return _hf_source(source.removeprefix(HF_PREFIX), split, column)
    path = Path(source)
    if not path.is_file():
        raise ValidationError(f"input file {path} does not exist" if not path.exists()
                              else f"input {path} is not a file")
    readers = {"json": _json_records, "jsonl": _jsonl_records, "txt": _txt_records}
    if fmt in ("csv", "tsv"):
        records, total = _csv_records(path, column, delimiter="\t" if fmt == "tsv" else ",")
    else:
        records, total = readers[fmt](path, column)
    return TextSource(records, total, str(path))


def _detect_format(source: str) -> str:
    if source.startswith(HF_PREFIX):
        return "hf"
    path = Path(source)
    suffix = path.suffix.lower()
    if suffix in EXTENSIONS:
        return EXTENSIONS[suffix]
    if path.exists():
        known = ", ".join(EXTENSIONS)
        raise ValidationError(f"unknown input format for {path}: name it {known}, or pass --format")
    if source.count("/") == 1 and _HF_NAME.match(source):
        return "hf"
    raise ValidationError(f"input file {path} does not exist (a Hugging Face dataset is named owner/name or hf:name)")


# -- JSON, JSONL --------------------------------------------------------------------------
def _read_text_file(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ValidationError(f"{path} is not UTF-8 text (byte {exc.start}): convert it to UTF-8") from None
    except OSError as exc:
        raise ValidationError(f"cannot read {path}: {exc.strerror}") from None


def _json_records(path: Path, column: str | None):
    data = load_json(_read_text_file(path), path)
    if isinstance(data, dict):
        if not isinstance(data.get("segments"), list):
            raise ValidationError(
                f"{path}: expected {{\"segments\": [...]}} or a JSON list of texts or objects, "
                f"got an object with keys {', '.join(map(repr, list(data)[:8])) or 'none'}"
            )
        data = data["segments"]
    if not isinstance(data, list):
        raise ValidationError(f"{path}: expected {{\"segments\": [...]}} or a JSON list, got {type(data).__name__}")
    picker = _ItemText(path, column, [item for item in data[:100] if isinstance(item, dict)])
    records = ((f"record {number}", picker.text(item, f"record {number}")) for number, item in enumerate(data, 1))
    return records, len(data)


def _jsonl_records(path: Path, column: str | None):
    lines = _read_text_file(path).splitlines()
    items: list[tuple[int, Any]] = []
    for number, line in enumerate(lines, 1):
        if line.strip():
            items.append((number, load_json(line, path, line_offset=number - 1)))
    picker = _ItemText(path, column, [item for _, item in items[:100] if isinstance(item, dict)])
    records = ((f"line {number}", picker.text(item, f"line {number}")) for number, item in items)
    return records, len(items)


class _ItemText:
    """The text of one JSON item: a string, or an object's text field (`--column`, or
    detected from the first objects)."""

    def __init__(self, path: Path, column: str | None, sample: list[dict]):
        self.path = path
        self.column = column
        if column is None and sample:
            keys = list(dict.fromkeys(key for item in sample for key in item))
            self.column = pick_text_column(keys, path, sample)

    def text(self, item: Any, where: str) -> str | None:
        if isinstance(item, str) or item is None:
            return item
        if not isinstance(item, dict):
            raise ValidationError(f"{self.path}, {where}: expected a text or an object, got {type(item).__name__}")
        if self.column is None:
            self.column = pick_text_column(list(item), self.path, [item])
        if self.column not in item:
            raise ValidationError(f"{self.path}, {where}: no {self.column!r} field (fields: {_names(item)})")
        return _as_text(item[self.column], self.path, where)


def pick_text_column(columns: list[str], where: Path | str, sample: list[dict] | None = None) -> str:
    """The text column: a conventional name (`text`, `sentence`, …), else the only column
    whose values are strings; otherwise ask for --column."""
    by_lower = {name.lower(): name for name in columns}
    for candidate in TEXT_COLUMNS:
        if candidate in by_lower:
            return by_lower[candidate]
    if sample:
        textual = [name for name in columns if any(isinstance(row.get(name), str) for row in sample)]
        if len(textual) == 1:
            return textual[0]
    elif len(columns) == 1:
        return columns[0]
    raise ValidationError(f"{where}: cannot tell which column holds the text (columns: {_names(columns)}): "
                          "pass --column NAME")


def _names(columns) -> str:
    names = list(columns)
    shown = ", ".join(map(repr, names[:12])) + (", …" if len(names) > 12 else "")
    return shown or "none"


def _as_text(value: Any, path: Path | str, where: str) -> str | None:
    if value is None or isinstance(value, str):
        return value
    raise ValidationError(f"{path}, {where}: the text is a {type(value).__name__}, not a string")


# -- CSV, TSV, plain text -----------------------------------------------------------------
def _csv_records(path: Path, column: str | None, delimiter: str = ","):
    text = _read_text_file(path)
    csv.field_size_limit(min(sys.maxsize, 2**31 - 1))  # long posts are texts too
    rows = csv.reader(text.splitlines(keepends=True), delimiter=delimiter)
    header = next(rows, None)
    if not header:
        raise ValidationError(f"{path} is empty: a CSV file needs a header row naming its columns")
    header = [name.strip() for name in header]
    if column is None:
        column = pick_text_column(header, path)
    elif column not in header:
        raise ValidationError(f"{path}: no column {column!r} (columns: {_names(header)})")
    index = header.index(column)

    def records():
        try:
            for row in rows:
                if not any(cell.strip() for cell in row):
                    yield f"line {rows.line_num}", None
                    continue
                if index >= len(row):
                    raise ValidationError(f"{path}, line {rows.line_num}: {len(row)} columns, "
                                          f"the header has {len(header)}")
                yield f"line {rows.line_num}", row[index]
        except csv.Error as exc:
            raise ValidationError(f"{path}, line {rows.line_num}: not valid CSV: {exc}") from None

    return records(), None


def _txt_records(path: Path, column: str | None):
    if column is not None:
        raise ValidationError(f"{path} is plain text (one text per line): --column does not apply")
    lines = _read_text_file(path).splitlines()
    return ((f"line {number}", line) for number, line in enumerate(lines, 1)), len(lines)


# -- Hugging Face datasets ---------------------------------------------------------------
def _hf_source(name: str, split: str, column: str | None) -> TextSource:
    try:
        import datasets  # only for this input kind: an optional extra
    except ImportError:
        raise ValidationError(
            f"loading the Hugging Face dataset {name!r} needs the `datasets` package: {_TRAIN_EXTRA}"
        ) from None
    hub_log = logging.getLogger("huggingface_hub")
    level = hub_log.level
    hub_log.setLevel(logging.ERROR)  # each network retry would print a warning: the user gets one line
    try:
        dataset = datasets.load_dataset(name, split=split)
    except Exception as exc:  # network, unknown name, unknown split: one line, whatever the cause
        raise ValidationError(f"cannot load the Hugging Face dataset {name!r} (split {split!r}): "
                              f"{type(exc).__name__}: {exc}") from None
    finally:
        hub_log.setLevel(level)
    columns = list(dataset.column_names)
    if column is None:
        column = pick_text_column(columns, f"dataset {name}")
    elif column not in columns:
        raise ValidationError(f"dataset {name}: no column {column!r} (columns: {_names(columns)})")
    where = f"dataset {name}"
    records = ((f"row {number}", _as_text(row[column], where, f"row {number}"))
               for number, row in enumerate(dataset, 1))
    return TextSource(records, len(dataset), f"{name} ({split})")
