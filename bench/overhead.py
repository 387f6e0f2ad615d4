"""What dziri's own layers cost on top of llama.cpp.

Streams the same reply (same model, prompt, settings, temperature 0) through
  bare:  llama-cpp-python's create_chat_completion(stream=True), and
  dziri: ChatService.send() → pluggy → the llamacpp plugin, storing both messages in SQLite,
alternating the two, and prints median time to first token and tokens/s of each and
their ratio (target: dziri/bare tokens/s ≥ 0.97).

    .venv/bin/python bench/overhead.py [--runs 7] [--max-tokens 128]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time

import llama_cpp

from dziri.core.app import App
from dziri.core.config import load_config

PROMPT = "wach rak khouya? 3lach ma jitch lbare7 l'match?"


def measure(pieces) -> tuple[float, int, float]:
    """(seconds to the first piece, pieces, total seconds) for a stream started just now."""
    start = time.perf_counter()
    first, count = None, 0
    for _ in pieces:
        count += 1
        if first is None:
            first = time.perf_counter() - start
    return first or 0.0, count, time.perf_counter() - start


def bare_stream(llama, messages, max_tokens):
    for chunk in llama.create_chat_completion(messages=messages, stream=True, max_tokens=max_tokens,
                                              temperature=0.0, seed=1):
        text = chunk["choices"][0]["delta"].get("content")
        if text:
            yield text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--max-tokens", type=int, default=128)
    args = parser.parse_args()

    os.environ["DZIRI_DATA_DIR"] = tempfile.mkdtemp(prefix="dziri-bench-")
    os.environ["DZIRI_BACKEND"] = "llamacpp"
    os.environ["DZIRI_STORE"] = "sqlite"
    app = App(load_config())
    chat, user = app.chat, app.chat.local_user()
    options = chat.default_options(max_tokens=args.max_tokens, temperature=0.0, seed=1)
    info = app.backend.model_info()
    plugin_settings = app.config.backend.plugin_settings("llamacpp")
    n_threads = plugin_settings.get("n_threads") or len(os.sched_getaffinity(0))
    llama = llama_cpp.Llama(model_path=info.details["path"], n_ctx=info.context_length, n_threads=n_threads,
                            n_threads_batch=n_threads, verbose=False)
    system = chat.settings.system_prompt
    bare_messages = [{"role": "system", "content": system}, {"role": "user", "content": PROMPT}]

    def run_bare():
        return measure(bare_stream(llama, bare_messages, args.max_tokens))

    def run_dziri():
        # A new conversation each time, so both sides see the same two-message prompt.
        return measure(chat.send(user.id, PROMPT, options=options))

    run_bare(), run_dziri()  # warm-up: caches, threads
    results = {"bare llama-cpp-python": [], "dziri ChatService+SQLite": []}
    for _ in range(args.runs):
        results["bare llama-cpp-python"].append(run_bare())
        results["dziri ChatService+SQLite"].append(run_dziri())

    print(f"model {info.name} ({os.path.basename(info.details['path'])}), n_ctx {info.context_length}, "
          f"{n_threads} threads, max_tokens {args.max_tokens}, temperature 0, {args.runs} runs each (median)")
    print(f"{'path':<28}{'first token ms':>16}{'tokens':>8}{'tokens/s':>10}")
    summary = {}
    for name, runs in results.items():
        ttft = statistics.median(r[0] for r in runs) * 1000
        tokens = statistics.median(r[1] for r in runs)
        rate = statistics.median(r[1] / r[2] for r in runs)
        summary[name] = (ttft, rate)
        print(f"{name:<28}{ttft:>16.1f}{tokens:>8.0f}{rate:>10.1f}")
    (bare_ttft, bare_rate), (dziri_ttft, dziri_rate) = summary.values()
    ratio = dziri_rate / bare_rate
    print(f"ratio dziri/bare tokens/s: {ratio:.3f} (target ≥ 0.97: {'ok' if ratio >= 0.97 else 'MISSED'})")
    print(f"time to first token: dziri {dziri_ttft:.1f} ms vs bare {bare_ttft:.1f} ms "
          f"(+{dziri_ttft - bare_ttft:.1f} ms: storing the user message, fitting the prompt, the placeholder reply)")
    app.close()
    sys.exit(0)


if __name__ == "__main__":
    main()
