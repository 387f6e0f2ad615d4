"""pytest fixtures for the fake servers; `tests/conftest.py` loads this module as a
plugin, so every test under `tests/` can ask for them by name::

    def test_something(fake_ollama, monkeypatch):
        monkeypatch.setenv("DZIRI_BACKEND", "ollama")
        monkeypatch.setenv("DZIRI_BACKEND__OLLAMA__HOST", fake_ollama.host)
        fake_ollama.reply = "salam"                 # a scripted reply (default: echo)
        ...
        assert fake_ollama.last_request("/api/chat").body["options"]["num_predict"] == 512

The classes work without pytest too: `with FakeOllama() as server: ...`.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from ._http import free_port, unanswered_port
from .ollama_server import FakeModel, FakeOllama
from .openai_server import FakeOpenAI

__all__ = ["FakeModel", "FakeOllama", "FakeOpenAI", "fake_ollama", "fake_openai", "free_port", "unanswered_port"]


@pytest.fixture
def fake_ollama() -> Iterator[FakeOllama]:
    """A running fake Ollama server with one model, `dziri` (num_ctx 4096 in its Modelfile)."""
    with FakeOllama() as server:
        yield server


@pytest.fixture
def fake_openai() -> Iterator[FakeOpenAI]:
    """A running fake OpenAI-compatible server serving one model, `dziri`, with no key."""
    with FakeOpenAI() as server:
        yield server
