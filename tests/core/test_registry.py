import pytest
from pydantic import BaseModel

from dziri.core import registry
from dziri.core.app import App
from dziri.core.errors import ConfigError, PluginError
from dziri.core.hookspecs import hookimpl
from dziri.core.roles import facade_for, new_plugin_manager, register


def test_installed_names_come_from_entry_points_without_importing():
    names = registry.installed_names("backend")
    assert {"llamacpp", "echo", "broken"} <= set(names)
    assert "sqlite" in registry.installed_names("store")


def test_unknown_plugin_lists_the_installed_ones():
    with pytest.raises(PluginError) as info:
        registry.load_plugin_class("backend", "lamacpp")
    message = str(info.value)
    assert "unknown backend plugin 'lamacpp'" in message
    assert "llamacpp" in message and "echo" in message


def test_plugin_that_fails_to_import_names_its_entry_point():
    with pytest.raises(PluginError) as info:
        registry.load_plugin_class("backend", "broken")
    message = str(info.value)
    assert "broken = dziri_no_such_module:Backend" in message
    assert "ModuleNotFoundError" in message


def test_a_broken_unused_plugin_does_not_break_start_up(echo_app):
    # `broken` is installed in dziri.backends and `broken-extension` in dziri.plugins.
    assert echo_app.backend.model_info().name == "echo"


def test_plugin_settings_are_validated_with_the_key_named(monkeypatch):
    monkeypatch.setenv("DZIRI_BACKEND", "echo")
    monkeypatch.setenv("DZIRI_BACKEND__ECHO__DELAY_S", "slow")
    with pytest.raises(ConfigError, match=r"backend\.echo\.delay_s: Input should be a valid number"):
        _ = App().backend


def test_unknown_plugin_setting_is_rejected(monkeypatch, tmp_path):
    (tmp_path / "dziri.toml").write_text('[backend]\nuse = "echo"\n[backend.echo]\nprefx = "x"\n')
    with pytest.raises(ConfigError, match=r"backend\.echo\.prefx: Extra inputs are not permitted"):
        _ = App().backend


def test_extension_loading_is_chosen_by_env(monkeypatch):
    monkeypatch.setenv("DZIRI_LOAD_PLUGINS", "echo")
    loaded = registry.load_extensions()
    assert list(loaded.plugins) == ["echo"] and loaded.errors == {}
    monkeypatch.delenv("DZIRI_LOAD_PLUGINS")
    loaded = registry.load_extensions()
    assert "echo" in loaded.plugins
    assert "ModuleNotFoundError" in loaded.errors["broken-extension"]


def test_describe_installed_reports_active_and_errors():
    report = registry.describe_installed({"backend": "llamacpp", "store": "sqlite", "translator": "nope"})
    backends = {p["name"]: p for p in report["backend"]["plugins"]}
    assert backends["llamacpp"]["active"] and backends["llamacpp"]["status"] == "ok"
    assert backends["broken"]["status"] == "error" and "ModuleNotFoundError" in backends["broken"]["error"]
    translators = {p["name"]: p for p in report["translator"]["plugins"]}
    assert translators["nope"]["error"] == "not installed"


class Settings(BaseModel):
    pass


class MisspeltHook:
    Settings = Settings

    @hookimpl
    def backend_chat(self, messages, options):
        return iter(["x"])

    @hookimpl
    def backend_count_token(self, messages):  # missing "s"
        return 1

    @hookimpl
    def backend_model_info(self):
        return None


class WrongArgument:
    @hookimpl
    def backend_chat(self, messages, options, temperature):
        return iter(["x"])


class MissingHook:
    @hookimpl
    def backend_chat(self, messages, options):
        return iter(["x"])


class StoreHookInABackend(MissingHook):
    @hookimpl
    def backend_count_tokens(self, messages):
        return 1

    @hookimpl
    def backend_model_info(self):
        return None

    @hookimpl
    def store_close(self):
        pass


@pytest.mark.parametrize(
    "plugin_class, expected",
    [
        (MisspeltHook, r"plugin 'bad' implements unknown hook\(s\) backend_count_token"),
        (WrongArgument, r"plugin 'bad' does not match the contract.*backend_chat.*temperature"),
        (MissingHook, r"backend plugin 'bad' is missing hook\(s\): backend_count_tokens, backend_model_info"),
        (StoreHookInABackend, r"plugin 'bad' implements store hook\(s\) store_close"),
    ],
)
def test_registration_rejects_a_wrong_implementation_naming_plugin_and_hook(plugin_class, expected):
    with pytest.raises(PluginError, match=expected):
        facade_for("backend", plugin_class(), name="bad")


def test_a_rejected_plugin_is_not_left_registered():
    pm = new_plugin_manager()
    with pytest.raises(PluginError):
        register(pm, MissingHook(), "bad", "backend")
    assert pm.get_plugin("backend:bad") is None


def test_a_backend_and_an_extension_may_share_a_name(monkeypatch):
    # The example package offers `echo` in dziri.backends and in dziri.plugins.
    monkeypatch.setenv("DZIRI_LOAD_PLUGINS", "echo")
    monkeypatch.setenv("DZIRI_BACKEND", "echo")
    app = App()
    assert app.backend.model_info().name == "echo"
    assert app.pm.get_plugin("backend:echo") is not None and app.pm.get_plugin("extension:echo") is not None
    app.close()


def test_the_contract_kit_names_an_installed_plugin_by_its_entry_point(tmp_path):
    from fakes.stores import MisspeltStore

    from dziri.core.models import PluginContext

    plugin = MisspeltStore(MisspeltStore.Settings(), PluginContext(data_dir=tmp_path))
    with pytest.raises(PluginError, match=r"^plugin 'misspelt' implements unknown hook\(s\) store_get_usr"):
        facade_for("store", plugin)  # installed as `misspelt` in dziri.stores
    with pytest.raises(PluginError, match=r"^plugin 'MisspeltHook' implements unknown hook"):
        facade_for("backend", MisspeltHook())  # not installed: its class names it
    plugin.store_close()


def test_a_store_gets_role_and_status_as_enums_and_an_unknown_one_never(tmp_path):
    from dziri.core.errors import ValidationError
    from dziri.core.models import MessageStatus, PluginContext, Role
    from dziri.plugins.stores.sqlite import SQLiteStore

    seen = []

    class Recording(SQLiteStore):
        @hookimpl
        def store_add_message(self, user_id, conversation_id, role, content, status, error):
            seen.append((type(role), type(status)))
            return super().store_add_message(user_id, conversation_id, role, content, status, error)

        @hookimpl
        def store_update_message(self, user_id, message_id, content, status, error, tokens, tokens_per_second):
            seen.append((type(status),))
            return super().store_update_message(user_id, message_id, content, status, error, tokens,
                                                tokens_per_second)

    store = facade_for("store", Recording(Recording.Settings(), PluginContext(data_dir=tmp_path)), name="recording")
    user = store.create_user("amina", "amina@example.dz", "h")
    conversation = store.create_conversation(user.id, "")
    message = store.add_message(user.id, conversation.id, "assistant", "", "partial")  # strings, as JSON gives
    assert message.role is Role.ASSISTANT and message.status is MessageStatus.PARTIAL
    store.update_message(user.id, message.id, "labas", "complete")
    assert seen == [(Role, MessageStatus), (MessageStatus,)]
    with pytest.raises(ValidationError, match="role must be one of system, user, assistant, not 'robot'"):
        store.add_message(user.id, conversation.id, "robot", "beep")
    with pytest.raises(ValidationError, match="status must be one of"):
        store.update_message(user.id, message.id, "x", "finished")
    assert len(seen) == 2  # neither bad value reached the plugin
    store.close()
