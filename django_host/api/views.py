"""The API views (docs/api.md). Plain views run in a thread of Django's; the two that
stream a reply are async and hand the model to a worker thread (streaming.py). Every
failure is a DziriError, answered as JSON by the ErrorMiddleware."""

from __future__ import annotations

import json
import logging
import secrets
import time
from collections.abc import Callable

from asgiref.sync import iscoroutinefunction, sync_to_async
from django.contrib.auth.hashers import check_password, get_hasher, is_password_usable, make_password
from django.http import HttpResponse, JsonResponse, StreamingHttpResponse
from django.middleware.csrf import get_token, rotate_token
from django.utils.crypto import constant_time_compare, salted_hmac

from dziri.core import apikeys, registry, transfer
from dziri.core import search as search_core
from dziri.core.chat import ReplyStream
from dziri.core.errors import ConflictError, MessageTooLongError, NotFoundError, ValidationError
from dziri.core.models import Conversation, User

from ..errors import InvalidCredentials, MethodNotAllowed, NotAuthenticated, TooManyAttempts, response_for
from ..host import Host, current_host
from . import validation as check
from .streaming import message_json, start_reply

log = logging.getLogger(__name__)

SESSION_USER_ID = "dziri_user_id"
SESSION_AUTH_HASH = "dziri_auth_hash"
SESSION_PURGE_EVERY_S = 3600
_dummy_hashes: dict[str, str] = {}


def methods(**handlers: Callable) -> Callable:
    """One view per URL that dispatches on the method and answers 405 (JSON, with Allow)
    for the others. Async if any handler is (a URL that streams on POST and lists on GET)."""
    allowed = ", ".join(sorted(handlers))

    def not_allowed(request):
        response = response_for(MethodNotAllowed(f"{request.method} is not allowed here; use {allowed}"))
        response["Allow"] = allowed
        return response

    if any(iscoroutinefunction(h) for h in handlers.values()):
        wrapped = {m: h if iscoroutinefunction(h) else sync_to_async(h) for m, h in handlers.items()}

        async def async_view(request, **kwargs):
            handler = wrapped.get(request.method)
            return await handler(request, **kwargs) if handler else not_allowed(request)

        async_view.allowed_methods = sorted(handlers)
        return async_view

    def view(request, **kwargs):
        handler = handlers.get(request.method)
        return handler(request, **kwargs) if handler else not_allowed(request)

    view.allowed_methods = sorted(handlers)
    return view


# ---- users and sessions ------------------------------------------------------------------

def user_json(user: User) -> dict:
    return {"id": user.id, "username": user.username, "email": user.email}


def _auth_hash(user: User) -> str:
    # Bound to the password hash: a changed password ends the sessions opened with the old one.
    return salted_hmac("dziri.django_host.session", user.password_hash).hexdigest()


def session_user(request) -> User | None:
    user_id = request.session.get(SESSION_USER_ID)
    if not user_id:
        return None
    try:
        user = current_host().app.store.get_user(user_id)
    except NotFoundError:
        user = None
    if user is None or not constant_time_compare(request.session.get(SESSION_AUTH_HASH, ""), _auth_hash(user)):
        request.session.flush()
        return None
    return user


def require_user(request) -> User:
    user = session_user(request)
    if user is None:
        raise NotAuthenticated("log in first")
    return user


def _log_in(request, host: Host, user: User) -> None:
    if request.session.get(SESSION_USER_ID) not in (None, user.id):
        request.session.flush()
    else:
        request.session.cycle_key()  # a fresh key at login: no session fixation
    request.session[SESSION_USER_ID] = user.id
    request.session[SESSION_AUTH_HASH] = _auth_hash(user)
    rotate_token(request)
    if time.monotonic() - host.last_session_purge > SESSION_PURGE_EVERY_S:
        host.last_session_purge = time.monotonic()
        host.app.store.purge_sessions()


def _dummy_hash() -> str:
    """A hash of nothing, checked when the username is unknown so that a failed login costs
    the same time whether or not the user exists."""
    algorithm = get_hasher("default").algorithm
    if algorithm not in _dummy_hashes:
        _dummy_hashes[algorithm] = make_password(secrets.token_urlsafe(16))
    return _dummy_hashes[algorithm]


def client_address(request) -> str:
    return request.META.get("REMOTE_ADDR") or "unknown"


def csrf(request):
    return JsonResponse({"csrf_token": get_token(request)})


def register(request):
    host = current_host()
    data = check.json_object(request)
    username = check.username(check.text(data, "username"))
    email = check.email(check.text(data, "email"))
    password = check.password(check.text(data, "password"))
    try:
        user = host.app.store.create_user(username, email, make_password(password))
    except ConflictError:
        raise ConflictError("that username or email address is already taken") from None
    _log_in(request, host, user)
    return JsonResponse({"user": user_json(user)}, status=201)


def login(request):
    host = current_host()
    store = host.app.store
    data = check.json_object(request)
    username, password = check.text(data, "username"), check.text(data, "password")
    if len(username) > check.USERNAME_MAX or len(password) > check.PASSWORD_MAX:
        raise ValidationError(f"the username is at most {check.USERNAME_MAX} characters and the password"
                              f" at most {check.PASSWORD_MAX}")
    throttle = host.login_throttle
    key = throttle.key(username, client_address(request))
    wait = throttle.retry_after_s(key)
    if wait > 0:
        raise TooManyAttempts("too many failed logins: wait before trying again", retry_after_s=wait)
    user = store.find_user(username) if username else None
    if user is not None and is_password_usable(user.password_hash):
        def upgrade(raw: str) -> None:  # the hasher's parameters have grown since this hash was made
            store.update_user(user.id, password_hash=make_password(raw))

        valid = check_password(password, user.password_hash, setter=upgrade)
    else:
        check_password(password, _dummy_hash())
        valid = False
    if not valid:
        throttle.failed(key)
        raise InvalidCredentials("wrong username or password")
    throttle.succeeded(key)
    user = store.get_user(user.id)  # fresh, in case the hash was upgraded
    _log_in(request, host, user)
    return JsonResponse({"user": user_json(user)})


def logout(request):
    request.session.flush()  # deleted from the store: the cookie is worthless everywhere
    return HttpResponse(status=204)


def me(request):
    return JsonResponse({"user": user_json(require_user(request))})


# ---- conversations and messages ---------------------------------------------------------

def conversation_json(conversation: Conversation) -> dict:
    return conversation.model_dump(mode="json", include={"id", "title", "started_at", "updated_at",
                                                          "system_prompt", "temperature"})


def _checked_id(value: str) -> str:
    if len(value) > check.ID_MAX:
        raise NotFoundError("not found")
    return value


def list_conversations(request):
    user = require_user(request)
    limit = check.integer(request, "limit", 20, 1, 100)
    offset = check.integer(request, "offset", 0, 0, 1_000_000)
    items = current_host().app.store.list_conversations(user.id, limit=limit + 1, offset=offset)
    return JsonResponse({"items": [conversation_json(c) for c in items[:limit]],
                         "limit": limit, "offset": offset, "has_more": len(items) > limit})


def create_conversation(request):
    user = require_user(request)
    given = check.text(check.json_object(request), "title", required=False)
    title = check.title(given, allow_empty=True) if given is not None else ""
    conversation = current_host().app.store.create_conversation(user.id, title)
    return JsonResponse(conversation_json(conversation), status=201)


def get_conversation(request, conversation_id: str):
    user = require_user(request)
    conversation = current_host().app.store.get_conversation(user.id, _checked_id(conversation_id))
    return JsonResponse(conversation_json(conversation))


def update_conversation(request, conversation_id: str):
    """Rename it, change its own settings, or both; everything is checked before anything is changed."""
    user = require_user(request)
    store = current_host().app.store
    data = check.json_object(request)
    if not {"title", "system_prompt", "temperature"} & set(data):
        raise ValidationError("send 'title', 'system_prompt' or 'temperature'")
    conversation = store.get_conversation(user.id, _checked_id(conversation_id))
    title = check.title(check.text(data, "title"), allow_empty=False) if "title" in data else None
    prompt, temperature = check.settings(data, conversation.system_prompt, conversation.temperature)
    if title is not None:
        conversation = store.update_conversation(user.id, conversation.id, title)
    if (prompt, temperature) != (conversation.system_prompt, conversation.temperature):
        conversation = store.update_conversation_settings(user.id, conversation.id, prompt, temperature)
    return JsonResponse(conversation_json(conversation))


def delete_conversation(request, conversation_id: str):
    user = require_user(request)
    host = current_host()
    conversation = host.app.store.get_conversation(user.id, _checked_id(conversation_id))
    host.streams.stop(user.id, conversation.id)
    host.app.store.delete_conversation(user.id, conversation.id)
    return HttpResponse(status=204)


def list_messages(request, conversation_id: str):
    user = require_user(request)
    limit = check.integer(request, "limit", 50, 1, 200)
    before = request.GET.get("before") or None
    if before is not None:
        _checked_id(before)
    store = current_host().app.store
    conversation = store.get_conversation(user.id, _checked_id(conversation_id))
    items = store.list_messages(user.id, conversation.id, limit=limit + 1, before=before)
    return JsonResponse({"items": [message_json(m) for m in items[-limit:]], "has_more": len(items) > limit})


async def send_message(request, conversation_id: str):
    host = current_host()
    user = await sync_to_async(require_user)(request)
    content = check.text(check.json_object(request), "content")
    limit = host.app.config.chat.max_message_chars
    if len(content) > limit:
        raise MessageTooLongError(f"the message has {len(content)} characters; the limit is {limit}")
    if not content.strip():
        raise ValidationError("the message is empty")
    conversation_id = _checked_id(conversation_id)
    return await _reply(host, user, conversation_id,
                        lambda: host.app.chat.send(user.id, content, conversation_id))


async def edit_message(request, conversation_id: str, message_id: str):
    host = current_host()
    user = await sync_to_async(require_user)(request)
    content = check.text(check.json_object(request), "content")
    conversation_id, message_id = _checked_id(conversation_id), _checked_id(message_id)
    return await _reply(host, user, conversation_id,
                        lambda: host.app.chat.edit(user.id, conversation_id, message_id, content))


async def regenerate(request, conversation_id: str):
    host = current_host()
    user = await sync_to_async(require_user)(request)
    conversation_id = _checked_id(conversation_id)
    return await _reply(host, user, conversation_id, lambda: host.app.chat.regenerate(user.id, conversation_id))


async def _reply(host: Host, user: User, conversation_id: str, begin: Callable[[], ReplyStream]):
    """One reply at a time per conversation (409), a place in the model's queue (503 when it
    is full: nothing has been stored yet), then ChatService stores the message and the
    reply streams from a worker thread."""
    key = host.streams.reserve(user.id, conversation_id)
    try:
        ticket = host.gate.admit()
        try:
            stream = await sync_to_async(begin, thread_sensitive=False)()
        except BaseException:
            ticket.release()
            raise
    except BaseException:
        host.streams.release(key)
        raise
    host.streams.attach(key, stream)
    response = StreamingHttpResponse(start_reply(host, stream, ticket, key),
                                     content_type="text/event-stream; charset=utf-8")
    response["Cache-Control"] = "no-cache"
    response["X-Accel-Buffering"] = "no"  # nginx and friends: pass each event on at once
    return response


def stop(request, conversation_id: str):
    user = require_user(request)
    host = current_host()
    conversation = host.app.store.get_conversation(user.id, _checked_id(conversation_id))
    return JsonResponse({"stopped": host.streams.stop(user.id, conversation.id)})


def search(request):
    user = require_user(request)
    limit = check.integer(request, "limit", 20, 1, 100)
    offset = check.integer(request, "offset", 0, 0, 1_000_000)
    found = search_core.hits(current_host().app.store, user.id, request.GET.get("q", ""), limit + 1, offset)
    return JsonResponse({"items": [hit.to_json() for hit in found[:limit]], "limit": limit, "offset": offset,
                         "has_more": len(found) > limit})


# ---- export, and a user's own data ------------------------------------------------------

def _attachment(body: str, filename: str, content_type: str) -> HttpResponse:
    response = HttpResponse(body.encode(), content_type=f"{content_type}; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    response["Cache-Control"] = "no-store"
    return response


def export_conversation(request, conversation_id: str):
    user = require_user(request)
    kind = request.GET.get("format", "json")
    if kind not in ("json", "md"):
        raise ValidationError("'format' is json or md")
    data = transfer.export(current_host().app.store, user.id, [_checked_id(conversation_id)])
    name = f"dziri-conversation-{data['conversations'][0]['started_at'][:10]}"
    if kind == "md":
        return _attachment(transfer.to_markdown(data), f"{name}.md", "text/markdown")
    return _attachment(json.dumps(data, indent=2, ensure_ascii=False), f"{name}.json", "application/json")


def export_account(request):
    """All of the user's data in one JSON file (importable with `dziri conversations import`)."""
    user = require_user(request)
    data = transfer.export(current_host().app.store, user.id, user={"username": user.username, "email": user.email})
    return _attachment(json.dumps(data, indent=2, ensure_ascii=False), f"dziri-{user.username}.json",
                       "application/json")


def delete_account(request):
    """The user, their conversations, messages and API keys, after the password is typed again."""
    user = require_user(request)
    password = check.text(check.json_object(request), "password")
    if len(password) > check.PASSWORD_MAX or not check_password(password, user.password_hash):
        raise InvalidCredentials("wrong password: the account is kept")
    current_host().app.store.delete_user(user.id)
    request.session.flush()  # this session; the others end at their next request (no user behind them)
    return HttpResponse(status=204)


# ---- API keys for /v1 ----------------------------------------------------------------------

def list_api_keys(request):
    user = require_user(request)
    return JsonResponse({"items": [apikeys.key_json(k) for k in current_host().app.store.list_api_keys(user.id)]})


def create_api_key(request):
    user = require_user(request)
    name = check.text(check.json_object(request), "name", required=False) or ""
    key, secret = apikeys.create_key(current_host().app.store, user.id, name)
    # The only time the key is seen: the store keeps its hash.
    return JsonResponse({**apikeys.key_json(key), "key": secret}, status=201)


def revoke_api_key(request, key_id: str):
    user = require_user(request)
    current_host().app.store.delete_api_key(user.id, _checked_id(key_id))
    return HttpResponse(status=204)


# ---- the service ------------------------------------------------------------------------

def _probe(check_: Callable[[], dict], detailed: bool) -> dict:
    try:
        return {"status": "ok", **check_()}
    except Exception as exc:
        code = getattr(exc, "code", "internal_error")
        reason = str(exc) or type(exc).__name__
        log.warning("health check failed: %s", reason)
        # The reason can name files and hosts: only a logged-in user is shown it.
        message = reason if detailed else "unavailable (log in, or see the server's log, for the reason)"
        return {"status": "unavailable", "error": {"code": code, "message": message}}


def _logged_in(request) -> bool:
    try:
        return session_user(request) is not None
    except Exception:  # the store itself may be what is down
        return False


def health(request):
    app = current_host().app
    detailed = _logged_in(request)

    def backend() -> dict:
        info = app.backend.model_info()
        return {"model": info.name, "context_length": info.context_length}

    def store() -> dict:
        app.store.load_session("0" * 64)  # a cheap read that finds nothing
        return {}

    report = {
        "backend": {"plugin": app.config.backend.use, **_probe(backend, detailed)},
        "store": {"plugin": app.config.store.use, **_probe(store, detailed)},
    }
    healthy = all(part["status"] == "ok" for part in report.values())
    response = JsonResponse({"status": "ok" if healthy else "unavailable", **report}, status=200 if healthy else 503)
    if not healthy:
        response["Retry-After"] = "5"
    response["Cache-Control"] = "no-store"
    return response


def plugins(request):
    require_user(request)
    config = current_host().app.config
    return JsonResponse(registry.describe_installed({role: getattr(config, role).use for role in registry.NAMESPACES}))
