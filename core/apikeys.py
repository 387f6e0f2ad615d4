"""API keys for the OpenAI-compatible API: made here, kept by the store as a hash.

A key is 32 random bytes (`dz-` + URL-safe base64): too much entropy to guess, so one
SHA-256 is the right hash (a slow password hash would only slow every request). The key
is shown once, when it is made; the store keeps its hash and its first characters, to
tell keys apart in a list. Every request looks its key up in the store, so a revoked key
fails at once in every server process.
"""

from __future__ import annotations

import hashlib
import secrets

from .errors import NotFoundError, ValidationError
from .models import ApiKey, User
from .roles import Store

KEY_PREFIX = "dz-"
SHOWN_CHARS = 10  # "dz-" and 7 characters of the key: enough to tell keys apart, far too few to use
NAME_MAX = 60
KEY_MAX = 200  # longer bearer values are not ours, and are not hashed


def hash_key(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def create_key(store: Store, user_id: str, name: str = "") -> tuple[ApiKey, str]:
    """(the stored key, the key itself): the caller shows the second once and forgets it."""
    name = name.strip()
    if len(name) > NAME_MAX:
        raise ValidationError(f"a key's name is at most {NAME_MAX} characters")
    secret = KEY_PREFIX + secrets.token_urlsafe(32)
    return store.create_api_key(user_id, name, secret[:SHOWN_CHARS], hash_key(secret)), secret


def authenticate(store: Store, secret: str) -> User | None:
    """The user a key belongs to, or None for a wrong, revoked or malformed one."""
    if not secret.startswith(KEY_PREFIX) or len(secret) > KEY_MAX:
        return None
    key = store.find_api_key(hash_key(secret))
    if key is None:
        return None
    try:
        return store.get_user(key.user_id)
    except NotFoundError:  # the user went while the key was being looked up
        return None


def key_json(key: ApiKey) -> dict:
    """What a list shows of a key: never its hash."""
    return key.model_dump(mode="json", include={"id", "name", "prefix", "created_at"})
