"""Export a conversation, download all of one's data, delete one's account: on each store."""

from __future__ import annotations

import json

import pytest
from api_client import PASSWORD

pytestmark = pytest.mark.anyio


async def test_a_conversation_downloads_as_json_or_markdown_for_its_owner_only(api, make_client):
    await api.register("amina")
    chat = (await api.new_conversation())["id"]
    await api.send(chat, "Kifach ndir CHORBA?")
    response = await api.get(f"/api/conversations/{chat}/export")
    assert response.status_code == 200 and response.headers["content-disposition"].startswith("attachment;")
    data = json.loads(response.content)
    [conversation] = data["conversations"]
    assert [m["content"] for m in conversation["messages"]] == ["Kifach ndir CHORBA?", "echo: Kifach ndir CHORBA?"]
    markdown = await api.get(f"/api/conversations/{chat}/export?format=md")
    assert markdown.headers["content-type"].startswith("text/markdown")
    assert markdown.text.startswith("# Kifach ndir CHORBA?")
    assert (await api.get(f"/api/conversations/{chat}/export?format=pdf")).status_code == 400
    bob = make_client()
    await bob.register("bob")
    assert (await bob.get(f"/api/conversations/{chat}/export")).status_code == 404


async def test_all_my_data_is_one_json_file(api):
    await api.register("amina")
    for text in ("salam", "wach rak?"):
        await api.send((await api.new_conversation())["id"], text)
    await api.post("/api/apikeys", {"name": "laptop"})
    response = await api.get("/api/account/export")
    data = json.loads(response.content)
    assert data["user"] == {"username": "amina", "email": "amina@example.org"}
    assert [k["name"] for k in data["api_keys"]] == ["laptop"] and "key_hash" not in json.dumps(data)
    assert [c["title"] for c in data["conversations"]] == ["wach rak?", "salam"]


async def test_deleting_the_account_needs_the_password_and_then_removes_everything(api, make_client, host):
    await api.register("amina")
    chat = (await api.new_conversation())["id"]
    await api.send(chat, "salam")
    key = (await api.post("/api/apikeys", {"name": "x"})).json()["key"]
    wrong = await api.request("DELETE", "/api/account", json={"password": "not it at all"})
    assert wrong.status_code == 401 and wrong.json()["error"]["code"] == "invalid_credentials"
    assert len(await api.messages(chat)) == 2  # nothing changed

    other_browser = make_client()
    assert (await other_browser.login("amina")).status_code == 200
    gone = await api.request("DELETE", "/api/account", json={"password": PASSWORD})
    assert gone.status_code == 204
    assert (await api.get("/api/auth/me")).status_code == 401
    assert (await other_browser.get("/api/conversations")).status_code == 401  # every session ends
    store = host.app.store
    assert store.find_user("amina") is None
    from dziri.core import apikeys
    assert apikeys.authenticate(store, key) is None
    assert (await make_client().register("amina"))["username"] == "amina"  # the name is free again
    assert (await api.login("amina")).status_code == 200
    assert (await api.get("/api/conversations")).json()["items"] == []
