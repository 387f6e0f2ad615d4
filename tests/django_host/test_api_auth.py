"""Register, log in, log out, me; sessions in the store, shared by server processes."""

from __future__ import annotations

import pytest
from api_client import PASSWORD, asgi_for

pytestmark = pytest.mark.anyio


async def test_register_logs_in_and_never_returns_the_password(api, host):
    response = await api.post("/api/auth/register",
                              {"username": "amina", "email": "amina@example.dz", "password": PASSWORD})
    assert response.status_code == 201
    user = response.json()["user"]
    assert set(user) == {"id", "username", "email"}
    assert (user["username"], user["email"]) == ("amina", "amina@example.dz")
    assert PASSWORD not in response.text and "hash" not in response.text
    me = await api.get("/api/auth/me")
    assert me.status_code == 200 and me.json() == {"user": user}
    stored = host.app.store.get_user(user["id"])
    assert stored.password_hash != PASSWORD and PASSWORD not in stored.password_hash


async def test_me_without_a_session_is_401(api):
    response = await api.get("/api/auth/me")
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "not_authenticated"


async def test_login_and_logout(api, make_client):
    await api.register("karim")
    browser = make_client()
    response = await browser.login("karim")
    assert response.status_code == 200 and response.json()["user"]["username"] == "karim"
    assert (await browser.get("/api/auth/me")).status_code == 200
    assert (await browser.post("/api/auth/logout")).status_code == 204
    assert (await browser.get("/api/auth/me")).status_code == 401
    assert (await api.get("/api/auth/me")).status_code == 200  # the other session lives on


async def test_session_cookie_is_httponly_and_samesite_lax(api):
    response = await api.post("/api/auth/register",
                              {"username": "nadia", "email": "n@example.org", "password": PASSWORD})
    cookie = next(c for c in response.headers.get_list("set-cookie") if c.startswith("dziri_session="))
    attributes = {part.strip().split("=")[0].lower() for part in cookie.split(";")}
    assert "httponly" in attributes
    assert "samesite=lax" in cookie.lower()


async def test_login_gives_a_new_session_key_and_csrf_token(api):
    await api.register("yacine")
    before = (api.http.cookies.get("dziri_session"), api.http.cookies.get("csrftoken"))
    assert (await api.login("yacine")).status_code == 200
    after = (api.http.cookies.get("dziri_session"), api.http.cookies.get("csrftoken"))
    assert after[0] != before[0] and after[1] != before[1]


async def test_the_store_never_holds_the_cookie_value(api, host):
    await api.register("sami")
    key = api.http.cookies.get("dziri_session")
    assert host.app.store.load_session(key) is None  # only its SHA-256 is a store key


async def test_a_session_works_on_another_server_and_dies_everywhere_on_logout(make_host, make_client):
    # Two hosts over the same store, as two server processes would be.
    first, second = make_host(), make_host()
    assert first.app is not second.app
    browser = make_client(first)
    user = await browser.register("lina")
    cookies = dict(browser.http.cookies)
    on_second = make_client(second)
    on_second.http.cookies.update(cookies)
    assert (await on_second.get("/api/auth/me")).json()["user"] == user
    assert (await on_second.post("/api/auth/logout")).status_code == 204
    replay = make_client(first)
    replay.http.cookies.update(cookies)  # the cookie an attacker kept from before the logout
    response = await replay.get("/api/auth/me")
    assert response.status_code == 401
    assert (await replay.get("/api/conversations")).status_code == 401


async def test_a_deleted_user_is_logged_out(api, host):
    user = await api.register("ghost")
    host.app.store.delete_user(user["id"])
    assert (await api.get("/api/auth/me")).status_code == 401


async def test_a_changed_password_ends_older_sessions(api, host):
    from django.contrib.auth.hashers import make_password

    user = await api.register("rania")
    host.app.store.update_user(user["id"], password_hash=make_password("another password"))
    assert (await api.get("/api/auth/me")).status_code == 401


async def test_registering_a_taken_username_or_email_is_409(api, make_client):
    await api.register("walid", email="walid@example.org")
    other = make_client()
    response = await other.post("/api/auth/register",
                                {"username": "walid", "email": "other@example.org", "password": PASSWORD})
    assert response.status_code == 409 and response.json()["error"]["code"] == "conflict"
    response = await other.post("/api/auth/register",
                                {"username": "walid2", "email": "WALID@example.org", "password": PASSWORD})
    assert response.status_code == 409


async def test_the_cli_local_user_cannot_log_in_on_the_web(api, host):
    host.app.chat.local_user()  # the terminal's user, with no usable password
    response = await api.login("local", "!")
    assert response.status_code == 401


async def test_passwords_are_hashed_with_pbkdf2_by_default(api, host, settings):
    from dziri.django_host import settings as host_settings

    settings.PASSWORD_HASHERS = host_settings.PASSWORD_HASHERS
    user = await api.register("hakim")
    assert host.app.store.get_user(user["id"]).password_hash.startswith("pbkdf2_sha256$1000000$")
    assert (await api.login("hakim")).status_code == 200


async def test_an_old_hash_is_upgraded_at_login(api, host, settings):
    from django.contrib.auth.hashers import make_password

    user = await api.register("samia")
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher",
                                 "django.contrib.auth.hashers.PBKDF2SHA1PasswordHasher"]
    host.app.store.update_user(user["id"], password_hash=make_password(PASSWORD, hasher="pbkdf2_sha1"))
    assert (await api.login("samia")).status_code == 200
    assert host.app.store.get_user(user["id"]).password_hash.startswith("md5$")
    assert (await api.get("/api/auth/me")).status_code == 200


async def test_logout_without_a_session_is_fine(api):
    assert (await api.post("/api/auth/logout")).status_code == 204


def test_each_host_is_its_own_asgi_application(make_host):
    first, second = make_host(), make_host()
    assert asgi_for(first) is not asgi_for(second) and asgi_for(first) is asgi_for(first)
