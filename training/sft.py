"""`dziri train`: fine-tune a LoRA adapter on Darija conversations and translated pairs
(supervised fine-tuning).

One run: split off held-out pairs and conversations (never trained on), build the examples
(translation tasks from the pairs, multi-turn chats under the served system prompt), mix
them, train with trl's SFTTrainer (loss on every assistant reply, nothing else), evaluate
the held-out losses, save the PEFT adapter. The output directory holds what a later step needs:

    adapter/             the PEFT adapter (`dziri export` turns it into a GGUF LoRA)
    checkpoints/         Trainer checkpoints: a killed run resumes from the newest one
    heldout.json         the held-out pairs, for `dziri eval`
    heldout-chat.jsonl   the held-out conversations, for `dziri eval --task chat`
    training.json        base model and its sha256, data hashes, recipe, figures; "complete" at the end

Engines: `peft` runs on the CPU on an embedded base (training/base_model.py); `unsloth`
runs the seed's Qwen2.5-7B-Instruct recipe on an NVIDIA GPU (both in training/engines.py).
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from dziri.core.config import DEFAULT_SYSTEM_PROMPT, TrainingSettings
from dziri.core.errors import TrainingError, ValidationError

from .conversations import Conversation, read_conversations
from .instructions import TRANSLATION_TASKS, chat_examples, mix_examples, split_heldout, translation_examples
from .segments import read_segments, write_atomically, write_segments

log = logging.getLogger(__name__)

@dataclass(frozen=True)
class Recipe:
    base_model: str
    lora_r: int
    lora_alpha: int
    lora_dropout: float
    learning_rate: float
    epochs: float
    batch_size: int
    max_length: int
    optimizer: str
    quantization: str = "none"
    gradient_accumulation_steps: int = 1


# What each engine does when [training] leaves a field unset.
RECIPES = {
    # Measured on 2 CPU cores (bench/train_speed.py, docs/training.md): Gemma 3 270M learns the
    # task fast at a high LoRA learning rate; packed blocks of 256 tokens hold ~4 pairs each.
    # Packed rows are flattened into one sequence per step (padding-free), and attention over it
    # grows with its square: one row of 512 tokens a micro-step, two per optimizer step.
    "peft": Recipe(base_model="gemma3-270m", lora_r=16, lora_alpha=32, lora_dropout=0.0, learning_rate=1e-3,
                   epochs=1, batch_size=1, max_length=512, optimizer="adamw_torch", gradient_accumulation_steps=2),
    # The seed's recipe: unsloth, Qwen2.5-7B-Instruct in 4 bits (QLoRA), r=16, alpha=16.
    "unsloth": Recipe(base_model="unsloth/Qwen2.5-7B-Instruct-bnb-4bit", lora_r=16, lora_alpha=16,
                      lora_dropout=0.0, learning_rate=2e-4, epochs=1, batch_size=2, max_length=2048,
                      optimizer="adamw_8bit", quantization="4bit", gradient_accumulation_steps=4),
}


# The unsloth recipe's base is already 4-bit; LoRA on the full-precision weights needs this one.
UNSLOTH_FULL_PRECISION_BASE = "unsloth/Qwen2.5-7B-Instruct"


def resolve_recipe(settings: TrainingSettings) -> Recipe:
    """The engine's recipe with every field the user set in [training] (or on the CLI) applied."""
    recipe = asdict(RECIPES[settings.engine])
    for name in recipe:
        value = getattr(settings, name, None)
        if value not in (None, "") and (name != "quantization" or "quantization" in settings.model_fields_set):
            recipe[name] = value
    if settings.engine == "unsloth" and recipe["quantization"] == "none" and not settings.base_model:
        recipe["base_model"] = UNSLOTH_FULL_PRECISION_BASE
    return Recipe(**recipe)


@dataclass
class TrainReport:
    output_dir: str
    base_model: str
    engine: str
    train_segments: int
    heldout_segments: int
    examples: int
    train_conversations: int = 0
    heldout_conversations: int = 0
    steps: int = 0  # the run's last step
    steps_this_run: int = 0  # optimizer steps taken by this process (fewer after a resume)
    epochs: float = 0.0
    train_tokens: int = 0  # tokens the model saw (padding excluded), all epochs
    train_seconds: float = 0.0
    tokens_per_second: float | None = None
    train_loss: float | None = None
    heldout_loss: float | None = None  # translation (Darija → English) on the held-out pairs
    heldout_chat_loss: float | None = None  # every reply of the held-out conversations
    resumed_from: str | None = None
    up_to_date: bool = False
    details: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)

    def render(self) -> str:
        if self.up_to_date:
            return f"{self.output_dir}: already trained on this data with this recipe (use --restart to train again)"
        lines = [
            f"trained {self.engine} LoRA on {self.base_model}: {self.examples} examples from "
            f"{self.train_segments} pairs ({self.heldout_segments} held out) and "
            f"{self.train_conversations} conversations ({self.heldout_conversations} held out)",
            f"  {self.steps} steps ({self.steps_this_run} in this run), {self.epochs:g} epochs, "
            f"{self.train_seconds:.0f} s, {_fmt(self.tokens_per_second, '.0f')} tokens/s",
            f"  loss: train {_fmt(self.train_loss)}, held-out translation {_fmt(self.heldout_loss)}, "
            f"held-out chat {_fmt(self.heldout_chat_loss)}",
        ]
        if self.resumed_from:
            lines.append(f"  resumed from {self.resumed_from}")
        lines.append(f"  adapter: {Path(self.output_dir) / 'adapter'}  (next: dziri export)")
        return "\n".join(lines)


def _fmt(value: float | None, spec: str = ".3f") -> str:
    return "-" if value is None else format(value, spec)


def default_output_dir(settings: TrainingSettings, data_dir: Path) -> Path:
    if settings.output_dir:
        return Path(settings.output_dir).expanduser()
    base = resolve_recipe(settings).base_model
    name = Path(base).name.removesuffix(".gguf") if base.endswith(".gguf") else base.replace("/", "--")
    return Path(data_dir) / "training" / name


def train(data_path: str | Path | None, settings: TrainingSettings, data_dir: Path, *, restart: bool = False,
          chat_path: str | Path | None = None, system_prompt: str = DEFAULT_SYSTEM_PROMPT) -> TrainReport:
    """Train on the pairs in `data_path` and the conversations in `chat_path` (either may be
    None, not both); chats are rendered under `system_prompt`, the one the chat serves."""
    from .engines import load_engine  # heavy imports (torch, transformers) only when training

    recipe = resolve_recipe(settings)
    engine = load_engine(settings.engine)  # a missing GPU or package is reported before anything is written
    engine.check(recipe)  # so is a base model or a precision the engine cannot train
    segments, conversations = _read_data(data_path, chat_path, settings)
    train_segments, heldout = split_heldout(segments, settings.heldout_fraction)
    train_chats, heldout_chats = split_heldout(conversations, settings.heldout_fraction)
    examples = mix_examples(translation_examples(train_segments, _translation_tasks(settings)),
                            chat_examples(train_chats, system_prompt), settings.translation_share)
    if not examples:
        raise ValidationError("no training examples: every pair and conversation was held out")
    out = default_output_dir(settings, data_dir)
    run_id = _run_identity(segments, conversations, recipe, settings, system_prompt)
    report = TrainReport(str(out), recipe.base_model, settings.engine, len(train_segments), len(heldout),
                         len(examples), len(train_chats), len(heldout_chats))
    if _prepare_output(out, run_id, restart):
        report.up_to_date = True
        return report
    _write_json(out / "run.json", {"run_id": run_id, "recipe": asdict(recipe), "settings": _settings_dict(settings)})
    write_segments(out / "heldout.json", heldout)
    write_atomically(out / "heldout-chat.jsonl", "".join(
        json.dumps(c.to_record(), ensure_ascii=False) + "\n" for c in heldout_chats))

    model, tokenizer, base_info = engine.load(recipe, settings, Path(data_dir))
    heldout_examples = {"translation": translation_examples(heldout, ["darija_to_english"]),
                        "chat": chat_examples(heldout_chats, system_prompt)}
    trainer = engine.trainer(model, tokenizer, recipe, settings, out / "checkpoints", examples, heldout_examples)
    checkpoint = _latest_checkpoint(out / "checkpoints")
    report.resumed_from = str(checkpoint) if checkpoint else None

    counter = engine.step_counter()
    trainer.add_callback(counter)
    started = time.perf_counter()
    result = trainer.train(resume_from_checkpoint=str(checkpoint) if checkpoint else None)
    report.train_seconds = time.perf_counter() - started
    report.steps = result.global_step
    report.steps_this_run = counter.steps
    report.epochs = round(float(result.metrics.get("epoch", recipe.epochs)), 3)
    if counter.steps:  # none when a run killed after its last checkpoint is finished off
        report.train_loss = result.training_loss
        this_run = counter.steps / result.global_step
        report.train_tokens = int(count_tokens(trainer.train_dataset) * report.epochs * this_run)
        report.tokens_per_second = report.train_tokens / report.train_seconds
    if trainer.eval_dataset:
        metrics = trainer.evaluate()
        report.heldout_loss = metrics.get("eval_translation_loss")
        report.heldout_chat_loss = metrics.get("eval_chat_loss")

    trainer.model.save_pretrained(out / "adapter")
    tokenizer.save_pretrained(out / "adapter")
    data = {}
    if data_path is not None:
        data["pairs"] = {"path": str(data_path), "sha256": _segments_hash(segments), "segments": len(segments),
                         "train": len(train_segments), "heldout": len(heldout)}
    if chat_path is not None:
        data["chat"] = {"path": str(chat_path), "sha256": _conversations_hash(conversations),
                        "conversations": len(conversations), "train": len(train_chats), "heldout": len(heldout_chats)}
    _write_json(out / "training.json", {
        "complete": True,
        "run_id": run_id,
        **base_info,
        "engine": settings.engine,
        "data": data,
        "tasks": list(settings.tasks),
        "translation_share": settings.translation_share,
        "system_prompt": system_prompt,
        "recipe": asdict(recipe),
        "seed": settings.seed,
        "figures": {k: getattr(report, k) for k in (
            "steps", "steps_this_run", "epochs", "train_tokens", "train_seconds", "tokens_per_second",
            "train_loss", "heldout_loss", "heldout_chat_loss")},
    })
    return report


def _read_data(data_path, chat_path, settings: TrainingSettings) -> tuple[list, list[Conversation]]:
    if data_path is None and chat_path is None:
        raise ValidationError("nothing to train on: give translated pairs, conversations (--chat), or both")
    segments = []
    if data_path is not None:
        segments = [s for s in read_segments(data_path, "training data") if (s.translation or "").strip()]
        if not segments:
            raise ValidationError(f"{data_path} has no translated segments: run `dziri data translate` first")
        if not _translation_tasks(settings):
            raise ValidationError(f"{data_path} holds pairs, but [training] tasks has no translation task")
    conversations = []
    if chat_path is not None:
        if "chat" not in settings.tasks:
            raise ValidationError(f"{chat_path} holds conversations, but [training] tasks leaves out \"chat\"")
        conversations = read_conversations(chat_path, "chat training data", need_replies=True)
    return segments, conversations


def _translation_tasks(settings: TrainingSettings) -> list[str]:
    return [t for t in settings.tasks if t in TRANSLATION_TASKS]


def count_tokens(dataset) -> int:
    """Real tokens in a tokenized (possibly packed) trl dataset: padding is added later, by the collator."""
    return sum(len(ids) for ids in dataset["input_ids"])


def _prepare_output(out: Path, run_id: str, restart: bool) -> bool:
    """True when `out` already holds this very run, finished. A different run there is
    never overwritten silently: that takes --restart (or another --out)."""
    run_file, done_file = out / "run.json", out / "training.json"
    if restart and out.exists():
        if run_file.is_file():
            import shutil

            shutil.rmtree(out)
        elif any(out.iterdir()):
            raise TrainingError(f"{out} is not empty and holds no dziri training run: --restart deletes only a run")
    if run_file.is_file():
        previous = json.loads(run_file.read_text(encoding="utf-8")).get("run_id")
        if previous != run_id:
            raise TrainingError(
                f"{out} holds a run with other data or another recipe; "
                "pass --restart to replace it or --out to train elsewhere"
            )
        if done_file.is_file() and json.loads(done_file.read_text(encoding="utf-8")).get("complete"):
            return True
    elif out.exists() and any(out.iterdir()):
        raise TrainingError(f"{out} is not empty and holds no dziri training run; choose another --out")
    out.mkdir(parents=True, exist_ok=True)
    return False


def _latest_checkpoint(directory: Path) -> Path | None:
    # A checkpoint is complete once the Trainer has written its state file last.
    done = [p for p in directory.glob("checkpoint-*") if (p / "trainer_state.json").is_file()]
    return max(done, key=lambda p: int(p.name.rsplit("-", 1)[1]), default=None)


def _conversations_hash(conversations: list[Conversation]) -> str:
    digest = hashlib.sha256()
    for c in conversations:
        digest.update(json.dumps([c.id, list(c.messages)], ensure_ascii=False).encode())
    return digest.hexdigest()


def _segments_hash(segments) -> str:
    digest = hashlib.sha256()
    for s in segments:
        digest.update(json.dumps([s.id, s.text, s.translation], ensure_ascii=False).encode())
    return digest.hexdigest()


# Settings that do not change what is learnt, and those the resolved recipe already holds.
_NOT_IN_IDENTITY = {"threads", "save_steps", "output_dir", "chat_data"} | set(Recipe.__dataclass_fields__)


def _run_identity(segments, conversations, recipe: Recipe, settings: TrainingSettings, system_prompt: str) -> str:
    """Same data, same resolved recipe, same other settings: the same run, however it was asked for."""
    relevant = {k: v for k, v in _settings_dict(settings).items() if k not in _NOT_IN_IDENTITY}
    blob = json.dumps({"data": _segments_hash(segments), "chat": _conversations_hash(conversations),
                       "system_prompt": system_prompt, "recipe": asdict(recipe), "settings": relevant},
                      sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _settings_dict(settings: TrainingSettings) -> dict:
    return settings.model_dump(mode="json")


def _write_json(path: Path, data: dict) -> None:
    write_atomically(path, json.dumps(data, indent=2, ensure_ascii=False) + "\n")
