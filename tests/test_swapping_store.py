"""Swapping the store by configuration: the same chat flow on `DZIRI_STORE=sqlite` and on
`DZIRI_STORE=mongodb` (`mongomock://`) stores the same records, field for field.

The flow runs in-process through `App`, as the CLI and the web host do: a mongomock
database lives in one process's memory, so it cannot outlast a `dziri` subprocess.
The CLI itself is checked on mongomock within one process each.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from datetime import timedelta
from pathlib import Path

import pytest
from fakes.backends import DroppedConnectionBackend

from dziri.core.app import App
from dziri.core.chat import ChatService
from dziri.core.config import ChatSettings
from dziri.core.errors import BackendError, NotFoundError
from dziri.core.models import Message
from dziri.core.roles import facade_for
from dziri.plugins.stores import mongodb as mongodb_module

STORES = {
    "sqlite": {"DZIRI_STORE": "sqlite"},
    "mongodb": {"DZIRI_STORE": "mongodb", "DZIRI_STORE__MONGODB__URI": "mongomock://"},
}


@pytest.fixture
def app_on(monkeypatch):
    """store name -> an App on the echo backend and that store (a fresh database each)."""
    apps: list[App] = []
    databases: list[str] = []

    def make(store: str) -> App:
        monkeypatch.setenv("DZIRI_BACKEND", "echo")
        for name, value in STORES[store].items():
            monkeypatch.setenv(name, value)
        if store == "mongodb":
            databases.append(f"dziri_test_{uuid.uuid4().hex[:12]}")
            monkeypatch.setenv("DZIRI_STORE__MONGODB__DATABASE", databases[-1])
        apps.append(App())
        return apps[-1]

    yield make
    for app in apps:
        app.close()
    for database in databases:
        mongodb_module._mock_client("mongomock://").drop_database(database)


def chat_flow(app: App) -> dict:
    """Everything a user does in a chat; returns what the store holds afterwards, with ids
    replaced by their order of appearance and timestamps by checks on them."""
    chat = app.chat
    user = chat.local_user()
    assert chat.local_user() == user  # found again, not created twice

    first = chat.send(user.id, "salam, wach rak?")
    assert first.text() == "echo: salam, wach rak?"
    conversation_id = first.conversation.id
    chat.send(user.id, "labas, w nta?", conversation_id).text()
    regenerated = chat.regenerate(user.id, conversation_id)
    assert regenerated.text() == "echo: labas, w nta?"

    stopped = chat.send(user.id, "one two three four five", conversation_id)
    for number, _ in enumerate(stopped):
        if number == 1:
            stopped.stop()
    failing = ChatService(facade_for("backend", DroppedConnectionBackend(), "dropped"), app.store, app.pm.hook,
                          ChatSettings())
    with pytest.raises(BackendError, match="connection reset"):
        failing.send(user.id, "w daba?", conversation_id).text()

    other = chat.send(user.id, "3lach?")
    other.text()
    doomed = chat.send(user.id, "to be deleted")
    doomed.text()
    app.store.delete_conversation(user.id, doomed.conversation.id)
    with pytest.raises(NotFoundError):
        app.store.list_messages(user.id, doomed.conversation.id)

    labels: dict[str, str] = {}

    def label(some_id: str) -> str:
        assert type(some_id) is str and some_id
        return labels.setdefault(some_id, f"#{len(labels)}")

    def message_record(message: Message) -> dict:
        assert message.timestamp.utcoffset() == timedelta(0)
        # A reply's speed is the clock's: whether it was measured is what both stores must keep.
        record = message.model_dump(mode="json", exclude={"timestamp", "tokens_per_second"})
        return {**record, "id": label(message.id), "conversation_id": label(message.conversation_id),
                "user_id": label(message.user_id), "has_speed": message.tokens_per_second is not None}

    stored_user = app.store.get_user(user.id)
    records = {"user": {**stored_user.model_dump(mode="json", exclude={"created_at"}), "id": label(user.id)},
               "conversations": []}
    for conversation in app.store.list_conversations(user.id):
        assert conversation.started_at <= conversation.updated_at
        messages = app.store.list_messages(user.id, conversation.id, limit=100)
        stamps = [m.timestamp for m in messages]
        assert stamps == sorted(stamps) and conversation.updated_at >= stamps[-1]
        records["conversations"].append({
            **conversation.model_dump(mode="json", exclude={"started_at", "updated_at"}),
            "id": label(conversation.id), "user_id": label(conversation.user_id),
            "messages": [message_record(m) for m in messages],
        })
    return records


def test_mongodb_stores_the_same_records_as_sqlite(app_on):
    sqlite_app, mongodb_app = app_on("sqlite"), app_on("mongodb")
    on_sqlite, on_mongodb = chat_flow(sqlite_app), chat_flow(mongodb_app)
    assert (sqlite_app.store.name, mongodb_app.store.name) == ("sqlite", "mongodb")
    assert on_mongodb == on_sqlite
    # And the records are the ones the flow should leave (newest conversation first).
    talk = on_sqlite["conversations"][1]["messages"]
    assert [c["title"] for c in on_sqlite["conversations"]] == ["3lach?", "salam, wach rak?"]
    assert [(m["role"], m["content"], m["status"]) for m in talk] == [
        ("user", "salam, wach rak?", "complete"), ("assistant", "echo: salam, wach rak?", "complete"),
        ("user", "labas, w nta?", "complete"), ("assistant", "echo: labas, w nta?", "complete"),
        ("user", "one two three four five", "complete"), ("assistant", "echo: one", "partial"),
        ("user", "w daba?", "complete"), ("assistant", "nus jawab", "error"),
    ]
    assert "ConnectionError: connection reset by peer" in talk[-1]["error"]


def test_an_app_restarted_in_the_same_process_keeps_mongomock_data(app_on, monkeypatch):
    app = app_on("mongodb")
    reply = app.chat.send(app.chat.local_user().id, "salam")
    reply.text()
    app.close()
    again = App()  # same environment: same mongomock:// URI and database
    try:
        user = again.chat.local_user()
        assert [c.id for c in again.store.list_conversations(user.id)] == [reply.conversation.id]
    finally:
        again.close()


# ---- the CLI, one process each ------------------------------------------------------------------

DZIRI = str(Path(sys.executable).parent / "dziri")


def dziri(*args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([DZIRI, *args], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "DZIRI_BACKEND": "echo", **STORES["mongodb"], **env})


def test_cli_chats_on_mongomock():
    result = dziri("chat", "salam")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "echo: salam"
    assert "--conversation" in result.stderr


def test_cli_shows_mongodb_as_the_active_store():
    report = json.loads(dziri("plugins", "--json").stdout)
    stores = {p["name"]: p for p in report["store"]["plugins"]}
    assert report["store"]["active"] == "mongodb"
    assert stores["mongodb"]["status"] == "ok" and stores["mongodb"]["active"]


def test_cli_reports_an_unreachable_server_in_one_line_without_the_password():
    result = dziri("chat", "salam", DZIRI_STORE__MONGODB__URI="mongodb://dziri:s3cr3t@127.0.0.1:1/",
                   DZIRI_STORE__MONGODB__SERVER_SELECTION_TIMEOUT_MS="200")
    assert result.returncode != 0 and "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "127.0.0.1:1" in lines[0] and "cannot be reached" in lines[0], result.stderr
    assert "s3cr3t" not in result.stderr + result.stdout
