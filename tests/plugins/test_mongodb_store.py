"""The MongoDB store: the shared store contract on mongomock (and on a real server when
DZIRI_TEST_MONGO_URI is set), then what only a MongoDB store has to get right."""

from __future__ import annotations

import os
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta

import mongomock
import pydantic
import pymongo
import pytest
from bson import ObjectId
from pymongo.errors import DuplicateKeyError, OperationFailure

from dziri.core.errors import ConfigError, ConflictError, NotFoundError, StoreError
from dziri.core.models import MessageStatus, PluginContext, Role
from dziri.core.roles import facade_for
from dziri.core.testing import StoreContract
from dziri.plugins.stores import mongodb as mongodb_module
from dziri.plugins.stores.mongodb import INDEXES, SESSION_TTL_GRACE_S, MongoDBStore

# Read at import: the autouse fixture in conftest.py clears DZIRI_* before every test.
REAL_URI = os.environ.get("DZIRI_TEST_MONGO_URI", "")
MOCK_URI = "mongomock://"


def unique_database() -> str:
    return f"dziri_test_{uuid.uuid4().hex[:12]}"


def open_plugin(uri: str = MOCK_URI, database: str = "dziri", tmp_path=None, **settings) -> MongoDBStore:
    context = PluginContext(data_dir=tmp_path or "/nonexistent")  # the store keeps no files
    return MongoDBStore(MongoDBStore.Settings(uri=uri, database=database, **settings), context)


def drop(uri: str, database: str) -> None:
    if uri.startswith(MOCK_URI):
        mongodb_module._mock_client(uri).drop_database(database)
    else:
        with pymongo.MongoClient(uri, serverSelectionTimeoutMS=5_000) as client:
            client.drop_database(database)


@pytest.fixture
def fresh_database():
    """(uri, database) -> a new, empty database on that server, dropped afterwards."""
    made: list[tuple[str, str]] = []

    def make(uri: str = MOCK_URI) -> str:
        made.append((uri, unique_database()))
        return made[-1][1]

    yield make
    for uri, database in made:
        drop(uri, database)


class TestMongomockStoreContract(StoreContract):
    @pytest.fixture
    def store_plugin(self, fresh_database, tmp_path):
        return open_plugin(MOCK_URI, fresh_database(), tmp_path)


if REAL_URI:
    class TestRealMongoDBStoreContract(StoreContract):
        @pytest.fixture
        def store_plugin(self, fresh_database, tmp_path):
            return open_plugin(REAL_URI, fresh_database(REAL_URI), tmp_path)

    # The MongoDB-specific tests below run on the real server too.
    SERVERS = [pytest.param(MOCK_URI, id="mongomock"), pytest.param(REAL_URI, id="real-server")]
else:
    def test_the_contract_and_these_tests_on_a_real_server():
        pytest.skip("set DZIRI_TEST_MONGO_URI=mongodb://… to run this module against a real MongoDB server too"
                    " (each test creates a database dziri_test_… and drops it)")

    SERVERS = [pytest.param(MOCK_URI, id="mongomock")]


@pytest.fixture(params=SERVERS)
def opened(request, fresh_database, tmp_path):
    """(plugin, facade) on a fresh database."""
    plugin = open_plugin(request.param, fresh_database(request.param), tmp_path)
    store = facade_for("store", plugin, "mongodb")
    yield plugin, store
    store.close()


def seed(store) -> tuple[str, str, list[str]]:
    user = store.create_user("amine", "Amine@example.dz", "h")
    conversation = store.create_conversation(user.id, "wach")
    ids = [store.add_message(user.id, conversation.id, role, content).id
           for role, content in ((Role.USER, "salam"), (Role.ASSISTANT, "labas?"), (Role.USER, "labas, w nta?"))]
    return user.id, conversation.id, ids


def contents(store, user_id: str, conversation_id: str) -> list[str]:
    return [m.content for m in store.list_messages(user_id, conversation_id, limit=10_000)]


# ---- settings ----------------------------------------------------------------------------------


def test_settings_have_working_defaults():
    settings = MongoDBStore.Settings()
    assert (settings.uri, settings.database) == ("mongodb://127.0.0.1:27017", "dziri")
    assert settings.server_selection_timeout_ms > 0 and settings.connect_timeout_ms > 0


def test_settings_reject_unknown_keys_and_bad_database_names():
    with pytest.raises(pydantic.ValidationError):
        MongoDBStore.Settings(url="mongodb://x")
    for name in ("", "dz.iri", "a b", "a/b", "x" * 64):
        with pytest.raises(pydantic.ValidationError):
            MongoDBStore.Settings(database=name)


# ---- the seed's collections and fields; ids ------------------------------------------------------


def test_collections_and_fields_are_the_seeds(opened):
    plugin, store = opened
    user_id, conversation_id, message_ids = seed(store)
    db = plugin._db
    assert {"users", "conversations", "messages"} <= set(db.list_collection_names())
    user = db["users"].find_one()
    assert {"username", "email", "password_hash"} <= set(user)
    assert (user["_id"], user["username"], user["email"]) == (ObjectId(user_id), "amine", "Amine@example.dz")
    assert user["email_key"] == "amine@example.dz"
    conversation = db["conversations"].find_one()
    assert {"user_id", "started_at", "updated_at", "title"} <= set(conversation)
    assert (conversation["_id"], conversation["user_id"]) == (ObjectId(conversation_id), ObjectId(user_id))
    messages = list(db["messages"].find().sort("seq", 1))
    assert [m["_id"] for m in messages] == [ObjectId(i) for i in message_ids]
    for message in messages:
        assert {"conversation_id", "user_id", "content", "timestamp", "role", "status", "error"} <= set(message)
        assert (message["conversation_id"], message["user_id"]) == (ObjectId(conversation_id), ObjectId(user_id))
    assert [m["role"] for m in messages] == ["user", "assistant", "user"]
    store.save_session("k", "{}", datetime.now(UTC) + timedelta(hours=1))
    assert db["sessions"].find_one({"_id": "k"})["data"] == "{}"


def test_ids_are_object_id_strings(opened):
    _, store = opened
    user_id, conversation_id, message_ids = seed(store)
    for some_id in (user_id, conversation_id, *message_ids):
        assert type(some_id) is str and ObjectId.is_valid(some_id) and str(ObjectId(some_id)) == some_id


def test_indexes_are_created_on_start(opened):
    plugin, _ = opened
    for collection, name, keys, options in INDEXES:
        info = plugin._db[collection].index_information()
        assert name in info, f"{collection}: {sorted(info)}"
        assert [(field, int(direction)) for field, direction in info[name]["key"]] == keys
        assert bool(info[name].get("unique")) == bool(options.get("unique"))
    users = plugin._db["users"].index_information()
    assert users["username_unique"]["unique"] and users["email_key_unique"]["unique"]
    assert plugin._db["sessions"].index_information()["expiry_ttl"]["expireAfterSeconds"] == SESSION_TTL_GRACE_S


def test_opening_again_keeps_the_indexes_and_the_data(opened, tmp_path):
    plugin, store = opened
    user_id, conversation_id, _ = seed(store)
    again = facade_for("store", open_plugin(plugin.settings.uri, plugin.settings.database, tmp_path))
    try:
        assert contents(again, user_id, conversation_id) == ["salam", "labas?", "labas, w nta?"]
    finally:
        again.close()


BAD_IDS = ["not-an-id", "", "0" * 23, "g" * 24, "abcdefghijkl", uuid.uuid4().hex, "0" * 25]


@pytest.mark.parametrize("bad", BAD_IDS)
def test_malformed_ids_read_as_missing(opened, bad):
    _, store = opened
    user_id, conversation_id, message_ids = seed(store)
    calls = [
        lambda: store.get_user(bad),
        lambda: store.update_user(bad, email="x@example.dz"),
        lambda: store.delete_user(bad),
        lambda: store.create_conversation(bad, "t"),
        lambda: store.get_conversation(user_id, bad),
        lambda: store.get_conversation(bad, conversation_id),
        lambda: store.update_conversation(user_id, bad, "t"),
        lambda: store.delete_conversation(user_id, bad),
        lambda: store.add_message(user_id, bad, Role.USER, "x"),
        lambda: store.add_message(bad, conversation_id, Role.USER, "x"),
        lambda: store.list_messages(user_id, bad),
        lambda: store.list_messages(user_id, conversation_id, before=bad),
        lambda: store.update_message(user_id, bad, "x", MessageStatus.COMPLETE),
        lambda: store.update_message(bad, message_ids[0], "x", MessageStatus.COMPLETE),
        lambda: store.delete_message(user_id, bad),
    ]
    for call in calls:
        with pytest.raises(NotFoundError) as caught:
            call()
        assert "InvalidId" not in str(caught.value)
    assert store.list_conversations(bad) == []
    assert contents(store, user_id, conversation_id) == ["salam", "labas?", "labas, w nta?"]


def test_a_valid_object_id_that_is_missing_is_not_found(opened):
    _, store = opened
    with pytest.raises(NotFoundError, match="user"):
        store.get_user(str(ObjectId()))


# ---- ordering and timestamps --------------------------------------------------------------------


def test_two_stores_on_one_database_keep_one_order(opened, tmp_path):
    # Two plugin instances, as two server processes would have: the per-conversation
    # counter orders their messages, not a process-local clock or ObjectId.
    plugin, first = opened
    second = facade_for("store", open_plugin(plugin.settings.uri, plugin.settings.database, tmp_path))
    user_id, conversation_id, _ = seed(first)
    expected = []
    for number in range(10):
        store = first if number % 2 else second
        store.add_message(user_id, conversation_id, Role.USER, f"m{number}")
        expected.append(f"m{number}")
    assert contents(first, user_id, conversation_id)[3:] == expected == contents(second, user_id, conversation_id)[3:]
    second.close()


def test_timestamps_follow_the_order_and_never_go_back(opened):
    # Another process with a clock ahead of ours bumped the conversation: our next message
    # takes that time, so the stored order and the time order still agree.
    plugin, store = opened
    user_id, conversation_id, _ = seed(store)
    ahead = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=30)
    plugin._db["conversations"].update_one({"_id": ObjectId(conversation_id)}, {"$set": {"updated_at": ahead}})
    added = store.add_message(user_id, conversation_id, Role.USER, "from a slow clock")
    assert added.timestamp == ahead
    assert store.get_conversation(user_id, conversation_id).updated_at == ahead
    stamps = [m.timestamp for m in store.list_messages(user_id, conversation_id)]
    assert stamps == sorted(stamps) and stamps[-1] == ahead


def test_datetimes_are_utc_and_cut_to_milliseconds(opened):
    _, store = opened
    user_id, conversation_id, _ = seed(store)
    message = store.list_messages(user_id, conversation_id)[0]
    conversation = store.get_conversation(user_id, conversation_id)
    for moment in (store.get_user(user_id).created_at, conversation.started_at, message.timestamp):
        assert moment.tzinfo is not None and moment.utcoffset() == timedelta(0)
        assert moment.microsecond % 1000 == 0


def test_a_naive_session_expiry_is_taken_as_utc(opened):
    _, store = opened
    expires = datetime.now(UTC).replace(tzinfo=None) + timedelta(minutes=5)
    store.save_session("naive", "d", expires)
    assert abs(store.load_session("naive").expires_at - expires.replace(tzinfo=UTC)) < timedelta(milliseconds=1)


def test_an_expired_session_is_filtered_before_the_ttl_monitor_runs(opened):
    plugin, store = opened
    store.save_session("gone", "d", datetime.now(UTC) - timedelta(seconds=1))
    assert plugin._db["sessions"].count_documents({"_id": "gone"}) == 1  # still there: TTL deletion is lazy
    assert store.load_session("gone") is None


# ---- the mongomock:// URI -----------------------------------------------------------------------


def test_mongomock_stores_in_one_process_share_the_data(fresh_database, tmp_path):
    database = fresh_database()
    first = facade_for("store", open_plugin(MOCK_URI, database, tmp_path))
    user = first.create_user("amine", "a@example.dz", "h")
    first.close()  # an App restarting in the same process sees the same data
    second = facade_for("store", open_plugin(MOCK_URI, database, tmp_path))
    assert second.find_user("amine") == user
    second.close()


def test_other_mongomock_uris_and_databases_are_separate(fresh_database, tmp_path):
    database = fresh_database()
    one = facade_for("store", open_plugin(MOCK_URI, database, tmp_path))
    one.create_user("amine", "a@example.dz", "h")
    other_database = facade_for("store", open_plugin(MOCK_URI, fresh_database(), tmp_path))
    other_server = facade_for("store", open_plugin("mongomock://other", database, tmp_path))
    try:
        assert other_database.find_user("amine") is None
        assert other_server.find_user("amine") is None
    finally:
        for store in (one, other_database, other_server):
            store.close()
        drop("mongomock://other", database)


def test_concurrent_appends_from_threads_are_all_stored(opened):
    _, store = opened
    user_id, conversation_id, _ = seed(store)
    errors: list[BaseException] = []

    def append(worker: int) -> None:
        try:
            for number in range(20):
                store.add_message(user_id, conversation_id, Role.USER, f"w{worker}-{number}")
        except BaseException as exc:  # surfaced below: a thread's exception is otherwise lost
            errors.append(exc)

    threads = [threading.Thread(target=append, args=(worker,)) for worker in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors
    stored = contents(store, user_id, conversation_id)[3:]
    assert len(stored) == 120
    for worker in range(6):
        assert [c for c in stored if c.startswith(f"w{worker}-")] == [f"w{worker}-{n}" for n in range(20)]


# ---- errors -------------------------------------------------------------------------------------


def assert_one_line(error: Exception, *words: str, not_in: tuple[str, ...] = ()) -> None:
    message = str(error)
    assert "\n" not in message and len(message) < 600, message
    for word in words:
        assert word in message, message
    for secret in not_in:
        assert secret not in message, message


def test_an_unreachable_server_fails_quickly_naming_the_host_but_not_the_password():
    started = time.monotonic()
    with pytest.raises(StoreError) as caught:
        open_plugin("mongodb://dziri:s3cr3t-p%40ss@127.0.0.1:1/?authSource=admin",
                    server_selection_timeout_ms=200, connect_timeout_ms=200)
    assert time.monotonic() - started < 5
    assert_one_line(caught.value, "127.0.0.1:1", "cannot be reached", "store.mongodb.uri",
                    not_in=("s3cr3t", "p@ss", "p%40ss"))
    assert caught.value.__cause__ is None and caught.value.__suppress_context__


def test_an_invalid_uri_is_a_config_error_without_the_password():
    for uri in ("mongodb://dziri:s3cr3t@127.0.0.1:notaport", "http://dziri:s3cr3t@127.0.0.1:27017",
                "mongodb://dziri:s3cr3t@127.0.0.1/?connectTimeoutMS=soon",
                "mongodb://dziri:s3cr3t@127.0.0.1/?noSuchOption=1"):
        with pytest.raises(ConfigError) as caught:
            open_plugin(uri, server_selection_timeout_ms=200)
        assert_one_line(caught.value, "store.mongodb.uri", not_in=("s3cr3t",))


def test_hosts_are_described_without_credentials():
    describe = mongodb_module._hosts
    assert describe("mongodb://u:pw@h1:1,h2:2/db?replicaSet=rs0") == "mongodb://h1:1,h2:2"
    assert describe("mongodb+srv://u:p@w@cluster.example.net/") == "mongodb+srv://cluster.example.net"
    assert describe("mongodb://127.0.0.1:27017") == "mongodb://127.0.0.1:27017"
    assert describe(MOCK_URI).startswith("mongomock://")


@pytest.fixture
def failing(monkeypatch, fresh_database, tmp_path):
    """A store on mongomock whose every find_one raises the error the test gives."""
    plugin = open_plugin(MOCK_URI, fresh_database(), tmp_path)
    store = facade_for("store", plugin, "mongodb")
    user = store.create_user("amine", "a@example.dz", "h")

    def fail_with(error: Exception):
        def raise_it(*args, **kwargs):
            raise error
        monkeypatch.setattr(mongomock.collection.Collection, "find_one", raise_it)
        return store, user.id

    yield fail_with
    monkeypatch.undo()
    store.close()


def test_any_other_driver_error_is_one_store_error_line(failing):
    store, user_id = failing(OperationFailure("Executor error during find :: caused by ::\nout of memory", code=96))
    with pytest.raises(StoreError) as caught:
        store.get_user(user_id)
    assert_one_line(caught.value, "MongoDB store", "read a user", "out of memory")


def test_a_lost_connection_says_the_server_cannot_be_reached(failing):
    store, user_id = failing(pymongo.errors.AutoReconnect("127.0.0.1:27017: connection closed"))
    with pytest.raises(StoreError) as caught:
        store.get_user(user_id)
    assert_one_line(caught.value, "cannot be reached", "127.0.0.1:27017")


def test_failed_authentication_says_what_to_check(failing):
    store, user_id = failing(OperationFailure("Authentication failed.", code=18))
    with pytest.raises(StoreError) as caught:
        store.get_user(user_id)
    assert_one_line(caught.value, "authentication failed", "store.mongodb.uri")


def test_a_server_duplicate_key_names_the_field(opened, monkeypatch):
    # A real server names the index in keyPattern (mongomock does not): the field comes from there.
    plugin, store = opened
    error = DuplicateKeyError("E11000 duplicate key error", 11000,
                              {"keyPattern": {"email_key": 1}, "keyValue": {"email_key": "a@example.dz"}})

    def insert_one(*args, **kwargs):
        raise error

    monkeypatch.setattr(type(plugin._db["users"]), "insert_one", insert_one)
    with pytest.raises(ConflictError, match="email"):
        store.create_user("someone", "A@example.dz", "h")


def test_a_conflict_leaves_nothing_behind(opened):
    plugin, store = opened
    store.create_user("amine", "a@example.dz", "h")
    with pytest.raises(ConflictError, match="username"):
        store.create_user("amine", "b@example.dz", "h")
    with pytest.raises(ConflictError, match="email"):
        store.create_user("amina", "A@EXAMPLE.DZ", "h")
    assert plugin._db["users"].count_documents({}) == 1


def test_closed_store_says_so(fresh_database, tmp_path):
    plugin = open_plugin(MOCK_URI, fresh_database(), tmp_path)
    plugin.store_close()
    plugin.store_close()  # closing twice is harmless
    with pytest.raises(StoreError) as caught:
        plugin.store_get_user(str(ObjectId()))
    assert_one_line(caught.value, "closed", "MongoDB store")


def test_a_message_racing_a_conversation_delete_leaves_no_orphan(opened, monkeypatch):
    # The conversation is deleted (by another request) between the counter update and the
    # insert: the message must not stay behind, and the caller hears NotFound.
    plugin, store = opened
    user_id, conversation_id, _ = seed(store)
    messages = type(plugin._db["messages"])
    real_insert = messages.insert_one

    def insert_after_a_delete(collection, document, *args, **kwargs):
        if collection.name == "messages":
            plugin._db["conversations"].delete_one({"_id": ObjectId(conversation_id)})
            plugin._db["messages"].delete_many({"conversation_id": ObjectId(conversation_id)})
        return real_insert(collection, document, *args, **kwargs)

    monkeypatch.setattr(messages, "insert_one", insert_after_a_delete)
    with pytest.raises(NotFoundError, match="conversation"):
        store.add_message(user_id, conversation_id, Role.USER, "too late")
    monkeypatch.undo()
    assert plugin._db["messages"].count_documents({"conversation_id": ObjectId(conversation_id)}) == 0


def test_config_masks_a_password_in_the_uri():
    from dziri.core.config import masked

    data = {"store": {"use": "mongodb", "mongodb": {"uri": "mongodb://dziri:s3cr3t@db1:27017,db2/?replicaSet=rs0"}}}
    assert masked(data)["store"]["mongodb"]["uri"] == "mongodb://dziri:***@db1:27017,db2/?replicaSet=rs0"


if REAL_URI:
    EXPLAINABLE = {"find", "findAndModify", "delete", "update"}
    NOT_FOR_EXPLAIN = {"lsid", "txnNumber", "writeConcern", "readConcern", "$db", "$clusterTime", "$readPreference"}

    class CommandRecorder(pymongo.monitoring.CommandListener):
        def __init__(self):
            self.commands: list[dict] = []

        def started(self, event):
            if event.command_name in EXPLAINABLE:
                self.commands.append({k: v for k, v in event.command.items() if k not in NOT_FOR_EXPLAIN})

        def succeeded(self, event):
            pass

        def failed(self, event):
            pass

    def plan_stages(plan) -> list[str]:
        if isinstance(plan, dict):
            found = [plan["stage"]] if isinstance(plan.get("stage"), str) else []
            return found + [stage for value in plan.values() for stage in plan_stages(value)]
        if isinstance(plan, list):
            return [stage for value in plan for stage in plan_stages(value)]
        return []

    def test_every_query_uses_an_index_on_the_real_server(monkeypatch, fresh_database, tmp_path):
        # What the SQLite store checks with EXPLAIN QUERY PLAN: no operation the chat makes
        # scans a collection or sorts in memory, so none slows down as the data grows.
        recorder = CommandRecorder()
        real_client = pymongo.MongoClient
        monkeypatch.setattr(pymongo, "MongoClient",
                            lambda *args, **kwargs: real_client(*args, event_listeners=[recorder], **kwargs))
        plugin = open_plugin(REAL_URI, fresh_database(REAL_URI), tmp_path)
        monkeypatch.setattr(pymongo, "MongoClient", real_client)
        store = facade_for("store", plugin, "mongodb")
        user_id, conversation_id, message_ids = seed(store)
        store.find_user("amine")
        store.get_user(user_id)
        store.update_user(user_id, email="a@example.dz", password_hash="h2")
        store.list_conversations(user_id, limit=5, offset=1)
        store.update_conversation(user_id, conversation_id, "renamed")
        store.get_conversation(user_id, conversation_id)
        messages = store.list_messages(user_id, conversation_id, limit=2)
        store.list_messages(user_id, conversation_id, limit=2, before=messages[0].id)
        store.update_message(user_id, message_ids[0], "x", MessageStatus.COMPLETE)
        store.delete_message(user_id, message_ids[0])
        store.save_session("k", "d", datetime.now(UTC) + timedelta(hours=1))
        store.load_session("k")
        store.delete_session("k")
        store.purge_sessions()
        store.delete_conversation(user_id, conversation_id)
        store.delete_user(user_id)
        assert len(recorder.commands) > 20
        for command in recorder.commands:
            explained = plugin._db.command("explain", command, verbosity="queryPlanner")
            stages = plan_stages(explained["queryPlanner"]["winningPlan"])
            assert stages and "COLLSCAN" not in stages and "SORT" not in stages, f"{command}\n  -> {stages}"
        store.close()
