"""The MongoDB conversation store (pymongo), and the same code in memory on mongomock.

The seed's collections and field names: `users` {username, email, password_hash},
`conversations` {user_id, started_at, updated_at}, `messages` {conversation_id, user_id,
content, timestamp}, plus what a chat needs (role, title, status, error) and `sessions`
for web logins. `_id`s are ObjectIds in the database and strings at the contract; a
string that is no ObjectId reads as a missing object.

MongoDB without a replica-set transaction has no multi-document atomicity, so each hook
is written so that every single write leaves a consistent state behind:

- the order of messages is a per-conversation counter (`conversations.last_seq`, taken
  with `$inc` in the same atomic update that checks ownership and bumps `updated_at`),
  so it holds across processes, whatever their clocks and however close the writes;
- a message's timestamp is the conversation's `updated_at` after that update (`$max`:
  it never goes back), so timestamps follow the order of the messages;
- deletes remove the children, then the parent, then sweep the children once more, and
  creates re-check their parent afterwards: a create racing a delete never leaves an
  orphan behind.

`uri = "mongomock://"` keeps everything in this process's memory (mongomock): every
store opened on that URI in the process sees the same data, and none of it survives
the process. For tests and trying things out, not for keeping conversations.
"""

from __future__ import annotations

import re
import threading
import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from datetime import UTC, datetime
from typing import Any

import pymongo
from bson import ObjectId
from pydantic import BaseModel, ConfigDict, Field
from pymongo import ASCENDING, DESCENDING, ReturnDocument
from pymongo.errors import (
    ConfigurationError,
    ConnectionFailure,
    DuplicateKeyError,
    OperationFailure,
    PyMongoError,
)
from pymongo.uri_parser import parse_uri

from dziri.core.errors import ConfigError, ConflictError, DziriError, NotFoundError, StoreError
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

MOCK_SCHEME = "mongomock://"
USERS, CONVERSATIONS, MESSAGES, SESSIONS, API_KEYS = "users", "conversations", "messages", "sessions", "api_keys"
SESSION_TTL_GRACE_S = 3600

# (collection, index name, keys, options): created on start; create_index is a no-op when
# the same index exists already, so every process may run this.
INDEXES: list[tuple[str, str, list[tuple[str, int]], dict[str, Any]]] = [
    (USERS, "username_unique", [("username", ASCENDING)], {"unique": True}),
    # email.lower() in Python, as the SQLite store does (a collation index would need a
    # server: mongomock has none).
    (USERS, "email_key_unique", [("email_key", ASCENDING)], {"unique": True}),
    # The newest-first listing; _id breaks ties between equal timestamps.
    (CONVERSATIONS, "by_user_updated", [("user_id", ASCENDING), ("updated_at", DESCENDING), ("_id", DESCENDING)], {}),
    (MESSAGES, "by_conversation_seq", [("conversation_id", ASCENDING), ("seq", ASCENDING)], {"unique": True}),
    (MESSAGES, "by_user", [("user_id", ASCENDING)], {}),  # deleting a user deletes their messages
    # Search: each message's word prefixes (a $text index matches whole words only, and a
    # search matches the start of a word), newest first for one user and one prefix.
    (MESSAGES, "by_user_prefix_newest",
     [("user_id", ASCENDING), ("prefixes", ASCENDING), ("timestamp", DESCENDING), ("_id", DESCENDING)], {}),
    # A backstop: the server deletes sessions an hour after they expire, should nobody run
    # store_purge_sessions (which then still finds and counts them). Loads filter on
    # expires_at themselves, since TTL deletion is lazy.
    (SESSIONS, "expiry_ttl", [("expires_at", ASCENDING)], {"expireAfterSeconds": SESSION_TTL_GRACE_S}),
    (API_KEYS, "key_hash_unique", [("key_hash", ASCENDING)], {"unique": True}),  # found by its hash
    (API_KEYS, "by_user_created", [("user_id", ASCENDING), ("created_at", DESCENDING), ("_id", DESCENDING)], {}),
]

# The field named in a ConflictError, per field of a unique index.
_UNIQUE_FIELDS = {"username": "username", "email_key": "email"}

_MOCK_CLIENTS: dict[str, Any] = {}  # uri -> mongomock.MongoClient: one in-memory server per URI and process
_MOCK_LOCK = threading.RLock()  # mongomock is not thread-safe; a real client is


def _mock_client(uri: str):
    import mongomock  # only when configured: a production install never imports it

    with _MOCK_LOCK:
        if uri not in _MOCK_CLIENTS:
            _MOCK_CLIENTS[uri] = mongomock.MongoClient(tz_aware=True)
        return _MOCK_CLIENTS[uri]


# ---- describing a URI without its secrets ---------------------------------------------------


def _userinfo_secrets(uri: str) -> list[str]:
    """The password in `uri` (raw and unquoted), to scrub from any text we show."""
    rest = uri.split("://", 1)[-1]
    authority = rest.rsplit("@", 1)[0] if "@" in rest else ""
    if ":" not in authority:
        return []
    password = authority.split(":", 1)[1]
    return sorted({password, urllib.parse.unquote_plus(password), urllib.parse.unquote(password)} - {""},
                  key=len, reverse=True)


def _hosts(uri: str) -> str:
    """`host:port,…` of a MongoDB URI, with no user, password, database or options."""
    if uri.startswith(MOCK_SCHEME):
        return "mongomock:// (in memory)"
    scheme, _, rest = uri.partition("://")
    if "@" in rest:
        rest = rest.rsplit("@", 1)[1]
    hosts = re.split(r"[/?]", rest, maxsplit=1)[0]
    return f"{scheme}://{hosts}" if scheme and hosts else "the configured URI"


def _one_line(text: str, limit: int = 300) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"




def _oid(value: object) -> ObjectId | None:
    """The ObjectId a contract id stands for, or None for a string that is none (read as missing)."""
    if isinstance(value, str) and len(value) == 24 and ObjectId.is_valid(value):
        return ObjectId(value)
    return None


def _millis(moment: datetime) -> datetime:
    """`moment` in UTC, cut to the millisecond BSON keeps, so what a create returns is what a get returns."""
    moment = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    return moment.replace(microsecond=moment.microsecond // 1000 * 1000)


# ---- documents -> contract models -------------------------------------------------------------


def _user(doc: dict) -> User:
    return User(id=str(doc["_id"]), username=doc["username"], email=doc["email"],
                password_hash=doc["password_hash"], created_at=doc["created_at"])


def _conversation(doc: dict) -> Conversation:
    return Conversation(id=str(doc["_id"]), user_id=str(doc["user_id"]), title=doc["title"],
                        started_at=doc["started_at"], updated_at=doc["updated_at"],
                        system_prompt=doc.get("system_prompt", ""), temperature=doc.get("temperature"))


def _message(doc: dict) -> Message:
    return Message(id=str(doc["_id"]), conversation_id=str(doc["conversation_id"]), user_id=str(doc["user_id"]),
                   role=doc["role"], content=doc["content"], timestamp=doc["timestamp"],
                   status=doc["status"], error=doc.get("error"), tokens=doc.get("tokens"),
                   tokens_per_second=doc.get("tokens_per_second"))


PREFIX_MAX = 20  # longer terms are looked up by their first 20 characters, then checked whole


def _search_fields(content: str) -> dict[str, Any]:
    """What search reads of a message: its folded words (each after a space) and every
    prefix of them up to PREFIX_MAX characters, for the index."""
    words = folded_words(content)
    prefixes = {word[:n] for word in words.split() for n in range(1, min(len(word), PREFIX_MAX) + 1)}
    return {"search": f" {words}", "prefixes": sorted(prefixes)}


def _api_key(doc: dict) -> ApiKey:
    return ApiKey(id=str(doc["_id"]), user_id=str(doc["user_id"]), name=doc["name"], prefix=doc["prefix"],
                  key_hash=doc["key_hash"], created_at=doc["created_at"])


_CONVERSATION_FIELDS = {"last_seq": 0}  # internal: never needed to build a Conversation


class MongoDBStore:
    """Users, conversations and messages in MongoDB (or mongomock), one document per object."""

    class Settings(BaseModel):
        model_config = ConfigDict(extra="forbid")

        uri: str = Field(default="mongodb://127.0.0.1:27017", min_length=1,
                         description='a MongoDB URI (replica sets, mongodb+srv:// and options work);'
                                     ' "mongomock://" keeps the data in this process\'s memory')
        # MongoDB's own rules for a database name.
        database: str = Field(default="dziri", pattern=r'^[^/\\. "$*<>:|?\x00]{1,63}$')
        server_selection_timeout_ms: int = Field(default=3_000, ge=1)  # how long to look for a usable server
        connect_timeout_ms: int = Field(default=3_000, ge=1)  # how long one connection attempt may take

    def __init__(self, settings: Settings, context: PluginContext):
        self.settings = settings
        self.mock = settings.uri.startswith(MOCK_SCHEME)
        self._secrets = [] if self.mock else _userinfo_secrets(settings.uri)
        self.where = f"MongoDB store '{settings.database}' at {self._scrub(_hosts(settings.uri))}"
        self._lock = _MOCK_LOCK if self.mock else nullcontext()
        self._closed = False
        self._client = self._connect()
        try:
            self._db = self._client[settings.database]
            with self._operation("start"):
                self._client.admin.command("ping")  # fail now, within the timeout, not at the first message
                self._create_indexes()
        except BaseException:
            self._release()
            raise

    # ---- connecting, errors -------------------------------------------------------------

    def _connect(self):
        if self.mock:
            return _mock_client(self.settings.uri)
        try:
            if self.settings.uri.startswith("mongodb://"):
                # MongoClient only warns about a bad option and ignores it: refuse it instead.
                # (mongodb+srv:// is checked by MongoClient alone: parsing it looks up DNS.)
                parse_uri(self.settings.uri, warn=False)
            return pymongo.MongoClient(
                self.settings.uri,
                serverSelectionTimeoutMS=self.settings.server_selection_timeout_ms,
                connectTimeoutMS=self.settings.connect_timeout_ms,
                tz_aware=True,
                tzinfo=UTC,
                appname="dziri",
            )
        # InvalidURI and bad options; pymongo raises ValueError/TypeError for some (a bad
        # port, an option's value); mongodb+srv:// looks up DNS here.
        except (ConfigurationError, ValueError, TypeError) as exc:
            raise ConfigError(f"store.mongodb.uri for {self.where} is not usable: {self._reason(exc)}") from None
        except PyMongoError as exc:
            raise self._error(exc, "start") from None

    def _create_indexes(self) -> None:
        for collection, name, keys, options in INDEXES:
            self._db[collection].create_index(keys, name=name, **options)
        # Messages stored before search existed get their folded words now (once).
        for doc in self._db[MESSAGES].find({"prefixes": {"$exists": False}}, {"content": 1}):
            self._db[MESSAGES].update_one({"_id": doc["_id"]}, {"$set": _search_fields(doc["content"])})

    def _scrub(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text

    def _reason(self, exc: BaseException) -> str:
        details = getattr(exc, "details", None)
        text = details.get("errmsg") if isinstance(details, dict) and details.get("errmsg") else str(exc)
        # pymongo appends its timeouts and the whole topology; the first clause says what failed.
        text = re.split(r" \(configured timeouts|, Timeout: |, full error: ", text, maxsplit=1)[0]
        return self._scrub(_one_line(text or type(exc).__name__))

    def _error(self, exc: PyMongoError, doing: str) -> DziriError:
        """One line that names the server (never the password) and says what to do."""
        reason = self._reason(exc)
        if isinstance(exc, ConnectionFailure):  # incl. ServerSelectionTimeoutError, AutoReconnect
            waited = self.settings.server_selection_timeout_ms
            return StoreError(f"{self.where} cannot be reached ({reason}; waited up to {waited} ms):"
                              " is the server running, and is store.mongodb.uri right?")
        if isinstance(exc, OperationFailure) and exc.code == 18:
            return StoreError(f"{self.where}: authentication failed; check the user and password in"
                              " store.mongodb.uri (and authSource)")
        if isinstance(exc, OperationFailure) and exc.code == 13:
            return StoreError(f"{self.where}: the user is not authorized to {doing} ({reason}); grant it"
                              f" readWrite on '{self.settings.database}'")
        if isinstance(exc, ConfigurationError):
            return ConfigError(f"store.mongodb.uri for {self.where} is not usable: {reason}")
        return StoreError(f"{self.where} failed to {doing}: {type(exc).__name__}: {reason}")

    @contextmanager
    def _operation(self, doing: str) -> Iterator[None]:
        with self._lock:
            if self._closed:
                raise StoreError(f"{self.where} is closed")
            try:
                yield
            except PyMongoError as exc:
                raise self._error(exc, doing) from None

    def _conflict(self, exc: DuplicateKeyError, username: str | None, email: str | None,
                  user_id: ObjectId | None = None) -> ConflictError:
        """Name the taken field: from the server's keyPattern, else (mongomock) by looking."""
        details = exc.details or {}
        fields = [_UNIQUE_FIELDS[f] for f in details.get("keyPattern", {}) if f in _UNIQUE_FIELDS]
        if not fields:
            if username is not None and self._db[USERS].find_one({"username": username}, {"_id": 1}):
                fields = ["username"]
            elif email is not None:
                fields = ["email"]
        if fields == ["username"]:
            return ConflictError(f"username {username!r} is already taken")
        if fields == ["email"]:
            return ConflictError(f"email {email!r} is already registered")
        return ConflictError(f"that username or email is already registered ({self._reason(exc)})")

    # ---- lookups shared by the hooks -----------------------------------------------------

    def _user_doc(self, user_id: str, projection: dict | None = None) -> dict:
        oid = _oid(user_id)
        doc = None if oid is None else self._db[USERS].find_one({"_id": oid}, projection)
        if doc is None:
            raise NotFoundError(f"user {user_id} not found")
        return doc

    def _conversation_doc(self, user_id: str, conversation_id: str, projection: dict | None = None) -> dict:
        oid, owner = _oid(conversation_id), _oid(user_id)
        doc = None
        if oid is not None and owner is not None:
            doc = self._db[CONVERSATIONS].find_one({"_id": oid, "user_id": owner}, projection)
        if doc is None:  # missing or someone else's: the same answer, so ids cannot be probed
            raise NotFoundError(f"conversation {conversation_id} not found")
        return doc

    @staticmethod
    def _message_not_found(message_id: str) -> NotFoundError:
        return NotFoundError(f"message {message_id} not found")

    # ---- users ---------------------------------------------------------------------------

    @hookimpl
    def store_create_user(self, username: str, email: str, password_hash: str) -> User:
        check_text(username, "username", allow_empty=False)
        check_text(email, "email", allow_empty=False)
        check_text(password_hash, "password_hash")
        user = User(id=str(ObjectId()), username=username, email=email, password_hash=password_hash,
                    created_at=_millis(utcnow()))
        with self._operation("create a user"):
            try:
                self._db[USERS].insert_one({
                    "_id": ObjectId(user.id), "username": username, "email": email, "email_key": email.lower(),
                    "password_hash": password_hash, "created_at": user.created_at,
                })
            except DuplicateKeyError as exc:
                raise self._conflict(exc, username, email) from None
        return user

    @hookimpl
    def store_get_user(self, user_id: str) -> User:
        with self._operation("read a user"):
            return _user(self._user_doc(user_id))

    @hookimpl
    def store_find_user(self, username: str) -> User | None:
        if not isinstance(username, str):
            return None
        with self._operation("find a user"):
            doc = self._db[USERS].find_one({"username": username})
        return None if doc is None else _user(doc)

    @hookimpl
    def store_update_user(self, user_id: str, email: str | None, password_hash: str | None) -> User:
        changes: dict[str, str] = {}
        if email is not None:
            check_text(email, "email", allow_empty=False)
            changes.update(email=email, email_key=email.lower())
        if password_hash is not None:
            check_text(password_hash, "password_hash")
            changes["password_hash"] = password_hash
        with self._operation("update a user"):
            oid = _oid(user_id)
            if oid is None or not changes:
                return _user(self._user_doc(user_id))
            try:
                doc = self._db[USERS].find_one_and_update({"_id": oid}, {"$set": changes},
                                                          return_document=ReturnDocument.AFTER)
            except DuplicateKeyError as exc:
                raise self._conflict(exc, None, email) from None
            if doc is None:
                raise NotFoundError(f"user {user_id} not found")
            return _user(doc)

    @hookimpl
    def store_delete_user(self, user_id: str) -> None:
        with self._operation("delete a user"):
            oid = self._user_doc(user_id, {"_id": 1})["_id"]
            # Children first: if this stops half-way the account is still there to delete again.
            self._db[API_KEYS].delete_many({"user_id": oid})
            self._db[MESSAGES].delete_many({"user_id": oid})
            self._db[CONVERSATIONS].delete_many({"user_id": oid})
            self._db[USERS].delete_one({"_id": oid})
            # Whatever a concurrent request added in between.
            self._db[CONVERSATIONS].delete_many({"user_id": oid})
            self._db[MESSAGES].delete_many({"user_id": oid})
            self._db[API_KEYS].delete_many({"user_id": oid})

    # ---- conversations -------------------------------------------------------------------

    @hookimpl
    def store_create_conversation(self, user_id: str, title: str) -> Conversation:
        check_text(title, "title")
        with self._operation("create a conversation"):
            owner = self._user_doc(user_id, {"_id": 1})["_id"]
            now = _millis(utcnow())
            conversation = Conversation(id=str(ObjectId()), user_id=user_id, title=title,
                                        started_at=now, updated_at=now)
            oid = ObjectId(conversation.id)
            self._db[CONVERSATIONS].insert_one({"_id": oid, "user_id": owner, "title": title,
                                                "started_at": now, "updated_at": now, "last_seq": 0})
            if self._db[USERS].find_one({"_id": owner}, {"_id": 1}) is None:  # deleted meanwhile
                self._db[CONVERSATIONS].delete_one({"_id": oid})
                raise NotFoundError(f"user {user_id} not found")
        return conversation

    @hookimpl
    def store_get_conversation(self, user_id: str, conversation_id: str) -> Conversation:
        with self._operation("read a conversation"):
            return _conversation(self._conversation_doc(user_id, conversation_id, _CONVERSATION_FIELDS))

    @hookimpl
    def store_list_conversations(self, user_id: str, limit: int, offset: int) -> list[Conversation]:
        check(isinstance(limit, int) and limit >= 1, "limit must be an integer of at least 1")
        check(isinstance(offset, int) and offset >= 0, "offset must be an integer of at least 0")
        owner = _oid(user_id)
        if owner is None:
            return []
        with self._operation("list conversations"):
            docs = list(self._db[CONVERSATIONS].find({"user_id": owner}, _CONVERSATION_FIELDS)
                        .sort([("updated_at", DESCENDING), ("_id", DESCENDING)]).skip(offset).limit(limit))
        return [_conversation(doc) for doc in docs]

    @hookimpl
    def store_update_conversation(self, user_id: str, conversation_id: str, title: str) -> Conversation:
        check_text(title, "title")
        return self._set_conversation(user_id, conversation_id, {"title": title}, "rename a conversation")

    @hookimpl
    def store_update_conversation_settings(self, user_id: str, conversation_id: str, system_prompt: str,
                                           temperature: float | None) -> Conversation:
        check_settings(system_prompt, temperature)
        return self._set_conversation(user_id, conversation_id,
                                      {"system_prompt": system_prompt, "temperature": temperature},
                                      "change a conversation's settings")

    def _set_conversation(self, user_id: str, conversation_id: str, fields: dict, doing: str) -> Conversation:
        """Set fields of one of the user's conversations (NotFoundError otherwise)."""
        with self._operation(doing):
            oid, owner = _oid(conversation_id), _oid(user_id)
            doc = None
            if oid is not None and owner is not None:
                doc = self._db[CONVERSATIONS].find_one_and_update(
                    {"_id": oid, "user_id": owner}, {"$set": fields},
                    projection=_CONVERSATION_FIELDS, return_document=ReturnDocument.AFTER)
            if doc is None:
                raise NotFoundError(f"conversation {conversation_id} not found")
            return _conversation(doc)

    @hookimpl
    def store_import_conversation(self, user_id: str, conversation: Conversation,
                                  messages: list[Message]) -> Conversation:
        with self._operation("import a conversation"):
            owner = self._user_doc(user_id, {"_id": 1})["_id"]
            oid = ObjectId()
            stored = conversation.model_copy(update={"id": str(oid), "user_id": user_id,
                                                     "started_at": _millis(conversation.started_at),
                                                     "updated_at": _millis(conversation.updated_at)})
            docs = [{"_id": ObjectId(), "conversation_id": oid, "user_id": owner, "seq": seq,
                     "role": m.role.value, "content": m.content, "status": m.status.value, "error": m.error,
                     "timestamp": _millis(m.timestamp), **_search_fields(m.content), "tokens": m.tokens,
                     "tokens_per_second": m.tokens_per_second} for seq, m in enumerate(messages, start=1)]
            # MongoDB has no transaction here (a standalone server has none): a failure part-way
            # removes what was written, so an import is all or nothing all the same.
            try:
                self._db[CONVERSATIONS].insert_one({
                    "_id": oid, "user_id": owner, "title": stored.title, "started_at": stored.started_at,
                    "updated_at": stored.updated_at, "last_seq": len(docs), "system_prompt": stored.system_prompt,
                    "temperature": stored.temperature})
                if docs:
                    self._db[MESSAGES].insert_many(docs, ordered=True)
            except BaseException:
                self._db[MESSAGES].delete_many({"conversation_id": oid})
                self._db[CONVERSATIONS].delete_one({"_id": oid})
                raise
        return stored

    @hookimpl
    def store_delete_conversation(self, user_id: str, conversation_id: str) -> None:
        with self._operation("delete a conversation"):
            oid = self._conversation_doc(user_id, conversation_id, {"_id": 1})["_id"]
            self._db[MESSAGES].delete_many({"conversation_id": oid})
            if not self._db[CONVERSATIONS].delete_one({"_id": oid, "user_id": _oid(user_id)}).deleted_count:
                raise NotFoundError(f"conversation {conversation_id} not found")  # a concurrent delete won
            self._db[MESSAGES].delete_many({"conversation_id": oid})  # added in between

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
        oid, owner = _oid(conversation_id), _oid(user_id)
        if oid is None or owner is None:
            raise NotFoundError(f"conversation {conversation_id} not found")
        with self._operation("add a message"):
            # One atomic update checks the owner, takes the next position and bumps updated_at
            # (never back: another process's clock may be behind ours).
            conversation = self._db[CONVERSATIONS].find_one_and_update(
                {"_id": oid, "user_id": owner},
                {"$inc": {"last_seq": 1}, "$max": {"updated_at": _millis(utcnow())}},
                projection={"last_seq": 1, "updated_at": 1}, return_document=ReturnDocument.AFTER)
            if conversation is None:
                raise NotFoundError(f"conversation {conversation_id} not found")
            message = Message(id=str(ObjectId()), conversation_id=conversation_id, user_id=user_id, role=role,
                              content=content, timestamp=conversation["updated_at"], status=status, error=error)
            message_oid = ObjectId(message.id)
            self._db[MESSAGES].insert_one({
                "_id": message_oid, "conversation_id": oid, "user_id": owner, "seq": conversation["last_seq"],
                "role": role.value, "content": content, "status": status.value, "error": error,
                "timestamp": conversation["updated_at"], **_search_fields(content),
            })
            if self._db[CONVERSATIONS].find_one({"_id": oid}, {"_id": 1}) is None:  # deleted meanwhile
                self._db[MESSAGES].delete_one({"_id": message_oid})
                raise NotFoundError(f"conversation {conversation_id} not found")
        return message

    @hookimpl
    def store_update_message(
        self, user_id: str, message_id: str, content: str, status: MessageStatus, error: str | None,
        tokens: int | None, tokens_per_second: float | None,
    ) -> Message:
        status = message_fields(content, status, error)
        check_figures(tokens, tokens_per_second)
        oid, owner = _oid(message_id), _oid(user_id)
        if oid is None or owner is None:
            raise self._message_not_found(message_id)
        with self._operation("save a message"):
            doc = self._db[MESSAGES].find_one_and_update(
                {"_id": oid, "user_id": owner}, {"$set": {"content": content, "status": status.value, "error": error,
                                                          **_search_fields(content), "tokens": tokens,
                                                          "tokens_per_second": tokens_per_second}},
                return_document=ReturnDocument.AFTER)
        if doc is None:
            raise self._message_not_found(message_id)
        return _message(doc)

    @hookimpl
    def store_delete_message(self, user_id: str, message_id: str) -> None:
        oid, owner = _oid(message_id), _oid(user_id)
        if oid is None or owner is None:
            raise self._message_not_found(message_id)
        with self._operation("delete a message"):
            if not self._db[MESSAGES].delete_one({"_id": oid, "user_id": owner}).deleted_count:
                raise self._message_not_found(message_id)

    @hookimpl
    def store_search_messages(self, user_id: str, terms: list[str], limit: int, offset: int) -> list[Message]:
        check_search(terms, limit, offset)
        owner = _oid(user_id)
        if owner is None:
            return []
        query: dict[str, Any] = {"user_id": owner, "prefixes": {"$all": [term[:PREFIX_MAX] for term in terms]}}
        longer = [term for term in terms if len(term) > PREFIX_MAX]
        if longer:  # past the indexed prefix: " term" in the folded words is a word's start
            query["$and"] = [{"search": {"$regex": f" {re.escape(term)}"}} for term in longer]
        with self._operation("search messages"):
            docs = (self._db[MESSAGES].find(query)
                    .sort([("timestamp", DESCENDING), ("_id", DESCENDING)]).skip(offset).limit(limit))
            return [_message(doc) for doc in docs]

    @hookimpl
    def store_list_messages(
        self, user_id: str, conversation_id: str, limit: int, before: str | None
    ) -> list[Message]:
        check(isinstance(limit, int) and limit >= 1, "limit must be an integer of at least 1")
        with self._operation("list messages"):
            oid = self._conversation_doc(user_id, conversation_id, {"_id": 1})["_id"]
            query: dict[str, Any] = {"conversation_id": oid}
            if before is not None:
                before_oid = _oid(before)
                cursor = None if before_oid is None else self._db[MESSAGES].find_one(
                    {"_id": before_oid, "conversation_id": oid}, {"seq": 1})
                if cursor is None:
                    raise self._message_not_found(before)
                query["seq"] = {"$lt": cursor["seq"]}
            docs = list(self._db[MESSAGES].find(query).sort("seq", DESCENDING).limit(limit))
        return [_message(doc) for doc in reversed(docs)]

    # ---- web sessions ----------------------------------------------------------------------

    @hookimpl
    def store_save_session(self, key: str, data: str, expires_at: datetime) -> None:
        check_text(key, "session key", allow_empty=False)
        check_text(data, "session data")
        check(isinstance(expires_at, datetime), "expires_at must be a datetime")
        with self._operation("save a session"):
            self._db[SESSIONS].replace_one({"_id": key}, {"data": data, "expires_at": _millis(expires_at)},
                                           upsert=True)

    @hookimpl
    def store_load_session(self, key: str) -> Session | None:
        if not isinstance(key, str):
            return None
        with self._operation("load a session"):
            doc = self._db[SESSIONS].find_one({"_id": key, "expires_at": {"$gt": utcnow()}})
        return None if doc is None else Session(key=doc["_id"], data=doc["data"], expires_at=doc["expires_at"])

    @hookimpl
    def store_delete_session(self, key: str) -> None:
        with self._operation("delete a session"):
            self._db[SESSIONS].delete_one({"_id": key})

    @hookimpl
    def store_purge_sessions(self) -> int:
        with self._operation("purge sessions"):
            return self._db[SESSIONS].delete_many({"expires_at": {"$lte": utcnow()}}).deleted_count

    # ---- API keys --------------------------------------------------------------------------

    @hookimpl
    def store_create_api_key(self, user_id: str, name: str, prefix: str, key_hash: str) -> ApiKey:
        for value, field in ((name, "name"), (prefix, "prefix")):
            check_text(value, field)
        check_text(key_hash, "key_hash", allow_empty=False)
        with self._operation("create an API key"):
            oid = self._user_doc(user_id, {"_id": 1})["_id"]
            key = ApiKey(id=str(ObjectId()), user_id=user_id, name=name, prefix=prefix, key_hash=key_hash,
                         created_at=_millis(utcnow()))
            try:
                self._db[API_KEYS].insert_one({"_id": ObjectId(key.id), "user_id": oid, "name": name,
                                               "prefix": prefix, "key_hash": key_hash,
                                               "created_at": key.created_at})
            except DuplicateKeyError:
                raise ConflictError("that API key is already recorded") from None
        return key

    @hookimpl
    def store_list_api_keys(self, user_id: str) -> list[ApiKey]:
        oid = _oid(user_id)
        if oid is None:
            return []
        with self._operation("list API keys"):
            docs = self._db[API_KEYS].find({"user_id": oid}).sort([("created_at", DESCENDING), ("_id", DESCENDING)])
            return [_api_key(doc) for doc in docs]

    @hookimpl
    def store_find_api_key(self, key_hash: str) -> ApiKey | None:
        if not isinstance(key_hash, str):
            return None
        with self._operation("find an API key"):
            doc = self._db[API_KEYS].find_one({"key_hash": key_hash})
        return None if doc is None else _api_key(doc)

    @hookimpl
    def store_delete_api_key(self, user_id: str, key_id: str) -> None:
        oid, key_oid = _oid(user_id), _oid(key_id)
        with self._operation("revoke an API key"):
            deleted = 0
            if oid is not None and key_oid is not None:
                deleted = self._db[API_KEYS].delete_one({"_id": key_oid, "user_id": oid}).deleted_count
            if not deleted:
                raise NotFoundError(f"API key {key_id} not found")

    def _release(self) -> None:
        self._closed = True
        if not self.mock:  # the in-memory server outlives one store: it is the "server"
            self._client.close()

    @hookimpl
    def store_close(self) -> None:
        with self._lock:
            if not self._closed:
                self._release()


__all__ = ["INDEXES", "MongoDBStore"]
