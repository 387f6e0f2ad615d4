"""The SQLite store: the shared store contract, then what only a file-backed store has to get right."""

from __future__ import annotations

import os
import shutil
import sqlite3
import tempfile
import threading
from pathlib import Path

import pydantic
import pytest

from dziri.core.errors import ConflictError, StoreError
from dziri.core.models import MessageStatus, PluginContext, Role
from dziri.core.roles import facade_for
from dziri.core.testing import StoreContract
from dziri.plugins.stores import sqlite as sqlite_module
from dziri.plugins.stores.sqlite import SCHEMA_VERSION, SQLiteStore


def open_plugin(path: Path, **settings) -> SQLiteStore:
    return SQLiteStore(SQLiteStore.Settings(path=str(path), **settings), PluginContext(data_dir=path.parent))


def open_store(path: Path, **settings):
    return facade_for("store", open_plugin(path, **settings))


def assert_clear_error(error: StoreError, path: Path, *words: str) -> None:
    message = str(error)
    assert "\n" not in message and str(path) in message, message
    for word in words:
        assert word in message, message


class TestSQLiteStoreContract(StoreContract):
    @pytest.fixture
    def store_plugin(self, tmp_path):
        return open_plugin(tmp_path / "dziri.sqlite3")


@pytest.fixture
def db_path(tmp_path) -> Path:
    return tmp_path / "dziri.sqlite3"


@pytest.fixture
def sqlite_store(db_path):
    store = open_store(db_path)
    yield store
    store.close()


def seed(store) -> tuple[str, str]:
    user = store.create_user("amine", "amine@example.dz", "h")
    conversation = store.create_conversation(user.id, "wach")
    for content in ("salam", "labas?", "labas, w nta?"):
        store.add_message(user.id, conversation.id, Role.USER, content)
    return user.id, conversation.id


def contents(store, user_id: str, conversation_id: str) -> list[str]:
    return [m.content for m in store.list_messages(user_id, conversation_id, limit=10_000)]


# ---- settings and file layout ------------------------------------------------------------


def test_default_path_is_in_the_data_dir(tmp_path):
    plugin = SQLiteStore(SQLiteStore.Settings(), PluginContext(data_dir=tmp_path))
    try:
        assert plugin.path == tmp_path / "dziri.sqlite3" and plugin.path.is_file()
    finally:
        plugin.store_close()


def test_settings_reject_unknown_keys():
    with pytest.raises(pydantic.ValidationError):
        SQLiteStore.Settings(pth="typo.sqlite3")


def test_missing_parent_directories_are_created(tmp_path):
    store = open_store(tmp_path / "a" / "b" / "dziri.sqlite3")
    store.close()
    assert (tmp_path / "a" / "b" / "dziri.sqlite3").is_file()


def test_wal_and_foreign_keys_are_on(db_path):
    plugin = open_plugin(db_path)
    other = sqlite3.connect(db_path)
    try:
        assert other.execute("PRAGMA journal_mode").fetchone()[0] == "wal"  # persistent, file-wide
        assert plugin._db.execute("PRAGMA foreign_keys").fetchone()[0] == 1  # per connection
    finally:
        other.close()
        plugin.store_close()


def test_schema_version_is_recorded(db_path, sqlite_store):
    other = sqlite3.connect(db_path)
    try:
        assert other.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION >= 1
    finally:
        other.close()


def test_every_statement_uses_an_index(db_path):
    plugin = open_plugin(db_path)
    store = facade_for("store", plugin)
    statements: list[str] = []
    plugin._db.set_trace_callback(statements.append)
    user_id, conversation_id = seed(store)
    store.find_user("amine")
    store.get_user(user_id)
    store.update_user(user_id, email="a@example.dz", password_hash="h2")
    store.list_conversations(user_id, limit=5, offset=1)
    store.update_conversation(user_id, conversation_id, "renamed")
    messages = store.list_messages(user_id, conversation_id, limit=2)
    store.list_messages(user_id, conversation_id, limit=2, before=messages[0].id)
    store.update_message(user_id, messages[0].id, "x", MessageStatus.COMPLETE, tokens=1, tokens_per_second=2.5)
    store.search_messages(user_id, ["x"], limit=5)
    store.delete_message(user_id, messages[0].id)
    store.delete_conversation(user_id, conversation_id)
    store.delete_user(user_id)
    plugin._db.set_trace_callback(None)
    # FTS5's own statements on its shadow tables (its few-row config, its segments) are its business.
    queries = [s for s in statements if s.split()[0].upper() in {"SELECT", "INSERT", "UPDATE", "DELETE"}
               and "'message_search_" not in s]
    assert len(queries) > 20
    for query in queries:
        plan = " | ".join(row[3] for row in plugin._db.execute("EXPLAIN QUERY PLAN " + query))
        # The full-text index answers a MATCH by its own index (the planner says "SCAN … VIRTUAL TABLE INDEX").
        plan = plan.replace("SCAN message_search VIRTUAL TABLE INDEX", "FTS5 INDEX")
        # A full scan or a sort would make these operations slow down as the database grows.
        assert "SCAN" not in plan and "TEMP B-TREE" not in plan, f"{query}\n  -> {plan}"
    store.close()


def test_email_is_unique_ignoring_case_beyond_ascii(sqlite_store):
    sqlite_store.create_user("elodie", "Élodie@example.dz", "h")
    with pytest.raises(ConflictError, match="email"):
        sqlite_store.create_user("elodie2", "élodie@example.dz", "h")


def test_closed_store_says_so(db_path):
    plugin = open_plugin(db_path)
    plugin.store_close()
    plugin.store_close()  # closing twice is harmless
    with pytest.raises(StoreError) as caught:
        plugin.store_get_user("x")
    assert_clear_error(caught.value, db_path, "closed")


# ---- migrations and restarts -------------------------------------------------------------


def test_data_survives_a_restart(db_path):
    store = open_store(db_path)
    user_id, conversation_id = seed(store)
    store.close()
    store = open_store(db_path)
    try:
        assert store.find_user("amine").id == user_id
        assert contents(store, user_id, conversation_id) == ["salam", "labas?", "labas, w nta?"]
        store.add_message(user_id, conversation_id, Role.ASSISTANT, "labas")
        assert contents(store, user_id, conversation_id)[-1] == "labas"
    finally:
        store.close()


@pytest.fixture
def next_migration(monkeypatch):
    """Pretend a later dziri ships one more migration: the one this fixture is called with."""

    def add(*statements: str) -> int:
        monkeypatch.setattr(sqlite_module, "MIGRATIONS", [*sqlite_module.MIGRATIONS, statements])
        monkeypatch.setattr(sqlite_module, "SCHEMA_VERSION", SCHEMA_VERSION + 1)
        return SCHEMA_VERSION + 1

    return add


def test_an_older_database_is_migrated_on_open(db_path, next_migration):
    store = open_store(db_path)
    user_id, conversation_id = seed(store)
    store.close()
    version = next_migration("ALTER TABLE conversations ADD COLUMN pinned INTEGER NOT NULL DEFAULT 0")
    store = open_store(db_path)
    try:
        assert contents(store, user_id, conversation_id) == ["salam", "labas?", "labas, w nta?"]
    finally:
        store.close()
    check = sqlite3.connect(db_path)
    try:
        assert check.execute("PRAGMA user_version").fetchone()[0] == version
        assert check.execute("SELECT pinned FROM conversations").fetchall() == [(0,)]
    finally:
        check.close()


def test_a_new_database_runs_every_migration_in_order(db_path, next_migration):
    version = next_migration("CREATE TABLE after_v1 (user_count INTEGER)",
                             "INSERT INTO after_v1 SELECT count(*) FROM users")  # needs v1's users table
    open_store(db_path).close()
    check = sqlite3.connect(db_path)
    try:
        assert check.execute("PRAGMA user_version").fetchone()[0] == version
        assert check.execute("SELECT user_count FROM after_v1").fetchall() == [(0,)]
    finally:
        check.close()


def test_a_failed_migration_leaves_the_database_as_it_was(db_path, next_migration):
    store = open_store(db_path)
    user_id, conversation_id = seed(store)
    store.close()
    next_migration("CREATE TABLE half_done (x)", "ALTER TABLE no_such_table ADD COLUMN y")
    with pytest.raises(StoreError) as caught:
        open_store(db_path)
    assert_clear_error(caught.value, db_path, "migration", f"version {SCHEMA_VERSION}")
    check = sqlite3.connect(db_path)
    try:
        assert check.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        assert not check.execute("SELECT 1 FROM sqlite_master WHERE name = 'half_done'").fetchall()
    finally:
        check.close()


def test_a_database_from_a_newer_dziri_is_refused(db_path):
    open_store(db_path).close()
    check = sqlite3.connect(db_path)
    check.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 5}")
    check.close()
    with pytest.raises(StoreError) as caught:
        open_store(db_path)
    assert_clear_error(caught.value, db_path, "newer")


# ---- files that cannot be used -----------------------------------------------------------


def test_a_file_that_is_not_a_database_is_refused_and_left_untouched(db_path):
    db_path.write_text("[store]\nuse = 'sqlite'\n# not a database, just some text\n" * 20)
    before = db_path.read_bytes()
    with pytest.raises(StoreError) as caught:
        open_store(db_path)
    assert_clear_error(caught.value, db_path, "not a SQLite database")
    assert db_path.read_bytes() == before
    assert sorted(p.name for p in db_path.parent.iterdir()) == [db_path.name]  # no -wal, no -shm


def test_a_corrupt_database_is_refused(db_path):
    db_path.write_bytes(b"SQLite format 3\x00" + b"\xff" * 200)
    with pytest.raises(StoreError) as caught:
        open_store(db_path)
    assert_clear_error(caught.value, db_path, "corrupt")


def test_a_directory_is_refused(db_path):
    db_path.mkdir()
    with pytest.raises(StoreError) as caught:
        open_store(db_path)
    assert_clear_error(caught.value, db_path, "directory")


def test_a_locked_database_fails_to_open_after_the_busy_timeout(db_path):
    open_store(db_path).close()
    other = sqlite3.connect(db_path, isolation_level=None)
    other.execute("BEGIN EXCLUSIVE")  # another process in the middle of a write
    try:
        with pytest.raises(StoreError) as caught:
            open_store(db_path, busy_timeout_s=0.05)
        assert_clear_error(caught.value, db_path, "locked")
    finally:
        other.execute("ROLLBACK")
        other.close()


def test_a_locked_database_fails_a_write_but_still_reads(db_path):
    store = open_store(db_path, busy_timeout_s=0.05)
    user_id, conversation_id = seed(store)
    other = sqlite3.connect(db_path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    try:
        with pytest.raises(StoreError) as caught:
            store.add_message(user_id, conversation_id, Role.USER, "lost?")
        assert_clear_error(caught.value, db_path, "locked")
        assert len(contents(store, user_id, conversation_id)) == 3  # WAL: readers are not blocked
    finally:
        other.execute("ROLLBACK")
        other.close()
    store.add_message(user_id, conversation_id, Role.USER, "after the lock")
    assert contents(store, user_id, conversation_id)[-1] == "after the lock"
    store.close()


def test_a_database_that_turns_read_only_while_open(db_path):
    # What a server sees when its file system is remounted read-only under it. query_only
    # makes SQLite answer exactly as it does then ("attempt to write a readonly database"),
    # and it works as root, which ignores file modes.
    plugin = open_plugin(db_path)
    store = facade_for("store", plugin)
    user_id, conversation_id = seed(store)
    plugin._db.execute("PRAGMA query_only = 1")
    with pytest.raises(StoreError) as caught:
        store.add_message(user_id, conversation_id, Role.USER, "nowhere to go")
    assert_clear_error(caught.value, db_path, "read-only")
    assert len(contents(store, user_id, conversation_id)) == 3
    store.close()


@pytest.fixture
def shared_dir():
    """A directory an unprivileged user can enter (pytest's tmp_path is private to root)."""
    path = Path(tempfile.mkdtemp(prefix="dziri-store-"))
    path.chmod(0o755)
    yield path
    for directory in (path, *(p for p in path.rglob("*") if p.is_dir())):
        directory.chmod(0o755)
    shutil.rmtree(path)


def open_unprivileged(path: Path) -> str:
    """Open the store in a forked child that has given up root (which ignores file modes, so a
    read-only file is only read-only for someone else); return "opened" or the error it got."""
    if not hasattr(os, "fork"):
        pytest.skip("needs os.fork")
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        outcome = "opened"
        try:
            if os.geteuid() == 0:
                os.setgid(65534)  # nobody / nogroup
                os.setuid(65534)
            open_plugin(path).store_close()
        except BaseException as exc:
            outcome = f"{type(exc).__name__}: {exc}"
        finally:
            os.write(write_end, outcome.encode())
            os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        outcome = pipe.read().decode()
    os.waitpid(pid, 0)
    return outcome


def test_a_read_only_file_is_refused(shared_dir):
    db_path = shared_dir / "dziri.sqlite3"
    open_store(db_path).close()
    db_path.chmod(0o444)
    shared_dir.chmod(0o777)  # only the file is read-only
    outcome = open_unprivileged(db_path)
    assert outcome.startswith("StoreError:") and "read-only" in outcome and str(db_path) in outcome, outcome


def test_a_read_only_directory_is_refused(shared_dir):
    db_path = shared_dir / "data" / "dziri.sqlite3"
    open_store(db_path).close()
    db_path.chmod(0o666)
    db_path.parent.chmod(0o555)  # the file is writable, but SQLite cannot create -wal/-shm beside it
    outcome = open_unprivileged(db_path)
    assert outcome.startswith("StoreError:") and "read-only" in outcome and str(db_path) in outcome, outcome


def test_an_unreachable_path_is_refused(shared_dir):
    private = shared_dir / "private"
    private.mkdir(mode=0o700)
    outcome = open_unprivileged(private / "dziri.sqlite3")
    if os.geteuid() != 0 and outcome == "opened":
        pytest.skip("this user owns the private directory")
    assert outcome.startswith("StoreError:") and "cannot be reached" in outcome, outcome


# ---- concurrency -------------------------------------------------------------------------


def run_together(workers: list) -> None:
    errors: list[BaseException] = []

    def guarded(work):
        try:
            work()
        except BaseException as exc:  # surfaced below: a thread's exception is otherwise lost
            errors.append(exc)

    threads = [threading.Thread(target=guarded, args=(work,)) for work in workers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors


def test_concurrent_appends_from_threads_are_all_stored(sqlite_store):
    user_id, conversation_id = seed(sqlite_store)

    def append(worker: int):
        return lambda: [sqlite_store.add_message(user_id, conversation_id, Role.USER, f"w{worker}-{n}")
                        for n in range(25)]

    run_together([append(worker) for worker in range(8)])
    stored = contents(sqlite_store, user_id, conversation_id)[3:]
    assert len(stored) == 200
    for worker in range(8):  # each thread's messages in the order it wrote them
        assert [c for c in stored if c.startswith(f"w{worker}-")] == [f"w{worker}-{n}" for n in range(25)]
    stamps = [m.timestamp for m in sqlite_store.list_messages(user_id, conversation_id, limit=1000)]
    assert stamps == sorted(stamps)  # stored order and time order agree


def test_two_stores_on_one_file_share_it(db_path):
    # Two connections, as two server processes would have: SQLite's file locks and the busy
    # timeout serialise their writes.
    first = open_store(db_path)
    second = open_store(db_path)
    user_id, conversation_id = seed(first)

    def append(store, name: str):
        return lambda: [store.add_message(user_id, conversation_id, Role.USER, f"{name}-{n}")
                        for n in range(40)]

    run_together([append(first, "first"), append(second, "second")])
    assert len(contents(second, user_id, conversation_id)) == 83
    first.close()
    second.close()
