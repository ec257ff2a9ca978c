"""The member's survey page through the TestClient, on both engines: a real purchase
(advice) whose SMS in the outbox carries the link, then answering it."""

from __future__ import annotations

import re

from starlette.testclient import TestClient

from backend import store, store_registry, store_surveys
from backend.handlers import Handler
from backend.program import Program
from tests.backend.core_helpers import advice
from tests.panel.world import NOW, PHONE, World, app_for

LINK = re.compile(r"https://c\.example\.ir(/s/[A-Za-z0-9_-]{22})")
CSRF = re.compile(r'name="csrf" value="([0-9a-f]+)"')


def purchase_link(world: World) -> str:
    with world.conn() as c:
        with store.transaction(c):
            store_registry.set_public_url(c, world.club_a, "https://c.example.ir")
        h = Handler(c, Program(survey_percent=100), clock=lambda: NOW)
        req = advice(amount=1_000_000, occurred_at=NOW.isoformat(), phone=PHONE)
        assert h.handle(req).code == "00"
        text = c.execute("SELECT text FROM sms_outbox WHERE key = ?",
                         (f"purchase:{req.key}",)).fetchone()[0]
    m = LINK.search(text)
    assert m, text
    return m.group(1)


def test_a_survey_answered_from_the_purchase_sms(world: World) -> None:
    path = purchase_link(world)
    with TestClient(app_for(world), base_url="http://127.0.0.1") as client:
        page = client.get(path)
        assert page.status_code == 200 and 'name="rating"' in page.text and "۵" in page.text
        assert page.headers["referrer-policy"] == "no-referrer"
        assert page.headers["cache-control"] == "no-store"
        token = CSRF.search(page.text).group(1)
        # CSRF refused, a bad rating comes back with the form: nothing changed
        assert client.post(path, data={"csrf": "0" * 64, "rating": "5"}).status_code == 403
        bad = client.post(path, data={"csrf": token, "rating": "9", "comment": "<i>x</i>"})
        assert bad.status_code == 400 and 'name="rating"' in bad.text
        assert "<i>x</i>" not in bad.text and "&lt;i&gt;x&lt;/i&gt;" in bad.text
        with world.conn() as c:
            s = store_surveys.by_token(c, path[3:])
            assert s is not None and s.rating is None and s.club_id == world.club_a
        ok = client.post(path, data={"csrf": token, "rating": "۲", "comment": "<b>سرد</b>"})
        assert ok.status_code == 200 and "سپاس" in ok.text
        again = client.post(path, data={"csrf": token, "rating": "5", "comment": ""})
        assert again.status_code == 200 and "پیش‌تر" in again.text
        with world.conn() as c:
            s = store_surveys.by_token(c, path[3:])
            assert s is not None and (s.rating, s.comment) == (2, "<b>سرد</b>")
        # another link, or a malformed one: 404, no form
        other = path[:-1] + ("A" if path[-1] != "A" else "B")
        for p in (other, "/s/short"):
            r = client.get(p)
            assert r.status_code == 404 and 'name="rating"' not in r.text


def test_owner_sees_averages_low_ratings_today_comments_escaped_own_club_only(
        world: World) -> None:
    from tests.panel.world import logged_in
    path = purchase_link(world)
    with world.conn() as c, store.transaction(c):
        s = store_surveys.by_token(c, path[3:])
        assert s is not None
        assert store_surveys.answer(c, s.id, 1, "<script>x</script>", NOW)
    with logged_in(world, "ali") as b:
        page = b.get("/surveys")
        assert page.status_code == 200
        assert 'id="low-today"' in page.text and "&lt;script&gt;x&lt;/script&gt;" in page.text
        assert "<script>x</script>" not in page.text and "T0000001" in page.text
        assert "۱٫۰۰" in page.text or "۱.۰۰" in page.text
        got = b.get("/surveys.csv")
        assert got.status_code == 200 and "<script>x</script>" in got.text
    with logged_in(world, "bita") as other:  # another club's owner
        text = other.get("/surveys").text
        assert "low-today" not in text and "script&gt;x" not in text
        assert "<script>x" not in other.get("/surveys.csv").text
    with logged_in(world, "sara") as staff:
        assert staff.get("/surveys").status_code == 403
