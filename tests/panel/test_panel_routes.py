"""Route tests through Starlette's test client: login, logout, CSRF, throttle, escaping."""

from __future__ import annotations

import asyncio
import hashlib
import re

import httpx2
from starlette.testclient import TestClient

from panel.app import PanelSettings, create_app
from panel.assets import load_manifest
from panel.throttle import MAX_FAILURES
from tests.panel.conftest import PASSWORDS


def csrf(html: str) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert match, "no CSRF token in the form"
    return match.group(1)


def log_in(client: TestClient, name: str = "ali", password: str | None = None):
    token = csrf(client.get("/login").text)
    return client.post("/login", data={"csrf_token": token, "name": name,
                                       "password": password or PASSWORDS[name]},
                       follow_redirects=False)


def test_anonymous_is_sent_to_login_and_the_page_is_rtl_persian(client: TestClient) -> None:
    r = client.get("/", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/login"
    page = client.get("/login")
    assert '<html lang="fa" dir="rtl">' in page.text and "ورود" in page.text
    assert 'src="/static/vendor/htmx.min.js"' in page.text
    assert "http://" not in page.text and "https://" not in page.text  # nothing from elsewhere
    cookie = page.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Secure" not in cookie
    csp = page.headers["content-security-policy"]
    assert "default-src 'self'" in csp and "frame-ancestors 'none'" in csp


def test_login_logout(client: TestClient, users) -> None:
    before = client.cookies.get("panel_session")
    r = log_in(client)
    assert r.status_code == 303 and r.headers["location"] == "/"
    assert client.cookies.get("panel_session") != before  # a new session at login
    home = client.get("/")
    assert "ali" in home.text and "مالک" in home.text and "نانوایی" in home.text
    assert users.logins[-1][0] == "ali"
    r = client.post("/logout", data={"csrf_token": csrf(home.text)}, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/login"
    assert client.get("/", follow_redirects=False).status_code == 303


def test_old_cookie_is_dead_after_logout(client: TestClient) -> None:
    log_in(client)
    cookie = client.cookies.get("panel_session")
    client.post("/logout", data={"csrf_token": csrf(client.get("/").text)})
    client.cookies.set("panel_session", cookie)
    assert client.get("/", follow_redirects=False).status_code == 303


def test_post_without_or_with_a_wrong_csrf_token_is_refused_and_changes_nothing(
        client: TestClient, users) -> None:
    client.get("/login")
    r = client.post("/login", data={"name": "ali", "password": PASSWORDS["ali"]})
    assert r.status_code == 403 and users.logins == []
    assert "درخواست پذیرفته نشد و چیزی تغییر نکرد" in r.text and "CSRF" in r.text
    r = client.post("/login", data={"csrf_token": "forged", "name": "ali",
                                    "password": PASSWORDS["ali"]})
    assert r.status_code == 403 and users.logins == []
    log_in(client)
    r = client.post("/logout", data={"csrf_token": "forged"})
    assert r.status_code == 403
    assert client.get("/", follow_redirects=False).status_code == 200  # still logged in
    r = client.post("/logout", content=b"{}", headers={"content-type": "application/json"})
    assert r.status_code == 415
    token = csrf(client.get("/").text)
    r = client.post("/logout", data={"x": "y"}, headers={"x-csrf-token": token},
                    follow_redirects=False)
    assert r.status_code == 303  # htmx sends the token as a header


def test_a_token_of_another_session_is_refused(client: TestClient, users) -> None:
    stolen = csrf(client.get("/login").text)
    client.cookies.clear()
    client.get("/login")
    r = client.post("/login", data={"csrf_token": stolen, "name": "ali",
                                    "password": PASSWORDS["ali"]})
    assert r.status_code == 403 and users.logins == []


def test_wrong_password_gives_the_form_back_then_the_throttle(client: TestClient, users) -> None:
    for _ in range(MAX_FAILURES):
        r = log_in(client, "ali", "wrong")
        assert r.status_code == 400 and "نام کاربری یا گذرواژه درست نیست" in r.text
        assert 'value="ali"' in r.text and "wrong" not in r.text  # no password echoed
    r = log_in(client, "ali")  # the right password, but now it waits
    assert r.status_code == 429 and "۳۰ ثانیه" in r.text and users.logins == []


def test_idle_session_expires(client: TestClient, clock) -> None:
    log_in(client)
    clock.now += 599
    assert client.get("/", follow_redirects=False).status_code == 200
    clock.now += 599
    assert client.get("/", follow_redirects=False).status_code == 200
    clock.now += 600
    assert client.get("/", follow_redirects=False).status_code == 303


def test_a_disabled_user_is_out_at_once(client: TestClient, users) -> None:
    log_in(client, "sara")
    assert client.get("/", follow_redirects=False).status_code == 200
    users.disable("sara")
    assert client.get("/", follow_redirects=False).status_code == 303
    assert log_in(client, "sara").status_code == 400


def test_typed_text_is_escaped_and_errors_stand_beside_their_field(client: TestClient) -> None:
    r = log_in(client, "<script>alert(1)</script>", "x")
    assert r.status_code == 400
    assert "<script>alert(1)" not in r.text
    assert 'value="&lt;script&gt;alert(1)&lt;/script&gt;"' in r.text
    token = csrf(client.get("/login").text)
    r = client.post("/login", data={"csrf_token": token, "name": "", "password": ""})
    assert r.status_code == 400
    assert re.search(r'id="f-name"[^>]*aria-invalid="true"[^>]*>\s*<p class="error" '
                     r'id="e-name"[^>]*>این خانه را پر کنید.</p>', r.text)


def test_english_switch(client: TestClient) -> None:
    r = client.get("/lang/en?next=/login", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/login"
    page = client.get("/login")
    assert '<html lang="en" dir="ltr">' in page.text and "Log in" in page.text
    for evil in ("//evil.example/", "https://evil.example/", "/\\evil"):
        r = client.get("/lang/fa", params={"next": evil}, follow_redirects=False)
        assert r.headers["location"] == "/"
    assert client.get("/lang/xx").status_code == 404


def test_about_lists_the_assets_and_the_panel_serves_them(client: TestClient) -> None:
    assert client.get("/about", follow_redirects=False).status_code == 303
    log_in(client)
    page = client.get("/about").text
    for asset in load_manifest():
        assert asset.package in page and asset.version in page and asset.license in page
        for f in asset.files:
            assert f.sha256 in page
            body = client.get(f"/static/vendor/{f.file}").content
            assert hashlib.sha256(body).hexdigest() == f.sha256
    assert "starlette" in page


def test_health_page(client: TestClient) -> None:
    r = client.get("/health")
    assert r.status_code == 200 and "پنل کار می‌کند" in r.text and "آماده" in r.text
    assert re.search(r"[۰-۹]{4}/[۰-۹]{2}/[۰-۹]{2}", r.text)  # a Jalali date, Persian digits


def test_without_a_user_store_the_panel_says_so() -> None:
    with TestClient(create_app(PanelSettings(db="x.db"), None)) as c:
        page = c.get("/login")
        assert 'id="no-users"' in page.text and "loyalty-backend user add" in page.text
        r = c.post("/login", data={"csrf_token": csrf(page.text), "name": "a", "password": "b"})
        assert r.status_code == 400 and "هنوز هیچ کاربری تعریف نشده است" in r.text
        assert "تعریف نشده" in c.get("/health").text


def test_secure_cookie_setting() -> None:
    with TestClient(create_app(PanelSettings(secure_cookies=True), None)) as c:
        assert "Secure" in c.get("/login").headers["set-cookie"]
    with TestClient(create_app(PanelSettings(), None), base_url="https://panel.test") as c:
        assert "Secure" in c.get("/login").headers["set-cookie"]  # auto: https means Secure


def test_parallel_guesses_get_no_more_than_five_checks(users) -> None:
    """Ten wrong passwords sent at once: five are checked, the other five wait."""
    app = create_app(PanelSettings(), users)

    async def burst() -> list[int]:
        transport = httpx2.ASGITransport(app=app)
        async with httpx2.AsyncClient(transport=transport, base_url="http://127.0.0.1") as c:
            token = csrf((await c.get("/login")).text)
            answers = await asyncio.gather(*(
                c.post("/login", data={"csrf_token": token, "name": "ali", "password": "x"})
                for _ in range(10)))
            return sorted(r.status_code for r in answers)

    assert asyncio.run(burst()) == [400] * MAX_FAILURES + [429] * (10 - MAX_FAILURES)
