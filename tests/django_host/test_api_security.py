"""The security items, one test each: CSRF, JSON errors everywhere, login failures that
say nothing and slow down, bounded input, the secret key file, response headers."""

from __future__ import annotations

import json
import os
import stat

import pytest
from api_client import PASSWORD, asgi_for
from django.contrib.auth.hashers import MD5PasswordHasher

from dziri.core.config import load_config
from dziri.core.errors import ConfigError, StoreError

pytestmark = pytest.mark.anyio


class CountingHasher(MD5PasswordHasher):
    """MD5 (fast) that counts how often a password is checked."""

    checks = 0

    def verify(self, password, encoded):
        CountingHasher.checks += 1
        return super().verify(password, encoded)


# ---- CSRF -------------------------------------------------------------------------------

async def test_unsafe_methods_without_the_csrf_token_are_403(api):
    await api.register("amina")
    conversation = await api.new_conversation("mine")
    for method, path, body in [("POST", "/api/conversations", {}),
                               ("PATCH", f"/api/conversations/{conversation['id']}", {"title": "x"}),
                               ("DELETE", f"/api/conversations/{conversation['id']}", None),
                               ("POST", f"/api/conversations/{conversation['id']}/messages", {"content": "x"}),
                               ("POST", "/api/auth/logout", None)]:
        response = await api.request(method, path, json=body, csrf=False)
        assert response.status_code == 403, (method, path)
        assert response.json()["error"]["code"] == "csrf_failed"
    assert (await api.get(f"/api/conversations/{conversation['id']}")).json()["title"] == "mine"
    assert (await api.get("/api/auth/me")).status_code == 200  # the logout did not happen


async def test_a_wrong_csrf_token_is_403_even_for_login(api):
    await api.get("/api/auth/csrf")
    response = await api.request("POST", "/api/auth/register", csrf=False, headers={"X-CSRFToken": "x" * 32},
                                 json={"username": "amina", "email": "a@example.org", "password": PASSWORD})
    assert response.status_code == 403 and response.json()["error"]["code"] == "csrf_failed"


async def test_csrf_endpoint_sets_a_readable_cookie(api):
    response = await api.get("/api/auth/csrf")
    assert response.status_code == 200
    token = response.json()["csrf_token"]
    cookie = next(c for c in response.headers.get_list("set-cookie") if c.startswith("csrftoken="))
    assert "httponly" not in cookie.lower() and len(token) >= 32


async def test_a_cross_site_origin_is_refused(api):
    await api.get("/api/auth/csrf")
    response = await api.post("/api/auth/register", headers={"Origin": "https://evil.example"},
                              json={"username": "amina", "email": "a@example.org", "password": PASSWORD})
    assert response.status_code == 403


# ---- JSON errors everywhere ---------------------------------------------------------------

async def test_unknown_api_path_is_a_json_404(api):
    response = await api.get("/api/nothing/here")
    assert response.status_code == 404 and response.json()["error"]["code"] == "not_found"


async def test_wrong_method_is_a_json_405_with_allow(api):
    response = await api.request("PUT", "/api/conversations", json={})
    assert response.status_code == 405
    assert response.json()["error"]["code"] == "method_not_allowed"
    assert response.headers["allow"] == "GET, POST"
    assert (await api.get("/api/auth/login")).status_code == 405


async def test_an_unexpected_error_is_a_json_500_without_details(api, host, monkeypatch):
    def broken(username):
        raise RuntimeError("secret internals /etc/passwd")

    monkeypatch.setattr(host.app.store, "find_user", broken)
    response = await api.login("amina")
    assert response.status_code == 500
    assert response.json() == {"error": {"code": "internal_error", "message": "the server hit an unexpected error"}}


async def test_a_store_failure_is_a_json_503(api, host, monkeypatch):
    def unavailable(*args, **kwargs):
        raise StoreError("the store cannot be reached")

    monkeypatch.setattr(host.app.store, "find_user", unavailable)
    response = await api.login("amina")
    assert response.status_code == 503 and response.json()["error"]["code"] == "store_unavailable"
    assert response.headers["retry-after"] == "5"


async def test_a_disallowed_host_header_is_a_json_400(api):
    response = await api.get("/api/health", headers={"Host": "evil.example"})
    assert response.status_code == 400 and response.json()["error"]["code"] == "invalid_input"


# ---- login failures -----------------------------------------------------------------------

async def test_login_failures_do_not_tell_whether_the_user_exists(api, make_client, settings):
    await api.register("amina")
    settings.PASSWORD_HASHERS = [f"{__name__}.CountingHasher"]
    answers = []
    for username in ["amina", "nobody"]:
        CountingHasher.checks = 0
        response = await make_client().login(username, "wrong password")
        answers.append((response.status_code, response.json(), CountingHasher.checks))
    assert answers[0] == answers[1]  # same status, same body, and the hasher ran once for both
    assert answers[0] == (401, {"error": {"code": "invalid_credentials", "message": "wrong username or password"}}, 1)


async def test_repeated_failed_logins_are_slowed_down(api, host, make_client):
    await api.register("amina")
    now = [1000.0]
    host.login_throttle.clock = lambda: now[0]
    attacker = make_client()
    for _ in range(5):  # the free ones
        assert (await attacker.login("amina", "guess")).status_code == 401
    assert (await attacker.login("amina", "guess")).status_code == 401  # the 6th failure: now wait 2 s
    locked = await attacker.login("amina", PASSWORD)  # even the right password is not checked
    assert locked.status_code == 429
    assert locked.json()["error"]["code"] == "too_many_attempts"
    assert locked.headers["retry-after"] == "2"
    now[0] += 2.5
    assert (await attacker.login("amina", "guess")).status_code == 401
    assert (await attacker.login("amina", PASSWORD)).headers["retry-after"] == "4"  # doubling
    now[0] += 5
    assert (await attacker.login("amina", PASSWORD)).status_code == 200  # and a success clears it
    assert (await attacker.login("amina", "guess")).status_code == 401


async def test_the_throttle_counts_per_username(api, host, make_client):
    await api.register("amina")
    await make_client().register("karim")
    host.login_throttle.clock = lambda: 1000.0
    attacker = make_client()
    for _ in range(6):
        await attacker.login("amina", "guess")
    assert (await attacker.login("amina", PASSWORD)).status_code == 429
    assert (await attacker.login("karim", PASSWORD)).status_code == 200
    assert (await attacker.login("nobody", "guess")).status_code == 401


def test_the_throttle_forgets_and_stays_bounded():
    from dziri.django_host.throttle import FORGET_AFTER_S, LoginThrottle

    now = [0.0]
    throttle = LoginThrottle(clock=lambda: now[0], max_entries=3)
    key = throttle.key("Amina", "10.0.0.1")
    assert key == throttle.key("amina", "10.0.0.1")
    for _ in range(10):
        throttle.failed(key)
    assert throttle.retry_after_s(key) == 32
    now[0] += FORGET_AFTER_S + 1
    assert throttle.retry_after_s(key) == 0
    for index in range(10):
        throttle.failed(throttle.key(f"user{index}", "10.0.0.1"))
    assert len(throttle._failures) == 3


# ---- bounded input ----------------------------------------------------------------------------

@pytest.mark.parametrize(("field", "value", "says"), [
    ("username", "ab", "3 to 40"), ("username", "a" * 41, "3 to 40"), ("username", "bad name", "3 to 40"),
    ("username", "عربي", "3 to 40"), ("username", 12345, "string"), ("username", None, "required"),
    ("email", "not-an-email", "not valid"), ("email", "a@b", "not valid"),
    ("email", "a" * 250 + "@example.org", "longer than 254"),
    ("password", "short", "8 to 128"), ("password", "x" * 129, "8 to 128"),
])
async def test_registration_input_is_bounded(api, field, value, says):
    body = {"username": "amina", "email": "amina@example.org", "password": PASSWORD, field: value}
    response = await api.post("/api/auth/register", body)
    assert response.status_code == 400, response.text
    assert response.json()["error"]["code"] == "invalid_input" and says in response.json()["error"]["message"]
    assert (await api.get("/api/auth/me")).status_code == 401


async def test_login_input_is_bounded(api):
    response = await api.login("amina", "x" * 10_000)  # never handed to the (slow on purpose) hasher
    assert response.status_code == 400
    assert (await api.login("a" * 41, PASSWORD)).status_code == 400


@pytest.mark.parametrize("body", [b"{not json", b"[1, 2]", b'"text"', b"\xff\xfe"])
async def test_a_body_that_is_not_a_json_object_is_400(api, body):
    await api.get("/api/auth/csrf")
    response = await api.request("POST", "/api/auth/register", content=body,
                                 headers={"Content-Type": "application/json"})
    assert response.status_code == 400 and response.json()["error"]["code"] == "invalid_input"


async def test_an_oversized_body_is_413_and_never_kept(api):
    await api.register("amina")
    conversation = await api.new_conversation()
    response = await api.post(f"/api/conversations/{conversation['id']}/messages", {"content": "x" * 300_000})
    assert response.status_code == 413 and response.json()["error"]["code"] == "too_large"
    assert "larger than" in response.json()["error"]["message"]
    assert await api.messages(conversation["id"]) == []



async def test_a_too_large_body_without_a_length_is_read_to_its_end_before_the_413(host):
    # Chunked: the size is known only while reading. What is past the limit is read and
    # dropped (so the socket closes with nothing unread), and the 413 goes out after it.
    chunks = [b"x" * 100_000] * 5 + [b"x" * 10]
    events = []

    async def receive():
        index = sum(1 for e in events if e == "read")
        events.append("read")
        return {"type": "http.request", "body": chunks[index], "more_body": index < len(chunks) - 1}

    async def send(message):
        events.append(message)

    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
             "headers": [(b"content-type", b"application/json"), (b"transfer-encoding", b"chunked")],
             "scheme": "http", "path": "/api/conversations/1/messages", "raw_path": b"/api/conversations/1/messages",
             "query_string": b"", "server": ("127.0.0.1", 8000), "client": ("127.0.0.1", 40000), "root_path": ""}
    await asgi_for(host)(scope, receive, send)
    assert events[:len(chunks)] == ["read"] * len(chunks)  # the whole body, then the answer
    start, body = events[len(chunks):]
    assert start["status"] == 413 and json.loads(body["body"])["error"]["code"] == "too_large"

# ---- the secret key ------------------------------------------------------------------------

def test_the_secret_key_file_is_created_once_with_mode_0600(tmp_path, monkeypatch):
    from dziri.django_host.secret import secret_key, secret_key_path

    monkeypatch.delenv("DZIRI_SECRET_KEY", raising=False)
    config = load_config()
    path = secret_key_path(config)
    assert path == tmp_path / "data" / "secret_key"
    key = secret_key(config)
    assert len(key) >= 50
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert secret_key(config) == key  # kept, not regenerated
    assert [p.name for p in path.parent.iterdir()] == ["secret_key"]  # no temporary file left behind


def test_a_too_open_secret_key_file_is_tightened(tmp_path):
    from dziri.django_host.secret import load_or_create

    path = tmp_path / "key"
    path.write_text("k" * 64)
    os.chmod(path, 0o644)
    assert load_or_create(path) == "k" * 64
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_the_secret_key_from_the_environment_wins(tmp_path, monkeypatch):
    from dziri.django_host.secret import secret_key

    monkeypatch.setenv("DZIRI_SECRET_KEY", "e" * 40)
    assert secret_key(load_config()) == "e" * 40
    assert not (tmp_path / "data" / "secret_key").exists()
    monkeypatch.setenv("DZIRI_SECRET_KEY", "short")
    with pytest.raises(ConfigError, match="too short"):
        secret_key(load_config())


def test_the_secret_key_file_location_is_configurable(tmp_path, monkeypatch):
    from dziri.django_host.secret import secret_key, secret_key_path

    monkeypatch.setenv("DZIRI_WEB__SECRET_KEY_FILE", str(tmp_path / "keys" / "dziri.key"))
    config = load_config()
    assert secret_key_path(config) == tmp_path / "keys" / "dziri.key"
    secret_key(config)
    assert stat.S_IMODE((tmp_path / "keys" / "dziri.key").stat().st_mode) == 0o600


# ---- headers and settings -----------------------------------------------------------------

async def test_security_headers(api):
    for path in ["/api/health", "/api/auth/me", "/"]:
        response = await api.get(path)
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["referrer-policy"] == "same-origin"
        assert response.headers["x-frame-options"] == "DENY"
    page = await api.get("/")
    assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
    assert "script-src 'self'" in page.headers["content-security-policy"]


def test_debug_is_off_and_there_is_no_database():
    from django.conf import settings

    assert settings.DEBUG is False
    assert [db["ENGINE"] for db in settings.DATABASES.values()] == ["django.db.backends.dummy"]
    assert not any(app.startswith("django.contrib") for app in settings.INSTALLED_APPS)
    assert settings.SESSION_COOKIE_HTTPONLY and settings.SESSION_COOKIE_SAMESITE == "Lax"


@pytest.mark.parametrize("body", ['{"content": "\\ud800"}', "[" * 100_000 + "]" * 100_000])
def test_unencodable_or_absurdly_nested_json_is_a_400(body):
    from django.test import RequestFactory

    from dziri.core.errors import ValidationError
    from dziri.django_host.api import validation

    request = RequestFactory().post("/", data=body, content_type="application/json")
    with pytest.raises(ValidationError):
        validation.text(validation.json_object(request), "content")
