"""Plugin discovery: entry points, loaded by name with stevedore.

Only the configured plugin of a role is imported, so an unused plugin's heavy imports
never run and a broken unused plugin cannot break start-up. Extensions (event hooks and
CLI commands only) come from the `dziri.plugins` group; `DZIRI_LOAD_PLUGINS` (a comma
list, possibly empty) restricts which of them load, which keeps tests hermetic.
"""

from __future__ import annotations

import importlib.metadata
import logging
import os
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel
from pydantic import ValidationError as PydanticValidationError
from stevedore import DriverManager
from stevedore.exception import MultipleMatches, NoMatches

from .config import describe_validation_error
from .errors import ConfigError, DziriError, PluginError
from .models import PluginContext

log = logging.getLogger(__name__)

NAMESPACES = {"backend": "dziri.backends", "store": "dziri.stores", "translator": "dziri.translators"}
EXTENSIONS_NAMESPACE = "dziri.plugins"


def entry_points(namespace: str) -> list[importlib.metadata.EntryPoint]:
    """Installed entry points of a group, without importing anything."""
    unique = {(ep.name, ep.value): ep for ep in importlib.metadata.entry_points(group=namespace)}
    return sorted(unique.values(), key=lambda ep: ep.name)


def installed_names(role: str) -> list[str]:
    return sorted({ep.name for ep in entry_points(NAMESPACES[role])})


def load_plugin_class(role: str, name: str) -> type:
    """Import the one plugin class registered as `name` for `role`."""
    namespace = NAMESPACES[role]

    def failed(_manager, entry_point, exc: BaseException):
        raise PluginError(
            f"{role} plugin '{name}' failed to load (entry point '{entry_point.name} = {entry_point.value}'"
            f" in {namespace}): {type(exc).__name__}: {exc}"
        ) from exc

    try:
        manager = DriverManager(
            namespace, name, on_load_failure_callback=failed, on_missing_entrypoints_callback=None
        )
    except NoMatches:
        installed = ", ".join(installed_names(role)) or "none"
        raise PluginError(f"unknown {role} plugin '{name}'; installed {role} plugins: {installed}") from None
    except MultipleMatches:
        raise PluginError(f"more than one installed package registers {role} plugin '{name}'") from None
    return manager.driver


def create_plugin(role: str, name: str, settings: dict[str, Any], context: PluginContext) -> object:
    """Load, configure and instantiate a role plugin: `PluginClass(Settings(**section), context)`."""
    plugin_class = load_plugin_class(role, name)
    settings_model = getattr(plugin_class, "Settings", None)
    if settings_model is None or not (isinstance(settings_model, type) and issubclass(settings_model, BaseModel)):
        raise PluginError(f"{role} plugin '{name}' must declare a pydantic `Settings` class")
    try:
        plugin_settings = settings_model.model_validate(settings)
    except PydanticValidationError as exc:
        raise ConfigError(describe_validation_error(exc, prefix=f"{role}.{name}")) from None
    try:
        return plugin_class(plugin_settings, context)
    except DziriError:
        raise
    except Exception as exc:  # a third-party plugin's own failure: name it, keep the message
        raise PluginError(f"{role} plugin '{name}' failed to start: {type(exc).__name__}: {exc}") from exc


@dataclass
class LoadedExtensions:
    plugins: dict[str, object] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)


def extensions_to_load() -> set[str] | None:
    """None: all installed extensions; otherwise the names listed in DZIRI_LOAD_PLUGINS."""
    chosen = os.environ.get("DZIRI_LOAD_PLUGINS")
    if chosen is None:
        return None
    return {name.strip() for name in chosen.split(",") if name.strip()}


def load_extensions() -> LoadedExtensions:
    """Import the extension plugins; one that fails is reported, not fatal."""
    wanted = extensions_to_load()
    loaded = LoadedExtensions()
    for entry_point in entry_points(EXTENSIONS_NAMESPACE):
        if wanted is not None and entry_point.name not in wanted:
            continue
        try:
            loaded.plugins[entry_point.name] = entry_point.load()
        except Exception as exc:
            message = f"entry point '{entry_point.name} = {entry_point.value}': {type(exc).__name__}: {exc}"
            loaded.errors[entry_point.name] = message
            log.warning("extension plugin failed to load: %s", message)
    return loaded


def entry_point_name(role: str, plugin_class: type) -> str | None:
    """The name `plugin_class` is installed under for `role`, if it is (read from the entry
    points, nothing imported)."""
    value = f"{plugin_class.__module__}:{plugin_class.__qualname__}"
    return next((ep.name for ep in entry_points(NAMESPACES[role]) if ep.value == value), None)


def check_contract(plugin: object, name: str, role: str | None) -> str | None:
    """What is wrong with a plugin (a role plugin's class, or an extension) against its
    role's hooks, checked as the app registers it but on a plugin manager of its own, so
    nothing is created or connected; None if nothing is."""
    from .roles import new_plugin_manager, register

    try:
        register(new_plugin_manager(), plugin, name, role)
    except DziriError as exc:
        return str(exc)
    return None


def describe_installed(active: dict[str, str]) -> dict[str, Any]:
    """For `dziri plugins`: every installed plugin per role, which is active, and which
    fail to import or do not match their role's hooks."""
    report: dict[str, Any] = {}
    for role, namespace in NAMESPACES.items():
        plugins = []
        for entry_point in entry_points(namespace):
            try:
                error = check_contract(entry_point.load(), entry_point.name, role)
            except Exception as exc:
                error = f"{type(exc).__name__}: {exc}"
            status = "error" if error else "ok"
            plugins.append({
                "name": entry_point.name,
                "entry_point": entry_point.value,
                "active": entry_point.name == active.get(role),
                "status": status,
                "error": error,
            })
        if active.get(role) not in {p["name"] for p in plugins}:
            plugins.append({"name": active.get(role), "entry_point": None, "active": True,
                            "status": "error", "error": "not installed"})
        report[role] = {"active": active.get(role), "plugins": plugins}
    extensions = load_extensions()
    errors = {**{n: check_contract(p, n, None) for n, p in extensions.plugins.items()}, **extensions.errors}
    report["extensions"] = {"plugins": [
        {"name": n, "status": "error" if e else "ok", "error": e} for n, e in sorted(errors.items())]}
    return report
