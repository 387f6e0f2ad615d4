"""What batching saves: 1,000 Darija segments through the Groq translator against the
seed's one-request-per-segment loop, side by side, against the same local fake Groq
server (tests/fakes/groq_server.py) that allows 30 requests per minute and answers 429
with retry-after beyond that.

Time is fast-forwarded, and both sides share one clock: it runs at real speed while
code runs (HTTP, JSON, the plugin's own work), but a sleep — the server's answer latency,
the seed's one-second pause, a wait for the rate limit — moves it forward at once
instead of waiting. Every second either side waits is still counted in the reported
time; half an hour of rate-limited traffic takes a few real seconds. (Client and server
never sleep at the same moment here: the client is blocked on the answer while the
server "generates".) `--scale N` runs a clock N times faster than real time instead,
where sleeps really happen, scaled down; its figures include the HTTP overhead scaled up
N times too. The fake answers after 0.2 s + completion tokens / 275 tokens/s, roughly
Groq's speed on llama-3.3-70b-versatile, so a batch answer takes longer than a
one-segment answer.

The seed loop sends one request per segment with a seed-style strict prompt, then
sleeps one second; on a 429 it waits what retry-after says (without that it could not
finish under the limit at all). Tokens are counted the way the fake server counts them,
ceil(characters / 4) of every message, over the answered requests (as Groq bills and
rate-limits them); refused requests are counted in the 429 row.

    .venv/bin/python bench/translate.py [--segments 1000] [--rpm 30] [--tpm N] [--scale N]
"""

from __future__ import annotations

import argparse
import logging
import os
import random
import sys
import tempfile
import threading
import time
from pathlib import Path

import groq

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from fakes.groq_server import FAKE_KEY, FakeGroqServer, fake_translate  # noqa: E402

from dziri.core.models import PluginContext, Segment  # noqa: E402
from dziri.plugins.translators.groq import GroqTranslator  # noqa: E402

MODEL = "llama-3.3-70b-versatile"
SEED_SYSTEM = "You are a helpful translator. Translate Algerian Darija into English."
SEED_PROMPT = ("Translate the following Algerian Darija text into English. Only the translation, no commentary:"
               "\n\n{text}")

ARABIZI = ("wach rak khouya sahbi ana nta nti hna houma mlih labas hamdoullah bzaf chwiya lyoum ghodwa lbareh "
           "bghit nrouh dar khedma flous drahem mazal kayen makanch dyali wahed zouj bark daba tani yaatik saha "
           "bessah ma3lich 9a3 7aja 9rib b3id nakol nechreb 3lach kifach wesh rani sa7a ftourek").split()
ARABIC = ("واش راك راني انا خويا مليح بزاف شوية اليوم غدوة شكرا صحة كيفاش علاش نروح الدار خدمة دراهم "
          "مازال كاين بصح").split()
FRENCH = "merci bonjour travail demain voiture maison beaucoup aujourd'hui toujours oui non bien ça va".split()


def darija_segments(count: int, seed: int = 2024) -> list[Segment]:
    """Deterministic segments of 5-30 words, mostly Arabizi, some Arabic script, some French."""
    rng = random.Random(seed)
    items = []
    for number in range(count):
        script = ARABIC if rng.random() < 0.3 else ARABIZI
        words = [rng.choice(FRENCH) if rng.random() < 0.15 else rng.choice(script) for _ in range(rng.randint(5, 30))]
        text = " ".join(words)
        items.append(Segment(id=f"msg-{number:04d}", text=text + rng.choice(["", "?", "!", "."])))
    return items


class FastForwardClock:
    """Real time, except that a sleep takes none: it moves the clock forward at once."""

    def __init__(self) -> None:
        self.start = time.perf_counter()
        self.skipped = 0.0
        self._lock = threading.Lock()

    def now(self) -> float:
        return time.perf_counter() - self.start + self.skipped

    def sleep(self, seconds: float) -> None:
        with self._lock:
            self.skipped += max(0.0, seconds)


class ScaledClock:
    """Seconds on a clock `scale` times faster than real time; sleep() sleeps accordingly."""

    def __init__(self, scale: float):
        self.scale = scale
        self.start = time.perf_counter()

    def now(self) -> float:
        return (time.perf_counter() - self.start) * self.scale

    def sleep(self, seconds: float) -> None:
        if seconds > 0:
            time.sleep(seconds / self.scale)


def groq_latency(prompt_tokens: int, completion_tokens: int) -> float:
    return 0.2 + completion_tokens / 275


def run_dziri(server: FakeGroqServer, clock: ScaledClock, items: list[Segment]) -> dict:
    """The Groq translator plugin with its defaults."""
    plugin = GroqTranslator(GroqTranslator.Settings(base_url=server.url, model=MODEL),
                            PluginContext(data_dir=Path(tempfile.mkdtemp(prefix="dziri-bench-"))),
                            sleep=clock.sleep, clock=clock.now, rng=random.Random(0))
    started, real = clock.now(), time.perf_counter()
    result = plugin.translator_translate(items, "Algerian Arabic (Darija)", "English")
    figures = _figures(server, clock.now() - started, time.perf_counter() - real, len(items))
    figures["correct"] = sum(s.translation == fake_translate(s.text) for s in result)
    return figures


def run_seed(server: FakeGroqServer, clock: ScaledClock, items: list[Segment]) -> dict:
    """The seed's loop: one request per segment, then a one-second pause."""
    client = groq.Groq(api_key=FAKE_KEY, base_url=server.url, max_retries=0, timeout=60)
    started, real = clock.now(), time.perf_counter()
    answered = 0
    for segment in items:
        messages = [{"role": "system", "content": SEED_SYSTEM},
                    {"role": "user", "content": SEED_PROMPT.format(text=segment.text)}]
        while True:
            try:
                answer = client.chat.completions.create(model=MODEL, messages=messages, temperature=0)
                break
            except groq.RateLimitError as exc:
                clock.sleep(float(exc.response.headers.get("retry-after", "1")))
        answered += bool(answer.choices[0].message.content.strip())
        clock.sleep(1.0)
    client.close()
    figures = _figures(server, clock.now() - started, time.perf_counter() - real, len(items))
    figures["correct"] = answered
    return figures


def _figures(server: FakeGroqServer, scaled_s: float, real_s: float, segments: int) -> dict:
    return {
        "requests": len(server.requests),
        "rate_limited": server.status_counts().get(429, 0),
        # What the answered requests cost, the way Groq bills and rate-limits tokens.
        "prompt_tokens_per_segment": sum(r.prompt_tokens for r in server.answered) / segments,
        "completion_tokens_per_segment": server.completion_tokens / segments,
        "scaled_s": scaled_s,
        "real_s": real_s,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--segments", type=int, default=1000)
    parser.add_argument("--rpm", type=int, default=30, help="the fake server's requests-per-minute limit")
    parser.add_argument("--tpm", type=int, default=None, help="also a tokens-per-minute limit (Groq's: 12000)")
    parser.add_argument("--scale", type=float, default=0.0,
                        help="a clock this many times faster than real time; 0: fast-forward over sleeps")
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)
    os.environ["GROQ_API_KEY"] = FAKE_KEY  # the fake server's key; never a real one
    os.environ.pop("GROQ_BASE_URL", None)

    items = darija_segments(args.segments)
    words = [len(s.text.split()) for s in items]
    print(f"{len(items)} segments, {min(words)}-{max(words)} words (mean {sum(words) / len(words):.1f}), "
          f"{sum(len(s.text) for s in items) / len(items):.0f} characters on average")
    clock = ScaledClock(args.scale) if args.scale else FastForwardClock()
    clock_name = f"{args.scale:g}x real time" if args.scale else "real time + fast-forwarded waits"
    tpm = f", {args.tpm} tokens/minute" if args.tpm else ""
    print(f"fake Groq server: {args.rpm} requests/minute{tpm}, 429 + retry-after beyond; clock: {clock_name}\n")

    with FakeGroqServer(api_key=FAKE_KEY, requests_per_minute=args.rpm, tokens_per_minute=args.tpm,
                        clock=clock.now, sleep=clock.sleep, latency=groq_latency) as server:
        dziri = run_dziri(server, clock, items)
        server.reset()
        clock.sleep(60)  # let the window empty: both runs start with a full minute's budget
        seed = run_seed(server, clock, items)

    k = per_thousand = 1000 / len(items)
    rows = [
        ("requests sent per 1,000 segments", "{:.0f}", seed["requests"] * k, dziri["requests"] * k),
        ("  of which answered 429", "{:.0f}", seed["rate_limited"] * k, dziri["rate_limited"] * k),
        ("tokens sent per segment (prompt)", "{:.1f}", seed["prompt_tokens_per_segment"],
         dziri["prompt_tokens_per_segment"]),
        ("tokens received per segment (completion)", "{:.1f}", seed["completion_tokens_per_segment"],
         dziri["completion_tokens_per_segment"]),
        ("wall time under the limit (minutes, see clock)", "{:.1f}", seed["scaled_s"] / 60, dziri["scaled_s"] / 60),
        ("  real seconds this run took", "{:.1f}", seed["real_s"], dziri["real_s"]),
    ]
    print(f"{'':48} {'seed loop':>10} {'dziri groq':>10} {'seed/dziri':>10}")
    for label, fmt, seed_value, dziri_value in rows:
        ratio = f"{seed_value / dziri_value:.1f}x" if dziri_value else "-"
        print(f"{label:48} {fmt.format(seed_value):>10} {fmt.format(dziri_value):>10} {ratio:>10}")
    print(f"\ndziri groq: {dziri['correct']}/{len(items)} translations came back to their own ids "
          f"(batch_size {GroqTranslator.Settings().batch_size}); target <= 60 requests per 1,000: "
          f"{'met' if dziri['requests'] * per_thousand <= 60 else 'MISSED'}")
    print("Groq's free tier for llama-3.3-70b-versatile (its rate-limits page): 30 requests/minute, 1,000/day, "
          "12,000 tokens/minute, 100,000/day; the seed's one pass spends the whole day's request quota.")


if __name__ == "__main__":
    main()
