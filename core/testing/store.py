"""The contract every store plugin must pass, shipped and third-party alike.

Subclass it in a test module and give it a fresh, empty plugin instance::

    import pytest
    from dziri.core.models import PluginContext
    from dziri.core.testing import StoreContract

    class TestMyStore(StoreContract):
        @pytest.fixture
        def store_plugin(self, tmp_path):
            return MyStore(MyStore.Settings(), PluginContext(data_dir=tmp_path))

The suite talks to the plugin only through `dziri.core.roles.Store`, exactly as the
application does, so registering the plugin is itself the first check.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest

from ..errors import ConflictError, NotFoundError, StoreError, ValidationError
from ..models import ApiKey, Conversation, Message, MessageStatus, Role, Session, User, utcnow
from ..roles import Store, facade_for

UNICODE_TEXTS = {
    "arabic": "واش راك؟ لاباس الحمد لله",
    "arabizi": "wach rak 3lik, labas 7amdoullah",
    "emoji": "🇩🇿😂👍🏽 ❤️",
    "mixed": "salam سلام 👋\n\tسطر ثاني  ",
    "long": "ا" * 20_000,
}


def tick() -> None:
    """Let the clock move on, so stores that keep milliseconds (BSON) order events too."""
    time.sleep(0.02)


def missing_id() -> str:
    return uuid.uuid4().hex


def assert_utc_now(moment: datetime) -> None:
    assert moment.tzinfo is not None and moment.utcoffset() == timedelta(0), f"{moment!r} is not UTC"
    # A local time stored as if it were UTC would be hours off.
    assert abs(utcnow() - moment) < timedelta(minutes=5), f"{moment!r} is not now"


def foreign_error(call: Callable[[], object]) -> NotFoundError:
    with pytest.raises(NotFoundError) as caught:
        call()
    return caught.value


# Every operation on one of alice's objects, as (store, user_id, conversation_id, message_id) -> result.
OPERATIONS_ON_ANOTHER_USERS_DATA: dict[str, Callable[[Store, str, str, str], object]] = {
    "get_conversation": lambda s, u, c, m: s.get_conversation(u, c),
    "update_conversation": lambda s, u, c, m: s.update_conversation(u, c, "taken over"),
    "delete_conversation": lambda s, u, c, m: s.delete_conversation(u, c),
    "add_message": lambda s, u, c, m: s.add_message(u, c, Role.USER, "injected"),
    "list_messages": lambda s, u, c, m: s.list_messages(u, c),
    "update_message": lambda s, u, c, m: s.update_message(u, m, "rewritten", MessageStatus.COMPLETE),
    "delete_message": lambda s, u, c, m: s.delete_message(u, m),
}


class StoreContract:
    """Subclass and provide the `store_plugin` fixture; every test below then runs on it."""

    @pytest.fixture
    def store_plugin(self) -> object:
        pytest.fail(f"{type(self).__name__} must define a `store_plugin` fixture that returns"
                    " a fresh, empty store plugin")

    @pytest.fixture
    def store(self, store_plugin) -> Store:
        store = facade_for("store", store_plugin)
        yield store
        store.close()

    @pytest.fixture
    def alice(self, store) -> User:
        return store.create_user("alice", "alice@example.com", "hash-alice")

    @pytest.fixture
    def bob(self, store) -> User:
        return store.create_user("bob", "bob@example.com", "hash-bob")

    @pytest.fixture
    def conversation(self, store, alice) -> Conversation:
        return store.create_conversation(alice.id, "first chat")

    @pytest.fixture
    def message(self, store, alice, conversation) -> Message:
        return store.add_message(alice.id, conversation.id, Role.USER, "salam")

    # ---- users ---------------------------------------------------------------------------

    def test_create_user_returns_the_user(self, alice):
        assert isinstance(alice, User)
        assert type(alice.id) is str and alice.id
        assert alice.username == "alice"
        assert (alice.email, alice.password_hash) == ("alice@example.com", "hash-alice")
        assert_utc_now(alice.created_at)

    def test_users_get_distinct_ids(self, alice, bob):
        assert alice.id != bob.id

    def test_get_user_returns_what_create_returned(self, store, alice):
        assert store.get_user(alice.id) == alice

    def test_get_missing_user_is_not_found(self, store):
        with pytest.raises(NotFoundError):
            store.get_user(missing_id())

    def test_find_user_by_username(self, store, alice, bob):
        assert store.find_user("alice") == alice
        assert store.find_user("nobody") is None

    def test_duplicate_username_conflicts(self, store, alice):
        with pytest.raises(ConflictError, match="username"):
            store.create_user("alice", "other@example.com", "h")

    def test_duplicate_email_in_another_case_conflicts(self, store, alice):
        with pytest.raises(ConflictError, match="email"):
            store.create_user("alice2", "Alice@EXAMPLE.com", "h")

    def test_empty_username_is_invalid(self, store):
        with pytest.raises(ValidationError):
            store.create_user("", "x@example.com", "h")

    def test_update_user_changes_only_given_fields(self, store, alice):
        changed = store.update_user(alice.id, password_hash="new-hash")
        assert (changed.email, changed.password_hash) == ("alice@example.com", "new-hash")
        changed = store.update_user(alice.id, email="alice@example.dz")
        assert (changed.email, changed.password_hash) == ("alice@example.dz", "new-hash")
        assert store.get_user(alice.id) == changed
        assert (changed.id, changed.username) == (alice.id, alice.username)
        assert changed.created_at == alice.created_at

    def test_update_user_to_a_taken_email_conflicts(self, store, alice, bob):
        with pytest.raises(ConflictError, match="email"):
            store.update_user(bob.id, email="ALICE@example.com")
        assert store.get_user(bob.id) == bob

    def test_user_may_change_the_case_of_their_own_email(self, store, alice):
        assert store.update_user(alice.id, email="Alice@Example.com").email == "Alice@Example.com"

    def test_update_missing_user_is_not_found(self, store):
        with pytest.raises(NotFoundError):
            store.update_user(missing_id(), email="x@example.com")

    def test_delete_user_removes_their_conversations_and_messages(self, store, alice, conversation, message):
        store.delete_user(alice.id)
        with pytest.raises(NotFoundError):
            store.get_user(alice.id)
        assert store.find_user("alice") is None
        with pytest.raises(NotFoundError):
            store.get_conversation(alice.id, conversation.id)
        with pytest.raises(NotFoundError):
            store.list_messages(alice.id, conversation.id)
        with pytest.raises(NotFoundError):
            store.update_message(alice.id, message.id, "x", MessageStatus.COMPLETE)
        assert store.list_conversations(alice.id) == []

    def test_deleted_users_name_and_email_can_be_reused(self, store, alice, conversation):
        store.delete_user(alice.id)
        again = store.create_user("alice", "alice@example.com", "h")
        assert again.id != alice.id
        assert store.list_conversations(again.id) == []

    def test_delete_user_leaves_other_users_alone(self, store, alice, bob, conversation):
        kept = store.create_conversation(bob.id, "bob's")
        store.add_message(bob.id, kept.id, Role.USER, "still here")
        store.delete_user(alice.id)
        assert store.get_user(bob.id) == bob
        assert [m.content for m in store.list_messages(bob.id, kept.id)] == ["still here"]

    def test_delete_missing_user_is_not_found(self, store):
        with pytest.raises(NotFoundError):
            store.delete_user(missing_id())

    # ---- conversations -------------------------------------------------------------------

    def test_create_conversation_returns_it(self, alice, conversation):
        assert isinstance(conversation, Conversation)
        assert type(conversation.id) is str and conversation.id
        assert (conversation.user_id, conversation.title) == (alice.id, "first chat")
        assert_utc_now(conversation.started_at)
        assert_utc_now(conversation.updated_at)

    def test_get_conversation_returns_what_create_returned(self, store, alice, conversation):
        assert store.get_conversation(alice.id, conversation.id) == conversation

    def test_get_missing_conversation_is_not_found(self, store, alice):
        with pytest.raises(NotFoundError):
            store.get_conversation(alice.id, missing_id())

    def test_conversation_for_a_missing_user_is_not_found(self, store):
        with pytest.raises(NotFoundError):
            store.create_conversation(missing_id(), "orphan")

    def test_list_conversations_newest_updated_first(self, store, alice):
        created = []
        for title in ("one", "two", "three"):
            created.append(store.create_conversation(alice.id, title))
            tick()
        assert [c.title for c in store.list_conversations(alice.id)] == ["three", "two", "one"]
        assert all(isinstance(c, Conversation) for c in store.list_conversations(alice.id))

    def test_list_conversations_pages_with_limit_and_offset(self, store, alice):
        for number in range(5):
            store.create_conversation(alice.id, f"c{number}")
            tick()
        assert [c.title for c in store.list_conversations(alice.id, limit=2)] == ["c4", "c3"]
        assert [c.title for c in store.list_conversations(alice.id, limit=2, offset=2)] == ["c2", "c1"]
        assert [c.title for c in store.list_conversations(alice.id, limit=2, offset=4)] == ["c0"]
        assert store.list_conversations(alice.id, limit=2, offset=5) == []

    def test_list_conversations_shows_only_the_users_own(self, store, alice, bob, conversation):
        store.create_conversation(bob.id, "bob's")
        assert [c.id for c in store.list_conversations(alice.id)] == [conversation.id]
        assert [c.title for c in store.list_conversations(bob.id)] == ["bob's"]

    def test_list_conversations_rejects_bad_paging(self, store, alice):
        with pytest.raises(ValidationError):
            store.list_conversations(alice.id, limit=0)
        with pytest.raises(ValidationError):
            store.list_conversations(alice.id, offset=-1)

    def test_rename_conversation(self, store, alice, conversation):
        renamed = store.update_conversation(alice.id, conversation.id, "renamed")
        assert (renamed.id, renamed.title) == (conversation.id, "renamed")
        assert renamed.started_at == conversation.started_at
        assert store.get_conversation(alice.id, conversation.id).title == "renamed"

    def test_a_conversation_keeps_its_own_settings(self, store, alice, bob, conversation):
        assert (conversation.system_prompt, conversation.temperature) == ("", None)
        before = store.get_conversation(alice.id, conversation.id)
        tick()
        changed = store.update_conversation_settings(alice.id, conversation.id, "jaweb b la3roubiya", 0.2)
        assert (changed.system_prompt, changed.temperature) == ("jaweb b la3roubiya", 0.2)
        assert changed.updated_at == before.updated_at and changed.title == before.title
        assert store.get_conversation(alice.id, conversation.id) == changed
        assert store.list_conversations(alice.id)[0] == changed
        renamed = store.update_conversation(alice.id, conversation.id, "renamed")
        assert (renamed.system_prompt, renamed.temperature) == ("jaweb b la3roubiya", 0.2)
        reset = store.update_conversation_settings(alice.id, conversation.id, "", None)
        assert (reset.system_prompt, reset.temperature) == ("", None)
        foreign_error(lambda: store.update_conversation_settings(bob.id, conversation.id, "taken over", 1.0))
        for temperature in (-0.1, 2.5, "hot"):
            with pytest.raises(ValidationError):
                store.update_conversation_settings(alice.id, conversation.id, "", temperature)

    def test_an_imported_conversation_keeps_everything_but_its_ids(self, store, alice, bob):
        started = datetime(2026, 3, 1, 20, 15, 30, 123000, tzinfo=UTC)
        given = Conversation(id="x", user_id=bob.id, title="ftour", started_at=started,
                             updated_at=started + timedelta(minutes=5), system_prompt="b darija", temperature=0.4)
        messages = [
            Message(id="a", conversation_id="x", user_id=bob.id, role=Role.USER, content="wach nwajdou?",
                    timestamp=started),
            Message(id="b", conversation_id="x", user_id=bob.id, role=Role.ASSISTANT, content="chorba",
                    timestamp=started + timedelta(seconds=4), status=MessageStatus.PARTIAL, tokens=1,
                    tokens_per_second=12.5),
            Message(id="c", conversation_id="x", user_id=bob.id, role=Role.ASSISTANT, content="",
                    timestamp=started + timedelta(minutes=5), status=MessageStatus.ERROR, error="down"),
        ]
        stored = store.import_conversation(alice.id, given, messages)
        assert stored.id != "x" and stored.user_id == alice.id
        assert stored == store.get_conversation(alice.id, stored.id)
        assert stored.model_dump(exclude={"id", "user_id"}) == given.model_dump(exclude={"id", "user_id"})
        back = store.list_messages(alice.id, stored.id)
        fields = {"id", "conversation_id", "user_id"}
        assert [m.model_dump(exclude=fields) for m in back] == [m.model_dump(exclude=fields) for m in messages]
        assert all(m.id not in {"a", "b", "c"} and m.user_id == alice.id for m in back)
        assert [m.id for m in store.search_messages(alice.id, ["chorba"])] == [back[1].id]
        assert store.list_conversations(bob.id) == []
        with pytest.raises(NotFoundError):
            store.import_conversation(missing_id(), given, messages)

    def test_delete_conversation_removes_it_and_its_messages(self, store, alice, conversation, message):
        store.delete_conversation(alice.id, conversation.id)
        with pytest.raises(NotFoundError):
            store.get_conversation(alice.id, conversation.id)
        with pytest.raises(NotFoundError):
            store.list_messages(alice.id, conversation.id)
        with pytest.raises(NotFoundError):
            store.update_message(alice.id, message.id, "x", MessageStatus.COMPLETE)
        assert store.list_conversations(alice.id) == []

    def test_delete_conversation_twice_is_not_found(self, store, alice, conversation):
        store.delete_conversation(alice.id, conversation.id)
        with pytest.raises(NotFoundError):
            store.delete_conversation(alice.id, conversation.id)

    # ---- messages ------------------------------------------------------------------------

    def test_add_message_returns_it(self, alice, conversation, message):
        assert isinstance(message, Message)
        assert type(message.id) is str and message.id
        assert (message.conversation_id, message.user_id) == (conversation.id, alice.id)
        assert (message.role, message.content, message.status, message.error) == (
            Role.USER, "salam", MessageStatus.COMPLETE, None)
        assert_utc_now(message.timestamp)

    def test_list_messages_returns_what_add_returned(self, store, alice, conversation, message):
        assert store.list_messages(alice.id, conversation.id) == [message]

    def test_add_message_to_a_missing_conversation_is_not_found(self, store, alice):
        with pytest.raises(NotFoundError):
            store.add_message(alice.id, missing_id(), Role.USER, "hello?")

    def test_add_message_rejects_an_unknown_role(self, store, alice, conversation):
        with pytest.raises(ValidationError):
            store.add_message(alice.id, conversation.id, "robot", "beep")

    def test_messages_keep_insertion_order_even_within_one_clock_tick(self, store, alice, conversation):
        # No tick() here on purpose: many messages share a timestamp and must still keep their order.
        contents = [f"m{number}" for number in range(30)]
        for content in contents:
            store.add_message(alice.id, conversation.id, Role.USER, content)
        assert [m.content for m in store.list_messages(alice.id, conversation.id, limit=100)] == contents

    def test_list_messages_limit_gives_the_newest_oldest_first(self, store, alice, conversation):
        for number in range(6):
            store.add_message(alice.id, conversation.id, Role.USER, f"m{number}")
        newest = store.list_messages(alice.id, conversation.id, limit=3)
        assert [m.content for m in newest] == ["m3", "m4", "m5"]

    def test_list_messages_before_pages_backwards(self, store, alice, conversation):
        added = [store.add_message(alice.id, conversation.id, Role.USER, f"m{n}") for n in range(7)]
        page = store.list_messages(alice.id, conversation.id, limit=3, before=added[5].id)
        assert [m.content for m in page] == ["m2", "m3", "m4"]
        seen, before = [], None
        while page := store.list_messages(alice.id, conversation.id, limit=3, before=before):
            seen = [m.id for m in page] + seen
            before = page[0].id
        assert seen == [m.id for m in added]

    def test_list_messages_before_an_unknown_message_is_not_found(self, store, alice, conversation, message):
        with pytest.raises(NotFoundError):
            store.list_messages(alice.id, conversation.id, before=missing_id())

    def test_list_messages_rejects_a_zero_limit(self, store, alice, conversation):
        with pytest.raises(ValidationError):
            store.list_messages(alice.id, conversation.id, limit=0)

    def test_empty_conversation_has_no_messages(self, store, alice, conversation):
        assert store.list_messages(alice.id, conversation.id) == []

    def test_streaming_reply_is_saved_as_it_grows(self, store, alice, conversation):
        reply = store.add_message(alice.id, conversation.id, Role.ASSISTANT, "", MessageStatus.PARTIAL)
        store.update_message(alice.id, reply.id, "lab", MessageStatus.PARTIAL)
        done = store.update_message(alice.id, reply.id, "labas", MessageStatus.COMPLETE)
        assert (done.id, done.role, done.timestamp) == (reply.id, Role.ASSISTANT, reply.timestamp)
        assert (done.content, done.status, done.error) == ("labas", MessageStatus.COMPLETE, None)
        assert store.list_messages(alice.id, conversation.id) == [done]

    def test_a_reply_keeps_its_figures(self, store, alice, conversation, message):
        assert (message.tokens, message.tokens_per_second) == (None, None)
        reply = store.add_message(alice.id, conversation.id, Role.ASSISTANT, "", MessageStatus.PARTIAL)
        done = store.update_message(alice.id, reply.id, "labas", MessageStatus.COMPLETE, tokens=3,
                                    tokens_per_second=27.5)
        assert (done.tokens, done.tokens_per_second) == (3, 27.5)
        assert store.list_messages(alice.id, conversation.id)[-1] == done
        for tokens, speed in ((-1, None), (None, -2.0), ("3", None), (True, None)):
            with pytest.raises(ValidationError):
                store.update_message(alice.id, reply.id, "labas", MessageStatus.COMPLETE, tokens=tokens,
                                     tokens_per_second=speed)

    def test_failed_reply_keeps_its_error(self, store, alice, conversation):
        reply = store.add_message(alice.id, conversation.id, Role.ASSISTANT, "", MessageStatus.PARTIAL)
        failed = store.update_message(alice.id, reply.id, "lab", MessageStatus.ERROR, "backend unavailable")
        assert (failed.status, failed.error) == (MessageStatus.ERROR, "backend unavailable")
        assert store.list_messages(alice.id, conversation.id)[0].error == "backend unavailable"

    def test_update_missing_message_is_not_found(self, store, alice, conversation):
        with pytest.raises(NotFoundError):
            store.update_message(alice.id, missing_id(), "x", MessageStatus.COMPLETE)

    def test_delete_message(self, store, alice, conversation, message):
        kept = store.add_message(alice.id, conversation.id, Role.ASSISTANT, "kept")
        store.delete_message(alice.id, message.id)
        assert store.list_messages(alice.id, conversation.id) == [kept]
        with pytest.raises(NotFoundError):
            store.delete_message(alice.id, message.id)

    def test_adding_a_message_bumps_the_conversation(self, store, alice, conversation):
        tick()
        other = store.create_conversation(alice.id, "newer")
        assert [c.id for c in store.list_conversations(alice.id)] == [other.id, conversation.id]
        tick()
        store.add_message(alice.id, conversation.id, Role.USER, "up you go")
        bumped = store.get_conversation(alice.id, conversation.id)
        assert bumped.updated_at > conversation.updated_at
        assert bumped.started_at == conversation.started_at
        assert [c.id for c in store.list_conversations(alice.id)] == [conversation.id, other.id]

    def test_renaming_and_updating_or_deleting_messages_leave_updated_at(self, store, alice, conversation):
        reply = store.add_message(alice.id, conversation.id, Role.ASSISTANT, "", MessageStatus.PARTIAL)
        extra = store.add_message(alice.id, conversation.id, Role.USER, "extra")
        before = store.get_conversation(alice.id, conversation.id).updated_at
        tick()
        store.update_conversation(alice.id, conversation.id, "renamed")
        store.update_message(alice.id, reply.id, "labas", MessageStatus.COMPLETE)
        store.delete_message(alice.id, extra.id)
        assert store.get_conversation(alice.id, conversation.id).updated_at == before

    def test_writes_from_several_threads_at_once_lose_nothing(self, store, alice, conversation):
        writers, each = 4, 15
        start = threading.Barrier(writers)
        failures = []

        def write(writer: int) -> None:
            try:
                start.wait(timeout=30)
                own = store.create_conversation(alice.id, f"writer {writer}")
                for number in range(each):
                    store.add_message(alice.id, conversation.id, Role.USER, f"w{writer}-{number}")
                    store.add_message(alice.id, own.id, Role.USER, f"own {number}")
            except Exception as exc:  # reported below: a thread's exception would vanish
                failures.append(repr(exc))

        threads = [threading.Thread(target=write, args=(w,)) for w in range(writers)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)
        assert not failures and not any(t.is_alive() for t in threads), failures
        shared = [m.content for m in store.list_messages(alice.id, conversation.id, limit=200)]
        assert sorted(shared) == sorted(f"w{w}-{n}" for w in range(writers) for n in range(each))
        for writer in range(writers):  # each writer's own messages in the order it wrote them
            assert [c for c in shared if c.startswith(f"w{writer}-")] == [f"w{writer}-{n}" for n in range(each)]
        others = [c for c in store.list_conversations(alice.id) if c.id != conversation.id]
        assert sorted(c.title for c in others) == [f"writer {w}" for w in range(writers)]
        assert all(len(store.list_messages(alice.id, c.id, limit=200)) == each for c in others)

    def test_a_use_after_close_fails_with_a_store_error(self, store, alice):
        store.close()
        with pytest.raises(StoreError, match="closed"):
            store.get_user(alice.id)
        with pytest.raises(StoreError, match="closed"):
            store.create_conversation(alice.id, "too late")

    @pytest.mark.parametrize("kind", sorted(UNICODE_TEXTS))
    def test_text_round_trips_exactly(self, store, kind):
        text = UNICODE_TEXTS[kind]
        user = store.create_user(f"أمين-{kind}", f"{kind}@example.dz", "h")
        conversation = store.create_conversation(user.id, text)
        added = store.add_message(user.id, conversation.id, Role.USER, text)
        assert store.get_conversation(user.id, conversation.id).title == text
        assert store.list_messages(user.id, conversation.id)[0].content == text == added.content
        assert store.find_user(f"أمين-{kind}") == user

    # ---- another user's data -------------------------------------------------------------

    @pytest.mark.parametrize("operation", sorted(OPERATIONS_ON_ANOTHER_USERS_DATA))
    def test_another_users_data_is_not_found(self, store, alice, bob, conversation, message, operation):
        act = OPERATIONS_ON_ANOTHER_USERS_DATA[operation]
        before = store.get_conversation(alice.id, conversation.id)  # adding `message` bumped it
        foreign = foreign_error(lambda: act(store, bob.id, conversation.id, message.id))
        absent_conversation, absent_message = missing_id(), missing_id()
        absent = foreign_error(lambda: act(store, bob.id, absent_conversation, absent_message))
        # Never say "it exists but is not yours": the answer must read as for a missing id.
        assert type(foreign) is type(absent)
        anonymous = str(foreign).replace(conversation.id, "<id>").replace(message.id, "<id>")
        assert anonymous == str(absent).replace(absent_conversation, "<id>").replace(absent_message, "<id>")
        # And alice's data is untouched.
        assert store.get_conversation(alice.id, conversation.id) == before
        assert store.list_messages(alice.id, conversation.id) == [message]

    def test_another_users_message_is_no_cursor(self, store, alice, bob, message):
        own = store.create_conversation(bob.id, "bob's")
        with pytest.raises(NotFoundError):
            store.list_messages(bob.id, own.id, before=message.id)

    def test_another_user_sees_no_conversations(self, store, bob, conversation, message):
        assert store.list_conversations(bob.id) == []

    # ---- search ------------------------------------------------------------------------

    def test_search_finds_word_starts_across_spellings_newest_first(self, store, alice, conversation):
        other = store.create_conversation(alice.id, "other")
        texts = ["Kifach ndir CHORBA frik?", "الشربة بلا فريك", "J'ai mangé une chorba à Sétif",
                 "صحة فطوركم، أكلة بنينة", "wach rak 3lik"]
        added = [store.add_message(alice.id, conversation.id if n % 2 else other.id, Role.USER, text)
                 for n, text in enumerate(texts)]

        def found(*words):
            return [m.content for m in store.search_messages(alice.id, list(words))]

        assert found("chorb") == [texts[2], texts[0]]  # a word's start, any case, newest first
        assert found("chorba", "setif") == [texts[2]]  # every term; é folded
        assert found("horba") == []  # not the middle of a word
        assert found("اكله") == [texts[3]]  # أ/ا and ة/ه
        assert found("3li") == [texts[4]]  # Arabizi digits are letters here
        long = store.add_message(alice.id, other.id, Role.USER, "c'est anticonstitutionnellement interdit")
        assert [m.id for m in store.search_messages(alice.id, ["anticonstitutionnelleme"])] == [long.id]
        assert store.search_messages(alice.id, ["anticonstitutionnellemX"]) == []
        store.delete_message(alice.id, long.id)
        assert store.search_messages(alice.id, ["chorba"], limit=1) == [added[2]]
        assert store.search_messages(alice.id, ["chorba"], limit=1, offset=1) == [added[0]]

    def test_search_follows_updates_and_deletes_and_sees_only_the_users_own(self, store, alice, bob, conversation):
        reply = store.add_message(alice.id, conversation.id, Role.ASSISTANT, "", MessageStatus.PARTIAL)
        store.update_message(alice.id, reply.id, "rechta b djaj", MessageStatus.COMPLETE)
        gone = store.add_message(alice.id, conversation.id, Role.USER, "rechta ta3 yemma")
        bobs = store.create_conversation(bob.id, "bob's")
        store.add_message(bob.id, bobs.id, Role.USER, "rechta thani")
        assert [m.id for m in store.search_messages(alice.id, ["rechta"])] == [gone.id, reply.id]
        store.delete_message(alice.id, gone.id)
        store.update_message(alice.id, reply.id, "couscous", MessageStatus.COMPLETE)
        assert store.search_messages(alice.id, ["rechta"]) == []
        assert len(store.search_messages(bob.id, ["rechta"])) == 1
        store.delete_conversation(bob.id, bobs.id)
        assert store.search_messages(bob.id, ["rechta"]) == []

    def test_search_rejects_bad_terms_and_paging(self, store, alice):
        for terms, limit, offset in ([], 20, 0), (["chorba"], 0, 0), (["chorba"], 20, -1), (['x" OR "y'], 20, 0):
            with pytest.raises(ValidationError):
                store.search_messages(alice.id, terms, limit=limit, offset=offset)

    # ---- API keys ------------------------------------------------------------------------

    def test_an_api_key_is_found_by_its_hash_and_listed_for_its_owner_only(self, store, alice, bob):
        key = store.create_api_key(alice.id, "laptop", "dz-abc", "a" * 64)
        assert isinstance(key, ApiKey) and type(key.id) is str and key.id
        assert (key.user_id, key.name, key.prefix, key.key_hash) == (alice.id, "laptop", "dz-abc", "a" * 64)
        assert_utc_now(key.created_at)
        assert store.find_api_key("a" * 64) == key
        assert store.find_api_key("b" * 64) is None
        tick()
        newer = store.create_api_key(alice.id, "", "dz-def", "c" * 64)
        assert store.list_api_keys(alice.id) == [newer, key]  # newest first
        assert store.list_api_keys(bob.id) == []

    def test_an_api_key_for_an_unknown_user_or_a_known_hash_is_refused(self, store, alice, bob):
        with pytest.raises(NotFoundError):
            store.create_api_key(missing_id(), "x", "dz-x", "a" * 64)
        store.create_api_key(alice.id, "x", "dz-x", "a" * 64)
        with pytest.raises(ConflictError):
            store.create_api_key(bob.id, "y", "dz-y", "a" * 64)
        with pytest.raises(ValidationError):
            store.create_api_key(alice.id, "x", "dz-x", "")

    def test_a_revoked_api_key_is_found_no_more_and_only_its_owner_revokes_it(self, store, alice, bob):
        key = store.create_api_key(alice.id, "laptop", "dz-abc", "a" * 64)
        kept = store.create_api_key(alice.id, "phone", "dz-def", "b" * 64)
        foreign_error(lambda: store.delete_api_key(bob.id, key.id))
        assert store.find_api_key("a" * 64) == key
        store.delete_api_key(alice.id, key.id)
        assert store.find_api_key("a" * 64) is None
        assert store.list_api_keys(alice.id) == [kept]
        with pytest.raises(NotFoundError):
            store.delete_api_key(alice.id, key.id)
        with pytest.raises(NotFoundError):
            store.delete_api_key(alice.id, missing_id())

    def test_deleting_a_user_deletes_their_api_keys(self, store, alice):
        store.create_api_key(alice.id, "laptop", "dz-abc", "a" * 64)
        store.delete_user(alice.id)
        assert store.find_api_key("a" * 64) is None

    # ---- web sessions --------------------------------------------------------------------

    def test_a_saved_session_loads_until_it_is_deleted(self, store):
        expires = utcnow() + timedelta(hours=1)
        store.save_session("k" * 40, '{"user_id": "1"}', expires)
        loaded = store.load_session("k" * 40)
        assert isinstance(loaded, Session)
        assert (loaded.key, loaded.data) == ("k" * 40, '{"user_id": "1"}')
        assert abs(loaded.expires_at - expires) < timedelta(milliseconds=1)
        assert loaded.expires_at.tzinfo is not None
        store.delete_session("k" * 40)
        assert store.load_session("k" * 40) is None
        store.delete_session("k" * 40)  # deleting twice is fine: logout is idempotent

    def test_saving_a_session_again_replaces_it(self, store):
        store.save_session("key", "one", utcnow() + timedelta(hours=1))
        store.save_session("key", "two", utcnow() + timedelta(hours=2))
        assert store.load_session("key").data == "two"

    def test_an_expired_session_does_not_load_and_is_purged(self, store):
        store.save_session("old", "data", utcnow() - timedelta(seconds=1))
        store.save_session("new", "data", utcnow() + timedelta(hours=1))
        assert store.load_session("old") is None
        assert store.load_session("missing") is None
        assert store.purge_sessions() == 1
        assert store.load_session("new") is not None
