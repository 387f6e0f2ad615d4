"""Edit a message and answer it again; a conversation's own system prompt and temperature.
On each store, through the API as the site uses it."""

from __future__ import annotations

import pytest
from api_client import parse_events

from dziri.core.hookspecs import hookimpl

pytestmark = pytest.mark.anyio


async def edit(api, conversation_id: str, message_id: str, content: str):
    return await api.patch(f"/api/conversations/{conversation_id}/messages/{message_id}", {"content": content})


async def test_editing_a_message_drops_what_followed_and_streams_a_new_reply(api):
    await api.register("amina")
    chat = (await api.new_conversation())["id"]
    for text in ("smiti Karim", "wach rak?", "w nta?"):
        await api.send(chat, text)
    other = (await api.new_conversation())["id"]
    await api.send(other, "ma tmessnich")
    second = (await api.messages(chat))[2]

    response = await edit(api, chat, second["id"], "win tskoun?")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/event-stream")
    events = parse_events(response.text)
    assert [name for name, _ in events][0] == "user_message" and events[-1][0] == "done"
    assert events[0][1]["id"] == second["id"] and events[0][1]["content"] == "win tskoun?"
    assert [(m["role"], m["content"]) for m in await api.messages(chat)] == [
        ("user", "smiti Karim"), ("assistant", "echo: smiti Karim"),
        ("user", "win tskoun?"), ("assistant", "echo: win tskoun?")]
    assert [m["content"] for m in await api.messages(other)] == ["ma tmessnich", "echo: ma tmessnich"]


async def test_only_ones_own_user_message_can_be_edited_and_bad_input_changes_nothing(api, make_client):
    await api.register("amina")
    chat = (await api.new_conversation())["id"]
    await api.send(chat, "salam")
    question, reply = await api.messages(chat)
    assert (await edit(api, chat, reply["id"], "x")).status_code == 400  # a reply is not yours to edit
    assert (await edit(api, chat, question["id"], "   ")).status_code == 400
    assert (await edit(api, chat, question["id"], "x" * 20_000)).status_code == 400
    assert (await edit(api, chat, "f" * 32, "x")).status_code == 404
    bob = make_client()
    await bob.register("bob")
    bobs = (await bob.new_conversation())["id"]
    assert (await edit(bob, chat, question["id"], "taken over")).status_code == 404
    assert (await edit(bob, bobs, question["id"], "taken over")).status_code == 404
    assert [m["content"] for m in await api.messages(chat)] == ["salam", "echo: salam"]


@pytest.fixture
def prompts(host):
    """The prompts the backend is sent, as a plugin sees them."""
    seen = []

    class Spy:
        @hookimpl
        def prompt_about_to_send(self, conversation, messages, options):
            seen.append((messages[0].content, options.temperature))

    host.app.pm.register(Spy(), name="extension:spy")
    return seen


async def test_a_conversation_answers_with_its_own_system_prompt_and_temperature(api, host, prompts):
    await api.register("amina")
    chat = await api.new_conversation()
    assert (chat["system_prompt"], chat["temperature"]) == ("", None)
    default_prompt, default_temperature = host.app.config.chat.system_prompt, host.app.config.chat.temperature
    await api.send(chat["id"], "salam")
    changed = (await api.patch(f"/api/conversations/{chat['id']}",
                               {"system_prompt": "jaweb ghir b la3roubiya", "temperature": 0.2})).json()
    assert (changed["system_prompt"], changed["temperature"], changed["title"]) == (
        "jaweb ghir b la3roubiya", 0.2, "salam")
    await api.send(chat["id"], "wach rak?")
    await api.post(f"/api/conversations/{chat['id']}/regenerate")
    renamed = (await api.patch(f"/api/conversations/{chat['id']}", {"title": "tafsila"})).json()
    assert renamed["temperature"] == 0.2  # renaming keeps the settings
    await api.patch(f"/api/conversations/{chat['id']}", {"system_prompt": "", "temperature": None})
    await api.send(chat["id"], "bslama")
    assert prompts == [(default_prompt, default_temperature), ("jaweb ghir b la3roubiya", 0.2),
                       ("jaweb ghir b la3roubiya", 0.2), (default_prompt, default_temperature)]


@pytest.mark.parametrize("body", [{}, {"temperature": 3}, {"temperature": "hot"}, {"system_prompt": 5},
                                  {"system_prompt": "x" * 4001}, {"title": "", "temperature": 0.5}])
async def test_bad_settings_are_400_and_change_nothing(api, body):
    await api.register("amina")
    chat = await api.new_conversation("first")
    response = await api.patch(f"/api/conversations/{chat['id']}", body)
    assert response.status_code == 400 and response.json()["error"]["code"] == "invalid_input"
    assert (await api.get(f"/api/conversations/{chat['id']}")).json() == chat
