"""The base model for training, loaded into transformers from the very GGUF the llama.cpp
backend serves, so the adapter is trained on the weights it will run on.

transformers dequantizes a GGUF on load (slow: about 100 s for Gemma 3 270M on 2 cores, most
of it converting the 262k-token vocabulary), so the first load keeps an fp32 safetensors
copy with its tokenizer in `<data dir>/models/`, keyed by the GGUF's sha256; later loads
take seconds.
"""

from __future__ import annotations

import logging
import shutil
import warnings
from dataclasses import dataclass
from pathlib import Path

from dziri.core.errors import TrainingError
from dziri.plugins.backends.bundled import BUNDLED_MODELS, bundled_gguf, file_sha256
from dziri.plugins.backends.turn_formats import supplied_template

from .gguf_header import gguf_architecture

log = logging.getLogger(__name__)


@dataclass
class BaseModel:
    model: object  # a transformers PreTrainedModel, fp32
    tokenizer: object  # with a chat template: the GGUF's own, or the one dziri supplies
    gguf_path: Path
    gguf_sha256: str
    architecture: str  # the GGUF's general.architecture, e.g. "gemma3", "llama"


def resolve_gguf(base: str) -> Path:
    """A bundled model's name (gemma3-270m, smollm2-135m) or a path to a GGUF file."""
    if base in BUNDLED_MODELS:
        return bundled_gguf(base)
    path = Path(base).expanduser()
    if not path.is_file():
        raise TrainingError(
            f"base model {base!r} is neither a bundled model ({', '.join(BUNDLED_MODELS)}) nor a GGUF file"
        )
    return path.resolve()


def load_base(base: str, data_dir: Path) -> BaseModel:
    gguf_path = resolve_gguf(base)
    sha = file_sha256(gguf_path)
    architecture = gguf_architecture(gguf_path)
    cache = Path(data_dir) / "models" / f"{gguf_path.stem}-{sha[:12]}-hf"
    if not (cache / "config.json").is_file():
        _convert(gguf_path, architecture, cache)
    model, tokenizer = _load_converted(cache)
    return BaseModel(model, tokenizer, gguf_path, sha, architecture)


def _load_converted(directory: Path):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(directory)
    model = AutoModelForCausalLM.from_pretrained(directory, dtype=torch.float32)
    return model, tokenizer


def _convert(gguf_path: Path, architecture: str, cache: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    log.info("converting %s to fp32 safetensors in %s (once)", gguf_path, cache)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tokenizer = AutoTokenizer.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name)
        model = AutoModelForCausalLM.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name, dtype=torch.float32)
    # transformers leaves its GGUF "quantizer" on the model although the weights are now plain
    # fp32; peft and the Trainer would then refuse to train it as a quantized model.
    model.hf_quantizer = None
    model.is_quantized = False
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    ensure_chat_template(tokenizer, architecture, gguf_path)
    partial = cache.with_name(cache.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    model.save_pretrained(partial)
    tokenizer.save_pretrained(partial)
    partial.replace(cache) if not cache.exists() else shutil.rmtree(partial)


def ensure_chat_template(tokenizer, architecture: str, source: Path) -> None:
    """Keep the GGUF's own chat template; a GGUF without one (Gemma 3 270M) gets the one
    dziri supplies for its architecture, which the llama.cpp backend serves with too."""
    if tokenizer.chat_template:
        return
    template = supplied_template(architecture)
    if template is None:
        raise TrainingError(f"{source} has no chat template and dziri knows none for architecture {architecture!r}")
    tokenizer.chat_template = template
