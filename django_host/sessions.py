"""A Django session engine backed by the dziri store's session hooks.

Sessions live where the users live, so a login works on every server process (and every
machine) that shares the store, and a logout deletes the session for all of them: a
replayed cookie finds nothing and is anonymous. The store is only ever given a SHA-256
of the cookie's value, so a copy of the database holds no usable session key. The data
is Django's signed encoding of the session dict, opaque to the store.
"""

from __future__ import annotations

import hashlib

from django.contrib.sessions.backends.base import CreateError, SessionBase

from .host import current_host


def store_key(session_key: str) -> str:
    return hashlib.sha256(session_key.encode()).hexdigest()


class SessionStore(SessionBase):
    @staticmethod
    def _store():
        return current_host().app.store

    def load(self) -> dict:
        record = self._store().load_session(store_key(self.session_key)) if self.session_key else None
        if record is None:
            self._session_key = None  # unknown, expired or logged out: a new key if anything is saved
            return {}
        return self.decode(record.data)

    def exists(self, session_key: str) -> bool:
        return self._store().load_session(store_key(session_key)) is not None

    def create(self) -> None:
        while True:
            self._session_key = self._get_new_session_key()
            try:
                self.save(must_create=True)
            except CreateError:
                continue  # a key collision: astronomically unlikely, but cheap to handle
            self.modified = True
            return

    def save(self, must_create: bool = False) -> None:
        if self.session_key is None:
            return self.create()
        if must_create and self.exists(self.session_key):
            raise CreateError
        data = self.encode(self._get_session(no_load=must_create))
        self._store().save_session(store_key(self.session_key), data, self.get_expiry_date())

    def delete(self, session_key: str | None = None) -> None:
        session_key = session_key or self.session_key
        if session_key:
            self._store().delete_session(store_key(session_key))

    @classmethod
    def clear_expired(cls) -> None:
        cls._store().purge_sessions()
