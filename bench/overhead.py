"""What dziri's own layers cost on top of llama.cpp.

Streams the same reply (the same Llama object, prompt, settings, temperature 0) through
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

from dziri.core.app import App
from dziri.core.config import load_config

# Asks for a long answer, so most replies run to max_tokens and decoding dominates.
PROMPT = "wach rak khouya? Tell me a long story about a trip from Algiers to Oran, in many sentences."


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
    parser.add_argument("--runs", type=int, default=9)
    parser.add_argument("--max-tokens", type=int, default=128)
    args = parser.parse_args()

    os.environ["DZIRI_DATA_DIR"] = tempfile.mkdtemp(prefix="dziri-bench-")
    os.environ["DZIRI_BACKEND"] = "llamacpp"
    os.environ["DZIRI_STORE"] = "sqlite"
    app = App(load_config())
    chat, user = app.chat, app.chat.local_user()
    options = chat.default_options(max_tokens=args.max_tokens, temperature=0.0, seed=1)
    info = app.backend.model_info()
    # The very same llama_cpp.Llama object (and chat handler) that the plugin generates
    # with, so the two paths differ only by dziri's layers.
    llama = app.pm.get_plugin("backend:llamacpp").loaded().llama
    n_threads = llama.n_threads
    system = chat.settings.system_prompt

    def run_bare(text):
        llama.reset()  # no KV-cache reuse between runs: both paths evaluate the whole prompt
        messages = [{"role": "system", "content": system}, {"role": "user", "content": text}]
        return measure(bare_stream(llama, messages, args.max_tokens))

    def run_dziri(text):
        llama.reset()
        # A new conversation each time, so both sides see the same two-message prompt.
        return measure(chat.send(user.id, text, options=options))

    run_bare(PROMPT), run_dziri(PROMPT)  # warm-up: caches, threads
    results = {"bare llama-cpp-python": [], "dziri ChatService+SQLite": []}
    for run in range(args.runs):
        # A new question each round, asked of both paths in turn.
        text = f"{PROMPT} ({run + 1})"
        results["bare llama-cpp-python"].append(run_bare(text))
        results["dziri ChatService+SQLite"].append(run_dziri(text))

    print(f"model {info.name} ({os.path.basename(info.details['path'])}), n_ctx {info.context_length}, "
          f"{n_threads} threads, max_tokens {args.max_tokens}, temperature 0, {args.runs} runs each (median)")
    print(f"{'path':<28}{'first token ms':>16}{'tokens':>8}{'tokens/s':>10}")
    summary = {}
    for name, runs in results.items():
        ttft = statistics.median(r[0] for r in runs) * 1000
        tokens = statistics.median(r[1] for r in runs)
        # Decoding rate: the pieces after the first, over the time after the first.
        rate = statistics.median((r[1] - 1) / (r[2] - r[0]) for r in runs)
        summary[name] = (ttft, rate)
        print(f"{name:<28}{ttft:>16.1f}{tokens:>8.0f}{rate:>10.1f}")
    (bare_ttft, bare_rate), (dziri_ttft, dziri_rate) = summary.values()
    ratio = dziri_rate / bare_rate
    print(f"ratio dziri/bare tokens/s: {ratio:.3f} (target ≥ 0.97: {'ok' if ratio >= 0.97 else 'MISSED'})")
    print(f"ratio dziri/bare time to first token: {dziri_ttft / bare_ttft:.3f} "
          f"({dziri_ttft - bare_ttft:+.1f} ms: storing the user message, fitting the prompt, the placeholder reply)")
    app.close()
    sys.exit(0)


if __name__ == "__main__":
    main()
