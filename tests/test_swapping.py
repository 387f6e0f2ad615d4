"""Swapping plugins by configuration alone: the same CLI chat flow on other backends and
stores stores the same records as the defaults do.

Each combination is the environment a user would set. The flow runs the real `dziri`
command in a subprocess — except on a store that lives in one process's memory
(`mongomock://`), where every step runs the same CLI in this process instead, since a
conversation could not outlive the first command. Adding a combination is one entry in
COMBINATIONS.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest
from click.testing import CliRunner
from fakes.fixtures import free_port

from dziri.core import registry
from dziri.core.cli import cli

DZIRI = str(Path(sys.executable).parent / "dziri")


@dataclass
class Result:
    returncode: int
    stdout: str
    stderr: str


def run_subprocess(args: tuple[str, ...], env: dict[str, str]) -> Result:
    done = subprocess.run([DZIRI, *args], capture_output=True, text=True, env={**os.environ, **env}, timeout=120)
    return Result(done.returncode, done.stdout, done.stderr)


def run_in_process(args: tuple[str, ...], env: dict[str, str]) -> Result:
    done = CliRunner().invoke(cli, list(args), env=env, prog_name="dziri")
    if done.exception and not isinstance(done.exception, SystemExit):
        raise done.exception
    return Result(done.exit_code, done.stdout, done.stderr)


def ollama(fake) -> dict[str, str]:
    return {"DZIRI_BACKEND": "ollama", "DZIRI_BACKEND__OLLAMA__HOST": fake.host}


def sqlite(_) -> dict[str, str]:
    return {"DZIRI_STORE": "sqlite"}


def mongomock(_) -> dict[str, str]:
    # A database of its own: mongomock's memory is shared by every test in this process.
    return {"DZIRI_STORE": "mongodb", "DZIRI_STORE__MONGODB__URI": "mongomock://",
            "DZIRI_STORE__MONGODB__DATABASE": f"swap{uuid.uuid4().hex[:12]}"}


# name: (backend, store, runner); the store's plugin must be installed for its case to run.
COMBINATIONS = {
    "ollama+sqlite": (ollama, sqlite, run_subprocess),
    "ollama+mongodb": (ollama, mongomock, run_in_process),
}


def store_name(store) -> str:
    return store(None)["DZIRI_STORE"]


def conversation_id_from(result: Result) -> str:
    return result.stderr.split("--conversation ")[1].strip(" )\n")


def shape(shown: dict) -> dict:
    """What the records look like, without their values: fields and their JSON types."""
    def fields(record: dict) -> dict[str, str]:
        return {key: type(value).__name__ for key, value in record.items()}

    return {
        "conversation": fields(shown["conversation"]),
        "messages": [(m["role"], m["status"], fields(m)) for m in shown["messages"]],
    }


@pytest.fixture(scope="module")
def default_run_shape(tmp_path_factory) -> dict:
    """The same flow once on the defaults (embedded llama.cpp, SQLite), for the module:
    the embedded model takes seconds to answer. Its environment is built here, as the
    isolation fixture does for each test."""
    home = tmp_path_factory.mktemp("defaults")
    env = {k: v for k, v in os.environ.items() if not k.startswith("DZIRI_")}
    env.update(DZIRI_DATA_DIR=str(home / "data"), DZIRI_LOAD_PLUGINS="", XDG_CONFIG_HOME=str(home / "xdg-config"))

    def run(*args: str) -> Result:
        done = subprocess.run([DZIRI, *args], capture_output=True, text=True, env=env, cwd=home, timeout=120)
        return Result(done.returncode, done.stdout, done.stderr)

    first = run("chat", "wach rak?", "--max-tokens", "4", "--temperature", "0")
    assert first.returncode == 0, first.stderr
    conversation_id = conversation_id_from(first)
    second = run("chat", "w nta?", "--conversation", conversation_id, "--max-tokens", "4")
    assert second.returncode == 0, second.stderr
    return shape(json.loads(run("conversations", "show", conversation_id, "--json").stdout))


@pytest.mark.parametrize("combination", COMBINATIONS.values(), ids=COMBINATIONS.keys())
def test_the_cli_chat_flow_stores_the_same_records_as_the_defaults(combination, fake_ollama, default_run_shape):
    backend, store, run = combination
    if store_name(store) not in registry.installed_names("store"):
        pytest.skip(f"the {store_name(store)} store plugin is not installed")
    env = {**backend(fake_ollama), **store(fake_ollama)}

    fake_ollama.reply = "labas, hamdoullah"
    first = run(("chat", "wach rak?"), env)
    assert first.returncode == 0, first.stderr
    assert first.stdout.strip() == "labas, hamdoullah"
    conversation_id = conversation_id_from(first)

    fake_ollama.reply = "ana tani labas"
    second = run(("chat", "w nta?", "--conversation", conversation_id), env)
    assert second.returncode == 0, second.stderr
    assert second.stdout.strip() == "ana tani labas"
    # The continuation sent the whole conversation to the backend, after the system prompt.
    sent = fake_ollama.last_request("/api/chat").body["messages"]
    assert [(m["role"], m["content"]) for m in sent[1:]] == [
        ("user", "wach rak?"), ("assistant", "labas, hamdoullah"), ("user", "w nta?")]
    assert sent[0]["role"] == "system"

    listed = json.loads(run(("conversations", "list", "--json"), env).stdout)
    assert [c["id"] for c in listed] == [conversation_id] and listed[0]["title"] == "wach rak?"
    shown = json.loads(run(("conversations", "show", conversation_id, "--json"), env).stdout)
    assert [(m["role"], m["content"], m["status"]) for m in shown["messages"]] == [
        ("user", "wach rak?", "complete"), ("assistant", "labas, hamdoullah", "complete"),
        ("user", "w nta?", "complete"), ("assistant", "ana tani labas", "complete")]
    assert {m["conversation_id"] for m in shown["messages"]} == {conversation_id}
    assert {m["user_id"] for m in shown["messages"]} == {shown["conversation"]["user_id"]}
    assert shape(shown) == default_run_shape

    report = json.loads(run(("plugins", "--json"), env).stdout)
    assert report["backend"]["active"] == "ollama" and report["store"]["active"] == store_name(store)
    for role, name in (("backend", "ollama"), ("store", store_name(store))):
        plugin = next(p for p in report[role]["plugins"] if p["name"] == name)
        assert plugin["active"] and plugin["status"] == "ok", plugin


# What a user sees when the swapped-in service misbehaves: one line, and nothing lost.

def assert_one_line_error(result: Result, *fragments: str) -> None:
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def test_a_reply_cut_off_by_ollama_is_kept_and_marked_error(fake_ollama):
    env = ollama(fake_ollama)
    fake_ollama.reply, fake_ollama.break_after = "one two three four five", 3
    result = run_subprocess(("chat", "3odd m3aya"), env)
    assert result.stdout.startswith("one two three")
    assert_one_line_error(result, "the connection to Ollama at " + fake_ollama.host, "broke")
    conversation_id = json.loads(run_subprocess(("conversations", "list", "--json"), env).stdout)[0]["id"]
    shown = json.loads(run_subprocess(("conversations", "show", conversation_id, "--json"), env).stdout)
    reply = shown["messages"][1]
    assert (reply["status"], reply["content"]) == ("error", "one two three")
    assert fake_ollama.host in reply["error"]


def test_a_model_missing_from_ollama_says_how_to_create_it(fake_ollama):
    result = run_subprocess(("chat", "salam"), {**ollama(fake_ollama), "DZIRI_BACKEND__OLLAMA__MODEL": "dziri-v2"})
    assert_one_line_error(result, "model 'dziri-v2' is not on the Ollama server", "ollama create dziri-v2 -f Modelfile")


def test_ollama_that_is_down_is_named(fake_ollama):
    host = f"http://127.0.0.1:{free_port()}"
    result = run_subprocess(("chat", "salam"), {"DZIRI_BACKEND": "ollama", "DZIRI_BACKEND__OLLAMA__HOST": host})
    assert_one_line_error(result, f"cannot connect to Ollama at {host}")
