"""Conversations and their messages: every endpoint, pagination, and nobody else's data."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.anyio


@pytest.fixture
async def user(api):
    return await api.register("amina")


async def test_create_get_rename_delete(api, user):
    created = await api.new_conversation("first chat")
    assert set(created) == {"id", "title", "started_at", "updated_at", "system_prompt", "temperature"}
    assert created["title"] == "first chat" and created["started_at"].endswith("Z")
    got = await api.get(f"/api/conversations/{created['id']}")
    assert got.status_code == 200 and got.json() == created
    renamed = await api.patch(f"/api/conversations/{created['id']}", {"title": "  salam   3likoum "})
    assert renamed.status_code == 200 and renamed.json()["title"] == "salam 3likoum"
    assert (await api.delete(f"/api/conversations/{created['id']}")).status_code == 204
    assert (await api.get(f"/api/conversations/{created['id']}")).status_code == 404
    assert (await api.delete(f"/api/conversations/{created['id']}")).status_code == 404


async def test_an_untitled_conversation_is_named_by_its_first_message(api, user):
    conversation = await api.new_conversation()
    assert conversation["title"] == ""
    await api.send(conversation["id"], "wach rak khouya?")
    assert (await api.get(f"/api/conversations/{conversation['id']}")).json()["title"] == "wach rak khouya?"


async def test_conversations_are_listed_newest_first_and_paginated(api, user):
    ids = [(await api.new_conversation(f"c{i}"))["id"] for i in range(5)]
    await api.send(ids[1], "bump")  # now the most recently updated
    page = (await api.get("/api/conversations", params={"limit": 2})).json()
    assert [c["id"] for c in page["items"]] == [ids[1], ids[4]]
    assert (page["limit"], page["offset"], page["has_more"]) == (2, 0, True)
    page = (await api.get("/api/conversations", params={"limit": 2, "offset": 2})).json()
    assert [c["id"] for c in page["items"]] == [ids[3], ids[2]] and page["has_more"] is True
    page = (await api.get("/api/conversations", params={"limit": 2, "offset": 4})).json()
    assert [c["id"] for c in page["items"]] == [ids[0]] and page["has_more"] is False
    default = (await api.get("/api/conversations")).json()
    assert default["limit"] == 20 and len(default["items"]) == 5


@pytest.mark.parametrize("params", [{"limit": 0}, {"limit": 101}, {"limit": "ten"}, {"offset": -1}])
async def test_bad_pagination_is_400(api, user, params):
    response = await api.get("/api/conversations", params=params)
    assert response.status_code == 400 and response.json()["error"]["code"] == "invalid_input"


async def test_messages_are_paginated_oldest_first_with_before(api, user):
    conversation = await api.new_conversation()
    for text in ["one", "two", "three"]:
        await api.send(conversation["id"], text)
    path = f"/api/conversations/{conversation['id']}/messages"
    everything = (await api.get(path)).json()
    assert everything["has_more"] is False
    contents = [m["content"] for m in everything["items"]]
    assert contents == ["one", "echo: one", "two", "echo: two", "three", "echo: three"]
    assert [m["role"] for m in everything["items"]] == ["user", "assistant"] * 3
    message = everything["items"][0]
    assert set(message) == {"id", "conversation_id", "role", "content", "timestamp", "status", "error", "tokens",
                            "tokens_per_second"}
    newest = (await api.get(path, params={"limit": 4})).json()
    assert [m["content"] for m in newest["items"]] == contents[2:] and newest["has_more"] is True
    older = (await api.get(path, params={"limit": 4, "before": newest["items"][0]["id"]})).json()
    assert [m["content"] for m in older["items"]] == contents[:2] and older["has_more"] is False


async def test_unknown_before_id_is_404(api, user):
    conversation = await api.new_conversation()
    response = await api.get(f"/api/conversations/{conversation['id']}/messages", params={"before": "nope"})
    assert response.status_code == 404


@pytest.mark.parametrize("body", [{"title": ""}, {"title": "   "}, {"title": 7}, {"title": "x" * 201}, {}])
async def test_bad_rename_is_400(api, user, body):
    conversation = await api.new_conversation("keep")
    response = await api.patch(f"/api/conversations/{conversation['id']}", body)
    assert response.status_code == 400
    assert (await api.get(f"/api/conversations/{conversation['id']}")).json()["title"] == "keep"


async def test_unknown_conversation_is_404_everywhere(api, user):
    for method, suffix, body in [("GET", "", None), ("PATCH", "", {"title": "x"}), ("DELETE", "", None),
                                 ("GET", "/messages", None), ("POST", "/messages", {"content": "hi"}),
                                 ("POST", "/regenerate", None), ("POST", "/stop", None)]:
        for conversation_id in ["0" * 32, "x" * 500]:
            response = await api.request(method, f"/api/conversations/{conversation_id}{suffix}", json=body)
            assert response.status_code == 404, (method, suffix, response.text)
            assert response.json()["error"]["code"] == "not_found"


async def test_user_a_gets_404_for_everything_of_user_b(api, make_client, host):
    await api.register("owner")
    conversation = await api.new_conversation("private")
    await api.send(conversation["id"], "my secret")
    messages = await api.messages(conversation["id"])
    other = make_client()
    await other.register("intruder")
    cid = conversation["id"]
    attempts = [
        ("GET", f"/api/conversations/{cid}", None),
        ("PATCH", f"/api/conversations/{cid}", {"title": "mine now"}),
        ("DELETE", f"/api/conversations/{cid}", None),
        ("GET", f"/api/conversations/{cid}/messages", None),
        ("GET", f"/api/conversations/{cid}/messages?before={messages[-1]['id']}", None),
        ("POST", f"/api/conversations/{cid}/messages", {"content": "let me in"}),
        ("POST", f"/api/conversations/{cid}/regenerate", None),
        ("POST", f"/api/conversations/{cid}/stop", None),
    ]
    for method, path, body in attempts:
        response = await other.request(method, path, json=body)
        assert response.status_code == 404, (method, path, response.text)
        assert "my secret" not in response.text
    # Their own messages listing with B's message id as a cursor finds nothing either.
    mine = await other.new_conversation()
    response = await other.get(f"/api/conversations/{mine['id']}/messages", params={"before": messages[-1]["id"]})
    assert response.status_code == 404
    assert (await other.get("/api/conversations")).json()["items"] == [mine]
    # And nothing changed for the owner.
    assert (await api.get(f"/api/conversations/{cid}")).json()["title"] == "private"
    assert await api.messages(cid) == messages


async def test_anonymous_access_to_user_data_is_401(api):
    for method, path in [("GET", "/api/conversations"), ("POST", "/api/conversations"),
                         ("GET", "/api/conversations/abc"), ("PATCH", "/api/conversations/abc"),
                         ("DELETE", "/api/conversations/abc"), ("GET", "/api/conversations/abc/messages"),
                         ("POST", "/api/conversations/abc/messages"), ("POST", "/api/conversations/abc/regenerate"),
                         ("POST", "/api/conversations/abc/stop"), ("GET", "/api/plugins")]:
        response = await api.request(method, path, json={"title": "x", "content": "x"})
        assert response.status_code == 401, (method, path, response.text)
        assert response.json()["error"]["code"] == "not_authenticated"
