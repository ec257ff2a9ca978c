"""The member's own pages (/m/<token>, /m) through Starlette's TestClient, on both engines:
each token opens only its member, bad links one plain 404, CSRF, escaping, the fresh link."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta

import pytest
from starlette.testclient import TestClient

from backend import store, store_member_tokens, store_members, store_registry
from protocols.persian import ascii_digits, persian_digits
from tests.panel.world import NOW, PHONE, SCRIPT, World, app_for, logged_in


def issue(world: World, member_id: int, club_id: int, **kw: object) -> str:
    with world.conn() as c, store.transaction(c):
        return store_member_tokens.issue(c, member_id, club_id, NOW, **kw)  # type: ignore[arg-type]


@contextmanager
def client(world: World) -> Iterator[TestClient]:
    with TestClient(app_for(world), base_url="http://127.0.0.1") as c:
        yield c


def test_a_token_opens_its_members_page_only(world: World) -> None:
    ta = issue(world, world.member_a, world.club_a)
    tb = issue(world, world.member_b, world.club_b)
    with client(world) as c:
        a, b = c.get(f"/m/{ta}"), c.get(f"/m/{tb}")
    assert a.status_code == b.status_code == 200
    assert 'dir="rtl"' in a.text and "۱۰۰٬۰۰۰" in a.text
    assert world.code_a in a.text and world.code_a not in b.text
    assert "&lt;script&gt;" in a.text and SCRIPT not in a.text and "&lt;script&gt;" not in b.text
    assert a.headers["referrer-policy"] == "no-referrer"
    assert a.headers["cache-control"] == "no-store"
    assert "script-src" not in a.headers["content-security-policy"]
    assert "<script" not in a.text


@pytest.mark.parametrize("bad", ["malformed", "expired", "revoked", "unknown"])
def test_bad_links_get_one_plain_404(world: World, bad: str) -> None:
    token = issue(world, world.member_a, world.club_a, days=1)
    now = NOW
    if bad == "malformed":
        token = token[:-1] + "!"
    elif bad == "unknown":
        token = ("B" if token[0] != "B" else "C") + token[1:]
    elif bad == "revoked":
        with world.conn() as c, store.transaction(c):
            assert store_member_tokens.revoke_all(c, world.member_a, NOW) == 1
    elif bad == "expired":
        with world.conn() as c, store.transaction(c):
            c.execute("UPDATE member_tokens SET expires_at = ?",
                      (store.ts(now - timedelta(seconds=1)),))
    with client(world) as c:
        r = c.get(f"/m/{token}")
    assert r.status_code == 404 and 'id="invalid"' in r.text
    assert world.code_a not in r.text and "۱۰۰٬۰۰۰" not in r.text


def csrf_of(page: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', page)
    assert found, "no member-side CSRF token"
    return found.group(1)


def test_profile_and_marketing_forms_change_only_their_member(world: World) -> None:
    ta = issue(world, world.member_a, world.club_a)
    tb = issue(world, world.member_b, world.club_b)
    with client(world) as c:
        ca, cb = csrf_of(c.get(f"/m/{ta}").text), csrf_of(c.get(f"/m/{tb}").text)
        assert ca != cb
        # another member's form token opens nothing here
        r = c.post(f"/m/{ta}/profile", data={"csrf": cb, "name": "x", "birthday": ""})
        assert r.status_code == 403 and 'id="refused"' in r.text
        r = c.post(f"/m/{ta}/profile", data={"name": "x", "birthday": ""})
        assert r.status_code == 403
        r = c.post(f"/m/{ta}/profile", data={"csrf": ca, "name": "مریم",
                                             "birthday": "۱۳۷۰/۰۵/۱۲"},
                   follow_redirects=False)
        assert r.status_code == 303 and r.headers["location"] == f"/m/{ta}?done=profile"
        page = c.get(f"/m/{ta}?done=profile").text
        assert "مریم" in page and "۱۳۷۰/۰۵/۱۲" in page and 'id="notice"' in page
        bad = c.post(f"/m/{ta}/profile", data={"csrf": ca, "name": SCRIPT,
                                               "birthday": "1370/13/40"})
        assert bad.status_code == 400 and 'id="e-birthday"' in bad.text
        assert SCRIPT not in bad.text
        r = c.post(f"/m/{ta}/consent", data={"csrf": ca, "consent": "off"},
                   follow_redirects=False)
        assert r.status_code == 303
        assert c.post(f"/m/{ta}/consent", data={"csrf": ca, "consent": "x"}).status_code == 403
    with world.conn() as conn:
        a = store_members.member(conn, world.club_a, world.member_a)
        b = store_members.member(conn, world.club_b, world.member_b)
        actions = [a for (a,) in conn.execute("SELECT action FROM audit_log ORDER BY id")]
    assert a is not None and b is not None
    assert (a.name, a.birthday, a.marketing_consent) == ("مریم", "1991-08-03", False)
    assert (b.name, b.birthday, b.marketing_consent) == (None, None, True)
    assert actions == ["member.self_profile", "member.self_marketing_sms"]


def test_revoke_from_the_owners_page_ends_the_link(world: World) -> None:
    token = issue(world, world.member_a, world.club_a)
    with logged_in(world, "sara") as b:  # staff may not
        assert b.post(f"/members/{world.member_a}/revoke-links").status_code == 403
    with logged_in(world, "ali") as b:
        assert 'id="live-links">۱<' in b.get(f"/members/{world.member_a}").text
        no_csrf = b.post(f"/members/{world.member_a}/revoke-links", {"x": "1"}, token=False)
        assert no_csrf.status_code == 403
        r = b.post(f"/members/{world.member_a}/revoke-links")
        assert r.status_code == 303
        assert b.post(f"/members/{world.member_b}/revoke-links").status_code == 404
        assert 'id="live-links">۰<' in b.get(f"/members/{world.member_a}").text
        assert b.client.get(f"/m/{token}").status_code == 404
    assert world.audit_rows() == 1


def test_bad_links_are_rate_limited_per_client(world: World) -> None:
    good = issue(world, world.member_a, world.club_a)
    with client(world) as c:
        for i in range(10):
            assert c.get(f"/m/{'A' * 21}{i}").status_code == 404
        r = c.get(f"/m/{good}")
    assert r.status_code == 429 and world.code_a not in r.text


def code_in(text: str) -> str:
    return re.findall(r"[0-9]{4,10}", ascii_digits(text))[-1]


def outbox(world: World, kind: str) -> list[tuple[str, str]]:
    with world.conn() as conn:
        return [(p, t) for p, t in conn.execute(
            "SELECT phone, text FROM sms_outbox WHERE kind = ? ORDER BY id", (kind,))]


def test_fresh_link_by_code_and_the_same_answer_for_an_unknown_phone(world: World) -> None:
    with world.conn() as conn, store.transaction(conn):
        store_registry.set_public_url(conn, world.club_a, "http://127.0.0.1")
    with client(world) as c:
        page = c.get("/m")
        assert page.status_code == 200 and "m_form" in page.headers["set-cookie"]
        token = csrf_of(page.text)
        assert c.post("/m", data={"step": "phone", "phone": PHONE}).status_code == 403
        known = c.post("/m", data={"csrf": token, "step": "phone", "phone": PHONE})
        unknown = c.post("/m", data={"csrf": token, "step": "phone", "phone": "09350000000"})
        assert known.status_code == unknown.status_code == 200
        assert known.text.replace(PHONE, "P") == unknown.text.replace("09350000000", "P")
        sent = outbox(world, "otp")
        assert [p for p, _ in sent] == [PHONE]
        code = code_in(sent[0][1])
        wrong = str((int(code) + 1) % 10**6).zfill(6)
        bad_known = c.post("/m", data={"csrf": token, "step": "code", "phone": PHONE,
                                       "code": wrong})
        bad_unknown = c.post("/m", data={"csrf": token, "step": "code",
                                         "phone": "09350000000", "code": wrong})
        assert bad_known.status_code == bad_unknown.status_code == 400
        assert (bad_known.text.replace(PHONE, "P")
                == bad_unknown.text.replace("09350000000", "P"))
        ok = c.post("/m", data={"csrf": token, "step": "code", "phone": PHONE,
                                "code": persian_digits(code)})
        assert ok.status_code == 200 and 'id="link-sent"' in ok.text
        links = outbox(world, "link")
        assert [p for p, _ in links] == [PHONE]
        link = links[0][1].rsplit("\n", 1)[1]
        assert link.startswith("http://127.0.0.1/m/")
        page = c.get(link[len("http://127.0.0.1"):])
        assert page.status_code == 200 and world.code_a in page.text
        # the code is used up
        again = c.post("/m", data={"csrf": token, "step": "code", "phone": PHONE,
                                   "code": code})
        assert again.status_code == 400 and len(outbox(world, "link")) == 1
        # at most 3 code requests per phone in 10 minutes, known or not alike
        for _ in range(2):
            c.post("/m", data={"csrf": token, "step": "phone", "phone": "09350000000"})
        r = c.post("/m", data={"csrf": token, "step": "phone", "phone": "09350000000"})
        assert r.status_code == 429 and 'id="too-many"' in r.text


def test_first_load_is_small_and_needs_no_script(world: World) -> None:
    token = issue(world, world.member_a, world.club_a)
    with client(world) as c:
        page = c.get(f"/m/{token}")
        css = c.get("/static/self.css")
    assert css.status_code == 200
    assert "<script" not in page.text and 'href="/static/self.css"' in page.text
    assert len(page.content) + len(css.content) < 100_000
