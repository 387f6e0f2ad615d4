"""A store plugin that an author got wrong: one hook's name is misspelt. `dziri plugins`
must report it without it ever being configured."""

from __future__ import annotations

from dziri.core.hookspecs import hookimpl
from dziri.plugins.stores.sqlite import SQLiteStore


class MisspeltStore(SQLiteStore):
    @hookimpl
    def store_get_usr(self, user_id: str):
        return self.store_get_user(user_id)
