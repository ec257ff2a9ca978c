"""The member's own pages (/m/<token>, /m) through Starlette's TestClient, on both engines:
each token opens only its member, bad links one plain 404, CSRF, escaping, the fresh link."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta

import pytest
from starlette.testclient import TestClient

from backend import store, store_member_tokens
from tests.panel.world import NOW, SCRIPT, World, app_for


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
