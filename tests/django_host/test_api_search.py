"""GET /api/search on each store: the user's own messages, across spellings, newest first,
paged, with the match marked; bad input is a clear 400."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.anyio


async def test_search_finds_the_users_messages_newest_first_with_the_match_marked(api, make_client):
    await api.register("amina")
    first = (await api.new_conversation())["id"]
    await api.send(first, "Kifach ndir CHORBA frik?")
    second = (await api.new_conversation())["id"]
    await api.send(second, "yemma dirat chorba lyoum")
    other = make_client()
    await other.register("bob")
    await other.send((await other.new_conversation())["id"], "chorba ta3 bob")

    body = (await api.get("/api/search?q=Chorb")).json()
    # Each question and its echo: four hits, the newest first, none of bob's.
    assert [hit["conversation"]["id"] for hit in body["items"]] == [second, second, first, first]
    assert [hit["message"]["role"] for hit in body["items"]] == ["assistant", "user", "assistant", "user"]
    hit = body["items"][-1]
    assert hit["conversation"]["title"] == "Kifach ndir CHORBA frik?"
    assert [hit["snippet"][s:e] for s, e in hit["highlights"]] == ["CHORBA"]
    assert body["has_more"] is False

    page = (await api.get("/api/search?q=chorba&limit=3")).json()
    assert len(page["items"]) == 3 and page["has_more"] is True
    rest = (await api.get("/api/search?q=chorba&limit=3&offset=3")).json()
    assert len(rest["items"]) == 1 and rest["has_more"] is False
    assert (await api.get("/api/search?q=couscous")).json()["items"] == []


@pytest.mark.parametrize("query, status", [("", 400), ("%20%20", 400), ("x" * 2000, 400), ("%3F%21", 400)])
async def test_a_bad_search_is_400_and_says_why(api, query, status):
    await api.register("amina")
    response = await api.get(f"/api/search?q={query}")
    assert response.status_code == status and response.json()["error"]["code"] == "invalid_input"


async def test_search_needs_a_login(api):
    assert (await api.get("/api/search?q=chorba")).status_code == 401
