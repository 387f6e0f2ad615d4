"""`dziri eval --task chat`: the reply checks, one by one, and a run through ChatService on
the test backends (echo, and a scripted one) so that every check is seen to fail and pass."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dziri.core.config import DziriConfig
from dziri.core.errors import ValidationError
from dziri.training.chat_eval import (
    check_reply,
    contains_any,
    evaluate_chat,
    is_echo,
    is_looping,
    read_chat_items,
    write_chat_outputs,
)
from dziri.training.conversations import Conversation, read_conversations


def item(*user_turns: str, lang="arabizi", **expect) -> Conversation:
    messages = tuple({"role": "user", "content": t} for t in user_turns)
    return Conversation(id="x", messages=messages, lang=lang, memory=tuple(expect.get("memory", ())),
                        keywords=tuple(expect.get("keywords", ())), reply_lang=expect.get("reply_lang"))


def test_a_good_arabizi_reply_passes_every_check():
    check = check_reply("labas hamdoullah, w nta kirak? wach nedjem n3awnek?", item("wach rak?"))
    assert check.language == "arabizi" and check.good


@pytest.mark.parametrize("reply, failed", [
    ("Who told you the news?", "translation"),  # the seed model's English "answer"
    ("In English: how are you?", "translation"),
    ("wach rak?", "echo"),
    ("Wach rak ?", "echo"),
    ("kifach rak, kifach rak, kifach rak, kifach rak", "looping"),
    ("واش راك خويا؟ لاباس", "language"),  # Arabic script to an Arabizi user
])
def test_each_bad_reply_fails_its_check(reply, failed):
    check = check_reply(reply, item("wach rak?"))
    assert not check.good
    flags = {"translation": check.translation, "echo": check.echo, "looping": check.looping,
             "language": not check.language_ok}
    assert flags[failed], check


def test_the_reply_follows_the_users_script_and_language():
    assert check_reply("لاباس الحمد لله، وانت كيراك؟", item("واش راك؟", lang="arabic")).good
    assert check_reply("Je m'appelle dziri, je suis un assistant.", item("Comment tu t'appelles ?",
                                                                        lang="french")).good
    assert check_reply("I'm fine, thanks! How can I help?", item("How are you?", lang="english")).good
    # Darija with French mixed in may be answered in French as well as in Latin-letter Darija.
    assert check_reply("C'est normal, repose-toi bien ce soir.", item("rani fatigué bezzaf", lang="mixed")).good
    assert not check_reply("I am tired too.", item("rani fatigué bezzaf", lang="mixed")).good


def test_a_translation_asked_for_is_a_good_reply_when_quoted_in_the_users_language():
    asked = item("kifach nqoulou rani ta3ban b lfransi?", keywords=["fatigué"])
    assert check_reply("b lfransi nqoulou « je suis fatigué ».", asked).good
    english = item("traduisi liya: wach rak", reply_lang="english")
    assert check_reply("How are you?", english).good


def test_memory_and_keywords_match_across_spellings():
    remembered = item("smiti Karim", "chkoun smiti?", memory=["Karim", "كريم"])
    assert check_reply("smitek Karim!", remembered).memory_ok
    assert check_reply("اسمك كريم", item("اسمي كريم", "واش اسمي؟", lang="arabic", memory=["كريم"])).memory_ok
    assert check_reply("ma3labalich, goulili smitek", remembered).memory_ok is False
    assert contains_any("Sétif w l'Eulma", ["setif"]) and contains_any("إسمي أحمد", ["اسمي احمد"])
    assert check_reply("ndir chorba", item("wach ndir lyoum?", keywords=["frik"])).topical_ok is False


def test_echo_and_looping_are_not_confused_with_a_normal_reply():
    assert not is_echo("chorba frik tetteyeb b l7am w l frik", "kifach ndir chorba frik?")
    assert not is_looping("9li l7am m3a bsal, zid tomate w frik, w khalliha 40 d9i9a 3la nar hadya.")
    assert is_looping("Hello, how are you, how are you, how are you, how are you")
    assert not is_looping("")


def test_items_must_say_the_language_of_the_reply(tmp_path):
    data = tmp_path / "chat.jsonl"
    data.write_text(json.dumps({"messages": [{"role": "user", "content": "slm"}]}) + "\n", encoding="utf-8")
    with pytest.raises(ValidationError, match="lang"):
        read_chat_items(data)


@pytest.mark.parametrize("line, message", [
    ('{"messages": []}', "non-empty"),
    ('{"messages": [{"role": "system", "content": "x"}], "lang": "arabizi"}', "role"),
    ('{"messages": [{"role": "user", "content": "a"}, {"role": "user", "content": "b"}, '
     '{"role": "assistant", "content": "c"}], "lang": "arabizi"}', "alternate"),
    ('{"messages": [{"role": "user", "content": "a"}], "lang": "klingon"}', "lang must be"),
    ('{"messages": [{"role": "user", "content": "a"}], "lang": "arabic", "memory": "Karim"}', "memory"),
    ('not json', "not valid JSON"),
])
def test_bad_conversation_files_are_one_clear_error(tmp_path, line, message):
    data = tmp_path / "bad.jsonl"
    data.write_text(line + "\n" + line + "\n", encoding="utf-8")
    with pytest.raises(ValidationError, match=message):
        read_conversations(data)


def test_the_user_turns_go_through_chat_service_into_a_scratch_store(tmp_path):
    """A scripted test backend answers: the first item well, the second forgets the name; the
    store the user configured is never written."""
    data = tmp_path / "chat.jsonl"
    rows = [
        {"id": 1, "lang": "arabizi", "keywords": ["labas"], "messages": [{"role": "user", "content": "wach rak?"}]},
        {"id": "b", "lang": "arabizi", "memory": ["Karim"], "messages": [
            {"role": "user", "content": "smiti Karim"}, {"role": "assistant", "content": "marhba Karim"},
            {"role": "user", "content": "chkoun smiti?"}, {"role": "assistant", "content": "smitek Karim"}]},
    ]
    data.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    user_store = tmp_path / "mine.sqlite3"
    script = {"wach rak?": "labas hamdoullah, w nta?", "smiti Karim": "marhba bik khouya!",
              "chkoun smiti?": "ma3labalich, goulili smitek"}
    config = DziriConfig(backend={"use": "scripted", "scripted": {"replies": script}},
                         store={"use": "sqlite", "sqlite": {"path": str(user_store)}}, data_dir=str(tmp_path / "d"))
    result = evaluate_chat(data, {"": config}, progress=False)
    run = result.systems["scripted"]
    assert run.replies == [["labas hamdoullah, w nta?"], ["marhba bik khouya!", "ma3labalich, goulili smitek"]]
    assert [c.good for c in run.checks] == [True, False]
    rates = run.rates()
    assert rates["good"] == 0.5 and rates["memory"] == 0.0 and rates["topical"] == 1.0 and rates["language"] == 1.0
    assert not user_store.exists()
    out = write_chat_outputs(result, tmp_path / "out.jsonl")
    second = json.loads(Path(out).read_text(encoding="utf-8").splitlines()[1])
    assert second["id"] == "b" and second["systems"]["scripted"]["memory_ok"] is False
    assert result.to_dict()["systems"]["scripted"]["rates"]["good"] == 0.5
    assert "good" in result.render() and "50%" in result.render()
