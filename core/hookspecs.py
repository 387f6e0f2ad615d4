"""The contracts, as pluggy hook specifications.

A role plugin (backend, store, translator) is a class registered under an entry point
group (`dziri.backends`, `dziri.stores`, `dziri.translators`); the configured one is
instantiated with its settings and must implement every `<role>_*` hook of its role.
Event hooks may be implemented by any plugin, role plugins and extensions
(`dziri.plugins` group) alike. Implementations may take fewer arguments than a spec,
never more or other ones: pluggy rejects that at registration.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    from datetime import datetime

    import click

    from .models import (
        ApiKey,
        ChatMessage,
        Conversation,
        GenerationOptions,
        Message,
        MessageStatus,
        ModelInfo,
        Role,
        Segment,
        Session,
        User,
    )

PROJECT = "dziri"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)

ROLE_PREFIXES = {"backend": "backend_", "store": "store_", "translator": "translator_"}


class BackendSpec:
    @hookspec(firstresult=True)
    def backend_chat(self, messages: list[ChatMessage], options: GenerationOptions) -> Iterator[str]:
        """Generate a reply to `messages`; return an iterator of text pieces as they are produced."""

    @hookspec(firstresult=True)
    def backend_count_tokens(self, messages: list[ChatMessage]) -> int:
        """How many tokens the prompt for `messages` takes in the model's context window."""

    @hookspec(firstresult=True)
    def backend_model_info(self) -> ModelInfo:
        """Name, context length and details of the model being served."""


class StoreSpec:
    """Users, conversations and messages. Every read and write of a conversation or a
    message is scoped by `user_id`: another user's object raises NotFoundError, with the
    same message as a missing one. Deleting a missing object, a conversation for an
    unknown user and an unknown `before` id raise NotFoundError too. Bad input raises
    ValidationError: `limit < 1`, `offset < 0`, an empty username, a content, title or
    error that is not a string. `role` and `status` always arrive as `Role` and
    `MessageStatus` members: the core converts a plain string, and refuses an unknown one
    with ValidationError, before a plugin sees it. Usernames match exactly; emails are
    unique case-insensitively. What a create returns equals what a later get returns (a
    store with coarser timestamps rounds before returning). A conversation's
    `updated_at` is the time of its latest added message (or its creation): adding a
    message bumps it; renaming it and updating or deleting a message do not. Hooks may be
    called from several threads at once, and none loses another's write. After
    `store_close`, every hook raises StoreError."""

    @hookspec(firstresult=True)
    def store_create_user(self, username: str, email: str, password_hash: str) -> User:
        """Create a user; ConflictError if the username or the email (case-insensitive) is taken."""

    @hookspec(firstresult=True)
    def store_get_user(self, user_id: str) -> User:
        """The user with this id; NotFoundError if there is none."""

    @hookspec(firstresult=True)
    def store_find_user(self, username: str) -> User | None:
        """The user with this username, or None."""

    @hookspec(firstresult=True)
    def store_update_user(self, user_id: str, email: str | None, password_hash: str | None) -> User:
        """Change the fields that are not None; ConflictError on a taken email."""

    @hookspec(firstresult=True)
    def store_delete_user(self, user_id: str) -> None:
        """Delete a user with all their conversations, messages and API keys."""

    @hookspec(firstresult=True)
    def store_create_conversation(self, user_id: str, title: str) -> Conversation:
        """Start a conversation owned by `user_id`."""

    @hookspec(firstresult=True)
    def store_get_conversation(self, user_id: str, conversation_id: str) -> Conversation:
        """One of the user's conversations; NotFoundError otherwise."""

    @hookspec(firstresult=True)
    def store_list_conversations(self, user_id: str, limit: int, offset: int) -> list[Conversation]:
        """The user's conversations, most recently updated first."""

    @hookspec(firstresult=True)
    def store_update_conversation(self, user_id: str, conversation_id: str, title: str) -> Conversation:
        """Rename a conversation (its `updated_at` stays)."""

    @hookspec(firstresult=True)
    def store_update_conversation_settings(
        self, user_id: str, conversation_id: str, system_prompt: str, temperature: float | None
    ) -> Conversation:
        """Set a conversation's own system prompt and temperature ("" and None: the
        defaults); its `updated_at` stays. ValidationError for a temperature outside 0–2."""

    @hookspec(firstresult=True)
    def store_import_conversation(self, user_id: str, conversation: Conversation,
                                  messages: list[Message]) -> Conversation:
        """Store a whole conversation brought in from elsewhere (`dziri conversations
        import`), all or nothing: new ids, everything else as given (title, settings,
        started_at, updated_at, and each message's role, content, status, error, timestamp
        and figures, in that order). The ids and user ids given are ignored. Returns the
        stored conversation; `store_list_messages` then returns the messages in the order
        given. NotFoundError for an unknown user."""

    @hookspec(firstresult=True)
    def store_delete_conversation(self, user_id: str, conversation_id: str) -> None:
        """Delete a conversation and its messages."""

    @hookspec(firstresult=True)
    def store_add_message(
        self,
        user_id: str,
        conversation_id: str,
        role: Role,
        content: str,
        status: MessageStatus,
        error: str | None,
    ) -> Message:
        """Append a message to a conversation and bump the conversation's updated_at."""

    @hookspec(firstresult=True)
    def store_update_message(
        self, user_id: str, message_id: str, content: str, status: MessageStatus, error: str | None,
        tokens: int | None, tokens_per_second: float | None,
    ) -> Message:
        """Replace a message's content and status (a streaming reply is saved as it grows),
        and its figures (None: none yet); the conversation's `updated_at` stays."""

    @hookspec(firstresult=True)
    def store_delete_message(self, user_id: str, message_id: str) -> None:
        """Delete one message."""

    @hookspec(firstresult=True)
    def store_search_messages(self, user_id: str, terms: list[str], limit: int, offset: int) -> list[Message]:
        """The user's messages in which every one of `terms` starts a word, newest first.
        Terms come folded by `dziri.core.search.terms` (lowercase, no diacritics, Arabic
        letter variants unified; letters and digits only); a store compares them with
        the message's `dziri.core.search.folded_words(content)`, kept in step with every
        add, update and delete. ValidationError for no terms, `limit < 1`, `offset < 0`."""

    @hookspec(firstresult=True)
    def store_list_messages(
        self, user_id: str, conversation_id: str, limit: int, before: str | None
    ) -> list[Message]:
        """The `limit` newest messages (older than message `before` if given), oldest first."""

    @hookspec(firstresult=True)
    def store_save_session(self, key: str, data: str, expires_at: datetime) -> None:
        """Create or replace the web session `key` (sessions live in the store so that every
        server process sees a login and a logout at once)."""

    @hookspec(firstresult=True)
    def store_load_session(self, key: str) -> Session | None:
        """The session `key`, or None if there is none or it has expired."""

    @hookspec(firstresult=True)
    def store_delete_session(self, key: str) -> None:
        """Forget a session (logout); a missing key is not an error."""

    @hookspec(firstresult=True)
    def store_purge_sessions(self) -> int:
        """Delete every expired session; return how many."""

    @hookspec(firstresult=True)
    def store_create_api_key(self, user_id: str, name: str, prefix: str, key_hash: str) -> ApiKey:
        """Record one of the user's API keys by its hash (the key itself never reaches a
        store); NotFoundError for an unknown user, ConflictError for a hash already kept."""

    @hookspec(firstresult=True)
    def store_list_api_keys(self, user_id: str) -> list[ApiKey]:
        """The user's API keys, newest first."""

    @hookspec(firstresult=True)
    def store_find_api_key(self, key_hash: str) -> ApiKey | None:
        """The key with this hash, whoever owns it, or None (how a request is authenticated)."""

    @hookspec(firstresult=True)
    def store_delete_api_key(self, user_id: str, key_id: str) -> None:
        """Revoke one of the user's keys: from now on it is found by no process.
        NotFoundError for a missing key or another user's."""

    @hookspec(firstresult=True)
    def store_close(self) -> None:
        """Release connections; the store is not used afterwards."""


class TranslatorSpec:
    @hookspec(firstresult=True)
    def translator_translate(
        self, segments: list[Segment], source_language: str, target_language: str
    ) -> list[Segment]:
        """Translate a batch; return the same ids, each with `translation` set."""


class EventSpec:
    @hookspec
    def prompt_about_to_send(
        self, conversation: Conversation | None, messages: list[ChatMessage], options: GenerationOptions
    ) -> None:
        """A prompt is about to go to the backend; `messages` and `options` may be edited in
        place. `conversation` is None for a stateless completion (the OpenAI API's)."""

    @hookspec
    def message_stored(self, message: Message) -> None:
        """A message was stored or finished (called once per message, when it is final)."""

    @hookspec
    def register_commands(self, cli: click.Group) -> None:
        """Add commands to the `dziri` command line."""


ROLE_SPECS = {"backend": BackendSpec, "store": StoreSpec, "translator": TranslatorSpec}


def required_hooks(role: str) -> list[str]:
    """The hooks a plugin of `role` must implement."""
    return [name for name in vars(ROLE_SPECS[role]) if name.startswith(ROLE_PREFIXES[role])]
