"""Benchmark: does a store stay as fast with 10^5 messages stored as with 10^3?

Every operation the chat does per turn must cost the same whatever the database's size
(target: the 10^5 / 10^3 ratio within 2x), and a search must answer in under 50 ms (p95)
at 10^5 messages. Both sizes are built and timed in this one
process, through the Store facade the application uses, so hook dispatch is included.

    python bench/store.py [--sizes 1000 100000] [--runs 2000] [--store sqlite|mongodb]

`--store mongodb` runs on the server in $DZIRI_BENCH_MONGO_URI (a database per size,
dropped afterwards), else on mongomock, which scans every document on every operation:
its figures are mongomock's, not MongoDB's, and its seeding is slow past ~10^4 messages
(so its default sizes are 10^2 and 10^3).

Layout per size: the measured user has 100 conversations, 9 other users have 10 each;
a tenth of all messages sit in one "hot" conversation (the one timed: a long chat must
load its last 50 messages as fast as a short one), the rest are spread round-robin.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from tqdm import tqdm

from dziri.core import search
from dziri.core.models import PluginContext, Role
from dziri.core.roles import Store, facade_for
from dziri.plugins.stores.sqlite import SQLiteStore

MONGO_URI = os.environ.get("DZIRI_BENCH_MONGO_URI", "mongomock://")
SEARCH_P95_TARGET_US = 50_000
WORDS = "chorba couscous tram taxi CNI bac khedma match Ramadan sbitar".split()
RARE_WORD = "tafsila"  # in exactly one of the measured user's messages


def seed(store: Store, messages: int) -> tuple[str, str]:
    """Fill an empty store; return the measured user's id and their hot conversation's id."""
    me = store.create_user("bench", "bench@example.dz", "h")
    owners = [me.id] * 100
    for number in range(9):
        other = store.create_user(f"other{number}", f"other{number}@example.dz", "h")
        owners += [other.id] * 10
    conversations = [(owner, store.create_conversation(owner, f"chat {n}").id)
                     for n, owner in enumerate(owners)]
    hot = conversations[0]
    hot_count = messages // 10
    rare_placed = False
    for n in tqdm(range(messages), desc=f"seeding {messages:,} messages", unit="msg", leave=False):
        owner, conversation_id = hot if n < hot_count else conversations[1 + n % (len(conversations) - 1)]
        role = Role.USER if n % 2 == 0 else Role.ASSISTANT
        # One of 10 everyday words in each message (a search for one matches 10% of them: a
        # full page of hits at every size), and one word found in a single message, the
        # measured user's, at every size: one hit to load and mark, as a real rare search finds.
        rare = ""
        if not rare_placed and n >= messages // 3 and owner == me.id:
            rare, rare_placed = f" {RARE_WORD}", True
        store.add_message(owner, conversation_id, role,
                          f"message {n}: {WORDS[n % len(WORDS)]} wach rak, labas?{rare} {'x' * (n % 200)}")
    return hot


def timed_us(operation: Callable[[], object], runs: int) -> list[float]:
    samples = []
    for _ in range(runs):
        start = time.perf_counter_ns()
        operation()
        samples.append((time.perf_counter_ns() - start) / 1000)
    return samples


def open_store(kind: str, data_dir: str) -> Store:
    context = PluginContext(data_dir=Path(data_dir))
    if kind == "sqlite":
        return facade_for("store", SQLiteStore(SQLiteStore.Settings(), context), "sqlite")
    from dziri.plugins.stores.mongodb import MongoDBStore

    database = f"dziri_bench_{uuid.uuid4().hex[:8]}"
    plugin = MongoDBStore(MongoDBStore.Settings(uri=MONGO_URI, database=database), context)
    store = facade_for("store", plugin, "mongodb")
    close = store.close

    def drop_and_close() -> None:
        plugin._client.drop_database(database)
        close()

    store.close = drop_and_close
    return store


def open_seeded(kind: str, data_dir: str, messages: int) -> tuple[Store, str, str]:
    store = open_store(kind, data_dir)
    started = time.perf_counter()
    user_id, conversation_id = seed(store, messages)
    print(f"seeded {messages:,} messages in {time.perf_counter() - started:.1f} s")
    # The rare-word search must do the same work at both sizes: find the one message.
    found = len(search.hits(store, user_id, RARE_WORD, 20, 0))
    if found != 1:
        raise SystemExit(f"the seeded store has {found} hits for {RARE_WORD!r}, not 1")
    return store, user_id, conversation_id


def operations(store: Store, user_id: str, conversation_id: str) -> dict[str, Callable[[], object]]:
    return {
        "append one message": lambda: store.add_message(user_id, conversation_id, Role.USER, "wach rak?"),
        "load the last 50 messages": lambda: store.list_messages(user_id, conversation_id, limit=50),
        "list 50 conversations": lambda: store.list_conversations(user_id, limit=50),
        # The site's search, with its snippets: a word in 10% of the messages, one in a single one.
        "search a common word": lambda: search.hits(store, user_id, "Chorba", 20, 0),
        "search a rare word": lambda: search.hits(store, user_id, RARE_WORD, 20, 0),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs=2, metavar=("SMALL", "LARGE"),
                        help="default: 1000 100000 (100 1000 on mongomock)")
    parser.add_argument("--runs", type=int, default=2_000, help="timed calls per operation and size")
    parser.add_argument("--store", choices=["sqlite", "mongodb"], default="sqlite",
                        help="mongodb: the server in $DZIRI_BENCH_MONGO_URI, else mongomock")
    args = parser.parse_args()
    on_mongomock = args.store == "mongodb" and MONGO_URI.startswith("mongomock://")
    small, large = args.sizes or ([100, 1_000] if on_mongomock else [1_000, 100_000])
    with tempfile.TemporaryDirectory(prefix="dziri-bench-") as small_dir, \
            tempfile.TemporaryDirectory(prefix="dziri-bench-") as large_dir:
        stores = {small: open_seeded(args.store, small_dir, small), large: open_seeded(args.store, large_dir, large)}
        try:
            ops = {size: operations(*opened) for size, opened in stores.items()}
            samples: dict[tuple[int, str], list[float]] = {}
            for name in ops[small]:
                for size in (small, large):  # warm-up
                    timed_us(ops[size][name], 100)
                # Alternate small and large in short rounds, so a busy machine slows both alike.
                for _ in range(args.runs // 100):
                    for size in (small, large):
                        samples.setdefault((size, name), []).extend(timed_us(ops[size][name], 100))
        finally:
            for store, _, _ in stores.values():
                store.close()

    where = "SQLite" if args.store == "sqlite" else f"MongoDB ({MONGO_URI.split('@')[-1]})"
    print(f"\n{where} store, µs per operation through the Store facade (median, p95 in brackets;"
          f" {args.runs} runs each, sizes interleaved)")
    if on_mongomock:
        print("note: mongomock scans every document on every operation; these ratios are mongomock's, not"
              " MongoDB's (set DZIRI_BENCH_MONGO_URI to measure a server)")
    header = f"{'operation':<28}{f'{small:,} msgs':>20}{f'{large:,} msgs':>20}{'ratio':>9}  target ≤ 2×"
    print(header)
    print("-" * len(header))
    for name in ops[small]:
        figures = {}
        for size in (small, large):
            runs = samples[(size, name)]
            figures[size] = (statistics.median(runs), statistics.quantiles(runs, n=20)[-1])
        ratio = figures[large][0] / figures[small][0]
        cells = "".join(f"{f'{median:.0f} ({p95:.0f})':>20}" for median, p95 in figures.values())
        slow = name.startswith("search") and figures[large][1] > SEARCH_P95_TARGET_US
        print(f"{name:<28}{cells}{ratio:>8.2f}×  {'ok' if ratio <= 2 else 'SLOWER'}"
              f"{f'  p95 over {SEARCH_P95_TARGET_US / 1000:.0f} ms: SLOW' if slow else ''}")


if __name__ == "__main__":
    main()
