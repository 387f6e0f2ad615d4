"""The command line, run as a user runs it: the real `dziri` executable in a subprocess."""

import json
import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

DZIRI = str(Path(sys.executable).parent / "dziri")


def dziri(*args, env=None, input=None, timeout=120):
    full_env = {**os.environ, **(env or {})}
    return subprocess.run([DZIRI, *args], capture_output=True, text=True, env=full_env, input=input,
                          timeout=timeout)


ECHO = {"DZIRI_BACKEND": "echo"}


def assert_one_line_error(result, *fragments):
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    for fragment in fragments:
        assert fragment in lines[0]


def test_one_shot_chat_then_continue_the_conversation():
    first = dziri("chat", "wach rak?", env=ECHO)
    assert first.returncode == 0, first.stderr
    assert first.stdout.strip() == "echo: wach rak?"
    conversation_id = first.stderr.split("--conversation ")[1].strip(" )\n")
    second = dziri("chat", "labas?", "--conversation", conversation_id, env=ECHO)
    assert second.returncode == 0
    shown = json.loads(dziri("conversations", "show", conversation_id, "--json", env=ECHO).stdout)
    assert [m["content"] for m in shown["messages"]] == ["wach rak?", "echo: wach rak?", "labas?", "echo: labas?"]


def test_interactive_chat_reads_stdin_and_continues_the_latest_conversation():
    dziri("chat", "awel", env=ECHO)
    result = dziri("chat", env=ECHO, input="tani\n/quit\n")
    assert result.returncode == 0, result.stderr
    assert "echo: tani" in result.stdout
    listed = json.loads(dziri("conversations", "list", "--json", env=ECHO).stdout)
    assert len(listed) == 1 and listed[0]["title"] == "awel"
    result = dziri("chat", "--new", env=ECHO, input="jdid\n")
    assert len(json.loads(dziri("conversations", "list", "--json", env=ECHO).stdout)) == 2


def test_conversations_list_show_delete():
    dziri("chat", "salam", env=ECHO)
    listed = json.loads(dziri("conversations", "list", "--json", env=ECHO).stdout)
    conversation_id = listed[0]["id"]
    text = dziri("conversations", "show", conversation_id, env=ECHO).stdout
    assert "user: salam" in text and "assistant (2 tokens" in text and ": echo: salam" in text
    assert dziri("conversations", "delete", conversation_id, "--yes", env=ECHO).returncode == 0
    assert json.loads(dziri("conversations", "list", "--json", env=ECHO).stdout) == []


def test_plugins_json_lists_roles_active_and_errors():
    result = dziri("plugins", "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    active = {role: report[role]["active"] for role in ("backend", "store", "translator")}
    assert active["backend"] == "llamacpp" and active["store"] == "sqlite"
    backends = {p["name"]: p for p in report["backend"]["plugins"]}
    assert backends["llamacpp"]["active"] and backends["llamacpp"]["status"] == "ok"
    assert backends["broken"]["status"] == "error"
    assert "llamacpp" in dziri("plugins").stdout


def test_plugins_checks_each_installed_plugin_against_its_role_without_configuring_it():
    # A store with a misspelt hook: listed as an error though no command has loaded it.
    report = json.loads(dziri("plugins", "--json").stdout)
    stores = {p["name"]: p for p in report["store"]["plugins"]}
    assert stores["misspelt"]["status"] == "error"
    assert "implements unknown hook(s) store_get_usr" in stores["misspelt"]["error"]
    assert stores["sqlite"]["status"] == stores["mongodb"]["status"] == "ok"
    assert all(p["status"] == "ok" for p in report["backend"]["plugins"] if p["name"] != "broken")
    assert "misspelt" in dziri("plugins").stdout.split("ERROR: plugin 'misspelt'")[0]


def test_config_prints_the_effective_config_with_secrets_masked(tmp_path):
    (tmp_path / "dziri.toml").write_text('[backend.openai]\napi_key = "not-a-real-key"\n[chat]\nmax_tokens = 99\n')
    result = dziri("config", env={"DZIRI_STORE": "mongodb"})
    assert result.returncode == 0, result.stderr
    assert "not-a-real-key" not in result.stdout and '"***"' in result.stdout
    assert "max_tokens = 99" in result.stdout and 'use = "mongodb"' in result.stdout
    assert json.loads(dziri("config", "--json").stdout)["config"]["chat"]["max_tokens"] == 99


def test_plugin_commands_are_added_through_the_event_hook():
    result = dziri("echo-hello", env={"DZIRI_LOAD_PLUGINS": "echo"})
    assert result.returncode == 0 and result.stdout.strip() == "hello from dziri-echo"


def test_a_plugin_command_reaches_the_configured_app_through_get_app():
    plugin = {"DZIRI_LOAD_PLUGINS": "echo", **ECHO}
    assert dziri("echo-stats", env=plugin).stdout.strip() == "0 conversations, 0 messages in the sqlite store" \
        " (backend: echo)"
    for text in ("salam", "wach rak", "sahit"):
        assert dziri("chat", text, env=ECHO).returncode == 0
    assert dziri("echo-stats", env=plugin).stdout.startswith("3 conversations, 6 messages in the sqlite store")


def test_get_app_outside_a_command_says_so():
    from dziri.core.cli import get_app
    from dziri.core.errors import PluginError

    with pytest.raises(PluginError, match="only inside a running `dziri` command"):
        get_app()


# Bad input: one clear line, non-zero exit, no traceback.

def test_unknown_plugin_name():
    assert_one_line_error(dziri("chat", "salam", env={"DZIRI_BACKEND": "lamacpp"}),
                          "unknown backend plugin 'lamacpp'", "llamacpp")


def test_malformed_config_file(tmp_path):
    (tmp_path / "dziri.toml").write_text("[backend\n")
    assert_one_line_error(dziri("chat", "salam"), "not valid TOML")


def test_value_of_the_wrong_type(tmp_path):
    (tmp_path / "dziri.toml").write_text('[chat]\nmax_tokens = "many"\n')
    assert_one_line_error(dziri("chat", "salam"), "chat.max_tokens", "valid integer")


@pytest.mark.parametrize("message", ["", "   "])
def test_empty_message(message):
    assert_one_line_error(dziri("chat", message, env=ECHO), "empty")


def test_message_longer_than_the_context_window():
    result = dziri("chat", "kelma " * 500, env={**ECHO, "DZIRI_BACKEND__ECHO__CONTEXT_LENGTH": "128"})
    assert_one_line_error(result, "context window")


def test_conversation_that_does_not_exist():
    assert_one_line_error(dziri("chat", "salam", "--conversation", "nope", env=ECHO), "not found")
    assert_one_line_error(dziri("conversations", "show", "nope", env=ECHO), "not found")


def test_conversation_of_another_user():
    dziri("chat", "sirr", env={**ECHO, "DZIRI_CHAT__LOCAL_USER": "amina"})
    theirs = json.loads(dziri("conversations", "list", "--json",
                              env={**ECHO, "DZIRI_CHAT__LOCAL_USER": "amina"}).stdout)[0]["id"]
    assert_one_line_error(dziri("chat", "salam", "--conversation", theirs, env=ECHO), "not found")
    assert_one_line_error(dziri("conversations", "delete", theirs, "--yes", env=ECHO), "not found")


def test_missing_model_file(tmp_path):
    missing = tmp_path / "nowhere.gguf"
    result = dziri("chat", "salam", env={"DZIRI_BACKEND__LLAMACPP__MODEL_PATH": str(missing)})
    assert_one_line_error(result, str(missing))


def test_corrupt_model_file(tmp_path):
    corrupt = tmp_path / "corrupt.gguf"
    corrupt.write_bytes(b"GGUF" + os.urandom(4096))
    result = dziri("chat", "salam", env={"DZIRI_BACKEND__LLAMACPP__MODEL_PATH": str(corrupt)})
    assert_one_line_error(result, str(corrupt))


def test_database_that_is_not_sqlite(tmp_path):
    bogus = tmp_path / "notes.txt"
    bogus.write_text("my shopping list\n")
    result = dziri("chat", "salam", env={**ECHO, "DZIRI_STORE__SQLITE__PATH": str(bogus)})
    assert_one_line_error(result, str(bogus))
    assert bogus.read_text() == "my shopping list\n"


def test_database_that_is_locked(tmp_path):
    path = tmp_path / "locked.sqlite3"
    dziri("chat", "salam", env={**ECHO, "DZIRI_STORE__SQLITE__PATH": str(path)})
    holder = sqlite3.connect(path)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        result = dziri("chat", "salam", env={**ECHO, "DZIRI_STORE__SQLITE__PATH": str(path),
                                            "DZIRI_STORE__SQLITE__BUSY_TIMEOUT_S": "0.2"})
    finally:
        holder.rollback()
        holder.close()
    assert_one_line_error(result, "locked")


def test_one_shot_on_the_embedded_model_and_a_second_invocation_sees_the_first():
    first = dziri("chat", "wach rak?", "--max-tokens", "16", "--temperature", "0")
    assert first.returncode == 0, first.stderr
    assert first.stdout.strip()
    conversation_id = first.stderr.split("--conversation ")[1].strip(" )\n")
    second = dziri("chat", "w nta?", "--conversation", conversation_id, "--max-tokens", "8")
    assert second.returncode == 0, second.stderr
    shown = json.loads(dziri("conversations", "show", conversation_id, "--json").stdout)
    contents = [m["content"] for m in shown["messages"]]
    assert contents[0] == "wach rak?" and contents[1] == first.stdout.strip() and contents[2] == "w nta?"
    assert [m["role"] for m in shown["messages"]] == ["user", "assistant", "user", "assistant"]


def test_ctrl_c_stops_a_one_shot_reply_and_keeps_what_was_written():
    env = {**os.environ, **ECHO, "DZIRI_BACKEND__ECHO__DELAY_S": "0.3"}
    # 200 words, a minute to say them all: long enough that a busy machine, slow to send the
    # signal, still interrupts the reply and does not see it end by itself.
    words = " ".join(f"w{n}" for n in range(199)) + " ten"
    # Ctrl+C's default action, as in a terminal: a test run started in the background (a
    # shell's `&`, as CI may be) hands its children SIGINT ignored, and Python keeps it so.
    process = subprocess.Popen([DZIRI, "chat", words], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               env=env, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        assert process.stdout.read(5) == "echo:"  # the first piece has arrived
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=60)
    finally:
        process.kill()
    assert process.returncode == 130
    assert "partial reply is saved" in stderr and "Traceback" not in stderr
    conversation_id = json.loads(dziri("conversations", "list", "--json", env=ECHO).stdout)[0]["id"]
    reply = json.loads(dziri("conversations", "show", conversation_id, "--json", env=ECHO).stdout)["messages"][1]
    assert reply["status"] == "partial"
    assert reply["content"].startswith("echo:") and not reply["content"].endswith("ten")


def test_a_conversation_s_own_settings_from_the_command_line():
    assert dziri("chat", "salam", env=ECHO).returncode == 0
    conversation_id = json.loads(dziri("conversations", "list", "--json", env=ECHO).stdout)[0]["id"]
    shown = dziri("conversations", "settings", conversation_id).stdout
    assert "system prompt: (served) You are dziri" in shown and "temperature: (served) 0.7" in shown
    changed = dziri("conversations", "settings", conversation_id, "--system-prompt", "jaweb b darija",
                    "--temperature", "0.2").stdout
    assert "system prompt: jaweb b darija" in changed and "temperature: 0.2" in changed
    assert "temperature: 0.2" in dziri("conversations", "settings", conversation_id, "--system-prompt", "x").stdout
    assert "(served)" in dziri("conversations", "settings", conversation_id, "--reset").stdout
    refused = dziri("conversations", "settings", conversation_id, "--temperature", "3")
    assert refused.returncode == 2 and "0<=x<=2" in refused.stderr  # click's usage error
    assert_one_line_error(dziri("conversations", "settings", "nope"), "not found")


def test_export_and_import_round_trip_exactly_and_a_second_import_is_refused(tmp_path):
    for text in ("smiti Karim", "Kifach ndir CHORBA?"):
        assert dziri("chat", text, env=ECHO).returncode == 0
    conversation_id = json.loads(dziri("conversations", "list", "--json", env=ECHO).stdout)[0]["id"]
    dziri("conversations", "settings", conversation_id, "--temperature", "0.3")
    out = tmp_path / "chats.json"
    assert dziri("conversations", "export", "--all", "--out", str(out)).returncode == 0
    exported = json.loads(out.read_text())
    assert exported["format"] == "dziri-conversations" and len(exported["conversations"]) == 2
    markdown = dziri("conversations", "export", conversation_id, "--format", "md").stdout
    assert markdown.startswith("# Kifach ndir CHORBA?") and "**dziri** ·" in markdown

    elsewhere = {"DZIRI_DATA_DIR": str(tmp_path / "elsewhere")}
    imported = dziri("conversations", "import", str(out), env=elsewhere)
    assert imported.returncode == 0 and "imported 2 conversation(s)" in imported.stderr
    again = dziri("conversations", "export", "--all", env=elsewhere).stdout
    strip = lambda data: [{k: v for k, v in c.items() if k != "id"} for c in data["conversations"]]  # noqa: E731
    assert strip(json.loads(again)) == strip(exported)  # titles, settings, roles, timestamps, figures: all kept

    assert_one_line_error(dziri("conversations", "import", str(out), env=elsewhere), "imported before", "--again")
    assert dziri("conversations", "import", str(out), "--again", env=elsewhere).returncode == 0
    assert len(json.loads(dziri("conversations", "list", "--json", env=elsewhere).stdout)) == 4


@pytest.mark.parametrize("content, message", [
    ("{nope", "not valid JSON"),
    ('{"format": "other", "version": 1, "conversations": []}', "not a dziri export"),
    ('{"format": "dziri-conversations", "version": 9, "conversations": []}', "version 9"),
    ('{"format": "dziri-conversations", "version": 1, "conversations": [{"title": "x"}]}', "started_at"),
    ('{"format": "dziri-conversations", "version": 1, "conversations": [{"started_at": "2026-01-01T00:00:00Z",'
     ' "updated_at": "2026-01-01T00:00:00Z", "messages": [{"role": "robot", "content": "x",'
     ' "timestamp": "2026-01-01T00:00:00Z"}]}]}', "role"),
])
def test_a_bad_import_file_is_one_clear_line_and_imports_nothing(tmp_path, content, message):
    bad = tmp_path / "bad.json"
    bad.write_text(content)
    assert_one_line_error(dziri("conversations", "import", str(bad)), message)
    assert json.loads(dziri("conversations", "list", "--json").stdout) == []
