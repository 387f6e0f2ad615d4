"""The GPU training engine (`[training] engine = "unsloth"`) against a plain peft loop, on an
NVIDIA GPU, on the seed's model architecture: Qwen2.5-7B-Instruct built from its published
config with random weights (no hub download; speed does not depend on the weights).

    python bench/gpu_train.py save DIR      # write the random-weight model (bf16) + a tokenizer to DIR
    python bench/gpu_train.py plain         # plain peft bf16 + sdpa + gradient checkpointing, 4 x 2048
    python bench/gpu_train.py engine DIR    # `dziri train --engine unsloth` on DIR (4-bit QLoRA, the
                                            # seed's recipe) on data/darija-en, then `plain` again

`engine` prints the engine's tokens/s (from its own report), the plain loop's, and their ratio.
The tokenizer is SmolLM2's (Qwen's is not on this machine); its vocabulary fits in Qwen's.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

# Qwen2.5-7B-Instruct's config.json, as published.
QWEN25_7B = dict(
    architectures=["Qwen2ForCausalLM"], model_type="qwen2", hidden_size=3584, intermediate_size=18944,
    num_hidden_layers=28, num_attention_heads=28, num_key_value_heads=4, vocab_size=152064,
    max_position_embeddings=32768, rope_theta=1_000_000.0, rms_norm_eps=1e-6, tie_word_embeddings=False,
    hidden_act="silu", sliding_window=131072, max_window_layers=28, use_sliding_window=False,
    bos_token_id=151643, eos_token_id=151645,
)
SEVEN = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def qwen_config():
    from transformers import Qwen2Config

    return Qwen2Config(**QWEN25_7B)


def save_random(directory: Path, tokenizer_dir: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.manual_seed(0)
    with torch.device("cuda"):
        model = AutoModelForCausalLM.from_config(qwen_config(), dtype=torch.bfloat16)
    model.save_pretrained(directory)
    AutoTokenizer.from_pretrained(tokenizer_dir).save_pretrained(directory)
    print(f"saved a random-weight Qwen2.5-7B ({sum(p.numel() for p in model.parameters()) / 1e9:.2f} B params)")


def plain(batch: int = 4, length: int = 2048, steps: int = 6) -> float:
    """Tokens/s of a plain peft LoRA loop: bf16, sdpa, gradient checkpointing, AdamW."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    with torch.device("cuda"):
        model = AutoModelForCausalLM.from_config(qwen_config(), dtype=torch.bfloat16, attn_implementation="sdpa")
    model.config.use_cache = False
    model.gradient_checkpointing_enable()
    model.enable_input_require_grads()
    model = get_peft_model(model, LoraConfig(r=16, lora_alpha=16, lora_dropout=0.0, target_modules=SEVEN))
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=2e-4)
    tokens = torch.randint(0, 49152, (batch, length), device="cuda")
    timings = []
    for _ in range(steps):
        torch.cuda.synchronize()
        start = time.perf_counter()
        model(input_ids=tokens, labels=tokens).loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        torch.cuda.synchronize()
        timings.append(time.perf_counter() - start)
    steady = sorted(timings[2:])[len(timings[2:]) // 2]  # median after two warm-up steps
    rate = batch * length / steady
    print(f"plain peft bf16 loop: {batch}x{length}, {rate:,.0f} tokens/s, "
          f"peak {torch.cuda.max_memory_allocated() / 2**30:.1f} GiB")
    del model, optimizer
    torch.cuda.empty_cache()
    return rate


def engine(directory: Path, steps: int = 12) -> dict:
    """The real `dziri train` code path with the unsloth engine, on the project's data."""
    import tempfile

    from dziri.core.config import TrainingSettings
    from dziri.training.sft import train

    out = Path(tempfile.mkdtemp()) / "run"
    settings = TrainingSettings(engine="unsloth", base_model=str(directory), max_steps=steps,
                                output_dir=str(out), save_steps=1000)
    report = train(Path(__file__).resolve().parent.parent / "data/darija-en/train.json", settings, out.parent)
    print(report.render())
    return report.to_dict()


def main() -> None:
    what = sys.argv[1]
    if what == "save":
        save_random(Path(sys.argv[2]), Path(sys.argv[3]))
    elif what == "plain":
        plain()
    elif what == "engine":
        figures = engine(Path(sys.argv[2]))
        baseline = plain()
        figures["plain_tokens_per_second"] = baseline
        figures["ratio"] = figures["tokens_per_second"] / baseline
        print(f"unsloth engine {figures['tokens_per_second']:,.0f} tokens/s vs plain peft {baseline:,.0f} "
              f"tokens/s: ratio {figures['ratio']:.2f}")
        print(json.dumps(figures))
    else:
        raise SystemExit(__doc__)


if __name__ == "__main__":
    main()
