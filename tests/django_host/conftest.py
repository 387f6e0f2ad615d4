"""API tests: the Django host on the echo backend, over ASGI in this process, on each
store (the embedded SQLite and MongoDB's code on mongomock://)."""

from __future__ import annotations

import os
import tempfile
import uuid
from pathlib import Path
from unittest import mock

import pytest
from api_client import ApiClient
from stevedore import ExtensionManager

from dziri.core import registry

TEST_SECRET_KEY = "test-secret-key-" + "x" * 40


def _configure_django() -> None:
    """Settings are read once per process: read them from a clean environment, so the
    shell's DZIRI_* variables and a dziri.toml lying around cannot leak into them."""
    empty_config = Path(tempfile.mkdtemp(prefix="dziri-test-django-")) / "dziri.toml"
    empty_config.write_text("")
    clean = {k: v for k, v in os.environ.items() if not k.startswith("DZIRI_")}
    clean |= {"DZIRI_SECRET_KEY": TEST_SECRET_KEY, "DZIRI_CONFIG": str(empty_config),
              "DJANGO_SETTINGS_MODULE": "dziri.django_host.settings"}
    with mock.patch.dict(os.environ, clean, clear=True):
        import django

        django.setup(set_prefix=False)
        from django.conf import settings

        settings.ALLOWED_HOSTS = [*settings.ALLOWED_HOSTS, "testserver"]


_configure_django()
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "dziri.django_host.settings")

STORES = ["sqlite", "mongodb"]


@pytest.fixture
def anyio_backend():
    return "asyncio"


@pytest.fixture(autouse=True)
def fast_password_hasher(settings):
    """PBKDF2 costs ~0.3 s a hash on purpose; the tests that are about hashing ask for it."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture(params=STORES)
def store_env(request, monkeypatch):
    """The environment that selects a store; every test runs on each."""
    if request.param == "mongodb":
        if "mongodb" not in registry.installed_names("store"):
            pytest.skip("the mongodb store plugin is not installed yet (`dziri plugins`)")
        monkeypatch.setenv("DZIRI_STORE", "mongodb")
        monkeypatch.setenv("DZIRI_STORE__MONGODB__URI", "mongomock://")
        monkeypatch.setenv("DZIRI_STORE__MONGODB__DATABASE", f"t{uuid.uuid4().hex[:16]}")
    return request.param


@pytest.fixture
def make_host(store_env, monkeypatch):
    """Build Hosts (one per simulated server process) on the echo backend and the selected
    store; extra keyword arguments become DZIRI_* variables for that host's config."""
    from dziri.core.app import App
    from dziri.django_host.host import Host

    hosts = []

    def make(**env):
        monkeypatch.setenv("DZIRI_BACKEND", "echo")
        with mock.patch.dict(os.environ, {f"DZIRI_{k.upper()}": str(v) for k, v in env.items()}):
            host = Host(App())
        hosts.append(host)
        return host

    yield make
    for host in hosts:
        host.close()


@pytest.fixture
def failing_backend(tmp_path, monkeypatch):
    """Install the `failing` test backend (failing_backend.py) for this test only, through an
    entry point like any plugin."""
    from failing_backend import ENTRY_POINTS

    dist_info = tmp_path / "entry-points" / "dziri_failing_backend-1.0.dist-info"
    dist_info.mkdir(parents=True)
    (dist_info / "METADATA").write_text("Metadata-Version: 2.1\nName: dziri-failing-backend\nVersion: 1.0\n")
    (dist_info / "entry_points.txt").write_text(ENTRY_POINTS)
    monkeypatch.syspath_prepend(str(dist_info.parent))
    # stevedore remembers each namespace's entry points for the life of the process.
    monkeypatch.setattr(ExtensionManager, "ENTRY_POINT_CACHE", {})
    return "failing"


@pytest.fixture
def host(make_host):
    return make_host()


@pytest.fixture
async def make_client(host):
    """Clients (browsers, each with its own cookies) on `host`, or on another Host."""
    clients = []

    def make(on=None):
        client = ApiClient(on or host)
        clients.append(client)
        return client

    yield make
    for client in clients:
        await client.aclose()


@pytest.fixture
def api(make_client):
    return make_client()
