"""The adapter card: the small JSON file shipped beside a GGUF LoRA that says what it is —
its base model (with the base GGUF's sha256 and licence), the data it was trained on (with
its hash), the recipe, the training figures and the held-out scores.

    python -m dziri.training.card RUN_DIR ADAPTER.gguf SCORES.json [SCORES.json ...]   # writes ADAPTER.json

RUN_DIR is a `dziri train` output (training.json), each SCORES.json what `dziri eval --both
--json` printed (a translation and a chat evaluation, filed under their task). `make adapter`
runs it after train, export and eval.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from dziri.plugins.backends.bundled import BUNDLED_MODELS, file_sha256

from .segments import write_atomically


def adapter_card(run_dir: Path, adapter_gguf: Path, scores: dict) -> dict:
    info = json.loads((run_dir / "training.json").read_text(encoding="utf-8"))
    base = {"name": info["base"], "gguf_file": Path(info.get("base_gguf", "")).name,
            "gguf_sha256": info.get("base_gguf_sha256"), "architecture": info.get("architecture")}
    bundled = BUNDLED_MODELS.get(info["base"])
    if bundled:
        base.update(description=bundled.description, licence=bundled.licence, install=bundled.install)
    return {
        "name": adapter_gguf.stem,
        "adapter": {"file": adapter_gguf.name, "sha256": file_sha256(adapter_gguf),
                    "bytes": adapter_gguf.stat().st_size, "format": "GGUF LoRA (llama.cpp adapter)"},
        "base_model": base,
        "data": info["data"],
        "tasks": info["tasks"],
        "engine": info["engine"],
        "recipe": info["recipe"],
        "seed": info["seed"],
        "training": info["figures"],
        "scores": scores,
        "reproduce": "make adapter",
    }


def main(argv: list[str]) -> None:
    if len(argv) < 3:
        raise SystemExit(__doc__)
    run_dir, adapter_gguf = Path(argv[0]), Path(argv[1])
    try:
        scores = {}
        for scores_file in argv[2:]:
            result = json.loads(Path(scores_file).read_text(encoding="utf-8"))
            scores[result.get("task", "translation")] = result
        card = adapter_card(run_dir, adapter_gguf, scores)
    except (OSError, ValueError, KeyError) as exc:
        raise SystemExit(f"cannot write the adapter card: {exc}") from None
    target = adapter_gguf.with_suffix(".json")
    write_atomically(target, json.dumps(card, indent=2, ensure_ascii=False) + "\n")
    print(f"wrote {target}")


if __name__ == "__main__":
    main(sys.argv[1:])
