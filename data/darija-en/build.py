"""Build the dziri Darija→English set: source/part-*.jsonl → train.json + test.json.

Stdlib only and deterministic: the same parts always give the same files.

    python data/darija-en/build.py
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import tempfile
from collections import Counter
from pathlib import Path

HERE = Path(__file__).resolve().parent
SOURCE = HERE / "source"
SCRIPTS = ("arabizi", "arabic", "mixed")
TEST_MODULUS = 10  # an id whose value mod 10 == 0 goes to test (~10%)


def segment_id(text: str) -> str:
    """First 16 hex digits of the SHA-256 of the text (as in `dziri data clean`)."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def is_test(seg_id: str) -> bool:
    return int(seg_id, 16) % TEST_MODULUS == 0


def load_pairs(source: Path = SOURCE) -> list[dict]:
    """Every record of every part, in file then line order, exact duplicates dropped."""
    pairs: list[dict] = []
    seen: set[str] = set()
    for part in sorted(source.glob("part-*.jsonl")):
        for lineno, line in enumerate(part.read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip():
                continue
            where = f"{part.name}:{lineno}"
            rec = json.loads(line)
            text = " ".join(str(rec.get("text", "")).split())
            translation = " ".join(str(rec.get("translation", "")).split())
            script = rec.get("script")
            if not text or not translation:
                raise ValueError(f"{where}: empty text or translation")
            if script not in SCRIPTS:
                raise ValueError(f"{where}: script must be one of {SCRIPTS}, got {script!r}")
            if text in seen:
                continue
            seen.add(text)
            pairs.append({"id": segment_id(text), "text": text,
                          "translation": translation, "script": script})
    ids = [p["id"] for p in pairs]
    if len(set(ids)) != len(ids):  # never seen in practice; fail loudly rather than guess
        raise ValueError("two different texts share a 16-hex id prefix")
    return pairs


def split(pairs: list[dict]) -> tuple[list[dict], list[dict]]:
    train = [p for p in pairs if not is_test(p["id"])]
    test = [p for p in pairs if is_test(p["id"])]
    return train, test


def _write_atomic(path: Path, segments: list[dict]) -> None:
    body = {"segments": [{k: s[k] for k in ("id", "text", "translation")} for s in segments]}
    text = '{"segments": [\n' + ",\n".join(
        json.dumps(s, ensure_ascii=False) for s in body["segments"]) + "\n]}\n"
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def main() -> int:
    pairs = load_pairs()
    train, test = split(pairs)
    _write_atomic(HERE / "train.json", train)
    _write_atomic(HERE / "test.json", test)
    for name, part in (("train", train), ("test", test), ("total", pairs)):
        counts = Counter(p["script"] for p in part)
        detail = ", ".join(f"{s} {counts[s]}" for s in SCRIPTS)
        print(f"{name}: {len(part)} ({detail})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
