"""What dziri's own layers cost on top of llama.cpp.

Streams the same reply (the same Llama object, prompt, settings, temperature 0) through
  bare:  llama-cpp-python's create_chat_completion(stream=True), and
  dziri: ChatService.send() → pluggy → the llamacpp plugin, storing both messages in SQLite,
run by run (each round asks both paths the same new question, the first path taking
turns), and prints median time to first token and tokens/s of each, and the ratio
dziri/bare of each round's tokens/s: its median (target ≥ 0.97) and its spread, so that one
noisy round can neither pass nor fail it.

Both paths ignore the end of text (its tokens are banned through llama.cpp's logit bias),
so each reply runs to --max-tokens and the rate is measured over that many tokens, not
over the few a short reply has.

    .venv/bin/python bench/overhead.py [--runs 9] [--max-tokens 256]
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


def rate(run: tuple[float, int, float]) -> float:
    """Decoding rate: the pieces after the first, over the time after the first."""
    first, count, total = run
    return (count - 1) / (total - first)


def bare_stream(llama, messages, max_tokens, repeat_penalty):
    for chunk in llama.create_chat_completion(messages=messages, stream=True, max_tokens=max_tokens,
                                              temperature=0.0, seed=1, repeat_penalty=repeat_penalty):
        text = chunk["choices"][0]["delta"].get("content")
        if text:
            yield text


def never_ending(llama) -> None:
    """Make every generation on `llama` (the bare path's and the plugin's) run to max_tokens:
    the end-of-text and end-of-turn tokens get a logit bias of -inf."""
    ends = {llama.token_eos()}
    for marker in (b"<end_of_turn>", b"<|im_end|>", b"<|endoftext|>", b"<|eot_id|>"):
        ids = llama.tokenize(marker, add_bos=False, special=True)
        if len(ids) == 1:  # the marker is one special token of this model's vocabulary
            ends.add(ids[0])
    create = llama.create_chat_completion

    def create_chat_completion(**kwargs):
        return create(**kwargs, logit_bias={token: float("-inf") for token in ends})

    llama.create_chat_completion = create_chat_completion


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=9)
    parser.add_argument("--max-tokens", type=int, default=256)
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
    plugin = app.pm.get_plugin("backend:llamacpp")
    llama = plugin.loaded().llama
    never_ending(llama)
    repeat_penalty = plugin.settings.repeat_penalty  # the bare path samples as the plugin does
    n_threads = llama.n_threads
    system = chat.settings.system_prompt

    def run_bare(text):
        llama.reset()  # no KV-cache reuse between runs: both paths evaluate the whole prompt
        messages = [{"role": "system", "content": system}, {"role": "user", "content": text}]
        return measure(bare_stream(llama, messages, args.max_tokens, repeat_penalty))

    def run_dziri(text):
        llama.reset()
        # A new conversation each time, so both sides see the same two-message prompt.
        return measure(chat.send(user.id, text, options=options))

    run_bare(PROMPT), run_dziri(PROMPT)  # warm-up: caches, threads
    bare_runs, dziri_runs = [], []
    for run in range(args.runs):
        # A new question each round, asked of both paths, the first one taking turns.
        text = f"{PROMPT} ({run + 1})"
        if run % 2:
            dziri_runs.append(run_dziri(text))
            bare_runs.append(run_bare(text))
        else:
            bare_runs.append(run_bare(text))
            dziri_runs.append(run_dziri(text))

    print(f"model {info.name} ({os.path.basename(info.details['path'])}), n_ctx {info.context_length}, "
          f"{n_threads} threads, max_tokens {args.max_tokens} (end of text ignored), temperature 0, "
          f"{args.runs} rounds (median)")
    print(f"{'path':<28}{'first token ms':>16}{'tokens':>8}{'tokens/s':>10}")
    for name, runs in (("bare llama-cpp-python", bare_runs), ("dziri ChatService+SQLite", dziri_runs)):
        ttft = statistics.median(r[0] for r in runs) * 1000
        tokens = statistics.median(r[1] for r in runs)
        print(f"{name:<28}{ttft:>16.1f}{tokens:>8.0f}{statistics.median(map(rate, runs)):>10.1f}")
    fewest = min(r[1] for r in bare_runs + dziri_runs)
    if fewest < min(128, args.max_tokens):
        print(f"warning: a reply had only {fewest} tokens; the rates are measured over too few")
    ratios = sorted(rate(d) / rate(b) for b, d in zip(bare_runs, dziri_runs, strict=True))
    ratio = statistics.median(ratios)
    print(f"ratio dziri/bare tokens/s, per round: median {ratio:.3f} (min {ratios[0]:.3f}, max {ratios[-1]:.3f}) "
          f"(target median ≥ 0.97: {'ok' if ratio >= 0.97 else 'MISSED'})")
    bare_ttft = statistics.median(r[0] for r in bare_runs) * 1000
    dziri_ttft = statistics.median(r[0] for r in dziri_runs) * 1000
    print(f"ratio dziri/bare time to first token: {dziri_ttft / bare_ttft:.3f} "
          f"({dziri_ttft - bare_ttft:+.1f} ms: storing the user message, fitting the prompt, the placeholder reply)")
    app.close()
    sys.exit(0)


if __name__ == "__main__":
    main()
