"""The two training engines behind `[training] engine`: they differ in how the model is
loaded and adapted; the trainer (trl's SFTTrainer, loss on answers only) is shared.

- `peft`: the CPU engine. The base is loaded from the GGUF the llama.cpp backend serves,
  LoRA through peft. On a CPU with bf16 matrix instructions (AVX512-BF16, AMX) the frozen
  base is held in bf16 and the step runs under bf16 autocast, while the LoRA weights and the
  optimizer state stay fp32 (`[training] precision`, bench/train_speed.py measures both).
- `unsloth`: the GPU engine, the seed's recipe. unsloth loads the (4-bit) base and patches
  it with its fused kernels; it needs an NVIDIA GPU, and says so at once when there is none.
"""

from __future__ import annotations

import functools
import logging
import warnings
from pathlib import Path

from dziri.core.config import TrainingSettings
from dziri.core.errors import TrainingError
from dziri.plugins.backends.llamacpp import available_cpus

from .sft import Recipe

log = logging.getLogger(__name__)

UNSLOTH_INSTALL = "pip install unsloth==2026.10.9 bitsandbytes==0.50.2"
TRAIN_INSTALL = "pip install 'dziri[train]'"


def load_engine(name: str):
    _require_training_packages()
    return {"peft": PeftEngine, "unsloth": UnslothEngine}[name]()


def _require_training_packages() -> None:
    missing = []
    for module in ("torch", "transformers", "peft", "trl", "datasets"):
        try:
            __import__(module)
        except ImportError:
            missing.append(module)
    if missing:
        raise TrainingError(f"training needs {', '.join(missing)}: {TRAIN_INSTALL}")


class Engine:
    def check(self, recipe: Recipe) -> None:
        """Refuse what this engine cannot train, before anything is loaded or written."""

    def step_counter(self):
        return _step_counter()


class PeftEngine(Engine):
    def check(self, recipe: Recipe) -> None:
        from .base_model import resolve_gguf
        from .gguf_header import gguf_architecture

        if recipe.quantization != "none":
            raise TrainingError(
                "4-bit bases (QLoRA) need bitsandbytes on an NVIDIA GPU: use engine = \"unsloth\" there;"
                " the CPU engine trains LoRA on the fp32 base"
            )
        gguf_architecture(resolve_gguf(recipe.base_model))  # a file that is no model GGUF fails here

    def load(self, recipe: Recipe, settings: TrainingSettings, data_dir: Path):
        import torch

        from .base_model import load_base

        torch.set_num_threads(settings.threads or available_cpus())
        torch.manual_seed(settings.seed)
        base = load_base(recipe.base_model, data_dir)
        precision = cpu_precision(settings.precision)
        if precision == "bf16":
            # The frozen weights are only read: bf16 halves their memory traffic and spares
            # autocast a cast per matmul. peft creates the LoRA weights in fp32 on top.
            base.model.to(torch.bfloat16)
        info = {"base": recipe.base_model, "base_gguf": str(base.gguf_path),
                "base_gguf_sha256": base.gguf_sha256, "architecture": base.architecture, "precision": precision}
        return base.model, base.tokenizer, info

    def trainer(self, model, tokenizer, recipe: Recipe, settings: TrainingSettings, checkpoints: Path,
                examples: list[dict], heldout_examples: dict[str, list[dict]]):
        from peft import LoraConfig

        lora = LoraConfig(r=recipe.lora_r, lora_alpha=recipe.lora_alpha, lora_dropout=recipe.lora_dropout,
                          target_modules=list(settings.target_modules), bias="none", task_type="CAUSAL_LM")
        trainer = make_trainer(model, tokenizer, recipe, settings, checkpoints, examples, heldout_examples,
                               peft_config=lora, on_gpu=False)
        if cpu_precision(settings.precision) == "bf16":
            trainer.bf16_autocast = True
            # peft casts each LoRA input to its fp32 weights' dtype, and autocast casts it back
            # to bf16 for the matmul: two copies of every activation for nothing.
            for module in trainer.model.modules():
                if hasattr(module, "cast_input_dtype_enabled"):
                    module.cast_input_dtype_enabled = False
        return trainer


@functools.cache
def cpu_has_bf16() -> bool:
    """Whether this CPU has bf16 matrix instructions (where bf16 matmuls beat fp32)."""
    try:
        flags = Path("/proc/cpuinfo").read_text(encoding="ascii", errors="replace")
    except OSError:
        return False
    return any(flag in flags.split() for flag in ("avx512_bf16", "amx_bf16"))


def cpu_precision(setting: str) -> str:
    """"bf16" or "fp32" for the CPU engine: "auto" is bf16 where the CPU has bf16 instructions."""
    if setting == "auto":
        return "bf16" if cpu_has_bf16() else "fp32"
    return setting


class UnslothEngine(Engine):
    def __init__(self):
        require_gpu()

    def load(self, recipe: Recipe, settings: TrainingSettings, data_dir: Path):
        try:
            from unsloth import FastLanguageModel
        except ImportError as exc:
            raise TrainingError(f"the unsloth engine needs unsloth ({exc}): {UNSLOTH_INSTALL}") from None
        model, tokenizer = FastLanguageModel.from_pretrained(
            model_name=recipe.base_model, max_seq_length=recipe.max_length, dtype=None,
            load_in_4bit=recipe.quantization == "4bit",
        )
        model = FastLanguageModel.get_peft_model(
            model, r=recipe.lora_r, lora_alpha=recipe.lora_alpha, lora_dropout=recipe.lora_dropout,
            target_modules=list(settings.target_modules), bias="none",
            use_gradient_checkpointing="unsloth", random_state=settings.seed,
        )
        info = {"base": recipe.base_model, "architecture": model.config.model_type}
        return model, tokenizer, info

    def trainer(self, model, tokenizer, recipe: Recipe, settings: TrainingSettings, checkpoints: Path,
                examples: list[dict], heldout_examples: dict[str, list[dict]]):
        return make_trainer(model, tokenizer, recipe, settings, checkpoints, examples, heldout_examples,
                            peft_config=None, on_gpu=True)


def require_gpu() -> None:
    """Fail before anything heavy loads: unsloth's own failure on a CPU is a deep stack trace."""
    try:
        import torch
    except ImportError:
        raise TrainingError(f"the unsloth engine needs torch with CUDA: {TRAIN_INSTALL}") from None
    if not torch.cuda.is_available():
        raise TrainingError(
            "the unsloth engine needs an NVIDIA GPU with CUDA, and this machine has none; "
            "train on the CPU with engine = \"peft\" (the default) or run on a GPU machine"
        )


def make_trainer(model, tokenizer, recipe: Recipe, settings: TrainingSettings, checkpoints: Path,
                 examples: list[dict], heldout_examples: dict[str, list[dict]], *, peft_config, on_gpu: bool):
    """`heldout_examples`: {name: examples}; the held-out loss of each is `eval_<name>_loss`."""
    from trl import SFTConfig, SFTTrainer

    prepare_for_packing(model)
    args = SFTConfig(
        output_dir=str(checkpoints),
        per_device_train_batch_size=recipe.batch_size,
        per_device_eval_batch_size=recipe.batch_size,
        gradient_accumulation_steps=recipe.gradient_accumulation_steps,
        num_train_epochs=recipe.epochs,
        max_steps=settings.max_steps,
        learning_rate=recipe.learning_rate,
        lr_scheduler_type="linear",
        warmup_steps=0.05,
        optim=recipe.optimizer,
        max_length=recipe.max_length,
        packing=settings.packing,
        completion_only_loss=True,  # the prompt is given, never learnt
        # trl's defaults suit a GPU. On the CPU the answer-only loss below runs bf16 autocast
        # itself (the decoder is called directly, past accelerate's autocast wrapper), and
        # gradient checkpointing would only slow a 270M model down.
        bf16=on_gpu,
        gradient_checkpointing=on_gpu,
        use_cpu=not on_gpu,
        seed=settings.seed,
        data_seed=settings.seed,
        save_strategy="steps",
        save_steps=settings.save_steps,
        save_total_limit=2,
        logging_steps=5,
        eval_strategy="no",
        prediction_loss_only=True,
        report_to=[],
        dataloader_num_workers=0,
        dataset_num_proc=None,
    )
    trainer_class = SFTTrainer if on_gpu else answer_only_trainer_class()
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*padding-free.*")
        return trainer_class(
            model=model,
            args=args,
            train_dataset=tokenized_dataset(examples, tokenizer),
            eval_dataset={name: tokenized_dataset(rows, tokenizer) for name, rows in heldout_examples.items() if rows}
            or None,
            processing_class=tokenizer,
            peft_config=peft_config,
        )


def tokenized_dataset(examples: list[dict], tokenizer):
    """The examples as trl takes them ready-made: input_ids and assistant_masks (every reply
    learnt; trl turns the masks into labels and packs the rows)."""
    from datasets import Dataset

    from .instructions import tokenize_example

    return Dataset.from_list([tokenize_example(example["messages"], tokenizer) for example in examples])


def prepare_for_packing(model) -> None:
    """Packed blocks keep their examples apart only through position_ids: transformers
    builds the block-diagonal mask from them when there is no KV cache. With the cache on
    (the config's default) every example would attend to the ones before it in its block
    (tests/training/test_train.py measures both)."""
    model.config.use_cache = False


def answer_only_trainer_class():
    """SFTTrainer whose loss sends only the answer positions through the LM head.

    The loss is the same as trl's (mean cross-entropy over the answer tokens), but trl's
    tiled log-prob kernel also computes entropy and accuracy over the whole vocabulary and
    recomputes its tiles in the backward pass: on 2 CPU cores and Gemma's 262k-token
    vocabulary that head took 24 of a step's 31 s. Here it is one matmul over the answer
    positions and one cross-entropy (bench/train_speed.py measures both).
    """
    import torch
    from trl import SFTTrainer

    from .answer_loss import answer_cross_entropy

    class AnswerOnlySFTTrainer(SFTTrainer):
        bf16_autocast = False  # set by the engine where the CPU computes bf16 fast

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            inputs = dict(inputs)
            labels = inputs.pop("labels")[:, 1:]
            causal_lm = model.get_base_model() if hasattr(model, "get_base_model") else model
            backbone_inputs = {k: v for k, v in inputs.items() if k in BACKBONE_INPUTS}
            answer = labels != -100
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.bf16_autocast):
                hidden = causal_lm.get_decoder()(**backbone_inputs, use_cache=False).last_hidden_state[:, :-1]
            hidden = hidden[answer]
            if self.bf16_autocast:
                hidden = hidden.to(torch.bfloat16)
            softcap = getattr(causal_lm.config, "final_logit_softcapping", None)
            total = answer_cross_entropy(hidden, causal_lm.get_output_embeddings().weight, labels[answer], softcap)
            count = answer.sum() if num_items_in_batch is None else num_items_in_batch
            loss = total / max(int(count), 1)
            return (loss, {"loss": loss}) if return_outputs else loss

    return AnswerOnlySFTTrainer


# What the decoder takes from a trl batch (padding-free batches also carry flash-attention
# bookkeeping that the sdpa path does not need).
BACKBONE_INPUTS = ("input_ids", "attention_mask", "position_ids")


def _step_counter():
    """Counts the optimizer steps this process takes: after a resume, the steps left."""
    from transformers import TrainerCallback

    class StepCounter(TrainerCallback):
        steps = 0

        def on_step_end(self, args, state, control, **kwargs):
            self.steps += 1

    return StepCounter()
