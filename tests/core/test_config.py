import pytest

from dziri.core.config import load_config, masked
from dziri.core.errors import ConfigError


def write(tmp_path, text, name="dziri.toml"):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_no_file_gives_the_embedded_defaults():
    config = load_config()
    assert config.backend.use == "llamacpp"
    assert config.store.use == "sqlite"
    assert config.translator.use == "groq"
    assert config.__dict__["source_file"] is None


def test_file_in_the_working_directory_is_found(tmp_path):
    write(tmp_path, '[chat]\nmax_tokens = 64\n[backend.llamacpp]\nn_ctx = 2048\n')
    config = load_config()
    assert config.chat.max_tokens == 64
    assert config.backend.plugin_settings("llamacpp") == {"n_ctx": 2048}


def test_user_config_dir_is_the_last_resort(tmp_path):
    user_dir = tmp_path / "xdg-config" / "dziri"
    user_dir.mkdir(parents=True)
    write(user_dir, '[store]\nuse = "mongodb"\n')
    assert load_config().store.use == "mongodb"


def test_explicit_path_and_env_path(tmp_path, monkeypatch):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    write(elsewhere, '[backend]\nuse = "echo"\n', "a.toml")
    write(elsewhere, '[backend]\nuse = "other"\n', "b.toml")
    assert load_config(elsewhere / "a.toml").backend.use == "echo"
    monkeypatch.setenv("DZIRI_CONFIG", str(elsewhere / "b.toml"))
    assert load_config().backend.use == "other"
    assert load_config(elsewhere / "a.toml").backend.use == "echo"  # --config wins


def test_explicit_missing_file_is_an_error(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.toml")


def test_env_shorthand_picks_the_plugin_and_keeps_file_tables(tmp_path, monkeypatch):
    write(tmp_path, '[backend]\nuse = "llamacpp"\n[backend.ollama]\nmodel = "dziri"\n')
    monkeypatch.setenv("DZIRI_BACKEND", "ollama")
    monkeypatch.setenv("DZIRI_BACKEND__OLLAMA__HOST", "http://127.0.0.1:9")
    monkeypatch.setenv("DZIRI_STORE", "mongodb")
    monkeypatch.setenv("DZIRI_CHAT__MAX_TOKENS", "32")
    config = load_config()
    assert config.backend.use == "ollama"
    assert config.backend.plugin_settings("ollama") == {"model": "dziri", "host": "http://127.0.0.1:9"}
    assert config.store.use == "mongodb"
    assert config.chat.max_tokens == 32


def test_malformed_toml_names_the_file_and_line(tmp_path):
    path = write(tmp_path, "[backend\nuse = 'x'\n")
    with pytest.raises(ConfigError) as info:
        load_config()
    assert str(path) in str(info.value) and "line 1" in str(info.value)


def test_wrong_type_names_the_key_and_the_expectation(tmp_path):
    write(tmp_path, '[chat]\nmax_tokens = "lots"\n')
    with pytest.raises(ConfigError, match=r"chat\.max_tokens: Input should be a valid integer.*'lots'"):
        load_config()


def test_wrong_type_from_the_environment(monkeypatch):
    monkeypatch.setenv("DZIRI_CHAT__TEMPERATURE", "hot")
    with pytest.raises(ConfigError, match=r"chat\.temperature"):
        load_config()


def test_unknown_top_level_table_is_rejected(tmp_path):
    write(tmp_path, '[bakend]\nuse = "x"\n')
    with pytest.raises(ConfigError, match="bakend: Extra inputs are not permitted"):
        load_config()


def test_empty_plugin_name_is_rejected(tmp_path):
    write(tmp_path, '[backend]\nuse = ""\n')
    with pytest.raises(ConfigError, match="backend.use"):
        load_config()


def test_masking_hides_secrets_but_not_env_var_names():
    data = {"translator": {"groq": {"api_key": "gsk_secret", "api_key_env": "GROQ_API_KEY"}}, "x": {"token": ""}}
    assert masked(data) == {"translator": {"groq": {"api_key": "***", "api_key_env": "GROQ_API_KEY"}},
                            "x": {"token": ""}}


def test_an_invalid_secret_is_not_echoed_in_the_error(tmp_path):
    (tmp_path / "dziri.toml").write_text('[chat]\nmax_tokens = "mongodb://u:hunter2@host"\n')
    with pytest.raises(ConfigError) as info:
        load_config()
    assert "hunter2" not in str(info.value) and "chat.max_tokens" in str(info.value)
