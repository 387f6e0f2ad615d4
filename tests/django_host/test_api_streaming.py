"""Replies as Server-Sent Events: the event sequence, stop, disconnect, regenerate,
backend failures, one reply per conversation, and the model's bounded queue."""

from __future__ import annotations

import asyncio
import json
import time

import pytest
from api_client import parse_events

pytestmark = pytest.mark.anyio

LONG = " ".join(f"w{i}" for i in range(200))  # 200 words: echo takes 200 × delay_s to say it


class EventReader:
    """Read an open event stream one event at a time."""

    def __init__(self, response):
        self.chunks = response.aiter_text()
        self.buffer = ""

    async def next(self, timeout: float = 10.0) -> tuple[str, dict]:
        async def read():
            while "\n\n" not in self.buffer:
                self.buffer += await anext(self.chunks)
            block, self.buffer = self.buffer.split("\n\n", 1)
            events = parse_events(block + "\n\n")
            return events[0] if events else await read()

        return await asyncio.wait_for(read(), timeout)

    async def until(self, name: str) -> list[tuple[str, dict]]:
        seen = []
        while not seen or seen[-1][0] != name:
            seen.append(await self.next())
        return seen


async def wait_for(condition, timeout: float = 10.0):
    deadline = time.monotonic() + timeout
    while not (result := await asyncio.to_thread(condition)):
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.02)
    return result


@pytest.fixture
async def chat(api):
    await api.register("amina")
    return (await api.new_conversation())["id"]


def slow(make_host, delay_s=0.02, **env):
    return make_host(backend__echo__delay_s=delay_s, **env)


async def test_a_reply_streams_user_message_tokens_done(api, chat):
    events = await api.send(chat, "wach rak khouya?")
    names = [name for name, _ in events]
    assert names == ["user_message", "token", "token", "token", "token", "done"]
    user_message, done = events[0][1], events[-1][1]["message"]
    assert (user_message["role"], user_message["content"], user_message["status"]) == (
        "user", "wach rak khouya?", "complete")
    assert "".join(data["text"] for name, data in events if name == "token") == "echo: wach rak khouya?"
    assert (done["role"], done["content"], done["status"], done["error"]) == (
        "assistant", "echo: wach rak khouya?", "complete", None)
    assert await api.messages(chat) == [user_message, done]


async def test_arabic_script_survives_the_stream(api, chat):
    events = await api.send(chat, "واش راك؟")
    assert events[-1][1]["message"]["content"] == "echo: واش راك؟"


async def test_sse_response_headers(api, chat):
    response = await api.post(f"/api/conversations/{chat}/messages", {"content": "salam"})
    assert response.headers["content-type"] == "text/event-stream; charset=utf-8"
    assert response.headers["cache-control"] == "no-cache"
    assert response.headers["x-content-type-options"] == "nosniff"


async def test_the_reply_streams_before_it_is_finished(make_host, make_client):
    api = make_client(slow(make_host, delay_s=0.05))
    await api.register("amina")
    chat = (await api.new_conversation())["id"]
    async with api.stream(f"/api/conversations/{chat}/messages", {"content": LONG}) as response:
        reader = EventReader(response)
        assert (await reader.next())[0] == "user_message"
        assert (await reader.next())[0] == "token"
        messages = await api.messages(chat)  # the reply is stored as it grows
        assert messages[-1]["role"] == "assistant" and messages[-1]["status"] == "partial"
        await api.post(f"/api/conversations/{chat}/stop")
        await reader.until("done")
        # By the time `done` arrives, the conversation and the model's place are free again.
        assert (len(api.host.streams), api.host.gate.running) == (0, 0)


async def test_stop_mid_stream_keeps_the_partial_reply(make_host, make_client):
    api = make_client(slow(make_host))
    await api.register("amina")
    chat = (await api.new_conversation())["id"]
    async with api.stream(f"/api/conversations/{chat}/messages", {"content": LONG}) as response:
        reader = EventReader(response)
        await reader.until("token")
        stopped = await api.post(f"/api/conversations/{chat}/stop")
        assert stopped.status_code == 200 and stopped.json() == {"stopped": True}
        events = await reader.until("done")
    done = events[-1][1]["message"]
    assert done["status"] == "partial"
    assert ("echo: " + LONG).startswith(done["content"]) and 0 < len(done["content"]) < len(LONG)
    assert (await api.messages(chat))[-1] == done
    # Nothing runs any more: a second stop finds nothing, and the conversation takes a new message.
    assert (await api.post(f"/api/conversations/{chat}/stop")).json() == {"stopped": False}
    assert (await api.send(chat, "next"))[-1][1]["message"]["status"] == "complete"


async def test_client_disconnect_keeps_the_partial_reply(make_host, make_client):
    host = slow(make_host)
    api = make_client(host)
    await api.register("amina")
    chat = (await api.new_conversation())["id"]
    async with api.stream(f"/api/conversations/{chat}/messages", {"content": LONG}) as response:
        reader = EventReader(response)
        await reader.until("token")
        await reader.until("token")
    # The connection is closed: the reply stops at the next word and is stored as partial.
    user_id = (await api.get("/api/auth/me")).json()["user"]["id"]

    def stopped_reply():
        messages = host.app.store.list_messages(user_id, chat)
        return len(host.streams) == 0 and messages[-1].status.value == "partial" and messages[-1]
    reply = await wait_for(stopped_reply)
    assert ("echo: " + LONG).startswith(reply.content) and len(reply.content) < len(LONG)
    await asyncio.sleep(0.1)
    assert host.app.store.list_messages(user_id, chat)[-1] == reply  # and it no longer grows
    assert host.gate.running == 0 and host.gate.waiting == 0


async def test_regenerate_replaces_the_last_reply(api, chat):
    first = await api.send(chat, "salam")
    events = parse_events((await api.post(f"/api/conversations/{chat}/regenerate")).text)
    assert [name for name, _ in events][0] == "token"  # no user_message: the question is already stored
    assert events[-1][0] == "done"
    new_reply = events[-1][1]["message"]
    assert new_reply["content"] == "echo: salam" and new_reply["id"] != first[-1][1]["message"]["id"]
    messages = await api.messages(chat)
    assert [m["id"] for m in messages] == [first[0][1]["id"], new_reply["id"]]


async def test_regenerate_with_nothing_to_answer_is_400(api, chat):
    response = await api.post(f"/api/conversations/{chat}/regenerate")
    assert response.status_code == 400 and response.json()["error"]["code"] == "invalid_input"


async def test_a_backend_failure_is_an_error_event_and_a_stored_error_message(failing_backend, make_host, make_client):
    api = make_client(make_host(backend=failing_backend))
    await api.register("amina")
    chat = (await api.new_conversation())["id"]
    events = await api.send(chat, "salam")
    assert [name for name, _ in events] == ["user_message", "token", "token", "error"]
    error = events[-1][1]
    assert error["error"]["code"] == "backend_unavailable" and "crashed" in error["error"]["message"]
    stored = error["message"]
    assert (stored["status"], stored["content"]) == ("error", "partial words") and "crashed" in stored["error"]
    assert (await api.messages(chat))[-1] == stored


async def test_an_unreachable_backend_is_503_before_anything_is_stored(failing_backend, make_host, make_client):
    api = make_client(make_host(backend=failing_backend, backend__failing__unavailable="true"))
    await api.register("amina")
    chat = (await api.new_conversation())["id"]
    response = await api.post(f"/api/conversations/{chat}/messages", {"content": "salam"})
    assert response.status_code == 503 and response.headers["retry-after"].isdigit()
    assert response.json()["error"]["code"] == "backend_unavailable"
    assert await api.messages(chat) == []


@pytest.mark.parametrize(("content", "code"), [("", "invalid_input"), ("   \n", "invalid_input"),
                                               (None, "invalid_input"), (42, "invalid_input"),
                                               ("x" * 16_001, "message_too_long")])
async def test_invalid_messages_are_400_before_any_stream(api, chat, content, code):
    response = await api.post(f"/api/conversations/{chat}/messages", {"content": content})
    assert response.status_code == 400 and response.json()["error"]["code"] == code
    assert response.headers["content-type"] == "application/json"
    assert await api.messages(chat) == []


async def test_a_message_at_the_limit_is_accepted(api, chat):
    events = await api.send(chat, "x" * 16_000)
    assert events[-1][0] == "done"


async def test_one_reply_at_a_time_per_conversation(make_host, make_client):
    api = make_client(slow(make_host))
    await api.register("amina")
    chat = (await api.new_conversation())["id"]
    async with api.stream(f"/api/conversations/{chat}/messages", {"content": LONG}) as response:
        reader = EventReader(response)
        await reader.until("token")
        second = await api.post(f"/api/conversations/{chat}/messages", {"content": "me too"})
        assert second.status_code == 409 and second.json()["error"]["code"] == "conflict"
        assert (await api.post(f"/api/conversations/{chat}/regenerate")).status_code == 409
        await api.post(f"/api/conversations/{chat}/stop")
        await reader.until("done")
    assert [m["content"] for m in await api.messages(chat)][0] == LONG
    assert "me too" not in json.dumps(await api.messages(chat))


async def test_a_full_queue_answers_503_with_retry_after_and_stores_nothing(make_host, make_client):
    host = slow(make_host, web__max_concurrent_replies=1, web__max_waiting=1)
    api = make_client(host)
    await api.register("amina")
    chats = [(await api.new_conversation())["id"] for _ in range(3)]
    async with api.stream(f"/api/conversations/{chats[0]}/messages", {"content": LONG}) as running, \
            api.stream(f"/api/conversations/{chats[1]}/messages", {"content": "waiting"}) as waiting:
        first, second = EventReader(running), EventReader(waiting)
        await first.until("token")
        assert (await second.next())[0] == "user_message"  # accepted: its question is stored, it waits
        assert (host.gate.running, host.gate.waiting) == (1, 1)
        refused = await api.post(f"/api/conversations/{chats[2]}/messages", {"content": "no room"})
        assert refused.status_code == 503
        assert refused.json()["error"]["code"] == "busy"
        assert 1 <= int(refused.headers["retry-after"]) <= 60
        assert await api.messages(chats[2]) == []
        assert (await api.post(f"/api/conversations/{chats[2]}/regenerate")).status_code == 503
        # The waiting reply starts only when the running one is over.
        await api.post(f"/api/conversations/{chats[0]}/stop")
        await first.until("done")
        assert (await second.until("done"))[-1][1]["message"]["content"] == "echo: waiting"
    assert (await api.send(chats[2], "room now"))[-1][0] == "done"


async def test_leaving_while_waiting_frees_the_place_and_records_the_stop(make_host, make_client):
    host = slow(make_host, web__max_concurrent_replies=1, web__max_waiting=1)
    api = make_client(host)
    await api.register("amina")
    chats = [(await api.new_conversation())["id"] for _ in range(2)]
    async with api.stream(f"/api/conversations/{chats[0]}/messages", {"content": LONG}) as running:
        first = EventReader(running)
        await first.until("token")
        async with api.stream(f"/api/conversations/{chats[1]}/messages", {"content": "bye"}) as waiting:
            assert (await EventReader(waiting).next())[0] == "user_message"
        await wait_for(lambda: host.gate.waiting == 0)
        await api.post(f"/api/conversations/{chats[0]}/stop")
        await first.until("done")
    # Nothing was generated; the message gets an empty reply marked partial, so the
    # conversation says what happened and the next prompt stays well formed.
    for _ in range(50):
        messages = await api.messages(chats[1])
        if len(messages) == 2:
            break
        await asyncio.sleep(0.1)
    assert [(m["role"], m["content"], m["status"]) for m in messages] == [
        ("user", "bye", "complete"), ("assistant", "", "partial")]
    assert (host.gate.running, host.gate.waiting, len(host.streams)) == (0, 0, 0)


async def test_deleting_a_conversation_stops_its_reply(make_host, make_client):
    host = slow(make_host)
    api = make_client(host)
    await api.register("amina")
    chat = (await api.new_conversation())["id"]
    async with api.stream(f"/api/conversations/{chat}/messages", {"content": LONG}) as response:
        reader = EventReader(response)
        await reader.until("token")
        assert (await api.delete(f"/api/conversations/{chat}")).status_code == 204
        name, _ = await _last_event(reader)
        assert name in {"done", "error"}  # whichever the reply reached; it ends either way
    await wait_for(lambda: len(host.streams) == 0 and host.gate.running == 0)
    assert (await api.get(f"/api/conversations/{chat}")).status_code == 404


async def _last_event(reader: EventReader) -> tuple[str, dict]:
    while True:
        name, data = await reader.next()
        if name in {"done", "error"}:
            return name, data
