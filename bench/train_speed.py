"""Training speed of the CPU engine (`dziri train`, engine peft) on this machine's cores.

Measures, on the same base model, data and LoRA recipe, in one run:
  trainer, packed:    trl's SFTTrainer as `dziri train` builds it, short examples packed into blocks
  trainer, unpacked:  the same with --no-packing (one example per row, padded)
  plain loop:         model(**batch, labels).loss.backward(); optimizer.step() in bare torch, on the
                      very batches the packed trainer feeds (same shapes, same tokens)
Prints real (non-padding) tokens/s of each, after warm-up steps, and the ratios
trainer/plain (target ≥ 0.9) and packed/unpacked.

    .venv/bin/python bench/train_speed.py [--base gemma3-270m] [--steps 6] [--warmup 2]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch
from transformers import TrainerCallback

from dziri.core.config import TrainingSettings
from dziri.plugins.backends.llamacpp import available_cpus
from dziri.training.base_model import load_base
from dziri.training.engines import PeftEngine
from dziri.training.instructions import build_examples, split_heldout
from dziri.training.segments import read_segments
from dziri.training.sft import resolve_recipe

DATA = Path(__file__).resolve().parent.parent / "data" / "darija-en" / "train.json"


class StepTimer(TrainerCallback):
    def __init__(self):
        self.times: list[float] = []
        self.tokens: list[int] = []
        self._start = 0.0

    def on_step_begin(self, args, state, control, **kwargs):
        self._start = time.perf_counter()

    def on_step_end(self, args, state, control, **kwargs):
        self.times.append(time.perf_counter() - self._start)


def real_tokens(batch: dict) -> int:
    if "attention_mask" in batch:
        return int(batch["attention_mask"].sum())
    return int(batch["position_ids"].numel())


def trainer_rate(settings: TrainingSettings, data_dir: Path, examples: list[dict], steps: int, warmup: int):
    """Tokens/s of the trainer over steps after the warm-up, and the batches it fed."""
    recipe = resolve_recipe(settings)
    engine = PeftEngine()
    model, tokenizer, _ = engine.load(recipe, settings, data_dir)
    with tempfile.TemporaryDirectory() as checkpoints:
        trainer = engine.trainer(model, tokenizer, recipe, settings, Path(checkpoints), examples, [])
        batches = []
        for batch in trainer.get_train_dataloader():
            batches.append(batch)
            if len(batches) == steps:
                break
        timer = StepTimer()
        trainer.add_callback(timer)
        trainer.args.save_strategy = "no"
        trainer.train()
    tokens = [real_tokens(b) for b in batches][warmup:steps]
    seconds = timer.times[warmup:steps]
    return sum(tokens) / sum(seconds), batches, statistics.median(seconds)


def plain_rate(settings: TrainingSettings, data_dir: Path, batches: list[dict], warmup: int) -> float:
    from peft import LoraConfig, get_peft_model

    recipe = resolve_recipe(settings)
    torch.manual_seed(settings.seed)
    model = load_base(recipe.base_model, data_dir).model
    model.config.use_cache = False
    model = get_peft_model(model, LoraConfig(r=recipe.lora_r, lora_alpha=recipe.lora_alpha,
                                             target_modules=list(settings.target_modules)))
    model.train()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=recipe.learning_rate)
    keys = ("input_ids", "position_ids", "attention_mask")
    times, tokens = [], []
    for batch in batches:
        start = time.perf_counter()
        loss = model(**{k: v for k, v in batch.items() if k in keys}, labels=batch["labels"]).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        times.append(time.perf_counter() - start)
        tokens.append(real_tokens(batch))
    return sum(tokens[warmup:]) / sum(times[warmup:])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base", default="gemma3-270m")
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--data-dir", default=str(Path(tempfile.gettempdir()) / "dziri-bench"))
    args = parser.parse_args()
    data_dir = Path(args.data_dir)
    torch.set_num_threads(available_cpus())
    segments, _ = split_heldout(read_segments(DATA), 0.1)
    examples = build_examples(segments)
    packed = TrainingSettings(base_model=args.base, max_steps=args.steps, packing=True)
    unpacked = TrainingSettings(base_model=args.base, max_steps=args.steps, packing=False)
    recipe = resolve_recipe(packed)
    print(f"{args.base}, LoRA r={recipe.lora_r} on 7 projections, batch {recipe.batch_size} x {recipe.max_length} "
          f"tokens, fp32, {torch.get_num_threads()} threads, {args.steps - args.warmup} timed steps each")

    packed_rate, batches, packed_step = trainer_rate(packed, data_dir, examples, args.steps, args.warmup)
    unpacked_rate, _, unpacked_step = trainer_rate(unpacked, data_dir, examples, args.steps, args.warmup)
    plain = plain_rate(packed, data_dir, batches, args.warmup)
    print(f"trainer, packed:   {packed_rate:7.1f} tokens/s  ({packed_step:.1f} s/step)")
    print(f"trainer, unpacked: {unpacked_rate:7.1f} tokens/s  ({unpacked_step:.1f} s/step)")
    print(f"plain torch loop:  {plain:7.1f} tokens/s  (same batches as the packed trainer)")
    print(f"ratio trainer/plain: {packed_rate / plain:.2f} (target >= 0.9); packed/unpacked: "
          f"{packed_rate / unpacked_rate:.2f}")


if __name__ == "__main__":
    main()
