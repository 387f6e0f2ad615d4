"""Django's SECRET_KEY (it signs the session data): `$DZIRI_SECRET_KEY`, else a key
generated once and kept in a file only its owner can read (0600), so that every server
process on the machine, and every restart, uses the same one."""

from __future__ import annotations

import os
import secrets
import stat
from pathlib import Path

from dziri.core.config import DziriConfig
from dziri.core.errors import ConfigError

ENV_VAR = "DZIRI_SECRET_KEY"
FILENAME = "secret_key"
MIN_LENGTH = 32


def secret_key_path(config: DziriConfig) -> Path:
    configured = config.web.secret_key_file
    return Path(configured).expanduser() if configured else config.resolved_data_dir() / FILENAME


def secret_key(config: DziriConfig) -> str:
    from_env = os.environ.get(ENV_VAR, "")
    if from_env:
        if len(from_env) < MIN_LENGTH:
            raise ConfigError(f"{ENV_VAR} is too short: use at least {MIN_LENGTH} random characters")
        return from_env
    return load_or_create(secret_key_path(config))


def load_or_create(path: Path) -> str:
    try:
        return _read(path)
    except FileNotFoundError:
        pass
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        # Written to a private temporary file, then linked into place: a second process that
        # races this one either sees no file or the whole key, and the first link wins.
        temporary = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(descriptor, "w") as file:
                file.write(secrets.token_urlsafe(50) + "\n")
                file.flush()
                os.fsync(file.fileno())
            try:
                os.link(temporary, path)
            except FileExistsError:
                pass  # another process was first: use its key
        finally:
            temporary.unlink(missing_ok=True)
        return _read(path)
    except OSError as exc:
        raise ConfigError(f"cannot create the secret key file {path}: {exc.strerror or exc}") from None


def _read(path: Path) -> str:
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:  # readable by others: tighten it rather than run with a leaked-looking key
        os.chmod(path, 0o600)
    key = path.read_text(encoding="utf-8").strip()
    if len(key) < MIN_LENGTH:
        raise ConfigError(f"the secret key in {path} is too short: delete the file to generate a new one")
    return key
