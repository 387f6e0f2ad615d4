"""Which generation settings the default model should be served with, by measurement: the
chat eval (`dziri eval --task chat`: the user turns through ChatService, the last reply
checked for language, memory, topic, echo, translation and looping) of the shipped model
under several temperature / repetition-penalty settings, the served one first as the
baseline, in one run, on the same conversations and seed.

    .venv/bin/python bench/sampling.py [--chat data/darija-chat/test.jsonl] [--limit 80]
        [--settings 0.7/1.1,0/1.1,0.3/1.1,0.7/1.0,0.7/1.3]

Each setting is TEMPERATURE/REPEAT_PENALTY. Prints the rates of each and its good-reply
ratio against the served setting.
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

from dziri.core.config import load_config
from dziri.training.chat_eval import evaluate_chat

REPO = Path(__file__).resolve().parent.parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--chat", default=str(REPO / "data" / "darija-chat" / "test.jsonl"))
    parser.add_argument("--limit", type=int, default=80, help="the first N test conversations")
    parser.add_argument("--settings", default="0.7/1.1,0/1.1,0.3/1.1,0.7/1.0,0.7/1.3")
    args = parser.parse_args()

    os.environ["DZIRI_DATA_DIR"] = tempfile.mkdtemp(prefix="dziri-bench-")
    os.environ["DZIRI_BACKEND"] = "llamacpp"
    base = load_config()
    served = (base.chat.temperature, base.backend.plugin_settings("llamacpp").get("repeat_penalty", 1.1))
    wanted = [tuple(float(x) for x in item.split("/")) for item in args.settings.split(",")]
    configs = {}
    for temperature, penalty in [served, *(w for w in wanted if w != served)]:
        config = base.model_copy(deep=True)
        config.chat.temperature = temperature
        config.backend.model_extra["llamacpp"] = {**config.backend.plugin_settings("llamacpp"),
                                                  "repeat_penalty": penalty}
        label = " (served)" if (temperature, penalty) == served else ""
        configs[f"t {temperature:g} rp {penalty:g}{label}"] = config

    result = evaluate_chat(args.chat, configs, limit=args.limit)
    print(result.render())
    rates = {name: run.rates() for name, run in result.systems.items()}
    baseline = next(iter(rates))
    for name, rate in rates.items():
        if name != baseline:
            a, b = rate["good"] or 0.0, rates[baseline]["good"] or 0.0
            print(f"{name}: good {100 * a:.1f}% vs served {100 * b:.1f}% "
                  f"({100 * (a - b):+.1f} points, ×{a / b:.2f})" if b else f"{name}: good {100 * a:.1f}%")


if __name__ == "__main__":
    main()
