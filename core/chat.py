"""ChatService: the one place that combines a backend and a store.

A reply is stored as it streams: an assistant message is created before the first
token and saved periodically, so a stop, an exception or a crash leaves what was
generated in the store, marked partial (or error, with the reason).
"""

from __future__ import annotations

import inspect
import re
import threading
import time
from collections.abc import Iterator

from .completion import Completion
from .config import ChatSettings
from .errors import BackendError, DziriError, MessageTooLongError, NotFoundError, ValidationError
from .models import ChatMessage, Conversation, GenerationOptions, Message, MessageStatus, Role, User
from .roles import Backend, Store

TITLE_CHARS = 60
UNUSABLE_PASSWORD = "!"  # Django's marker for an account that cannot log in with a password


def title_from(text: str) -> str:
    """A conversation title from its first message: one line, cut on a word boundary."""
    line = re.sub(r"\s+", " ", text).strip()
    if len(line) <= TITLE_CHARS:
        return line
    cut = line[:TITLE_CHARS].rsplit(" ", 1)[0] or line[:TITLE_CHARS]
    return cut + "…"


class ChatService:
    def __init__(self, backend: Backend, store: Store, hooks, settings: ChatSettings, save_every_s: float = 1.0):
        self.backend = backend
        self.store = store
        self.hooks = hooks  # pluggy's hook relay, for the event hooks
        self.settings = settings
        self.save_every_s = save_every_s

    def default_options(self, conversation: Conversation | None = None, **overrides) -> GenerationOptions:
        """The served options, with a conversation's own temperature if it has one."""
        values = {
            "max_tokens": self.settings.max_tokens,
            "temperature": self.settings.temperature,
            "top_p": self.settings.top_p,
        }
        if conversation is not None and conversation.temperature is not None:
            values["temperature"] = conversation.temperature
        return GenerationOptions(**{**values, **overrides})

    def _check_text(self, text: str) -> None:
        if not text or not text.strip():
            raise ValidationError("the message is empty")
        if len(text) > self.settings.max_message_chars:
            raise MessageTooLongError(
                f"the message has {len(text)} characters; the limit is {self.settings.max_message_chars}"
            )

    def local_user(self, username: str | None = None) -> User:
        """The terminal's user: found or created, with no usable password."""
        username = username or self.settings.local_user
        user = self.store.find_user(username)
        return user or self.store.create_user(username, f"{username}@localhost", UNUSABLE_PASSWORD)

    def send(
        self,
        user_id: str,
        text: str,
        conversation_id: str | None = None,
        options: GenerationOptions | None = None,
    ) -> ReplyStream:
        """Store the user's message and return the reply stream (nothing is generated
        until it is iterated). Invalid input is rejected before anything is stored."""
        self._check_text(text)
        conversation = self.store.get_conversation(user_id, conversation_id) if conversation_id else None
        options = options or self.default_options(conversation)
        history = self._history(user_id, conversation) if conversation else []
        prompt = self.fit_prompt(_turns([*history, ChatMessage(role=Role.USER, content=text)]), options,
                                 _system_prompt(conversation))
        if conversation is None:
            conversation = self.store.create_conversation(user_id, title_from(text))
        elif not conversation.title:  # created empty (the web UI's "new chat"): named by its first message
            conversation = self.store.update_conversation(user_id, conversation.id, title_from(text))
        user_message = self.store.add_message(user_id, conversation.id, Role.USER, text)
        self.hooks.message_stored(message=user_message)
        return ReplyStream(self, conversation, prompt, options, user_message)

    def regenerate(
        self, user_id: str, conversation_id: str, options: GenerationOptions | None = None
    ) -> ReplyStream:
        """Replace the conversation's last reply with a new one."""
        conversation = self.store.get_conversation(user_id, conversation_id)
        options = options or self.default_options(conversation)
        messages = self.store.list_messages(user_id, conversation.id, limit=self.settings.history_messages)
        replaces = None
        if messages and messages[-1].role == Role.ASSISTANT:
            replaces = messages[-1].id
            messages = messages[:-1]
        if not messages or messages[-1].role != Role.USER:
            raise ValidationError("there is no message to answer in this conversation")
        prompt = self.fit_prompt(_turns(messages), options, _system_prompt(conversation))
        # The old reply is deleted only when the new one starts: a refused or abandoned
        # regenerate leaves the conversation as it was.
        return ReplyStream(self, conversation, prompt, options, user_message=None, replaces=replaces)

    def edit(self, user_id: str, conversation_id: str, message_id: str, text: str,
             options: GenerationOptions | None = None) -> ReplyStream:
        """Change one of the user's messages and answer it again: the messages after it go,
        and a new reply streams (regenerate, from an earlier turn)."""
        self._check_text(text)
        conversation = self.store.get_conversation(user_id, conversation_id)
        options = options or self.default_options(conversation)
        before, after = self._split_at(user_id, conversation.id, message_id)
        prompt = self.fit_prompt(_turns([*before, ChatMessage(role=Role.USER, content=text)]), options,
                                 _system_prompt(conversation))
        for message in after:
            self.store.delete_message(user_id, message.id)
        edited = self.store.update_message(user_id, message_id, text, MessageStatus.COMPLETE)
        self.hooks.message_stored(message=edited)
        return ReplyStream(self, conversation, prompt, options, edited)

    def _split_at(self, user_id: str, conversation_id: str, message_id: str) -> tuple[list[Message], list[Message]]:
        """(the history before the user message `message_id`, the messages after it), paging
        back through the conversation until it is found; NotFoundError if it is not its."""
        loaded, before = [], None
        while page := self.store.list_messages(user_id, conversation_id, limit=self.settings.history_messages,
                                               before=before):
            loaded = [*page, *loaded]
            index = next((i for i, m in enumerate(loaded) if m.id == message_id), None)
            if index is not None:
                if loaded[index].role != Role.USER:
                    raise ValidationError("only your own messages can be edited")
                return loaded[max(0, index - self.settings.history_messages):index], loaded[index + 1:]
            before = page[0].id
        raise NotFoundError(f"message {message_id} not found")

    def complete(self, messages: list[ChatMessage], options: GenerationOptions | None = None) -> Completion:
        """A stateless reply to a whole conversation given by the caller (the OpenAI API's
        chat completion): its system messages replace the served system prompt (none keeps
        it), the rest is fitted to the context window, and nothing is stored."""
        options = options or self.default_options()
        system = [m.content for m in messages if m.role == Role.SYSTEM]
        turns = _turns([m for m in messages if m.role != Role.SYSTEM])
        if not turns or turns[-1].role != Role.USER:
            raise ValidationError("the last message must be the user's")
        for turn in turns:
            if len(turn.content) > self.settings.max_message_chars:
                raise MessageTooLongError(f"a message has {len(turn.content)} characters; the limit is"
                                          f" {self.settings.max_message_chars}")
        prompt = self.fit_prompt(turns, options, "\n\n".join(system) if system else None)
        return Completion(self.backend, self.hooks, prompt, options)

    def _history(self, user_id: str, conversation: Conversation) -> list[ChatMessage]:
        messages = self.store.list_messages(user_id, conversation.id, limit=self.settings.history_messages)
        return _turns(messages)

    def fit_prompt(self, turns: list[ChatMessage], options: GenerationOptions,
                   system_prompt: str | None = None) -> list[ChatMessage]:
        """System prompt (the served one unless given) + the newest turns that fit the
        context window, leaving room for the reply."""
        context = self.backend.model_info().context_length
        budget = context - min(options.max_tokens, context // 2)
        system = [ChatMessage(role=Role.SYSTEM, content=self.settings.system_prompt if system_prompt is None
                              else system_prompt)]
        newest_alone = self.backend.count_tokens([*system, turns[-1]])
        if newest_alone > budget:
            raise MessageTooLongError(
                f"the message is too long for the model's context window: {newest_alone} tokens"
                f" with the system prompt; at most {budget} fit"
            )
        # Binary search for the oldest turn that still fits; counting whole prompts
        # keeps the chat template's own tokens in the sum.
        low, high = 0, len(turns) - 1
        while low < high:
            middle = (low + high) // 2
            if self.backend.count_tokens([*system, *turns[middle:]]) <= budget:
                high = middle
            else:
                low = middle + 1
        kept = turns[low:]
        while len(kept) > 1 and kept[0].role != Role.USER:  # templates expect a user turn first
            kept = kept[1:]
        return [*system, *kept]


def _system_prompt(conversation: Conversation | None) -> str | None:
    """A conversation's own system prompt, or None for the served one."""
    return conversation.system_prompt if conversation is not None and conversation.system_prompt else None


def _turns(messages: list[Message | ChatMessage]) -> list[ChatMessage]:
    """The prompt's turns: empty replies (failed or stopped before a word) say nothing to
    the model and are left out; turns of one role that end up side by side are joined,
    since chat templates expect user and assistant to alternate."""
    turns: list[ChatMessage] = []
    for message in messages:
        if not message.content.strip():
            continue
        if turns and turns[-1].role == message.role:
            turns[-1] = ChatMessage(role=message.role, content=f"{turns[-1].content}\n\n{message.content}")
        else:
            turns.append(ChatMessage(role=message.role, content=message.content))
    return turns


class ReplyStream:
    """Iterate to receive the reply's text pieces as they are generated.

    `stop()` (from any thread) ends the reply at the next piece; closing the stream or
    leaving its `with` block before the end does the same. Either way the reply is
    stored as partial. A backend failure stores it as error and raises BackendError.
    `message` holds the stored reply once the stream has ended.
    """

    def __init__(self, service: ChatService, conversation: Conversation, prompt: list[ChatMessage],
                 options: GenerationOptions, user_message: Message | None, replaces: str | None = None):
        self.service = service
        self.conversation = conversation
        self.prompt = prompt
        self.options = options
        self.user_message = user_message
        self.replaces = replaces  # the reply this one regenerates, deleted when generation starts
        self.message: Message | None = None
        self._stopped = threading.Event()
        self._pieces = self._generate()

    def __iter__(self) -> Iterator[str]:
        return self._pieces

    def __enter__(self) -> ReplyStream:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def stop(self) -> None:
        self._stopped.set()

    def close(self) -> None:
        if inspect.getgeneratorstate(self._pieces) == inspect.GEN_CREATED:
            self._end_before_start()  # closed while waiting for the model: nothing generated
        self._pieces.close()

    def _end_before_start(self) -> None:
        """A reply stopped before it began: a sent message gets an empty reply marked
        partial, so the conversation shows what happened; a regenerate keeps the old reply."""
        if self.user_message is None or self.message is not None:
            return
        self.message = self.service.store.add_message(
            self.conversation.user_id, self.conversation.id, Role.ASSISTANT, "", MessageStatus.PARTIAL,
            "stopped before the reply started",
        )
        self.service.hooks.message_stored(message=self.message)

    def text(self) -> str:
        """Consume the whole reply and return it."""
        return "".join(self)

    def _generate(self) -> Iterator[str]:
        service, store = self.service, self.service.store
        user_id = self.conversation.user_id
        if self._stopped.is_set():  # stopped while it waited for the model
            self._end_before_start()
            return
        service.hooks.prompt_about_to_send(conversation=self.conversation, messages=self.prompt, options=self.options)
        if self.replaces:
            store.delete_message(user_id, self.replaces)
        reply = store.add_message(user_id, self.conversation.id, Role.ASSISTANT, "", MessageStatus.PARTIAL)
        parts: list[str] = []
        status, error = MessageStatus.PARTIAL, None
        pieces = None
        last_save = time.monotonic()
        first_at = last_at = 0.0  # when the first and the latest piece came
        try:
            pieces = service.backend.chat(self.prompt, self.options)
            for piece in pieces:
                if self._stopped.is_set():
                    break
                parts.append(piece)
                last_at = time.monotonic()
                first_at = first_at or last_at
                # The first piece is stored before anyone is sent it: a reader of the store
                # never finds empty a reply whose start a client has already seen.
                if len(parts) == 1 or time.monotonic() - last_save >= service.save_every_s:
                    store.update_message(user_id, reply.id, "".join(parts), MessageStatus.PARTIAL)
                    last_save = time.monotonic()
                yield piece
            else:
                status = MessageStatus.COMPLETE
        except DziriError as exc:
            status, error = MessageStatus.ERROR, str(exc)
            raise
        except Exception as exc:
            status, error = MessageStatus.ERROR, f"the backend failed: {type(exc).__name__}: {exc}"
            raise BackendError(error) from exc
        finally:
            # Runs on normal end, stop, close (GeneratorExit), backend failure and Ctrl+C alike.
            if pieces is not None and hasattr(pieces, "close"):
                pieces.close()  # releases the backend (llama.cpp holds a lock while generating)
            speed = (len(parts) - 1) / (last_at - first_at) if len(parts) > 1 and last_at > first_at else None
            self.message = store.update_message(user_id, reply.id, "".join(parts), status, error, tokens=len(parts),
                                                tokens_per_second=round(speed, 2) if speed else None)
            service.hooks.message_stored(message=self.message)


__all__ = ["ChatService", "ReplyStream", "title_from"]
