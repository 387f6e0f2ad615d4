"""The application context: configuration, the plugin manager and the configured role
plugins, created on first use. The CLI, the web host and the tests all start here."""

from __future__ import annotations

import threading
from functools import cached_property
from pathlib import Path

import pluggy

from . import registry
from .config import DziriConfig, load_config
from .errors import StoreError
from .models import PluginContext
from .roles import FACADES, Backend, Store, Translator, new_plugin_manager, register


class App:
    def __init__(self, config: DziriConfig | None = None):
        self.config = config or load_config()
        self.pm: pluggy.PluginManager = new_plugin_manager()
        # Role plugins are created once even if threads race; re-entrant because a plugin's
        # context.backend() may create the backend while another role is being created.
        self._lock = threading.RLock()
        self.extension_errors: dict[str, str] = {}
        extensions = registry.load_extensions()
        self.extension_errors = extensions.errors
        for name, plugin in extensions.plugins.items():
            register(self.pm, plugin, name, role=None)

    @classmethod
    def from_config_file(cls, path: str | None = None) -> App:
        return cls(load_config(path))

    @cached_property
    def data_dir(self) -> Path:
        path = self.config.resolved_data_dir()
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(f"cannot create the data directory {path}: {exc.strerror}") from None
        return path

    def _role(self, role: str):
        with self._lock:
            attribute = f"_{role}_facade"
            if attribute not in self.__dict__:
                section = getattr(self.config, role)
                context = PluginContext(data_dir=self.data_dir, backend=lambda: self.backend)
                plugin = registry.create_plugin(role, section.use, section.plugin_settings(section.use), context)
                register(self.pm, plugin, section.use, role)
                self.__dict__[attribute] = FACADES[role](self.pm, section.use)
            return self.__dict__[attribute]

    @property
    def backend(self) -> Backend:
        return self._role("backend")

    @property
    def store(self) -> Store:
        return self._role("store")

    @property
    def translator(self) -> Translator:
        return self._role("translator")

    @cached_property
    def chat(self):
        from .chat import ChatService

        return ChatService(self.backend, self.store, self.pm.hook, self.config.chat)

    def close(self) -> None:
        if "_store_facade" in self.__dict__:
            self.__dict__.pop("_store_facade").close()
