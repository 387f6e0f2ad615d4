"""Health, plugins, the single-page site and its static files, and the model's queue."""

from __future__ import annotations

import threading
import time

import pytest

from dziri.core import registry
from dziri.core.errors import StoreError

pytestmark = pytest.mark.anyio


async def test_health_is_ok_when_backend_and_store_answer(api, store_env):
    response = await api.get("/api/health")
    assert response.status_code == 200
    assert response.json() == {
        "status": "ok",
        "backend": {"plugin": "echo", "status": "ok", "model": "echo", "context_length": 2048},
        "store": {"plugin": store_env, "status": "ok"},
    }


async def test_health_is_503_when_the_backend_is_down(failing_backend, make_host, make_client):
    api = make_client(make_host(backend=failing_backend, backend__failing__unavailable="true"))
    response = await api.get("/api/health")
    assert response.status_code == 503 and response.headers["retry-after"] == "5"
    body = response.json()
    assert body["status"] == "unavailable" and body["store"]["status"] == "ok"
    assert body["backend"]["status"] == "unavailable"
    assert body["backend"]["error"]["code"] == "backend_unavailable"
    # The reason may name hosts and files: anonymous callers get only the code.
    assert "connection refused" not in body["backend"]["error"]["message"]
    await api.register("amina")
    body = (await api.get("/api/health")).json()
    assert "connection refused" in body["backend"]["error"]["message"]


async def test_health_is_503_when_the_store_is_down(api, host, monkeypatch):
    def unavailable(key):
        raise StoreError("cannot open the database")

    monkeypatch.setattr(host.app.store, "load_session", unavailable)
    response = await api.get("/api/health")
    assert response.status_code == 503
    store = response.json()["store"]
    assert (store["plugin"], store["status"]) == (host.app.config.store.use, "unavailable")
    assert store["error"]["code"] == "store_unavailable"
    assert "cannot open the database" not in store["error"]["message"]  # no session can be read: anonymous


async def test_health_names_an_unknown_backend_plugin(make_host, make_client):
    api = make_client(make_host(backend="nosuchplugin"))
    body = (await api.get("/api/health")).json()
    assert body["backend"]["status"] == "unavailable" and body["backend"]["error"]["code"] == "plugin_error"


async def test_plugins_lists_what_dziri_plugins_lists(api, host):
    await api.register("amina")
    response = await api.get("/api/plugins")
    assert response.status_code == 200
    body = response.json()
    config = host.app.config
    assert body == registry.describe_installed({role: getattr(config, role).use for role in registry.NAMESPACES})
    assert body["backend"]["active"] == "echo"


# ---- the site ----------------------------------------------------------------------------------

@pytest.fixture
def built_site(tmp_path, settings):
    """A stand-in for the Vite build, and a host started after it exists (whitenoise scans
    the directory once, at start-up)."""
    dist = tmp_path / "dist"
    (dist / "assets").mkdir(parents=True)
    (dist / "index.html").write_text('<!doctype html><script type="module" src="/static/assets/index-AbCd1234.js">'
                                     "</script><div id=root></div>")
    (dist / "assets" / "index-AbCd1234.js").write_text("console.log('dziri')")
    (dist / "favicon.svg").write_text("<svg/>")
    settings.FRONTEND_DIST = str(dist)
    settings.STATIC_ROOT = str(dist)
    return dist


async def test_the_built_site_is_served(built_site, make_host, make_client):
    api = make_client(make_host())
    for path in ["/", "/c/123", "/settings/profile"]:  # the app routes on the client
        page = await api.get(path)
        assert page.status_code == 200 and page.text == (built_site / "index.html").read_text()
        assert page.headers["content-type"] == "text/html; charset=utf-8"
        assert page.headers["cache-control"] == "no-cache"
    asset = await api.get("/static/assets/index-AbCd1234.js")
    assert asset.status_code == 200 and asset.text == "console.log('dziri')"
    assert "immutable" in asset.headers["cache-control"]  # a hashed name never changes
    assert asset.headers["x-content-type-options"] == "nosniff"
    icon = await api.get("/static/favicon.svg")
    assert icon.status_code == 200 and "immutable" not in icon.headers["cache-control"]
    missing = await api.get("/static/assets/nope.js")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"
    assert (await api.request("HEAD", "/static/assets/index-AbCd1234.js")).status_code == 200


async def test_without_a_build_the_site_says_how_to_build_it(api, settings, tmp_path):
    settings.FRONTEND_DIST = str(tmp_path / "not-built")
    page = await api.get("/")
    assert page.status_code == 200 and "make run" in page.text and "/api/health" in page.text
    assert (await api.get("/api/health")).status_code == 200  # the API works all the same


async def test_the_site_takes_only_get(api):
    response = await api.post("/some/page", {})
    assert response.status_code in {403, 405}  # CSRF first, when the token is missing
    await api.get("/api/auth/csrf")
    assert (await api.post("/some/page", {})).status_code == 405


# ---- the model's queue ----------------------------------------------------------------------

def test_the_gate_admits_in_order_and_refuses_beyond_its_size():
    from dziri.django_host.errors import Busy
    from dziri.django_host.host import ReplyGate

    gate = ReplyGate(concurrency=1, max_waiting=2)
    tickets = [gate.admit() for _ in range(3)]
    with pytest.raises(Busy) as refused:
        gate.admit()
    assert 1 <= refused.value.retry_after_s <= 60
    started = []

    def run(index):
        assert tickets[index].wait_turn()
        started.append(index)
        time.sleep(0.02)
        tickets[index].release()

    threads = [threading.Thread(target=run, args=(i,)) for i in (2, 1, 0)]  # started out of order
    for thread in threads:
        thread.start()
        time.sleep(0.01)
    for thread in threads:
        thread.join(5)
    assert started == [0, 1, 2]  # served in arrival order all the same
    assert (gate.running, gate.waiting) == (0, 0)


def test_a_cancelled_ticket_gives_up_its_place():
    from dziri.django_host.host import ReplyGate

    gate = ReplyGate(concurrency=1, max_waiting=1)
    running, waiting = gate.admit(), gate.admit()
    assert running.wait_turn()
    result = []
    thread = threading.Thread(target=lambda: result.append(waiting.wait_turn()))
    thread.start()
    waiting.cancel()
    thread.join(5)
    assert result == [False]
    waiting.release()
    running.release()
    running.release()  # twice is harmless
    assert (gate.running, gate.waiting) == (0, 0)
    assert gate.admit() and gate.admit()


def test_the_openapi_description_lists_exactly_the_served_endpoints():
    import json
    import re
    from pathlib import Path

    from dziri.django_host.api.urls import urlpatterns
    from dziri.django_host.urls import urlpatterns as root_patterns

    spec = json.loads((Path(__file__).resolve().parents[2] / "docs" / "openapi.json").read_text())
    assert spec["openapi"].startswith("3.")
    served = {
        ("/api/" + re.sub(r"<str:\w+>", "{}", str(pattern.pattern)), method.lower())
        for pattern in urlpatterns for method in pattern.callback.allowed_methods
    } | {  # the OpenAI API's, at the root
        ("/" + str(pattern.pattern), method.lower())
        for pattern in root_patterns if hasattr(getattr(pattern, "callback", None), "allowed_methods")
        for method in pattern.callback.allowed_methods
    }
    described = {(re.sub(r"\{\w+\}", "{}", path), method)  # parameters by place, whatever their names
                 for path, item in spec["paths"].items() for method in item if method != "parameters"}
    assert described == served
