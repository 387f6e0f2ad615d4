"""Training speed of the CPU engine (`dziri train`, engine peft): bf16 against fp32.

On the same base model, data, LoRA recipe and batches, in one run, one after the other:
  fp32:  the base and the step in fp32 (`[training] precision = "fp32"`)
  bf16:  the frozen base in bf16 and the step under bf16 autocast, LoRA weights and optimizer
         state in fp32 (`precision = "bf16"`, the default where the CPU has bf16 instructions)
Prints real (non-padding) tokens/s of each after warm-up steps, the held-out loss of each after
the same number of steps (the same held-out examples), and the ratios: bf16/fp32 tokens/s
(target >= 2.5) and the held-out loss difference (target within 2%).

    .venv/bin/python bench/train_speed.py [--base gemma3-270m] [--steps 12] [--warmup 2]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch
from transformers import TrainerCallback

from dziri.core.config import DEFAULT_SYSTEM_PROMPT, TrainingSettings
from dziri.plugins.backends.llamacpp import available_cpus
from dziri.training.conversations import read_conversations
from dziri.training.engines import PeftEngine, cpu_has_bf16
from dziri.training.instructions import chat_examples, mix_examples, split_heldout, translation_examples
from dziri.training.segments import read_segments
from dziri.training.sft import resolve_recipe

DATA = Path(__file__).resolve().parent.parent / "data"
PAIRS = DATA / "darija-en" / "train.json"
CHATS = DATA / "darija-chat" / "train.jsonl"
HELDOUT_EXAMPLES = 64  # of each kind


class StepTimer(TrainerCallback):
    def __init__(self):
        self.times: list[float] = []
        self._start = 0.0

    def on_step_begin(self, args, state, control, **kwargs):
        self._start = time.perf_counter()

    def on_step_end(self, args, state, control, **kwargs):
        self.times.append(time.perf_counter() - self._start)


def real_tokens(batch: dict) -> int:
    if "attention_mask" in batch:
        return int(batch["attention_mask"].sum())
    return int(batch["position_ids"].numel())


def run(settings: TrainingSettings, data_dir: Path, examples: list[dict], heldout: dict, warmup: int):
    """(tokens/s after the warm-up, median s/step, held-out losses) of one trainer."""
    recipe = resolve_recipe(settings)
    engine = PeftEngine()
    model, tokenizer, _ = engine.load(recipe, settings, data_dir)
    with tempfile.TemporaryDirectory() as checkpoints:
        trainer = engine.trainer(model, tokenizer, recipe, settings, Path(checkpoints), examples, heldout)
        per_step = recipe.gradient_accumulation_steps  # micro-batches per optimizer step
        batches = [b for b, _ in zip(trainer.get_train_dataloader(), range(settings.max_steps * per_step),
                                     strict=False)]
        timer = StepTimer()
        trainer.add_callback(timer)
        trainer.args.save_strategy = "no"
        trainer.train()
        metrics = trainer.evaluate()
    tokens = [sum(real_tokens(b) for b in batches[i:i + per_step]) for i in range(0, len(batches), per_step)][warmup:]
    seconds = timer.times[warmup:]
    losses = {name: metrics[f"eval_{name}_loss"] for name in heldout}
    return sum(tokens) / sum(seconds), statistics.median(seconds), losses


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base", default="gemma3-270m")
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--data-dir", default=str(Path(tempfile.gettempdir()) / "dziri-bench"))
    args = parser.parse_args()
    data_dir = Path(args.data_dir)
    torch.set_num_threads(available_cpus())
    pairs, heldout_pairs = split_heldout(read_segments(PAIRS), 0.1)
    chats, heldout_chats = split_heldout(read_conversations(CHATS), 0.1) if CHATS.is_file() else ([], [])
    examples = mix_examples(translation_examples(pairs), chat_examples(chats, DEFAULT_SYSTEM_PROMPT), None)
    heldout = {"translation": translation_examples(heldout_pairs, ["darija_to_english"])[:HELDOUT_EXAMPLES]}
    if heldout_chats:
        heldout["chat"] = chat_examples(heldout_chats, DEFAULT_SYSTEM_PROMPT)[:HELDOUT_EXAMPLES]
    common = dict(base_model=args.base, max_steps=args.steps, save_steps=10_000)
    recipe = resolve_recipe(TrainingSettings(**common))
    print(f"{args.base}, LoRA r={recipe.lora_r} on 7 projections, packed batches of {recipe.batch_size} x "
          f"{recipe.max_length} tokens, {torch.get_num_threads()} threads, {args.steps} steps each "
          f"({args.steps - args.warmup} timed); {len(examples)} examples"
          f"{'' if chats else ' (no chat set built: pairs only)'}; CPU bf16 instructions: "
          f"{'yes' if cpu_has_bf16() else 'no'}")
    results = {}
    for precision in ("fp32", "bf16"):
        rate, step, losses = run(TrainingSettings(**common, precision=precision), data_dir, examples, heldout,
                                 args.warmup)
        results[precision] = rate, losses
        shown = ", ".join(f"{name} {loss:.4f}" for name, loss in losses.items())
        print(f"{precision}: {rate:7.1f} tokens/s  ({step:.2f} s/step)  held-out loss after {args.steps} steps: "
              f"{shown}")
    (fp32_rate, fp32_losses), (bf16_rate, bf16_losses) = results["fp32"], results["bf16"]
    differences = ", ".join(f"{name} {100 * (bf16_losses[name] / fp32_losses[name] - 1):+.2f}%" for name in heldout)
    print(f"ratio bf16/fp32 tokens/s: {bf16_rate / fp32_rate:.2f} (target >= 2.5); held-out loss bf16 vs fp32: "
          f"{differences} (target within 2%)")


if __name__ == "__main__":
    main()
