"""What the Darija adapters buy, as a translator and as a chat, in one run: for both bundled
models, base against base + adapter,
- chrF and BLEU of Darija → English translations on data/darija-en/test.json, scored the way
  `dziri eval` scores them (the training prompt, greedy, the reply's first line);
- the chat rates on data/darija-chat/test.jsonl, scored the way `dziri eval --task chat`
  scores them (the user turns through ChatService with the served settings, the last reply
  checked for language, memory, topic, echo, translation and looping).
Prints both tables, the adapter − base deltas and the adapter / base ratios.

    .venv/bin/python bench/quality.py [--data data/darija-en/test.json] [--chat data/darija-chat/test.jsonl]
        [--limit N] [--chat-limit N] [--gemma-adapter PATH] [--smollm2-adapter PATH]

Gemma 3 270M's adapter defaults to the one shipped in plugins/backends/adapters/; a
SmolLM2 adapter is scored only when --smollm2-adapter names one. A missing adapter is
skipped with a note, its base is still scored.
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

from dziri.core.config import DziriConfig, load_config
from dziri.plugins.backends.bundled import GEMMA, SMOLLM2
from dziri.plugins.backends.llamacpp import shipped_adapter
from dziri.training.chat_eval import evaluate_chat
from dziri.training.evaluate import evaluate

REPO = Path(__file__).resolve().parent.parent


def llamacpp_config(base: DziriConfig, model: str, adapter: str) -> DziriConfig:
    config = base.model_copy(deep=True)
    extra = config.backend.model_extra
    extra["llamacpp"] = {**config.backend.plugin_settings("llamacpp"), "model": model, "adapter_path": adapter}
    return config


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", default=str(REPO / "data" / "darija-en" / "test.json"))
    parser.add_argument("--limit", type=int, help="the first N segments only (a quick check)")
    parser.add_argument("--gemma-adapter", help="default: the adapter shipped for gemma3-270m")
    parser.add_argument("--smollm2-adapter")
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--chat", default=str(REPO / "data" / "darija-chat" / "test.jsonl"))
    parser.add_argument("--chat-limit", type=int, help="the first N conversations only (a quick check)")
    parser.add_argument("--no-chat", action="store_true", help="translation only")
    args = parser.parse_args()

    os.environ["DZIRI_DATA_DIR"] = tempfile.mkdtemp(prefix="dziri-bench-")
    os.environ["DZIRI_BACKEND"] = "llamacpp"
    base = load_config()
    shipped = shipped_adapter(GEMMA)
    adapters = {GEMMA: args.gemma_adapter or (str(shipped) if shipped else None), SMOLLM2: args.smollm2_adapter}

    configs, notes = {}, []
    for model in (GEMMA, SMOLLM2):
        configs[f"{model} base"] = llamacpp_config(base, model, "")
        if adapters[model]:
            configs[f"{model} + adapter"] = llamacpp_config(base, model, adapters[model])
        else:
            where = "none shipped yet; pass --gemma-adapter PATH" if model == GEMMA else "pass --smollm2-adapter PATH"
            notes.append(f"{model} + adapter: skipped ({where})")

    result = evaluate(args.data, configs, limit=args.limit, max_tokens=args.max_tokens)
    print(f"{args.data}: {len(result.segments)} segments, Darija → English, greedy, max {args.max_tokens} tokens")
    print(f"{'system':<24} {'chrF':>6} {'BLEU':>6}  adapter")
    for name, system in result.systems.items():
        print(f"{name:<24} {system.scores.chrf:6.1f} {system.scores.bleu:6.1f}  {system.adapter or '-'}")
    for model in (GEMMA, SMOLLM2):
        plain, tuned = result.systems.get(f"{model} base"), result.systems.get(f"{model} + adapter")
        if plain and tuned:
            a, b = tuned.scores, plain.scores
            print(f"{model}: adapter − base chrF {a.chrf - b.chrf:+.1f} (×{_ratio(a.chrf, b.chrf)}),"
                  f" BLEU {a.bleu - b.bleu:+.1f} (×{_ratio(a.bleu, b.bleu)})")
    if not args.no_chat:
        chat = evaluate_chat(args.chat, configs, limit=args.chat_limit)
        print(f"\n{chat.render()}\nthe served settings: {chat.settings}")
        rates = {name: run.rates() for name, run in chat.systems.items()}
        for model in (GEMMA, SMOLLM2):
            plain, tuned = rates.get(f"{model} base"), rates.get(f"{model} + adapter")
            if plain and tuned:
                print(f"{model}: good replies adapter {_percent(tuned['good'])} vs base {_percent(plain['good'])}"
                      f" (×{_ratio(tuned['good'], plain['good'])})")
    for note in notes:
        print(note)


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}%"


def _ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}" if b else "∞" if a else "1.00"


if __name__ == "__main__":
    main()
