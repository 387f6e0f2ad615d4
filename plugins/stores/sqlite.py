"""The SQLite conversation store: the embedded default (stdlib sqlite3, one file, WAL).

One connection guarded by a lock serves every thread of the process; other processes
(a second Django worker, the CLI) share the file through SQLite's own locking. Each hook
is one transaction, so a crash never leaves half a write behind.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from dziri.core.errors import ConflictError, NotFoundError, StoreError
from dziri.core.hookspecs import hookimpl
from dziri.core.models import (
    ApiKey,
    Conversation,
    Message,
    MessageStatus,
    PluginContext,
    Role,
    Session,
    User,
    utcnow,
)
from dziri.core.search import folded_words
from dziri.plugins.stores._validation import (
    check,
    check_figures,
    check_search,
    check_settings,
    check_text,
    enum_value,
    message_fields,
)

DEFAULT_FILENAME = "dziri.sqlite3"
SQLITE_HEADER = b"SQLite format 3\x00"

# MIGRATIONS[i] takes the schema from version i to i + 1 (PRAGMA user_version). Append
# only: never edit a migration that has shipped. Statements run one at a time inside the
# opening transaction (executescript would commit half-way).
MIGRATIONS: list[tuple[str, ...]] = [
    (
        """CREATE TABLE users (
            id TEXT PRIMARY KEY,
            username TEXT NOT NULL UNIQUE,
            email TEXT NOT NULL,
            email_key TEXT NOT NULL UNIQUE,  -- email.lower() in Python: SQLite's lower() is ASCII-only
            password_hash TEXT NOT NULL,
            created_at TEXT NOT NULL
        )""",
        """CREATE TABLE conversations (
            id TEXT PRIMARY KEY,
            user_id TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
            title TEXT NOT NULL,
            started_at TEXT NOT NULL,
            updated_at TEXT NOT NULL
        )""",
        # Serves the newest-first listing (scanned backwards) and the cascade from users.
        "CREATE INDEX conversations_by_user ON conversations (user_id, updated_at, id)",
        # seq is the rowid: each insert takes max + 1, so it keeps insertion order even when
        # two messages share a timestamp. id is the public, opaque id.
        """CREATE TABLE messages (
            seq INTEGER PRIMARY KEY,
            id TEXT NOT NULL UNIQUE,
            conversation_id TEXT NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
            user_id TEXT NOT NULL,
            role TEXT NOT NULL,
            content TEXT NOT NULL,
            status TEXT NOT NULL,
            error TEXT,
            timestamp TEXT NOT NULL
        )""",
        "CREATE INDEX messages_by_conversation ON messages (conversation_id, seq)",
    ),
    (
        # Web login sessions: in the store, so every server process sees a logout at once.
        """CREATE TABLE sessions (
            key TEXT PRIMARY KEY,
            data TEXT NOT NULL,
            expires_at TEXT NOT NULL
        )""",
        "CREATE INDEX sessions_by_expiry ON sessions (expires_at)",
    ),
    (
        # API keys by their SHA-256 only; a key is found by its hash on every request.
        """CREATE TABLE api_keys (
            id TEXT PRIMARY KEY,
            user_id TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
            name TEXT NOT NULL,
            prefix TEXT NOT NULL,
            key_hash TEXT NOT NULL UNIQUE,
            created_at TEXT NOT NULL
        )""",
        "CREATE INDEX api_keys_by_user ON api_keys (user_id, created_at)",
    ),
    (
        # Full-text search: each message's folded words (dziri.core.search), keyed by its seq,
        # kept in step by triggers (cascaded deletes included). The triggers call a function
        # that each connection of this store registers (SEARCH_WORDS_FUNCTION).
        "CREATE VIRTUAL TABLE message_search USING fts5 (body, tokenize = 'unicode61 remove_diacritics 2')",
        """CREATE TRIGGER message_search_insert AFTER INSERT ON messages BEGIN
            INSERT INTO message_search (rowid, body) VALUES (new.seq, dziri_search_words(new.content));
        END""",
        """CREATE TRIGGER message_search_update AFTER UPDATE OF content ON messages BEGIN
            UPDATE message_search SET body = dziri_search_words(new.content) WHERE rowid = new.seq;
        END""",
        """CREATE TRIGGER message_search_delete AFTER DELETE ON messages BEGIN
            DELETE FROM message_search WHERE rowid = old.seq;
        END""",
        "INSERT INTO message_search (rowid, body) SELECT seq, dziri_search_words(content) FROM messages",
    ),
    (
        # A reply's figures (NULL for user messages and for replies stored before them).
        "ALTER TABLE messages ADD COLUMN tokens INTEGER",
        "ALTER TABLE messages ADD COLUMN tokens_per_second REAL",
    ),
    (
        # A conversation's own settings ('' and NULL: the defaults).
        "ALTER TABLE conversations ADD COLUMN system_prompt TEXT NOT NULL DEFAULT ''",
        "ALTER TABLE conversations ADD COLUMN temperature REAL",
    ),
]
SEARCH_WORDS_FUNCTION = "dziri_search_words"
SCHEMA_VERSION = len(MIGRATIONS)

_NO_CURSOR = (1 << 63) - 1  # above any rowid: "no `before`" needs no second query


def _new_id() -> str:
    return uuid.uuid4().hex


def _text(moment: datetime) -> str:
    # Fixed width (always microseconds, always +00:00), so text order is time order.
    return moment.astimezone(UTC).isoformat(timespec="microseconds")




def _user(row: sqlite3.Row) -> User:
    return User(id=row["id"], username=row["username"], email=row["email"],
                password_hash=row["password_hash"], created_at=row["created_at"])


def _conversation(row: sqlite3.Row) -> Conversation:
    return Conversation(id=row["id"], user_id=row["user_id"], title=row["title"],
                        started_at=row["started_at"], updated_at=row["updated_at"],
                        system_prompt=row["system_prompt"], temperature=row["temperature"])


def _message(row: sqlite3.Row) -> Message:
    return Message(id=row["id"], conversation_id=row["conversation_id"], user_id=row["user_id"],
                   role=row["role"], content=row["content"], timestamp=row["timestamp"],
                   status=row["status"], error=row["error"], tokens=row["tokens"],
                   tokens_per_second=row["tokens_per_second"])


def _api_key(row: sqlite3.Row) -> ApiKey:
    return ApiKey(id=row["id"], user_id=row["user_id"], name=row["name"], prefix=row["prefix"],
                  key_hash=row["key_hash"], created_at=row["created_at"])


class SQLiteStore:
    """Users, conversations and messages in one SQLite file (WAL, foreign keys, migrations)."""

    class Settings(BaseModel):
        model_config = ConfigDict(extra="forbid")

        path: str = Field(default="", description=f"database file; empty: <data dir>/{DEFAULT_FILENAME}")
        busy_timeout_s: float = Field(default=5.0, ge=0)  # wait this long for another process's lock
        # NORMAL in WAL mode survives any crash of the application; only a power cut can drop
        # the last few commits, never corrupt the file. FULL adds an fsync per write (~ms each),
        # which a reply saved while it streams would pay many times a second.
        synchronous: Literal["NORMAL", "FULL"] = "NORMAL"

    def __init__(self, settings: Settings, context: PluginContext):
        self.settings = settings
        default = Path(context.data_dir) / DEFAULT_FILENAME
        self.path = Path(settings.path).expanduser() if settings.path else default
        self._lock = threading.RLock()
        self._last_stamp = datetime.min.replace(tzinfo=UTC)
        self._db: sqlite3.Connection | None = self._open()

    # ---- opening, errors, transactions -------------------------------------------------

    def _open(self) -> sqlite3.Connection:
        self._check_file()
        try:
            db = sqlite3.connect(self.path, timeout=self.settings.busy_timeout_s,
                                 isolation_level=None, check_same_thread=False)
        except sqlite3.Error as exc:
            raise self._error(exc) from exc
        try:
            db.row_factory = sqlite3.Row
            db.create_function(SEARCH_WORDS_FUNCTION, 1, folded_words, deterministic=True)
            db.execute("PRAGMA foreign_keys = ON")
            mode = db.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if mode.lower() != "wal":
                raise StoreError(f"SQLite store {self.path}: the file system does not support WAL mode"
                                 f" (journal mode stayed '{mode}')")
            db.execute(f"PRAGMA synchronous = {self.settings.synchronous}")
            self._migrate(db)
        except sqlite3.Error as exc:
            db.close()
            raise self._error(exc) from exc
        except BaseException:
            db.close()
            raise
        return db

    def _check_file(self) -> None:
        """Refuse, before SQLite touches anything, a path that cannot be our database.
        SQLite would happily create -wal/-shm files next to a text file before failing."""
        path = self.path
        try:
            is_dir, exists = path.is_dir(), path.exists()
        except OSError as exc:  # e.g. a directory on the way that we may not enter
            raise StoreError(f"SQLite store {path} cannot be reached ({exc.strerror})") from None
        if is_dir:
            raise StoreError(f"SQLite store {path} is a directory, not a database file")
        if exists:
            try:
                with path.open("rb") as file:
                    header = file.read(len(SQLITE_HEADER))
            except OSError as exc:
                raise StoreError(f"SQLite store {path} cannot be read: {exc.strerror}") from None
            if header and header != SQLITE_HEADER:
                raise StoreError(f"SQLite store {path} is not a SQLite database; it was left untouched"
                                 " (point store.sqlite.path at another file)")
            # os.access honours read-only mounts even for root; plain mode bits do not stop root.
            if not os.access(path, os.W_OK):
                raise StoreError(f"SQLite store {path} is read-only: make it writable or choose another path")
        else:
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise StoreError(f"SQLite store {path}: cannot create its directory ({exc.strerror})"
                                 ) from None
        if not os.access(path.parent, os.W_OK | os.X_OK):
            raise StoreError(f"SQLite store {path}: its directory is read-only, and SQLite writes its"
                             " -wal and -shm files beside the database")

    def _migrate(self, db: sqlite3.Connection) -> None:
        # IMMEDIATE: two processes starting together must not both run the migrations.
        db.execute("BEGIN IMMEDIATE")
        try:
            version = db.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise StoreError(f"SQLite store {self.path} has schema version {version}, newer than this"
                                 f" dziri knows ({SCHEMA_VERSION}): upgrade dziri")
            for number in range(version, SCHEMA_VERSION):
                try:
                    for statement in MIGRATIONS[number]:
                        db.execute(statement)
                except sqlite3.OperationalError as exc:
                    if "locked" in str(exc) or "readonly" in str(exc):
                        raise
                    raise StoreError(f"SQLite store {self.path}: migration to schema version {number + 1}"
                                     f" failed ({exc}); the database was left at version {version}") from exc
            # Written even when unchanged: it doubles as a write probe, so a read-only
            # database fails here at start-up rather than at the first message.
            db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise

    def _error(self, exc: sqlite3.Error) -> StoreError:
        """One line that names the file and says what to do."""
        text = str(exc)
        where = f"SQLite store {self.path}"
        if "locked" in text or "busy" in text:
            waited = self.settings.busy_timeout_s
            return StoreError(f"{where} is locked by another process (waited {waited:g} s);"
                              " retry, or raise store.sqlite.busy_timeout_s")
        if "readonly" in text or "read-only" in text:
            return StoreError(f"{where} is read-only (the file, its directory or the file system):"
                              " make it writable or choose another path")
        if "not a database" in text or "malformed" in text:
            return StoreError(f"{where} is not a SQLite database or is corrupt ({text})")
        if "unable to open" in text:
            return StoreError(f"{where} cannot be opened: check that it and its directory exist"
                              " and are writable")
        return StoreError(f"{where}: {text}")

    @contextmanager
    def _transaction(self, write: bool = True) -> Iterator[sqlite3.Connection]:
        # A write takes the file's write lock up front (IMMEDIATE): upgrading a read lock
        # later can fail at once with SQLITE_BUSY instead of waiting busy_timeout_s.
        with self._lock:
            db = self._db
            if db is None:
                raise StoreError(f"SQLite store {self.path} is closed")
            try:
                db.execute("BEGIN IMMEDIATE" if write else "BEGIN")
                try:
                    yield db
                    db.execute("COMMIT")
                except BaseException:
                    if db.in_transaction:
                        db.execute("ROLLBACK")
                    raise
            except sqlite3.Error as exc:
                raise self._error(exc) from exc

    def _now(self) -> datetime:
        # Strictly increasing in this process: two writes within one clock tick (a coarse
        # clock, a fast machine) must still order conversations by their latest activity.
        with self._lock:
            self._last_stamp = max(utcnow(), self._last_stamp + timedelta(microseconds=1))
            return self._last_stamp

    # ---- lookups shared by the hooks -----------------------------------------------------

    @staticmethod
    def _user_row(db: sqlite3.Connection, user_id: str) -> sqlite3.Row:
        row = db.execute("SELECT * FROM users WHERE id = ?", (user_id,)).fetchone()
        if row is None:
            raise NotFoundError(f"user {user_id} not found")
        return row

    @staticmethod
    def _conversation_row(db: sqlite3.Connection, user_id: str, conversation_id: str) -> sqlite3.Row:
        row = db.execute("SELECT * FROM conversations WHERE id = ? AND user_id = ?",
                         (conversation_id, user_id)).fetchone()
        if row is None:  # missing or someone else's: the same answer, so ids cannot be probed
            raise NotFoundError(f"conversation {conversation_id} not found")
        return row

    @staticmethod
    def _message_row(db: sqlite3.Connection, user_id: str, message_id: str) -> sqlite3.Row:
        row = db.execute("SELECT * FROM messages WHERE id = ? AND user_id = ?",
                         (message_id, user_id)).fetchone()
        if row is None:
            raise NotFoundError(f"message {message_id} not found")
        return row

    @staticmethod
    def _check_email_free(db: sqlite3.Connection, email: str, user_id: str = "") -> None:
        taken = db.execute("SELECT 1 FROM users WHERE email_key = ? AND id != ?", (email.lower(), user_id))
        if taken.fetchone():
            raise ConflictError(f"email {email!r} is already registered")

    # ---- users ---------------------------------------------------------------------------

    @hookimpl
    def store_create_user(self, username: str, email: str, password_hash: str) -> User:
        check_text(username, "username", allow_empty=False)
        check_text(email, "email", allow_empty=False)
        check_text(password_hash, "password_hash")
        with self._transaction() as db:
            user = User(id=_new_id(), username=username, email=email, password_hash=password_hash,
                        created_at=self._now())
            if db.execute("SELECT 1 FROM users WHERE username = ?", (username,)).fetchone():
                raise ConflictError(f"username {username!r} is already taken")
            self._check_email_free(db, email)
            db.execute("INSERT INTO users (id, username, email, email_key, password_hash, created_at)"
                       " VALUES (?, ?, ?, ?, ?, ?)",
                       (user.id, username, email, email.lower(), password_hash, _text(user.created_at)))
        return user

    @hookimpl
    def store_get_user(self, user_id: str) -> User:
        with self._transaction(write=False) as db:
            return _user(self._user_row(db, user_id))

    @hookimpl
    def store_find_user(self, username: str) -> User | None:
        with self._transaction(write=False) as db:
            row = db.execute("SELECT * FROM users WHERE username = ?", (username,)).fetchone()
        return None if row is None else _user(row)

    @hookimpl
    def store_update_user(self, user_id: str, email: str | None, password_hash: str | None) -> User:
        if email is not None:
            check_text(email, "email", allow_empty=False)
        if password_hash is not None:
            check_text(password_hash, "password_hash")
        with self._transaction() as db:
            self._user_row(db, user_id)
            if email is not None:
                self._check_email_free(db, email, user_id)
                db.execute("UPDATE users SET email = ?, email_key = ? WHERE id = ?",
                           (email, email.lower(), user_id))
            if password_hash is not None:
                db.execute("UPDATE users SET password_hash = ? WHERE id = ?", (password_hash, user_id))
            return _user(self._user_row(db, user_id))

    @hookimpl
    def store_delete_user(self, user_id: str) -> None:
        with self._transaction() as db:
            if db.execute("DELETE FROM users WHERE id = ?", (user_id,)).rowcount == 0:
                raise NotFoundError(f"user {user_id} not found")

    # ---- conversations -------------------------------------------------------------------

    @hookimpl
    def store_create_conversation(self, user_id: str, title: str) -> Conversation:
        check_text(title, "title")
        with self._transaction() as db:
            self._user_row(db, user_id)
            now = self._now()
            conversation = Conversation(id=_new_id(), user_id=user_id, title=title,
                                        started_at=now, updated_at=now)
            db.execute("INSERT INTO conversations (id, user_id, title, started_at, updated_at)"
                       " VALUES (?, ?, ?, ?, ?)",
                       (conversation.id, user_id, title, _text(now), _text(now)))
        return conversation

    @hookimpl
    def store_get_conversation(self, user_id: str, conversation_id: str) -> Conversation:
        with self._transaction(write=False) as db:
            return _conversation(self._conversation_row(db, user_id, conversation_id))

    @hookimpl
    def store_list_conversations(self, user_id: str, limit: int, offset: int) -> list[Conversation]:
        check(isinstance(limit, int) and limit >= 1, "limit must be an integer of at least 1")
        check(isinstance(offset, int) and offset >= 0, "offset must be an integer of at least 0")
        with self._transaction(write=False) as db:
            rows = db.execute("SELECT * FROM conversations WHERE user_id = ?"
                              " ORDER BY updated_at DESC, id DESC LIMIT ? OFFSET ?",
                              (user_id, limit, offset)).fetchall()
        return [_conversation(row) for row in rows]

    @hookimpl
    def store_update_conversation(self, user_id: str, conversation_id: str, title: str) -> Conversation:
        check_text(title, "title")
        with self._transaction() as db:
            self._conversation_row(db, user_id, conversation_id)
            db.execute("UPDATE conversations SET title = ? WHERE id = ?", (title, conversation_id))
            return _conversation(self._conversation_row(db, user_id, conversation_id))

    @hookimpl
    def store_update_conversation_settings(self, user_id: str, conversation_id: str, system_prompt: str,
                                           temperature: float | None) -> Conversation:
        check_settings(system_prompt, temperature)
        with self._transaction() as db:
            self._conversation_row(db, user_id, conversation_id)
            db.execute("UPDATE conversations SET system_prompt = ?, temperature = ? WHERE id = ?",
                       (system_prompt, temperature, conversation_id))
            return _conversation(self._conversation_row(db, user_id, conversation_id))

    @hookimpl
    def store_import_conversation(self, user_id: str, conversation: Conversation,
                                  messages: list[Message]) -> Conversation:
        with self._transaction() as db:  # one transaction: all of it or none
            self._user_row(db, user_id)
            stored = conversation.model_copy(update={"id": _new_id(), "user_id": user_id})
            db.execute("INSERT INTO conversations (id, user_id, title, started_at, updated_at, system_prompt,"
                       " temperature) VALUES (?, ?, ?, ?, ?, ?, ?)",
                       (stored.id, user_id, stored.title, _text(stored.started_at), _text(stored.updated_at),
                        stored.system_prompt, stored.temperature))
            for m in messages:
                db.execute("INSERT INTO messages (id, conversation_id, user_id, role, content, status, error,"
                           " timestamp, tokens, tokens_per_second) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                           (_new_id(), stored.id, user_id, m.role.value, m.content, m.status.value, m.error,
                            _text(m.timestamp), m.tokens, m.tokens_per_second))
        return stored

    @hookimpl
    def store_delete_conversation(self, user_id: str, conversation_id: str) -> None:
        with self._transaction() as db:
            if not db.execute("DELETE FROM conversations WHERE id = ? AND user_id = ?",
                              (conversation_id, user_id)).rowcount:
                raise NotFoundError(f"conversation {conversation_id} not found")

    # ---- messages ------------------------------------------------------------------------

    @hookimpl
    def store_add_message(
        self,
        user_id: str,
        conversation_id: str,
        role: Role,
        content: str,
        status: MessageStatus,
        error: str | None,
    ) -> Message:
        role = enum_value(Role, role, "role")
        status = message_fields(content, status, error)
        with self._transaction() as db:
            self._conversation_row(db, user_id, conversation_id)
            now = self._now()  # under the write lock, so timestamps follow the order of the rows
            message = Message(id=_new_id(), conversation_id=conversation_id, user_id=user_id, role=role,
                              content=content, timestamp=now, status=status, error=error)
            db.execute("INSERT INTO messages (id, conversation_id, user_id, role, content, status, error,"
                       " timestamp) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                       (message.id, conversation_id, user_id, role.value, content, status.value, error,
                        _text(now)))
            # max(): another process's clock may be behind ours; updated_at never goes back.
            db.execute("UPDATE conversations SET updated_at = max(updated_at, ?) WHERE id = ?",
                       (_text(now), conversation_id))
        return message

    @hookimpl
    def store_update_message(
        self, user_id: str, message_id: str, content: str, status: MessageStatus, error: str | None,
        tokens: int | None, tokens_per_second: float | None,
    ) -> Message:
        status = message_fields(content, status, error)
        check_figures(tokens, tokens_per_second)
        with self._transaction() as db:
            self._message_row(db, user_id, message_id)
            db.execute("UPDATE messages SET content = ?, status = ?, error = ?, tokens = ?, tokens_per_second = ?"
                       " WHERE id = ?", (content, status.value, error, tokens, tokens_per_second, message_id))
            return _message(self._message_row(db, user_id, message_id))

    @hookimpl
    def store_delete_message(self, user_id: str, message_id: str) -> None:
        with self._transaction() as db:
            deleted = db.execute("DELETE FROM messages WHERE id = ? AND user_id = ?", (message_id, user_id))
            if not deleted.rowcount:
                raise NotFoundError(f"message {message_id} not found")

    @hookimpl
    def store_search_messages(self, user_id: str, terms: list[str], limit: int, offset: int) -> list[Message]:
        check_search(terms, limit, offset)
        # Each term as a quoted prefix: terms are folded words (letters and digits only),
        # so nothing in them can be FTS5 syntax.
        query = " AND ".join(f'"{term}"*' for term in terms)
        with self._transaction(write=False) as db:
            # Newest first in the index's own rowid (= seq) order: FTS5 walks its matches
            # backwards and stops after `limit`, however many there are.
            rows = db.execute("SELECT m.* FROM message_search JOIN messages m ON m.seq = message_search.rowid"
                              " WHERE message_search MATCH ? AND m.user_id = ? ORDER BY message_search.rowid DESC"
                              " LIMIT ? OFFSET ?", (query, user_id, limit, offset)).fetchall()
        return [_message(row) for row in rows]

    @hookimpl
    def store_list_messages(
        self, user_id: str, conversation_id: str, limit: int, before: str | None
    ) -> list[Message]:
        check(isinstance(limit, int) and limit >= 1, "limit must be an integer of at least 1")
        with self._transaction(write=False) as db:
            self._conversation_row(db, user_id, conversation_id)
            cursor = _NO_CURSOR
            if before is not None:
                row = db.execute("SELECT seq FROM messages WHERE id = ? AND conversation_id = ?",
                                 (before, conversation_id)).fetchone()
                if row is None:
                    raise NotFoundError(f"message {before} not found")
                cursor = row["seq"]
            rows = db.execute("SELECT * FROM messages WHERE conversation_id = ? AND seq < ?"
                              " ORDER BY seq DESC LIMIT ?", (conversation_id, cursor, limit)).fetchall()
        return [_message(row) for row in reversed(rows)]

    # ---- web sessions ----------------------------------------------------------------------

    @hookimpl
    def store_save_session(self, key: str, data: str, expires_at: datetime) -> None:
        check_text(key, "session key", allow_empty=False)
        check_text(data, "session data")
        with self._transaction() as db:
            db.execute("INSERT INTO sessions (key, data, expires_at) VALUES (?, ?, ?) ON CONFLICT (key)"
                       " DO UPDATE SET data = excluded.data, expires_at = excluded.expires_at",
                       (key, data, _text(expires_at)))

    @hookimpl
    def store_load_session(self, key: str) -> Session | None:
        with self._transaction(write=False) as db:
            row = db.execute("SELECT * FROM sessions WHERE key = ? AND expires_at > ?",
                             (key, _text(utcnow()))).fetchone()
        return Session(key=row["key"], data=row["data"], expires_at=row["expires_at"]) if row else None

    @hookimpl
    def store_delete_session(self, key: str) -> None:
        with self._transaction() as db:
            db.execute("DELETE FROM sessions WHERE key = ?", (key,))

    @hookimpl
    def store_purge_sessions(self) -> int:
        with self._transaction() as db:
            return db.execute("DELETE FROM sessions WHERE expires_at <= ?", (_text(utcnow()),)).rowcount

    # ---- API keys --------------------------------------------------------------------------

    @hookimpl
    def store_create_api_key(self, user_id: str, name: str, prefix: str, key_hash: str) -> ApiKey:
        for value, field in ((name, "name"), (prefix, "prefix")):
            check_text(value, field)
        check_text(key_hash, "key_hash", allow_empty=False)
        with self._transaction() as db:
            self._user_row(db, user_id)
            if db.execute("SELECT 1 FROM api_keys WHERE key_hash = ?", (key_hash,)).fetchone():
                raise ConflictError("that API key is already recorded")
            key = ApiKey(id=_new_id(), user_id=user_id, name=name, prefix=prefix, key_hash=key_hash,
                         created_at=self._now())
            db.execute("INSERT INTO api_keys (id, user_id, name, prefix, key_hash, created_at)"
                       " VALUES (?, ?, ?, ?, ?, ?)",
                       (key.id, user_id, name, prefix, key_hash, _text(key.created_at)))
        return key

    @hookimpl
    def store_list_api_keys(self, user_id: str) -> list[ApiKey]:
        with self._transaction(write=False) as db:
            rows = db.execute("SELECT * FROM api_keys WHERE user_id = ? ORDER BY created_at DESC, id DESC",
                              (user_id,)).fetchall()
        return [_api_key(row) for row in rows]

    @hookimpl
    def store_find_api_key(self, key_hash: str) -> ApiKey | None:
        with self._transaction(write=False) as db:
            row = db.execute("SELECT * FROM api_keys WHERE key_hash = ?", (key_hash,)).fetchone()
        return None if row is None else _api_key(row)

    @hookimpl
    def store_delete_api_key(self, user_id: str, key_id: str) -> None:
        with self._transaction() as db:
            if db.execute("DELETE FROM api_keys WHERE id = ? AND user_id = ?", (key_id, user_id)).rowcount == 0:
                raise NotFoundError(f"API key {key_id} not found")

    @hookimpl
    def store_close(self) -> None:
        with self._lock:
            db, self._db = self._db, None
            if db is not None:
                db.close()


__all__ = ["MIGRATIONS", "SCHEMA_VERSION", "SQLiteStore"]
