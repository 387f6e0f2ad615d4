"""`dziri serve`: check the configuration once, then run uvicorn on the ASGI application."""

from __future__ import annotations

import os
from pathlib import Path

import click

from dziri.core.app import App
from dziri.core.config import load_config

from . import secret


def serve(config_path: str | None, host: str | None, port: int | None, workers: int) -> None:
    import uvicorn

    # Worker processes read the same configuration: the file through DZIRI_CONFIG, and the
    # address through the environment so that settings.ALLOWED_HOSTS includes it.
    if config_path:
        os.environ["DZIRI_CONFIG"] = str(Path(config_path).resolve())
    config = load_config()
    host = host or config.web.host
    port = port or config.web.port
    os.environ["DZIRI_WEB__HOST"] = host
    os.environ["DZIRI_WEB__PORT"] = str(port)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "dziri.django_host.settings")
    # Fail here with one line, not once per worker: a bad plugin name or setting, a store
    # that cannot open. The SQLite store also migrates its file here, before workers race.
    app = App(load_config())
    try:
        app.store  # noqa: B018
        app.backend  # noqa: B018
    finally:
        app.close()
    secret.secret_key(config)  # created once, before the workers read it
    shown = f"[{host}]" if ":" in host else host
    click.echo(f"dziri: serving http://{shown}:{port} · backend {config.backend.use} · store {config.store.use}"
               f" · {workers} worker{'s' if workers > 1 else ''} · Ctrl+C stops", err=True)
    uvicorn.run("dziri.django_host.asgi:application", host=host, port=port, workers=workers,
                lifespan="on", timeout_graceful_shutdown=10, server_header=False, log_level="info")
