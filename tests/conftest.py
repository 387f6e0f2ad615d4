"""Test isolation: no user config, a temporary data dir, and a fixed set of installed
plugins (the shipped ones, the example `echo` plugin, and deliberately broken ones)."""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import pytest

# Fake servers (Ollama, OpenAI-compatible) as fixtures for every test: tests/fakes/fixtures.py.
pytest_plugins = ["fakes.fixtures"]

REPO = Path(__file__).resolve().parent.parent
EXAMPLE_DIR = REPO / "examples" / "dziri-echo"

# Entry points of a fake distribution put on sys.path for the whole run, as if
# `pip install` had installed these plugins next to the shipped ones.
TEST_ENTRY_POINTS = """\
[dziri.backends]
echo = dziri_echo:EchoBackend
broken = dziri_no_such_module:Backend
scripted = fakes.backends:ScriptedBackend

[dziri.stores]
misspelt = fakes.stores:MisspeltStore

[dziri.translators]
echo = dziri_echo:EchoTranslator

[dziri.plugins]
echo = dziri_echo
broken-extension = dziri_no_such_extension
"""


def pytest_configure(config):
    base = Path(tempfile.mkdtemp(prefix="dziri-test-plugins-"))
    dist_info = base / "dziri_test_plugins-1.0.dist-info"
    dist_info.mkdir(parents=True, exist_ok=True)
    (dist_info / "METADATA").write_text("Metadata-Version: 2.1\nName: dziri-test-plugins\nVersion: 1.0\n")
    (dist_info / "entry_points.txt").write_text(TEST_ENTRY_POINTS)
    # tests/ too, for the fake plugins in tests/fakes that the entry points name.
    extra_paths = [str(base), str(EXAMPLE_DIR), str(REPO / "tests")]
    sys.path[:0] = extra_paths
    # Subprocesses (the real `dziri` command) see the same plugins.
    os.environ["PYTHONPATH"] = os.pathsep.join([*extra_paths, os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    # stevedore caches entry points under XDG_CACHE_HOME: keep the user's cache out of it.
    os.environ["XDG_CACHE_HOME"] = str(base / "cache")


@pytest.fixture(autouse=True)
def isolated_environment(tmp_path, monkeypatch):
    """No DZIRI_* from the caller's shell, no dziri.toml from cwd or the user config dir."""
    for name in list(os.environ):
        if name.startswith("DZIRI_") or name in {"GROQ_API_KEY"}:
            monkeypatch.delenv(name)
    monkeypatch.setenv("DZIRI_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("DZIRI_LOAD_PLUGINS", "")  # extensions only where a test asks for them
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg-config"))
    monkeypatch.chdir(tmp_path)


@pytest.fixture
def echo_app(monkeypatch):
    """An App on the example echo backend and the default SQLite store."""
    from dziri.core.app import App

    monkeypatch.setenv("DZIRI_BACKEND", "echo")
    app = App()
    yield app
    app.close()
