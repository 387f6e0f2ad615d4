"""`dziri export`: a PEFT LoRA adapter → a GGUF LoRA that llama.cpp (and so Ollama) loads, an
optional merged GGUF, and an Ollama Modelfile.

The GGUF LoRA is what llama.cpp's own convert_lora_to_gguf.py writes: `general.type =
adapter`, `adapter.type = lora`, `adapter.lora.alpha`, and for every adapted weight
`<gguf name>.lora_a` / `.lora_b`, named with gguf-py's own HF → GGUF map. PEFT's lora_A
(numpy [r, in]) and lora_B ([out, r]) go in as they are: GGUF lists dimensions in reverse,
so they read as [in, r] and [r, out], the shapes llama.cpp expects. llama.cpp scales by
alpha / r itself, so the scale is not folded in.

One catch: for the `llama` architecture (SmolLM2) llama.cpp's convert_hf_to_gguf permutes
the rows of the q and k weights (its rope layout) and transformers un-permutes them when
it loads the GGUF, so the adapter, trained in transformers, works on unpermuted rows:
lora_b of q_proj and k_proj gets the same row permutation here. Measured in
tests/training/test_export.py: without it the adapter's effect on the logits drifts.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dziri.core.errors import TrainingError
from dziri.plugins.backends.bundled import file_sha256

from .base_model import resolve_gguf
from .gguf_header import read_gguf_header

ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"
TRAINING_JSON = "training.json"  # written by `dziri train` next to its adapter/ folder

# Architectures whose q/k rows convert_hf_to_gguf permutes (LlamaModel.permute) and
# transformers un-permutes on load (its LlamaTensorProcessor).
PERMUTED_QK = {"llama"}

_PEFT_KEY = re.compile(r"^base_model\.model\.(?P<module>.+)\.lora_(?P<which>[AB])\.weight$")
_NOT_REPRESENTABLE = ("embed_tokens", "lm_head", "embed_out", "wte", "word_embeddings")


@dataclass
class Adapter:
    directory: Path
    alpha: float
    pairs: dict[str, tuple[np.ndarray, np.ndarray]]  # HF module name → (lora_A [r, in], lora_B [out, r])


@dataclass
class BaseGGUF:
    path: Path
    architecture: str
    shapes: dict[str, tuple[int, ...]]  # tensor name → numpy shape ([out, in] for a weight)
    n_blocks: int
    n_head: int
    n_head_kv: int


@dataclass
class LoraTensor:
    name: str  # the base weight's GGUF name, e.g. blk.0.attn_q.weight
    a: np.ndarray  # [r, in] (GGUF [in, r])
    b: np.ndarray  # [out, r] (GGUF [r, out]), rows in the base GGUF's order

    @property
    def rank(self) -> int:
        return self.a.shape[0]


# ---- reading -------------------------------------------------------------------------


def adapter_directory(path: str | Path) -> Path:
    """The folder with adapter_config.json: PATH itself or PATH/adapter (a training output)."""
    path = Path(path).expanduser()
    for candidate in (path, path / "adapter"):
        if (candidate / ADAPTER_CONFIG).is_file():
            return candidate
    if not path.exists():
        raise TrainingError(f"adapter folder {path} does not exist")
    raise TrainingError(f"{path} holds no {ADAPTER_CONFIG} (a PEFT adapter saved with save_pretrained)")


def latest_training_output(data_dir: Path) -> Path:
    """The newest finished `dziri train` run: <data dir>/training/<name>/ with a complete training.json."""
    runs = []
    for path in (Path(data_dir) / "training").glob(f"*/{TRAINING_JSON}"):
        try:
            if json.loads(path.read_text(encoding="utf-8")).get("complete"):
                runs.append((path.stat().st_mtime, path.parent))
        except (OSError, ValueError):
            continue  # a run being written or a broken one is not the one to export
    if not runs:
        raise TrainingError(f"no finished training run under {Path(data_dir) / 'training'}: run `dziri train` "
                            "or pass ADAPTER_DIR")
    return max(runs)[1]


def read_training_info(adapter_dir: Path) -> dict | None:
    """training.json from the adapter folder or its parent, if there is one."""
    for folder in (adapter_dir, adapter_dir.parent):
        path = folder / TRAINING_JSON
        if path.is_file():
            try:
                return json.loads(path.read_text(encoding="utf-8"))
            except (OSError, ValueError) as exc:
                raise TrainingError(f"cannot read {path}: {exc}") from None
    return None


def read_adapter(adapter_dir: str | Path) -> Adapter:
    directory = adapter_directory(adapter_dir)
    try:
        config = json.loads((directory / ADAPTER_CONFIG).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise TrainingError(f"cannot read {directory / ADAPTER_CONFIG}: {exc}") from None
    _refuse_unrepresentable(config, directory)
    weights = directory / ADAPTER_WEIGHTS
    if not weights.is_file():
        raise TrainingError(f"{directory} has no {ADAPTER_WEIGHTS}")
    halves: dict[str, dict[str, np.ndarray]] = {}
    for key, tensor in _load_safetensors(weights).items():
        if "lora_magnitude_vector" in key:
            raise TrainingError(f"{directory} is a DoRA adapter: a GGUF LoRA cannot hold its magnitude vectors")
        if "lora_embedding_" in key:
            raise TrainingError(f"{directory} adapts the token embeddings, which a GGUF LoRA export does not cover")
        match = _PEFT_KEY.match(key)
        if match is None:
            raise TrainingError(f"{directory}: unexpected tensor {key!r} (only LoRA A/B weights can be exported)")
        halves.setdefault(match["module"], {})[match["which"]] = tensor
    pairs = {}
    for module, half in halves.items():
        if set(half) != {"A", "B"}:
            raise TrainingError(f"{directory}: module {module} has lora_{'A' if 'A' not in half else 'B'} missing")
        pairs[module] = (half["A"], half["B"])
    if not pairs:
        raise TrainingError(f"{directory}: the adapter holds no LoRA weights")
    return Adapter(directory, float(config["lora_alpha"]), pairs)


def _refuse_unrepresentable(config: dict, directory: Path) -> None:
    """llama.cpp applies plain `alpha / r · B·A` to linear weights; anything else would be
    exported wrong without a word, so it is refused."""
    reasons = []
    if config.get("peft_type", "LORA") != "LORA":
        reasons.append(f"it is a {config.get('peft_type')} adapter, not LoRA")
    if config.get("use_dora"):
        reasons.append("it is a DoRA adapter (a magnitude vector per weight)")
    if config.get("use_rslora"):
        reasons.append("it uses rsLoRA (scale alpha/sqrt(r); llama.cpp scales by alpha/r)")
    if config.get("modules_to_save"):
        reasons.append(f"it saves whole modules ({', '.join(config['modules_to_save'])})")
    if config.get("alpha_pattern"):
        reasons.append("it sets a different alpha per module (alpha_pattern); a GGUF LoRA has one")
    if config.get("bias", "none") != "none" or config.get("lora_bias"):
        reasons.append("it trains biases")
    targets = config.get("target_modules") or []
    targets = [targets] if isinstance(targets, str) else targets
    if any(name in str(target) for target in targets for name in _NOT_REPRESENTABLE):
        reasons.append("it adapts the token embeddings or the output layer")
    if "lora_alpha" not in config:
        reasons.append("its adapter_config.json has no lora_alpha")
    if reasons:
        raise TrainingError(f"cannot export {directory} as a GGUF LoRA: {'; '.join(reasons)}")


def _load_safetensors(path: Path) -> dict[str, np.ndarray]:
    from safetensors import safe_open

    try:
        with safe_open(path, framework="numpy") as f:
            return {key: f.get_tensor(key).astype(np.float32) for key in f.keys()}
    except TypeError:  # bf16, which numpy lacks: read through torch
        import torch  # noqa: F401 (safe_open's "pt" needs it)

        with safe_open(path, framework="pt") as f:
            return {key: f.get_tensor(key).float().numpy() for key in f.keys()}
    except Exception as exc:  # a truncated or foreign file
        raise TrainingError(f"cannot read {path}: {exc}") from None


def read_base(path: str | Path) -> BaseGGUF:
    path = Path(path)
    fields, shapes = read_gguf_header(path)

    def field(key: str, default=None):
        if fields.get(key) is not None:
            return fields[key]
        if default is None:
            raise TrainingError(f"the base GGUF {path} has no {key}")
        return default

    architecture = field("general.architecture")
    return BaseGGUF(
        path=path,
        architecture=architecture,
        shapes=shapes,
        n_blocks=int(field(f"{architecture}.block_count")),
        n_head=int(field(f"{architecture}.attention.head_count", 0)),
        n_head_kv=int(field(f"{architecture}.attention.head_count_kv", 0)),
    )


# ---- the mapping -----------------------------------------------------------------------


def lora_tensors(adapter: Adapter, base: BaseGGUF, *, permute_qk: bool = True) -> list[LoraTensor]:
    """The adapter's pairs named and laid out for `base`; refuses what does not fit it.
    `permute_qk=False` leaves out the q/k row permutation (only the tests use it, to show
    that it matters)."""
    import gguf

    arch = {name: arch for arch, name in gguf.MODEL_ARCH_NAMES.items()}.get(base.architecture)
    if arch is None:
        raise TrainingError(f"gguf-py knows no architecture {base.architecture!r} (from {base.path})")
    names = gguf.get_tensor_name_map(arch, base.n_blocks)
    tensors = []
    for module, (a, b) in sorted(adapter.pairs.items()):
        found = names.get_type_and_name(module + ".weight", try_suffixes=(".weight",))
        if found is None:
            raise TrainingError(f"module {module} of {adapter.directory} has no counterpart in a "
                                f"{base.architecture} GGUF")
        kind, name = found
        if name not in base.shapes:
            raise TrainingError(f"{base.path} has no tensor {name} for module {module}: wrong base model?")
        out_dim, in_dim = base.shapes[name]
        if a.ndim != 2 or b.ndim != 2 or a.shape[1] != in_dim or b.shape[0] != out_dim or a.shape[0] != b.shape[1]:
            raise TrainingError(
                f"{module}: LoRA A {list(a.shape)} / B {list(b.shape)} do not fit {name} [{out_dim}, {in_dim}] "
                f"of {base.path}: the adapter was trained on another base model"
            )
        if permute_qk and base.architecture in PERMUTED_QK:
            if kind == gguf.MODEL_TENSOR.ATTN_Q:
                b = _permute_rows(b, base.n_head)
            elif kind == gguf.MODEL_TENSOR.ATTN_K:
                b = _permute_rows(b, base.n_head_kv)
        tensors.append(LoraTensor(name, np.ascontiguousarray(a, np.float32), np.ascontiguousarray(b, np.float32)))
    return tensors


def _permute_rows(weights: np.ndarray, n_head: int) -> np.ndarray:
    """convert_hf_to_gguf's LlamaModel.permute (with n_head_kv already chosen for k): the two
    rope halves of each head's rows interleaved."""
    return (weights.reshape(n_head, 2, weights.shape[0] // n_head // 2, *weights.shape[1:])
            .swapaxes(1, 2)
            .reshape(weights.shape))


def check_base(adapter_dir: Path, base: BaseGGUF, info: dict | None) -> None:
    """When training.json says what the adapter was trained on, the base must be that file."""
    if not info:
        return
    trained_arch = info.get("architecture")
    if trained_arch and trained_arch != base.architecture:
        raise TrainingError(f"the adapter in {adapter_dir} was trained on a {trained_arch} model "
                            f"({info.get('base', '?')}), not on {base.path} ({base.architecture})")
    trained_sha = info.get("base_gguf_sha256")
    if trained_sha and trained_sha != file_sha256(base.path):
        raise TrainingError(f"the adapter in {adapter_dir} was trained on {info.get('base', '?')} "
                            f"(sha256 {trained_sha[:12]}…), not on {base.path}")


def resolve_base(adapter_dir: str | Path, base: str | None) -> Path:
    """`base` (a bundled name or a GGUF path), else the one training.json names."""
    info = read_training_info(adapter_directory(adapter_dir))
    if base:
        return resolve_gguf(base)
    if info and info.get("base"):
        return resolve_gguf(str(info["base"]))
    raise TrainingError(f"no {TRAINING_JSON} next to {adapter_dir} says which base model it adapts: pass --base")


# ---- writing ---------------------------------------------------------------------------


def export_lora_gguf(adapter_dir: str | Path, base_gguf: str | Path, out_path: str | Path, *,
                     progress: bool | None = False, permute_qk: bool = True) -> Path:
    """Write the adapter in `adapter_dir` as a GGUF LoRA for `base_gguf` to `out_path` (F32)."""
    import gguf
    from tqdm import tqdm

    adapter = read_adapter(adapter_dir)
    base = read_base(base_gguf)
    check_base(adapter.directory, base, read_training_info(adapter.directory))
    tensors = lora_tensors(adapter, base, permute_qk=permute_qk)
    out_path = Path(out_path)
    with _atomic(out_path) as partial:
        writer = gguf.GGUFWriter(partial, base.architecture)
        writer.add_type(gguf.GGUFType.ADAPTER)
        writer.add_string(gguf.Keys.Adapter.TYPE, "lora")
        writer.add_float32(gguf.Keys.Adapter.LORA_ALPHA, adapter.alpha)
        for tensor in tqdm(tensors, desc="exporting", unit=" tensors", disable=_no_bar(progress)):
            writer.add_tensor(tensor.name + ".lora_a", tensor.a)
            writer.add_tensor(tensor.name + ".lora_b", tensor.b)
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
    return out_path


def dequantize_gguf(src: str | Path, dst: str | Path, *, progress: bool | None = False) -> Path:
    """An F32 copy of a (quantized) GGUF: the same metadata, tokenizer included."""
    return _rewrite(Path(src), Path(dst), {}, "f32", progress)


def merge_gguf(base_gguf: str | Path, adapter_dir: str | Path, out_path: str | Path, out_type: str = "f32", *,
               progress: bool | None = False) -> Path:
    """The base with the adapter folded in (W + alpha/r · B·A). f32: every tensor F32. q8_0:
    each adapted weight (dequantized, merged) requantized to Q8_0, every other tensor copied
    bit for bit (requantizing it would only lose precision)."""
    if out_type not in ("f32", "q8_0"):
        raise TrainingError(f"unknown merged type {out_type!r}: choose f32 or q8_0")
    adapter = read_adapter(adapter_dir)
    base = read_base(base_gguf)
    check_base(adapter.directory, base, read_training_info(adapter.directory))
    deltas = {t.name: t for t in lora_tensors(adapter, base)}
    return _rewrite(Path(base_gguf), Path(out_path), deltas, out_type, progress, alpha=adapter.alpha)


def _rewrite(src: Path, dst: Path, deltas: dict[str, LoraTensor], out_type: str, progress: bool | None,
             alpha: float = 0.0) -> Path:
    """Stream `src` into `dst` tensor by tensor (dequantized, plus a delta where given), so
    only one tensor is in memory at a time: the F32 Gemma 3 270M is about 1 GB."""
    import gguf
    from tqdm import tqdm

    reader = gguf.GGUFReader(src)
    architecture = reader.fields["general.architecture"].contents()
    q8 = out_type == "q8_0"
    q8_block = gguf.GGML_QUANT_SIZES[gguf.GGMLQuantizationType.Q8_0][0]
    file_type = gguf.LlamaFileType.MOSTLY_Q8_0 if q8 else gguf.LlamaFileType.ALL_F32
    with _atomic(dst) as partial:
        writer = gguf.GGUFWriter(partial, architecture)
        for field in reader.fields.values():
            if field.name.startswith("GGUF.") or field.name == "general.architecture":
                continue  # the header's own counts; the architecture the writer adds itself
            if field.name == "general.file_type":
                writer.add_file_type(file_type)
                continue
            if field.name == "general.alignment":
                writer.data_alignment = int(field.contents())
            sub_type = field.types[-1] if field.types[0] == gguf.GGUFValueType.ARRAY else None
            writer.add_key_value(field.name, field.contents(), field.types[0], sub_type)
        plan = []
        for t in reader.tensors:
            shape = tuple(int(d) for d in reversed(t.shape))
            if q8 and t.name not in deltas:
                mode = "copy"
                writer.add_tensor_info(t.name, t.data.shape, t.data.dtype, t.data.nbytes, raw_dtype=t.tensor_type)
            elif q8 and len(shape) >= 2 and shape[-1] % q8_block == 0:
                mode = "q8_0"
                byte_shape = gguf.quant_shape_to_byte_shape(shape, gguf.GGMLQuantizationType.Q8_0)
                writer.add_tensor_info(t.name, byte_shape, np.dtype(np.uint8), int(np.prod(byte_shape)),
                                       raw_dtype=gguf.GGMLQuantizationType.Q8_0)
            else:  # f32, or rows Q8_0's 32-value blocks cannot split
                mode = "f32"
                writer.add_tensor_info(t.name, shape, np.dtype(np.float32), int(np.prod(shape)) * 4)
            plan.append((t, shape, mode))
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_ti_data_to_file()
        for t, shape, mode in tqdm(plan, desc="merging" if deltas else "dequantizing", unit=" tensors",
                                   disable=_no_bar(progress)):
            if mode == "copy":
                writer.write_tensor_data(np.asarray(t.data))
                continue
            data = gguf.quants.dequantize(t.data, t.tensor_type).reshape(shape).astype(np.float32, copy=False)
            lora = deltas.get(t.name)
            if lora is not None:
                data = data + (alpha / lora.rank) * (lora.b @ lora.a)
            data = np.ascontiguousarray(data, dtype=np.float32)
            writer.write_tensor_data(gguf.quants.quantize(data, gguf.GGMLQuantizationType.Q8_0) if mode == "q8_0"
                                     else data)
        writer.close()
    return dst


class _atomic:
    """Write to `<path>.partial`, rename over `path` only when complete: a killed export
    never leaves a half GGUF that llama.cpp would try to load."""

    def __init__(self, path: Path):
        self.path = path
        self.partial = path.with_name(path.name + ".partial")

    def __enter__(self) -> Path:
        if not self.path.parent.is_dir():
            raise TrainingError(f"cannot write {self.path}: folder {self.path.parent} does not exist")
        return self.partial

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            os.replace(self.partial, self.path)
        else:
            self.partial.unlink(missing_ok=True)


def _no_bar(progress: bool | None) -> bool | None:
    return None if progress is None else not progress  # tqdm: disable=None means "only on a terminal"


# ---- Ollama ----------------------------------------------------------------------------

# Gemma 3's turn format in Ollama's Go template language, as dziri's GEMMA_TEMPLATE renders
# it (plugins/backends/turn_formats.py): a system message becomes the opening paragraph of
# the first user turn; the assistant is "model". Ollama adds the BOS token itself.
GEMMA_GO_TEMPLATE = """{{- $system := "" }}
{{- range $i, $_ := .Messages }}
{{- $last := eq (len (slice $.Messages $i)) 1 }}
{{- if eq .Role "system" }}{{ $system = .Content }}
{{- else if eq .Role "user" }}<start_of_turn>user
{{ if $system }}{{ $system }}

{{ $system = "" }}{{ end }}{{ .Content }}<end_of_turn>
{{ if $last }}<start_of_turn>model
{{ end }}
{{- else if eq .Role "assistant" }}<start_of_turn>model
{{ .Content }}<end_of_turn>
{{ end }}
{{- end }}"""

# ChatML, SmolLM2's format (its GGUF's own chat template).
CHATML_GO_TEMPLATE = """{{- range $i, $_ := .Messages }}
{{- $last := eq (len (slice $.Messages $i)) 1 }}<|im_start|>{{ .Role }}
{{ .Content }}<|im_end|>
{{ if and $last (ne .Role "assistant") }}<|im_start|>assistant
{{ end }}
{{- end }}"""


def ollama_format(base_gguf: str | Path) -> tuple[str, list[str]]:
    """(Go template, stop strings) for the chat format of the model in `base_gguf`."""
    fields, _ = read_gguf_header(Path(base_gguf))
    architecture = fields.get("general.architecture") or ""
    template = fields.get("tokenizer.chat_template") or ""
    if architecture.startswith("gemma") and "<|im_start|>" not in template:
        return GEMMA_GO_TEMPLATE, ["<end_of_turn>"]
    if "<|im_start|>" in template:
        return CHATML_GO_TEMPLATE, ["<|im_end|>"]
    raise TrainingError(f"dziri knows no Ollama chat template for {base_gguf} ({architecture}): "
                        "write the Modelfile's TEMPLATE by hand")


def write_modelfile(path: str | Path, base_gguf: str | Path, adapter_gguf: str | Path | None = None, *,
                    template: str | None = None, stop: list[str] | None = None, system: str | None = None,
                    num_ctx: int = 2048, temperature: float | None = None, repeat_penalty: float | None = None,
                    base_hint: str | None = None) -> Path:
    """An Ollama Modelfile: FROM the base (or a merged GGUF, then no adapter), ADAPTER the GGUF
    LoRA. `base_hint`, a bundled model's name, puts in a comment how to find its path on
    another machine."""
    from dziri.core.config import DEFAULT_SYSTEM_PROMPT

    path = Path(path)
    if template is None:
        template, default_stop = ollama_format(base_gguf)
        stop = default_stop if stop is None else stop
    from dziri.core.config import ChatSettings
    from dziri.plugins.backends.llamacpp import REPEAT_PENALTY

    system = DEFAULT_SYSTEM_PROMPT if system is None else system
    # What dziri serves with, so that `ollama run dziri` answers as `dziri chat` does.
    temperature = ChatSettings().temperature if temperature is None else temperature
    repeat_penalty = REPEAT_PENALTY if repeat_penalty is None else repeat_penalty
    lines = [
        "# Ollama recipe for dziri, written by `dziri export`. Build and run it with:",
        "#   ollama create dziri -f Modelfile && ollama run dziri",
        "# Paths are relative to this file's folder where they lie under it (Ollama resolves them so).",
    ]
    if base_hint:
        where = ("a copy under this folder" if _modelfile_path(base_gguf, path.parent).startswith("./")
                 else "a path on the machine that wrote this file")
        lines += [
            f"# FROM is the GGUF of the bundled {base_hint}, {where};",
            "# print where it is on yours with:",
            "#   python -c \"from dziri.plugins.backends.bundled import bundled_gguf; "
            f"print(bundled_gguf('{base_hint}'))\"",
        ]
    lines.append(f"FROM {_modelfile_path(base_gguf, path.parent)}")
    if adapter_gguf is not None:
        lines.append(f"ADAPTER {_modelfile_path(adapter_gguf, path.parent)}")
    lines += [f'TEMPLATE """{template}"""', f'SYSTEM """{system}"""', f"PARAMETER num_ctx {num_ctx}",
              f"PARAMETER temperature {temperature}", f"PARAMETER repeat_penalty {repeat_penalty}"]
    lines += [f"PARAMETER stop {json.dumps(s)}" for s in stop or []]
    text = "\n".join(lines) + "\n"
    with _atomic(path) as partial:
        partial.write_text(text, encoding="utf-8")
    return path


def _modelfile_path(target: str | Path, folder: Path) -> str:
    target = Path(target).expanduser().absolute()
    try:
        return "./" + target.relative_to(folder.absolute()).as_posix()
    except ValueError:
        return target.as_posix()
