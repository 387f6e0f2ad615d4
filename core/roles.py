"""Typed facades over the pluggy hooks of each role.

Code outside plugins talks to `Backend`, `Store` and `Translator`, never to a plugin
object: every call goes through the plugin manager, so hook validation and event hooks
apply to shipped and third-party plugins alike.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime

import pluggy

from . import hookspecs
from .errors import PluginError
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
    parse_enum,
)


def new_plugin_manager() -> pluggy.PluginManager:
    pm = pluggy.PluginManager(hookspecs.PROJECT)
    for spec in (*hookspecs.ROLE_SPECS.values(), hookspecs.EventSpec):
        pm.add_hookspecs(spec)
    return pm


def register(pm: pluggy.PluginManager, plugin: object, name: str, role: str | None) -> None:
    """Register `plugin`, checking it against the specs; role plugins must implement
    all their role's hooks, and no plugin may implement another role's hooks."""
    try:
        # Qualified, because one package may offer a backend and an extension under one name.
        pm.register(plugin, name=f"{role or 'extension'}:{name}")
    except pluggy.PluginValidationError as exc:
        one_line = " ".join(str(exc).split())  # pluggy's message spans lines; errors are one line
        raise PluginError(f"plugin '{name}' does not match the contract: {one_line}") from None
    except ValueError as exc:  # already registered
        raise PluginError(f"plugin '{name}': {exc}") from None
    callers = pm.get_hookcallers(plugin) or []
    implemented = {caller.name for caller in callers}
    unknown = sorted(caller.name for caller in callers if caller.spec is None)
    if unknown:
        pm.unregister(plugin)
        raise PluginError(
            f"plugin '{name}' implements unknown hook(s) {', '.join(unknown)}: check the spelling"
            " against dziri.core.hookspecs"
        )
    for other_role, prefix in hookspecs.ROLE_PREFIXES.items():
        foreign = sorted(n for n in implemented if n.startswith(prefix)) if other_role != role else []
        if foreign:
            pm.unregister(plugin)
            raise PluginError(f"plugin '{name}' implements {other_role} hook(s) {', '.join(foreign)}"
                              f" but is not the configured {other_role}")
    if role is not None:
        missing = [h for h in hookspecs.required_hooks(role) if h not in implemented]
        if missing:
            pm.unregister(plugin)
            raise PluginError(f"{role} plugin '{name}' is missing hook(s): {', '.join(missing)}")


class Backend:
    def __init__(self, pm: pluggy.PluginManager, name: str):
        self._hook = pm.hook
        self.name = name

    def chat(self, messages: list[ChatMessage], options: GenerationOptions) -> Iterator[str]:
        return self._hook.backend_chat(messages=messages, options=options)

    def count_tokens(self, messages: list[ChatMessage]) -> int:
        return self._hook.backend_count_tokens(messages=messages)

    def model_info(self) -> ModelInfo:
        return self._hook.backend_model_info()


class Store:
    def __init__(self, pm: pluggy.PluginManager, name: str):
        self._hook = pm.hook
        self.name = name

    def create_user(self, username: str, email: str, password_hash: str) -> User:
        return self._hook.store_create_user(username=username, email=email, password_hash=password_hash)

    def get_user(self, user_id: str) -> User:
        return self._hook.store_get_user(user_id=user_id)

    def find_user(self, username: str) -> User | None:
        return self._hook.store_find_user(username=username)

    def update_user(self, user_id: str, email: str | None = None, password_hash: str | None = None) -> User:
        return self._hook.store_update_user(user_id=user_id, email=email, password_hash=password_hash)

    def delete_user(self, user_id: str) -> None:
        self._hook.store_delete_user(user_id=user_id)

    def create_conversation(self, user_id: str, title: str = "") -> Conversation:
        return self._hook.store_create_conversation(user_id=user_id, title=title)

    def get_conversation(self, user_id: str, conversation_id: str) -> Conversation:
        return self._hook.store_get_conversation(user_id=user_id, conversation_id=conversation_id)

    def list_conversations(self, user_id: str, limit: int = 50, offset: int = 0) -> list[Conversation]:
        return self._hook.store_list_conversations(user_id=user_id, limit=limit, offset=offset)

    def update_conversation(self, user_id: str, conversation_id: str, title: str) -> Conversation:
        return self._hook.store_update_conversation(user_id=user_id, conversation_id=conversation_id, title=title)

    def update_conversation_settings(self, user_id: str, conversation_id: str, system_prompt: str = "",
                                     temperature: float | None = None) -> Conversation:
        return self._hook.store_update_conversation_settings(
            user_id=user_id, conversation_id=conversation_id, system_prompt=system_prompt, temperature=temperature)

    def import_conversation(self, user_id: str, conversation: Conversation, messages: list[Message]) -> Conversation:
        return self._hook.store_import_conversation(user_id=user_id, conversation=conversation, messages=messages)

    def delete_conversation(self, user_id: str, conversation_id: str) -> None:
        self._hook.store_delete_conversation(user_id=user_id, conversation_id=conversation_id)

    def add_message(
        self,
        user_id: str,
        conversation_id: str,
        role: Role,
        content: str,
        status: MessageStatus = MessageStatus.COMPLETE,
        error: str | None = None,
    ) -> Message:
        # A plain string may come in (from JSON, say): the plugin gets the enum or nothing.
        role, status = parse_enum(Role, role, "role"), parse_enum(MessageStatus, status, "status")
        return self._hook.store_add_message(
            user_id=user_id, conversation_id=conversation_id, role=role, content=content, status=status, error=error
        )

    def update_message(
        self, user_id: str, message_id: str, content: str, status: MessageStatus, error: str | None = None,
        tokens: int | None = None, tokens_per_second: float | None = None,
    ) -> Message:
        status = parse_enum(MessageStatus, status, "status")
        return self._hook.store_update_message(
            user_id=user_id, message_id=message_id, content=content, status=status, error=error,
            tokens=tokens, tokens_per_second=tokens_per_second,
        )

    def delete_message(self, user_id: str, message_id: str) -> None:
        self._hook.store_delete_message(user_id=user_id, message_id=message_id)

    def list_messages(
        self, user_id: str, conversation_id: str, limit: int = 50, before: str | None = None
    ) -> list[Message]:
        return self._hook.store_list_messages(
            user_id=user_id, conversation_id=conversation_id, limit=limit, before=before
        )

    def search_messages(self, user_id: str, terms: list[str], limit: int = 20, offset: int = 0) -> list[Message]:
        return self._hook.store_search_messages(user_id=user_id, terms=terms, limit=limit, offset=offset)

    def save_session(self, key: str, data: str, expires_at: datetime) -> None:
        self._hook.store_save_session(key=key, data=data, expires_at=expires_at)

    def load_session(self, key: str) -> Session | None:
        return self._hook.store_load_session(key=key)

    def delete_session(self, key: str) -> None:
        self._hook.store_delete_session(key=key)

    def purge_sessions(self) -> int:
        return self._hook.store_purge_sessions()

    def create_api_key(self, user_id: str, name: str, prefix: str, key_hash: str) -> ApiKey:
        return self._hook.store_create_api_key(user_id=user_id, name=name, prefix=prefix, key_hash=key_hash)

    def list_api_keys(self, user_id: str) -> list[ApiKey]:
        return self._hook.store_list_api_keys(user_id=user_id)

    def find_api_key(self, key_hash: str) -> ApiKey | None:
        return self._hook.store_find_api_key(key_hash=key_hash)

    def delete_api_key(self, user_id: str, key_id: str) -> None:
        self._hook.store_delete_api_key(user_id=user_id, key_id=key_id)

    def close(self) -> None:
        self._hook.store_close()


class Translator:
    def __init__(self, pm: pluggy.PluginManager, name: str):
        self._hook = pm.hook
        self.name = name

    def translate(self, segments: list[Segment], source_language: str, target_language: str) -> list[Segment]:
        return self._hook.translator_translate(
            segments=segments, source_language=source_language, target_language=target_language
        )


FACADES = {"backend": Backend, "store": Store, "translator": Translator}


def facade_for(role: str, plugin: object, name: str | None = None):
    """Wrap a single plugin object in its role's facade, through a fresh plugin manager
    (what the contract kit does with a plugin under test)."""
    from .registry import entry_point_name

    pm = new_plugin_manager()
    # Errors name the plugin as users know it: its entry-point name where it is installed.
    name = name or entry_point_name(role, type(plugin)) or type(plugin).__name__
    register(pm, plugin, name, role)
    return FACADES[role](pm, name)
