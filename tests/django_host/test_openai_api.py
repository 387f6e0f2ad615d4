"""The OpenAI-compatible API (/v1) with the official `openai` client, in this process on each
store: keys made in the site, models, completions streamed and not, OpenAI's error shapes,
a revoked key on another server, the shared queue."""

from __future__ import annotations

import asyncio
import json

import httpx
import openai
import pytest
from api_client import BASE_URL, StreamingASGITransport, asgi_for

pytestmark = pytest.mark.anyio

LONG = " ".join(f"w{i}" for i in range(200))


def sdk(host, key: str) -> openai.AsyncOpenAI:
    http = httpx.AsyncClient(transport=StreamingASGITransport(asgi_for(host)), base_url=BASE_URL)
    return openai.AsyncOpenAI(base_url=f"{BASE_URL}/v1", api_key=key, http_client=http, max_retries=0)


async def new_key(api, name: str = "laptop") -> dict:
    response = await api.post("/api/apikeys", {"name": name})
    assert response.status_code == 201, response.text
    return response.json()


@pytest.fixture
async def key(api):
    await api.register("amina")
    return (await new_key(api))["key"]


async def test_the_sdk_lists_the_model_and_gets_a_reply(host, key):
    client = sdk(host, key)
    assert [m.id for m in (await client.models.list()).data] == ["dziri"]
    reply = await client.chat.completions.create(model="dziri", messages=[
        {"role": "system", "content": "jaweb b darija"}, {"role": "user", "content": "wach rak khouya?"}])
    assert reply.object == "chat.completion" and reply.id.startswith("chatcmpl-")
    choice = reply.choices[0]
    assert (choice.message.role, choice.message.content, choice.finish_reason) == (
        "assistant", "echo: wach rak khouya?", "stop")
    assert reply.usage.completion_tokens == 4 and reply.usage.prompt_tokens > 0  # echo says four words
    assert reply.usage.total_tokens == reply.usage.prompt_tokens + 4


async def test_the_sdk_streams_chunks_then_done(host, key):
    client = sdk(host, key)
    stream = await client.chat.completions.create(model="dziri", stream=True, max_tokens=4,
                                                  stream_options={"include_usage": True},
                                                  messages=[{"role": "user", "content": "salam kifach rak lyoum"}])
    chunks = [chunk async for chunk in stream]
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "echo: salam kifach rak"  # max_tokens 4: four words of the echo
    assert chunks[0].choices[0].delta.role == "assistant"
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "length"
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == 4


async def test_the_raw_stream_ends_with_done(api, key):
    response = await api.post("/v1/chat/completions", {"model": "dziri", "stream": True, "messages": [
        {"role": "user", "content": [{"type": "text", "text": "sa"}, {"type": "text", "text": "lam"}]}]},
        headers={"Authorization": f"Bearer {key}"}, csrf=False)
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/event-stream")
    lines = [line for line in response.text.split("\n\n") if line]
    assert lines[-1] == "data: [DONE]"
    assert json.loads(lines[1][6:])["choices"][0]["delta"]["content"] == "echo:"


async def test_a_conversation_given_whole_is_answered_and_nothing_is_stored(host, api, key):
    client = sdk(host, key)
    reply = await client.chat.completions.create(model="dziri", messages=[
        {"role": "user", "content": "smiti Karim"}, {"role": "assistant", "content": "marhba Karim"},
        {"role": "user", "content": "wach smiti?"}])
    assert reply.choices[0].message.content == "echo: wach smiti?"
    assert (await api.get("/api/conversations")).json()["items"] == []  # stateless, as OpenAI's


async def test_a_missing_wrong_or_revoked_key_is_401_in_openais_shape(host, make_host, api, make_client, key):
    for bad in ("dz-not-a-key", "sk-" + "x" * 40, key + "x"):  # none at all: the next test
        with pytest.raises(openai.AuthenticationError) as caught:
            await sdk(host, bad).models.list()
        assert caught.value.status_code == 401 and caught.value.code == "invalid_api_key"
    # Revoked through this server: refused at once by another one on the same store.
    second = sdk(make_host(), key)
    assert (await second.models.list()).data
    [listed] = (await api.get("/api/apikeys")).json()["items"]
    assert set(listed) == {"id", "name", "prefix", "created_at"} and key.startswith(listed["prefix"])
    assert (await api.delete(f"/api/apikeys/{listed['id']}")).status_code == 204
    with pytest.raises(openai.AuthenticationError):
        await second.chat.completions.create(model="dziri", messages=[{"role": "user", "content": "salam"}])


async def test_the_site_session_does_not_authenticate_v1(api, key):
    response = await api.get("/v1/models")  # logged in to the site, no key
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "invalid_api_key" and response.headers["www-authenticate"]


async def test_a_key_is_revoked_by_its_owner_only_and_shown_once(api, make_client, key):
    [listed] = (await api.get("/api/apikeys")).json()["items"]
    assert key not in json.dumps(listed)
    other = make_client()
    await other.register("bob")
    assert (await other.get("/api/apikeys")).json()["items"] == []
    response = await other.delete(f"/api/apikeys/{listed['id']}")
    assert response.status_code == 404
    assert len((await api.get("/api/apikeys")).json()["items"]) == 1
    assert (await make_client().get("/api/apikeys")).status_code == 401


@pytest.mark.parametrize("body, param, fragment", [
    ({"model": "gpt-4o", "messages": [{"role": "user", "content": "salam"}]}, "model", "does not exist"),
    ({"model": "dziri"}, "messages", "non-empty list"),
    ({"model": "dziri", "messages": [{"role": "robot", "content": "beep"}]}, "messages[0]", "role"),
    ({"model": "dziri", "messages": [{"role": "user", "content": 5}]}, "messages[0].content", "string"),
    ({"model": "dziri", "messages": [{"role": "user", "content": [{"type": "image_url"}]}]},
     "messages[0].content", "only text"),
    ({"model": "dziri", "messages": [{"role": "user", "content": "x"}], "temperature": 3}, "temperature", "between"),
    ({"model": "dziri", "messages": [{"role": "user", "content": "x"}], "max_tokens": 0}, "max_tokens", "between"),
    ({"model": "dziri", "messages": [{"role": "user", "content": "x"}], "n": 2}, "n", "n = 1"),
    ({"model": "dziri", "messages": [{"role": "user", "content": "x"}], "stop": [1]}, "stop", "stop"),
    ({"model": "dziri", "messages": [{"role": "assistant", "content": "x"}]}, None, "the user's"),
    ({"model": "dziri", "messages": [{"role": "user", "content": "x" * 20_000}]}, "messages", "characters"),
])
async def test_bad_requests_are_400_in_openais_shape(host, key, body, param, fragment):
    client = sdk(host, key)
    with pytest.raises(openai.BadRequestError) as caught:  # sent as it is: the SDK's own checks are bypassed
        await client.post("/chat/completions", body=body, cast_to=object)
    error = caught.value.body
    assert set(error) == {"message", "type", "param", "code"} and error["type"] == "invalid_request_error"
    assert error["param"] == param and fragment in error["message"]


async def test_malformed_json_and_unknown_paths_answer_like_openai(api, key):
    auth = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    response = await api.request("POST", "/v1/chat/completions", content=b"{nope", headers=auth, csrf=False)
    assert response.status_code == 400 and response.json()["error"]["message"] == "the body is not valid JSON"
    response = await api.request("POST", "/v1/embeddings", json={}, headers=auth, csrf=False)
    assert response.status_code == 404 and response.json()["error"]["type"] == "invalid_request_error"
    response = await api.request("GET", "/v1/chat/completions", headers=auth, csrf=False)
    assert response.status_code == 405


async def test_v1_waits_in_the_sites_queue_and_a_full_queue_is_503_with_retry_after(make_host, make_client):
    host = make_host(backend__echo__delay_s=0.02, web__max_concurrent_replies=1, web__max_waiting=0)
    api = make_client(host)
    await api.register("amina")
    key = (await new_key(api))["key"]
    chat = (await api.new_conversation())["id"]
    async with api.stream(f"/api/conversations/{chat}/messages", {"content": LONG}) as running:
        async for line in running.aiter_lines():
            if line == "event: token":
                break
        with pytest.raises(openai.APIStatusError) as caught:
            await sdk(host, key).chat.completions.create(model="dziri", messages=[{"role": "user", "content": "x"}])
        assert caught.value.status_code == 503 and caught.value.body["type"] == "server_error"
        assert 1 <= int(caught.value.response.headers["retry-after"]) <= 60
        await api.post(f"/api/conversations/{chat}/stop")
    for _ in range(100):  # the site's reply frees its place as it ends
        if host.gate.running == 0:
            break
        await asyncio.sleep(0.05)
    reply = await sdk(host, key).chat.completions.create(model="dziri", messages=[{"role": "user", "content": "x"}])
    assert reply.choices[0].message.content == "echo: x"
