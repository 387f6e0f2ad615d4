"""Configuration: `dziri.toml` plus environment overrides, validated by pydantic-settings.

Lookup order for the file: `--config`, `$DZIRI_CONFIG`, `./dziri.toml`, then the user
config dir; no file is needed. Environment variables override the file:
`DZIRI_BACKEND=ollama` picks a plugin, nested keys use `__`
(`DZIRI_BACKEND__OLLAMA__HOST=...`, `DZIRI_CHAT__MAX_TOKENS=256`).
"""

from __future__ import annotations

import os
import re
import tomllib
from pathlib import Path
from typing import Any, Literal

import platformdirs
from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic import ValidationError as PydanticValidationError
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from .errors import ConfigError

APP_NAME = "dziri"
DEFAULT_PLUGINS = {"backend": "llamacpp", "store": "sqlite", "translator": "groq"}
ROLES = tuple(DEFAULT_PLUGINS)
DEFAULT_SYSTEM_PROMPT = (
    "You are dziri, a friendly Algerian assistant. You understand Darija written in Arabic script or "
    "in Arabizi (Latin letters with 3, 7, 9), French and English. Answer briefly and helpfully, in "
    "the language and script the user writes in, and say so when you do not know."
)


class RoleSection(BaseModel):
    """`[backend]`, `[store]`, `[translator]`: `use` names the plugin; each plugin's own
    settings live in a sub-table named after it, validated by the plugin's Settings model."""

    model_config = ConfigDict(extra="allow")

    use: str = Field(min_length=1)

    def plugin_settings(self, name: str) -> dict[str, Any]:
        section = (self.model_extra or {}).get(name, {})
        if not isinstance(section, dict):
            raise ConfigError(f"[{name}] must be a table of settings, got {section!r}")
        return section


class ChatSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    system_prompt: str = DEFAULT_SYSTEM_PROMPT
    max_tokens: int = Field(default=512, ge=1)
    temperature: float = Field(default=0.7, ge=0.0, le=2.0)
    top_p: float = Field(default=0.95, gt=0.0, le=1.0)
    max_message_chars: int = Field(default=16_000, ge=1)
    history_messages: int = Field(default=200, ge=1)  # loaded from the store before token trimming
    local_user: str = Field(default="local", min_length=1)  # whose history `dziri chat` keeps


class WebSettings(BaseModel):
    """`[web]`: the chat site that `dziri serve` runs."""

    model_config = ConfigDict(extra="forbid")

    host: str = Field(default="127.0.0.1", min_length=1)
    port: int = Field(default=8000, ge=1, le=65535)
    max_concurrent_replies: int = Field(default=1, ge=1)  # replies generated at once, per server process
    max_waiting: int = Field(default=8, ge=0)  # more may wait for the model; beyond that the API answers 503
    secret_key_file: str = ""  # empty: <data dir>/secret_key (0600); $DZIRI_SECRET_KEY wins over the file
    allowed_hosts: list[str] = Field(default_factory=list)  # besides localhost and `host`
    csrf_trusted_origins: list[str] = Field(default_factory=list)  # e.g. "https://chat.example.org" behind a proxy


class TrainingSettings(BaseModel):
    """`[training]`: what `dziri train` does. CLI options override these.

    Two engines: `peft` (transformers + peft + trl on the CPU, the embedded base models) and
    `unsloth` (an NVIDIA GPU; the seed's Qwen2.5-7B-Instruct recipe). A field the user does
    not set (None) takes the engine's recipe default (training/sft.py RECIPES).
    """

    model_config = ConfigDict(extra="forbid")

    engine: Literal["peft", "unsloth"] = "peft"
    base_model: str = ""  # peft: gemma3-270m, smollm2-135m or a GGUF file; unsloth: a model name or dir
    output_dir: str = ""  # empty: <data dir>/training/<base model>
    tasks: list[Literal["darija_to_english", "english_to_darija", "chat"]] = Field(
        default_factory=lambda: ["darija_to_english", "english_to_darija", "chat"]
    )
    chat_data: str = ""  # conversations to learn chatting from (data/darija-chat/train.jsonl); --chat
    # The share of translation examples among all examples when there are conversations too
    # (drawn, or repeated, to reach it); None: every pair's examples, as many as they are.
    translation_share: float | None = Field(default=None, ge=0.0, lt=1.0)
    heldout_fraction: float = Field(default=0.1, ge=0.0, lt=1.0)
    quantization: Literal["none", "4bit"] = "none"  # "4bit" is QLoRA (unsloth engine, bitsandbytes)
    lora_r: int | None = Field(default=None, ge=1)
    lora_alpha: int | None = Field(default=None, ge=1)
    lora_dropout: float | None = Field(default=None, ge=0.0, lt=1.0)
    target_modules: list[str] = Field(
        default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    )
    learning_rate: float | None = Field(default=None, gt=0.0)
    epochs: float | None = Field(default=None, gt=0.0)
    max_steps: int = Field(default=-1, ge=-1)  # -1: as many as the epochs take
    batch_size: int | None = Field(default=None, ge=1)  # sequences (or packed blocks) per step
    max_length: int | None = Field(default=None, ge=16)  # tokens per sequence or packed block
    packing: bool = True  # several short examples per block (the Darija pairs are short)
    # CPU engine: "bf16" holds the frozen base in bf16 and runs the step under bf16 autocast
    # (LoRA weights and optimizer state stay fp32); "auto" picks it where the CPU has bf16
    # instructions (avx512_bf16, amx_bf16), fp32 elsewhere.
    precision: Literal["auto", "bf16", "fp32"] = "auto"
    seed: int = 42
    save_steps: int = Field(default=25, ge=1)  # a checkpoint to resume from every this many steps
    threads: int = Field(default=0, ge=0)  # CPU threads; 0: all the CPUs this process may use


class DziriConfig(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="DZIRI_", env_nested_delimiter="__", extra="forbid")

    backend: RoleSection = RoleSection(use=DEFAULT_PLUGINS["backend"])
    store: RoleSection = RoleSection(use=DEFAULT_PLUGINS["store"])
    translator: RoleSection = RoleSection(use=DEFAULT_PLUGINS["translator"])
    chat: ChatSettings = ChatSettings()
    web: WebSettings = WebSettings()
    training: TrainingSettings = TrainingSettings()
    data_dir: str = ""  # empty: the user data dir

    @model_validator(mode="before")
    @classmethod
    def _default_plugin_names(cls, data: Any) -> Any:
        # A file with only `[backend.llamacpp]` keeps the default `use`.
        if isinstance(data, dict):
            for role, name in DEFAULT_PLUGINS.items():
                if isinstance(data.get(role), dict):
                    data[role] = {"use": name, **data[role]}
        return data

    @classmethod
    def settings_customise_sources(
        cls, settings_cls, init_settings, env_settings, dotenv_settings, file_secret_settings
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, _EnvWithRoleShorthand(settings_cls)]
        if settings_cls.model_config.get("toml_file"):
            sources.append(TomlConfigSettingsSource(settings_cls))
        return tuple(sources)

    def resolved_data_dir(self) -> Path:
        path = Path(self.data_dir).expanduser() if self.data_dir else Path(platformdirs.user_data_dir(APP_NAME))
        return path


class _EnvWithRoleShorthand(EnvSettingsSource):
    """`DZIRI_BACKEND=ollama` means `backend.use = "ollama"`; pydantic-settings would
    otherwise try to parse it as a whole JSON table and drop the file's plugin tables."""

    def __call__(self) -> dict[str, Any]:
        env_vars = dict(self.env_vars)
        shorthand = {role: env_vars.pop(f"dziri_{role}") for role in ROLES if env_vars.get(f"dziri_{role}")}
        self.env_vars = env_vars
        data = super().__call__()
        for role, use in shorthand.items():
            data.setdefault(role, {})["use"] = use
        return data


def find_config_file(explicit: str | os.PathLike | None = None) -> Path | None:
    """The file to read: an explicit or $DZIRI_CONFIG path must exist; the others are optional."""
    for given, origin in ((explicit, "--config"), (os.environ.get("DZIRI_CONFIG"), "DZIRI_CONFIG")):
        if given:
            path = Path(given).expanduser()
            if not path.is_file():
                raise ConfigError(f"config file {path} (from {origin}) does not exist")
            return path
    for candidate in (Path.cwd() / "dziri.toml", Path(platformdirs.user_config_dir(APP_NAME)) / "dziri.toml"):
        if candidate.is_file():
            return candidate
    return None


def load_config(path: str | os.PathLike | None = None) -> DziriConfig:
    """Read the effective configuration; every problem becomes one ConfigError line."""
    config_file = find_config_file(path)
    settings_cls = DziriConfig
    if config_file is not None:
        _check_toml_syntax(config_file)
        with_file = {**DziriConfig.model_config, "toml_file": config_file}
        settings_cls = type("DziriConfigFromFile", (DziriConfig,), {"model_config": with_file})
    try:
        config = settings_cls()
    except PydanticValidationError as exc:
        raise ConfigError(describe_validation_error(exc, where=config_file)) from None
    config.__dict__["source_file"] = config_file  # informational, not a setting
    return config


def _check_toml_syntax(path: Path) -> None:
    try:
        tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path} is not valid TOML: {exc}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read config file {path}: {exc}") from None


def describe_validation_error(exc: PydanticValidationError, prefix: str = "", where: Path | None = None) -> str:
    """One line per invalid key: `backend.llamacpp.n_ctx: Input should be a valid integer (got 'abc')`."""
    problems = []
    for error in exc.errors():
        key = ".".join(str(part) for part in (prefix, *error["loc"]) if part != "")
        shows_input = error["type"] != "missing" and not isinstance(error["input"], dict)
        # A secret's value (a key, a URI's password) is never echoed back.
        field = str(error["loc"][-1]) if error["loc"] else ""
        got = f" (got {masked(error['input'], field)!r})" if shows_input else ""
        problems.append(f"{key or '(root)'}: {error['msg']}{got}")
    origin = f" in {where} or the environment" if where else ""
    return f"invalid configuration{origin}: " + "; ".join(problems)


SECRET_WORDS = {"key", "secret", "password", "token", "apikey"}  # as words: `max_tokens` is no secret


def masked(data: Any, key: str = "") -> Any:
    """A copy of config data with every value whose key names a secret replaced by '***'."""
    if isinstance(data, dict):
        return {k: masked(v, k) for k, v in data.items()}
    if isinstance(data, list):
        return [masked(v, key) for v in data]
    words = key.lower().replace("-", "_").split("_")
    if data and any(word in SECRET_WORDS for word in words) and words[-1] != "env":
        return "***"
    if isinstance(data, str):  # a URI with a password in it (mongodb://user:pw@host)
        return _URI_PASSWORD.sub(r"\1***@", data)
    return data


_URI_PASSWORD = re.compile(r"(\b[a-z][a-z0-9+.-]*://[^:/?#@\s]*:)[^\s]*@", re.IGNORECASE)
