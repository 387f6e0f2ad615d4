"""Load test of the chat site (not a test: run it by hand or with `make bench`).

Starts `dziri serve` (uvicorn) on a free loopback port, over a fresh data dir, then:

  alone:  one user sends the messages by themselves (the baseline, same server, same run);
  crowd:  N users register at once and each sends M messages, one after the other, while
          the others' replies stream. A 503 (the model's queue is full) is counted and the
          message is sent again after the answer's Retry-After, as the site does.

It prints p50/p95 time to first token and to the full reply, for the baseline and the
crowd, their ratios, the 503s, and then checks through the API and directly in the store
that every accepted message and its reply are stored exactly once: nothing lost, nothing
duplicated, no trace of a refused attempt.

    .venv/bin/python bench/load.py                        # echo backend, 10 ms a word
    .venv/bin/python bench/load.py --backend llamacpp     # the embedded model (slow: CPU)
    .venv/bin/python bench/load.py --users 20 --messages 5 --words 20 --delay 0.01 \\
        --concurrency 1 --max-waiting 8 --workers 1
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parent.parent
DZIRI = Path(sys.executable).parent / "dziri"
PASSWORD = "load test password"


@dataclass
class Sent:
    user: int
    text: str
    started: float  # the accepted attempt's request
    first_token: float | None = None
    done: float | None = None
    first_attempt: float = 0.0
    status: str = ""
    reply: str = ""
    refusals: int = 0


@dataclass
class Tally:
    sent: list[Sent] = field(default_factory=list)
    refused: int = 0
    failed: list[str] = field(default_factory=list)
    sending_s: float = 0.0  # from the first message sent to the last reply (sign-ups excluded)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def echo_plugin_path(scratch: Path) -> list[str]:
    """Make the example echo backend importable for the server without installing it."""
    paths = [str(REPO / "examples" / "dziri-echo")]
    if not any(ep.name == "echo" for ep in entry_points(group="dziri.backends")):
        dist_info = scratch / "plugins" / "dziri_echo_bench-1.0.dist-info"
        dist_info.mkdir(parents=True)
        (dist_info / "METADATA").write_text("Metadata-Version: 2.1\nName: dziri-echo-bench\nVersion: 1.0\n")
        (dist_info / "entry_points.txt").write_text("[dziri.backends]\necho = dziri_echo:EchoBackend\n")
        paths.insert(0, str(dist_info.parent))
    return paths


def start_server(args, scratch: Path) -> tuple[subprocess.Popen, str, dict]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("DZIRI_")}
    env |= {
        "DZIRI_DATA_DIR": str(scratch / "data"),
        "DZIRI_SECRET_KEY": secrets.token_urlsafe(40),
        "DZIRI_BACKEND": args.backend,
        "DZIRI_LOAD_PLUGINS": "",
        "DZIRI_WEB__MAX_CONCURRENT_REPLIES": str(args.concurrency),
        "DZIRI_WEB__MAX_WAITING": str(args.max_waiting),
        "DZIRI_CHAT__MAX_TOKENS": str(args.max_tokens),
    }
    if args.backend == "echo":
        env["DZIRI_BACKEND__ECHO__DELAY_S"] = str(args.delay)
        env["PYTHONPATH"] = os.pathsep.join([*echo_plugin_path(scratch), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    log = open(scratch / "server.log", "wb")  # noqa: SIM115 - the server's for its lifetime
    process = subprocess.Popen([str(DZIRI), "serve", "--port", str(port), "--workers", str(args.workers)],
                               env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if process.poll() is not None:
            sys.exit(f"dziri serve exited:\n{(scratch / 'server.log').read_text()}")
        try:
            if httpx.get(f"{url}/api/health", timeout=5).status_code == 200:
                return process, url, env
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    process.terminate()
    sys.exit(f"dziri serve was not healthy in 120 s:\n{(scratch / 'server.log').read_text()}")


class User:
    def __init__(self, url: str, index: int, name: str):
        self.index, self.name = index, name
        self.http = httpx.AsyncClient(base_url=url, timeout=httpx.Timeout(10, read=600))
        self.conversation = ""

    def csrf(self) -> dict:
        return {"X-CSRFToken": self.http.cookies["csrftoken"]}

    async def start(self) -> None:
        await self.http.get("/api/auth/csrf")
        response = await self.http.post("/api/auth/register", headers=self.csrf(), json={
            "username": self.name, "email": f"{self.name}@example.org", "password": PASSWORD})
        response.raise_for_status()
        response = await self.http.post("/api/conversations", headers=self.csrf(), json={})
        response.raise_for_status()
        self.conversation = response.json()["id"]

    async def send(self, text: str, tally: Tally) -> None:
        first_attempt = time.perf_counter()
        refusals = 0
        while True:
            started = time.perf_counter()
            sent = Sent(self.index, text, started, first_attempt=first_attempt, refusals=refusals)
            async with self.http.stream("POST", f"/api/conversations/{self.conversation}/messages",
                                        headers=self.csrf(), json={"content": text}) as response:
                if response.status_code == 503:
                    await response.aread()
                    tally.refused += 1
                    refusals += 1
                    await asyncio.sleep(float(response.headers.get("retry-after", "1")))
                    continue
                if response.status_code != 200:
                    tally.failed.append(f"{self.name}: {response.status_code} {(await response.aread())[:200]!r}")
                    return
                event = None
                async for line in response.aiter_lines():
                    if line.startswith("event: "):
                        event = line[7:]
                    elif line.startswith("data: "):
                        data = json.loads(line[6:])
                        if event == "token" and sent.first_token is None:
                            sent.first_token = time.perf_counter()
                        elif event in {"done", "error"}:
                            sent.done = time.perf_counter()
                            message = data["message"] or {}
                            sent.status, sent.reply = message.get("status", event), message.get("content", "")
            tally.sent.append(sent)
            return

    async def close(self) -> None:
        await self.http.aclose()


def message_text(user: int, number: int, words: int) -> str:
    return " ".join([f"u{user:02d}m{number}", *(f"kelma{i}" for i in range(words - 1))])


async def run_users(url: str, names: list[str], first_index: int, messages: int, words: int) -> Tally:
    tally = Tally()
    users = [User(url, first_index + i, name) for i, name in enumerate(names)]
    await asyncio.gather(*(user.start() for user in users))

    async def talk(user: User) -> None:
        for number in range(messages):
            await user.send(message_text(user.index, number, words), tally)

    started = time.perf_counter()
    try:
        await asyncio.gather(*(talk(user) for user in users))
        tally.sending_s = time.perf_counter() - started
    finally:
        await asyncio.gather(*(user.close() for user in users))
    return tally


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)] if ordered else float("nan")


def summary(tally: Tally) -> dict[str, float]:
    ttft = [s.first_token - s.started for s in tally.sent if s.first_token]
    full = [s.done - s.started for s in tally.sent if s.done]
    overall = [s.done - s.first_attempt for s in tally.sent if s.done]
    return {"ttft50": percentile(ttft, 50), "ttft95": percentile(ttft, 95),
            "full50": percentile(full, 50), "full95": percentile(full, 95),
            "overall50": percentile(overall, 50), "overall95": percentile(overall, 95)}


def check_stored(url: str, env: dict, names: list[str], tallies: list[Tally], args) -> list[str]:
    """Every accepted message and its reply stored exactly once, through the API and in the store."""
    problems = []
    sent_by_user: dict[int, list[Sent]] = {}
    for tally in tallies:
        for sent in tally.sent:
            sent_by_user.setdefault(sent.user, []).append(sent)
    stored_total = 0
    for index, name in enumerate(names):
        with httpx.Client(base_url=url, timeout=30) as client:
            client.get("/api/auth/csrf")
            client.post("/api/auth/login", headers={"X-CSRFToken": client.cookies["csrftoken"]},
                        json={"username": name, "password": PASSWORD}).raise_for_status()
            conversations = client.get("/api/conversations", params={"limit": 100}).json()["items"]
            if len(conversations) != 1:
                problems.append(f"{name}: {len(conversations)} conversations, expected 1")
                continue
            messages, before = [], None
            while True:  # every page, oldest first
                page = client.get(f"/api/conversations/{conversations[0]['id']}/messages",
                                  params={"limit": 50, **({"before": before} if before else {})}).json()
                messages = page["items"] + messages
                if not page["has_more"]:
                    break
                before = page["items"][0]["id"]
        stored_total += len(messages)
        expected = sent_by_user.get(index, [])
        pairs = [(messages[i], messages[i + 1] if i + 1 < len(messages) else None) for i in range(0, len(messages), 2)]
        if len(messages) != 2 * len(expected):
            problems.append(f"{name}: {len(messages)} messages stored, expected {2 * len(expected)}")
        for sent, (question, reply) in zip(expected, pairs, strict=False):
            if question["role"] != "user" or question["content"] != sent.text:
                problems.append(f"{name}: expected the question {sent.text[:12]!r}, found {question['content'][:12]!r}")
            if reply is None or reply["role"] != "assistant" or reply["status"] != "complete":
                problems.append(f"{name}: the reply to {sent.text[:12]!r} is missing or not complete")
            elif reply["content"] != sent.reply or (args.backend == "echo"
                                                     and reply["content"] != "echo: " + sent.text):
                problems.append(f"{name}: the stored reply to {sent.text[:12]!r} differs from the streamed one")
    # And straight from the store, with dziri's own App on the same data dir.
    from dziri.core.app import App
    from dziri.core.config import load_config

    saved = {k: os.environ.get(k) for k in ("DZIRI_DATA_DIR", "DZIRI_BACKEND")}
    os.environ["DZIRI_DATA_DIR"], os.environ["DZIRI_BACKEND"] = env["DZIRI_DATA_DIR"], "llamacpp"
    app = App(load_config())
    try:
        in_store = 0
        for name in names:
            user = app.store.find_user(name)
            for conversation in app.store.list_conversations(user.id, limit=100):
                in_store += len(app.store.list_messages(user.id, conversation.id, limit=10_000))
    finally:
        app.close()
        for key, value in saved.items():
            os.environ.pop(key, None) if value is None else os.environ.__setitem__(key, value)
    accepted = sum(len(t.sent) for t in tallies)
    if in_store != 2 * accepted or stored_total != in_store:
        problems.append(f"store holds {in_store} messages, the API shows {stored_total}; expected {2 * accepted}")
    return problems


def main() -> None:
    parser = argparse.ArgumentParser(description="Load test of the chat site (dziri serve).")
    parser.add_argument("--users", type=int, default=20)
    parser.add_argument("--messages", type=int, default=5, help="per user")
    parser.add_argument("--backend", choices=["echo", "llamacpp"], default="echo")
    parser.add_argument("--delay", type=float, default=0.01, help="echo: seconds per word")
    parser.add_argument("--words", type=int, default=20, help="words per message (echo replies as many + 1)")
    parser.add_argument("--max-tokens", type=int, default=32)
    parser.add_argument("--concurrency", type=int, default=1, help="web.max_concurrent_replies")
    parser.add_argument("--max-waiting", type=int, default=8, help="web.max_waiting")
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args()

    scratch = Path(tempfile.mkdtemp(prefix="dziri-load-"))
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # stop the server on the way out
    process, url, env = start_server(args, scratch)
    try:
        print(f"dziri serve at {url} · backend {args.backend}"
              + (f" ({args.delay * 1000:.0f} ms a word, replies of {args.words + 1} words)" if args.backend == "echo"
                 else f" (max_tokens {args.max_tokens})")
              + f" · {args.workers} worker(s) · {args.concurrency} reply at a time + {args.max_waiting} waiting")
        alone_names = ["alone"]
        crowd_names = [f"user{i:02d}" for i in range(args.users)]
        alone = asyncio.run(run_users(url, alone_names, 0, args.messages, args.words))
        crowd = asyncio.run(run_users(url, crowd_names, 1, args.messages, args.words))
        base, load = summary(alone), summary(crowd)

        print(f"\n{'':34}{'alone':>10}{f'{args.users} users':>12}{'ratio':>9}")
        rows = [("time to first token p50", "ttft50"), ("time to first token p95", "ttft95"),
                ("time to full reply p50", "full50"), ("time to full reply p95", "full95"),
                ("full reply incl. 503 retries p50", "overall50"), ("full reply incl. 503 retries p95", "overall95")]
        for label, key in rows:
            print(f"{label:34}{base[key]:>9.3f}s{load[key]:>11.3f}s{load[key] / base[key]:>8.1f}x")
        replies = len(crowd.sent)
        alone_rate, crowd_rate = len(alone.sent) / alone.sending_s, replies / crowd.sending_s
        print(f"\nreplies: {replies} accepted of {args.users * args.messages} sent, in {crowd.sending_s:.1f} s:"
              f" {crowd_rate:.2f} replies/s (alone: {alone_rate:.2f} replies/s, ratio {crowd_rate / alone_rate:.1f}x)")
        refused_messages = sum(1 for s in crowd.sent if s.refusals)
        print(f"503 busy: {crowd.refused} answers ({refused_messages} messages had to wait and retry;"
              f" {alone.refused} when alone)")
        print(f"failed: {len(alone.failed) + len(crowd.failed)}"
              + "".join(f"\n  {line}" for line in (alone.failed + crowd.failed)[:10]))
        not_complete = [s for s in alone.sent + crowd.sent if s.status != "complete"]
        print(f"replies not complete: {len(not_complete)}")

        problems = check_stored(url, env, alone_names + crowd_names, [alone, crowd], args)
        total = len(alone.sent) + len(crowd.sent)
        if problems:
            print(f"\nstored: {len(problems)} problem(s)")
            for line in problems[:20]:
                print(f"  {line}")
            sys.exit(1)
        print(f"\nstored: all {total} accepted messages and their {total} replies exactly once"
              " (API and store agree; no trace of a refused attempt)")
    finally:
        process.terminate()
        process.wait(30)


if __name__ == "__main__":
    main()
