
import pytest
from fakes.backends import DroppedConnectionBackend

from dziri.core.app import App
from dziri.core.chat import ChatService, title_from
from dziri.core.config import ChatSettings
from dziri.core.errors import BackendError, MessageTooLongError, NotFoundError, ValidationError
from dziri.core.hookspecs import hookimpl
from dziri.core.models import MessageStatus, Role
from dziri.core.roles import facade_for, register


@pytest.fixture
def chat(echo_app):
    return echo_app.chat


@pytest.fixture
def user(echo_app):
    return echo_app.chat.local_user()


def stored(app, user, conversation_id):
    return app.store.list_messages(user.id, conversation_id, limit=100)


def test_send_streams_the_reply_and_stores_both_messages(echo_app, chat, user):
    stream = chat.send(user.id, "wach rak khouya?")
    assert "".join(stream) == "echo: wach rak khouya?"
    messages = stored(echo_app, user, stream.conversation.id)
    assert [(m.role, m.content, m.status) for m in messages] == [
        (Role.USER, "wach rak khouya?", MessageStatus.COMPLETE),
        (Role.ASSISTANT, "echo: wach rak khouya?", MessageStatus.COMPLETE),
    ]
    assert stream.message == messages[1]
    assert stream.conversation.title == "wach rak khouya?"


def test_a_reply_is_stored_with_its_token_count_and_speed(monkeypatch, user):
    monkeypatch.setenv("DZIRI_BACKEND", "echo")
    monkeypatch.setenv("DZIRI_BACKEND__ECHO__DELAY_S", "0.02")  # 20 ms a word: about 50 words a second
    app = App()
    try:
        stream = app.chat.send(app.chat.local_user().id, "one two three four five six")
        stream.text()
        reply = stream.message
        assert reply.tokens == 7  # "echo:" and the six words, one piece each
        assert 0 < reply.tokens_per_second <= 55  # never faster than the 20 ms pauses allow
        question = app.store.list_messages(reply.user_id, reply.conversation_id)[0]
        assert (question.tokens, question.tokens_per_second) == (None, None)
    finally:
        app.close()


def test_a_second_message_sees_the_history(chat, user):
    first = chat.send(user.id, "salam")
    first.text()
    second = chat.send(user.id, "kifach rak?", conversation_id=first.conversation.id)
    second.text()
    assert [(m.role, m.content) for m in second.prompt[1:]] == [
        (Role.USER, "salam"), (Role.ASSISTANT, "echo: salam"), (Role.USER, "kifach rak?")
    ]
    assert second.prompt[0].role == Role.SYSTEM


@pytest.mark.parametrize("text", ["", "   ", "\n\t "])
def test_empty_message_is_rejected_and_nothing_is_stored(echo_app, chat, user, text):
    with pytest.raises(ValidationError, match="empty"):
        chat.send(user.id, text)
    assert echo_app.store.list_conversations(user.id) == []


def test_message_over_the_character_limit_is_rejected(echo_app, chat, user):
    with pytest.raises(MessageTooLongError, match="characters"):
        chat.send(user.id, "a" * (chat.settings.max_message_chars + 1))
    assert echo_app.store.list_conversations(user.id) == []


def test_message_longer_than_the_context_window_is_rejected(monkeypatch):
    monkeypatch.setenv("DZIRI_BACKEND", "echo")
    monkeypatch.setenv("DZIRI_BACKEND__ECHO__CONTEXT_LENGTH", "64")
    app = App()
    user = app.chat.local_user()
    with pytest.raises(MessageTooLongError, match="context window"):
        app.chat.send(user.id, "kelma " * 200)
    assert app.store.list_conversations(user.id) == []
    app.close()


def test_history_is_trimmed_to_the_context_window_newest_kept(monkeypatch):
    monkeypatch.setenv("DZIRI_BACKEND", "echo")
    monkeypatch.setenv("DZIRI_BACKEND__ECHO__CONTEXT_LENGTH", "400")
    monkeypatch.setenv("DZIRI_CHAT__MAX_TOKENS", "50")
    app = App()
    user = app.chat.local_user()
    conversation_id = None
    for turn in range(30):
        stream = app.chat.send(user.id, f"message {turn} " + "word " * 10, conversation_id)
        stream.text()
        conversation_id = stream.conversation.id
    prompt = stream.prompt
    assert app.backend.count_tokens(prompt) <= 400 - 50
    assert prompt[0].role == Role.SYSTEM and prompt[1].role == Role.USER
    assert prompt[-1].content.startswith("message 29 ")
    assert len(prompt) < 60  # older turns were dropped
    assert not any(m.content.startswith("message 0 ") for m in prompt)
    app.close()


def test_stop_keeps_what_was_generated_marked_partial(echo_app, chat, user):
    stream = chat.send(user.id, "one two three four five six")
    received = []
    for piece in stream:
        received.append(piece)
        if len(received) == 2:
            stream.stop()
    assert "".join(received) == "echo: one"
    assert stream.message.status == MessageStatus.PARTIAL
    assert stored(echo_app, user, stream.conversation.id)[-1].content == "echo: one"


def test_closing_the_stream_early_stores_a_partial_reply(echo_app, chat, user):
    with chat.send(user.id, "one two three four") as stream:
        next(iter(stream))
    assert stream.message.status == MessageStatus.PARTIAL
    assert stream.message.content == "echo:"
    assert stored(echo_app, user, stream.conversation.id)[-1] == stream.message


def test_the_reply_is_saved_while_it_streams(echo_app, chat, user):
    chat.save_every_s = 0  # save after every piece
    stream = chat.send(user.id, "a b c d")
    pieces = iter(stream)
    next(pieces), next(pieces)
    in_store = stored(echo_app, user, stream.conversation.id)[-1]
    assert (in_store.content, in_store.status) == ("echo: a", MessageStatus.PARTIAL)  # what a crash would leave
    list(pieces)
    assert stored(echo_app, user, stream.conversation.id)[-1].status == MessageStatus.COMPLETE


def test_the_first_piece_is_in_the_store_before_the_reader_gets_it(echo_app, chat, user):
    """A client that saw the reply's start and left at once: another server reading the
    store must not find the reply empty (it did, until the next periodic save)."""
    chat.save_every_s = 3600  # no periodic save would come in time
    stream = chat.send(user.id, "a b c d")
    first = next(iter(stream))
    in_store = stored(echo_app, user, stream.conversation.id)[-1]
    assert in_store.content == first and in_store.status == MessageStatus.PARTIAL
    stream.close()


def test_a_backend_failure_stores_the_partial_text_marked_error(echo_app, user):
    backend = facade_for("backend", DroppedConnectionBackend(), "failing")
    chat = ChatService(backend, echo_app.store, echo_app.pm.hook, ChatSettings())
    stream = chat.send(user.id, "wach rak?")
    received = []
    with pytest.raises(BackendError, match="connection reset"):
        for piece in stream:
            received.append(piece)
    assert received == ["nus ", "jawab"]
    reply = stored(echo_app, user, stream.conversation.id)[-1]
    assert (reply.content, reply.status) == ("nus jawab", MessageStatus.ERROR)
    assert "ConnectionError: connection reset by peer" in reply.error


def test_regenerate_replaces_the_last_reply(echo_app, chat, user):
    first = chat.send(user.id, "3lach?")
    first.text()
    again = chat.regenerate(user.id, first.conversation.id)
    assert again.text() == "echo: 3lach?"
    messages = stored(echo_app, user, first.conversation.id)
    assert [m.role for m in messages] == [Role.USER, Role.ASSISTANT]
    assert messages[1].id != first.message.id


def test_regenerate_with_nothing_to_answer(echo_app, chat, user):
    conversation = echo_app.store.create_conversation(user.id, "empty")
    with pytest.raises(ValidationError, match="no message to answer"):
        chat.regenerate(user.id, conversation.id)


def test_unknown_or_foreign_conversation_is_not_found(echo_app, chat, user):
    other = echo_app.store.create_user("amina", "amina@example.com", "!")
    theirs = chat.send(other.id, "sirr")
    theirs.text()
    for conversation_id in ("does-not-exist", theirs.conversation.id):
        with pytest.raises(NotFoundError):
            chat.send(user.id, "salam", conversation_id=conversation_id)
        with pytest.raises(NotFoundError):
            chat.regenerate(user.id, conversation_id)
    assert [m.content for m in stored(echo_app, other, theirs.conversation.id)] == ["sirr", "echo: sirr"]


class Recorder:
    def __init__(self):
        self.stored = []

    @hookimpl
    def prompt_about_to_send(self, messages, options):
        messages.append(messages[-1].model_copy(update={"content": "[edited by a plugin]"}))
        options.max_tokens = 3

    @hookimpl
    def message_stored(self, message):
        self.stored.append((message.role, message.status))


def test_event_hooks_see_the_prompt_and_every_final_message(echo_app, chat, user):
    recorder = Recorder()
    register(echo_app.pm, recorder, "recorder", None)
    assert chat.send(user.id, "salam").text() == "echo: [edited by"
    assert recorder.stored == [(Role.USER, MessageStatus.COMPLETE), (Role.ASSISTANT, MessageStatus.COMPLETE)]


def test_titles_are_one_line_and_cut_on_a_word():
    assert title_from("  wach\n rak  ") == "wach rak"
    title = title_from("kelma " * 30)
    assert title.endswith("…") and len(title) <= 61 and "\n" not in title


def test_an_untitled_conversation_is_named_by_its_first_message(echo_app, chat, user):
    empty = echo_app.store.create_conversation(user.id, "")
    chat.send(user.id, "sa7a ftourek", conversation_id=empty.id).text()
    assert echo_app.store.get_conversation(user.id, empty.id).title == "sa7a ftourek"
    chat.send(user.id, "w ntouma?", conversation_id=empty.id).text()
    assert echo_app.store.get_conversation(user.id, empty.id).title == "sa7a ftourek"


def test_an_abandoned_or_refused_regenerate_keeps_the_old_reply(echo_app, chat, user, monkeypatch):
    first = chat.send(user.id, "3lach?")
    first.text()
    chat.regenerate(user.id, first.conversation.id).close()  # never iterated: nothing generated
    assert stored(echo_app, user, first.conversation.id)[-1] == first.message
    monkeypatch.setattr(chat.settings, "system_prompt", "kelma " * 5000)  # nothing fits any more
    with pytest.raises(MessageTooLongError):
        chat.regenerate(user.id, first.conversation.id)
    assert stored(echo_app, user, first.conversation.id)[-1] == first.message


@pytest.mark.parametrize("how", ["close", "stop"])
def test_a_reply_stopped_before_it_starts_is_stored_empty_and_partial(echo_app, chat, user, how):
    stream = chat.send(user.id, "salam")
    if how == "close":
        stream.close()
    else:
        stream.stop()
        assert list(stream) == []
    reply = stored(echo_app, user, stream.conversation.id)[-1]
    assert (reply.role, reply.content, reply.status) == (Role.ASSISTANT, "", MessageStatus.PARTIAL)
    assert stream.message == reply


def test_user_turns_left_side_by_side_are_joined_in_the_prompt(echo_app, chat, user):
    first = chat.send(user.id, "salam")
    first.close()  # an empty, partial reply
    second = chat.send(user.id, "wach rak?", conversation_id=first.conversation.id)
    assert [(m.role, m.content) for m in second.prompt[1:]] == [(Role.USER, "salam\n\nwach rak?")]
    second.text()
