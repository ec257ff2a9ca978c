"""The prize draws page through the TestClient, on both engines: define a draw (with a
commitment or a secret that is not stored), refusals beside their fields, close, the
entries CSV, a wrong reveal, the run and its winners, another club's draw, CSRF, staff."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

from backend import draw_job, draws, store, store_audit, store_draws
from backend.store import PurchaseRecord
from tests.panel.world import NOW, PHONE, World, logged_in

SECRET = "a secret of the owner 12345678"
COMMITMENT = draws.commitment(SECRET)
GOOD = {"name": "جشنواره یلدا", "starts": "۱۴۰۵/۰۹/۱۰", "ends": "1405/09/30", "segment": "",
        "rule": "rials", "tickets": "۱۰۰٬۰۰۰", "prizes": "2", "commitment": COMMITMENT,
        "secret": ""}


def _draws(world: World, club: int) -> list[store_draws.Draw]:
    with world.conn() as c:
        return store_draws.list_draws(c, club)


def _past_draw(world: World, club: int, member_id: int) -> store_draws.Draw:
    """A draw of Aban 1405 (over at NOW) with one purchase of `member_id` in it."""
    with world.conn() as c, store.transaction(c):
        at = datetime(2026, 11, 1, 9, tzinfo=UTC)
        store.insert_purchase(c, PurchaseRecord(
            key=f"draw-test:{member_id}", member_id=member_id,
            terminal_id="T0000001", quote_id=None,
            amount=250_000, gross=250_000, approved=True, redeemed=0, earned=0, recovered=0,
            earn_lot=None, occurred_at=int(at.timestamp())))
        return draw_job.add(c, club, draw_job.Definition(
            name="آبان", starts_on=date(2026, 10, 23), ends_on=date(2026, 11, 21),
            segment=None, per_purchase=None, per_rials=100_000, prizes=1,
            commitment=COMMITMENT), NOW - timedelta(days=40))


def test_owner_defines_a_draw_and_it_is_audited(world: World) -> None:
    with logged_in(world, "ali") as b:
        r = b.post("/draws", GOOD)
        assert r.status_code == 303, r.text
        [d] = _draws(world, world.club_a)
        assert r.headers["location"] == f"/draws/{d.id}?done=added"
        page = b.get(f"/draws/{d.id}").text
        assert COMMITMENT in page and "جشنواره یلدا" in page and 'id="close-later"' in page
        assert b.get(f"/draws/{d.id}.csv").status_code == 404  # open: no entries yet
        assert f'id="draw-{d.id}"' in b.get("/draws").text
        # a secret instead: its commitment is stored, the secret is not
        r = b.post("/draws", {**GOOD, "name": "دوم", "commitment": "", "secret": SECRET})
        assert r.status_code == 303
    second = next(x for x in _draws(world, world.club_a) if x.name == "دوم")
    assert second.commitment == COMMITMENT and second.secret is None
    assert d.per_rials == 100_000 and d.starts_on == date(2026, 12, 1) and d.prizes == 2
    with world.conn() as c:
        entries = store_audit.entries(c, world.club_a)
    assert sorted(e.action for e in entries) == ["draw.add", "draw.add"]
    assert all(SECRET not in str(e.after) for e in entries)


def test_bad_draws_come_back_with_the_error_beside_the_field(world: World) -> None:
    cases = {"ends": {**GOOD, "ends": "1405/09/01"}, "prizes": {**GOOD, "prizes": "0"},
             "starts": {**GOOD, "starts": "1405/13/01"}, "rule": {**GOOD, "rule": "x"},
             "segment": {**GOOD, "segment": "vip"}, "commitment": {**GOOD, "commitment": "ab"},
             "secret": {**GOOD, "commitment": "", "secret": "short"},
             "tickets": {**GOOD, "tickets": "0"}}
    with logged_in(world, "ali") as b:
        for name, form in cases.items():
            r = b.post("/draws", form)
            assert r.status_code == 400 and f'id="e-{name}"' in r.text, name
        both = b.post("/draws", {**GOOD, "secret": SECRET})
        assert both.status_code == 400 and 'id="e-commitment"' in both.text
        assert b.post("/draws", GOOD, token=False).status_code == 403
        assert b.post("/draws", GOOD).status_code == 303
        again = b.post("/draws", GOOD)
        assert again.status_code == 400 and 'id="e-name"' in again.text
    assert len(_draws(world, world.club_a)) == 1 and world.audit_rows() == 1


def test_close_csv_wrong_reveal_run_and_winners(world: World) -> None:
    d = _past_draw(world, world.club_a, world.member_a)
    with logged_in(world, "ali") as b:
        assert b.post(f"/draws/{d.id}/close", {"go": "1"}, token=False).status_code == 403
        assert 'id="draw-close"' in b.get(f"/draws/{d.id}").text
        assert b.post(f"/draws/{d.id}/close", {}).status_code == 303
        page = b.get(f"/draws/{d.id}").text
        assert 'id="entries">۱<' in page and 'id="tickets">۲<' in page
        got = b.get(f"/draws/{d.id}.csv")
        assert got.status_code == 200 and got.text == f"entry,tickets\n{world.code_a},2\n"
        wrong = b.post(f"/draws/{d.id}/run", {"secret": SECRET + "!"})
        assert wrong.status_code == 400 and 'id="e-secret"' in wrong.text
        assert b.post(f"/draws/{d.id}/run", {"secret": SECRET}, token=False).status_code == 403
        with world.conn() as c:
            assert store_draws.winners(c, d.id) == []
        assert b.post(f"/draws/{d.id}/run", {"secret": SECRET}).status_code == 303
        page = b.get(f"/draws/{d.id}").text
        assert 'id="winner-1"' in page and world.code_a in page and PHONE not in page
        assert SECRET in page  # revealed: anyone may now verify
    assert draws.verify(SECRET, got.text, 1, COMMITMENT) == [world.code_a]
    with world.conn() as c:
        [w] = store_draws.winners(c, d.id)
        sms = c.execute("SELECT COUNT(*) FROM sms_outbox WHERE key LIKE ?",
                        (f"draw:{d.id}:%",)).fetchone()[0]
        actions = sorted(e.action for e in store_audit.entries(c, world.club_a))
    assert w.member_id == world.member_a and sms == 1
    assert actions == ["draw.close", "draw.run"]


def test_another_clubs_draw_is_not_found_and_staff_see_nothing(world: World) -> None:
    d = _past_draw(world, world.club_a, world.member_a)
    with logged_in(world, "bita") as other:
        for path in (f"/draws/{d.id}", f"/draws/{d.id}.csv"):
            assert other.get(path).status_code == 404, path
        assert other.post(f"/draws/{d.id}/close", {}).status_code == 404
        assert other.post(f"/draws/{d.id}/run", {"secret": SECRET}).status_code == 404
        assert f'id="draw-{d.id}"' not in other.get("/draws").text
    with logged_in(world, "sara") as staff:
        assert staff.get("/draws").status_code == 403
        assert staff.get(f"/draws/{d.id}").status_code == 403
        assert staff.post("/draws", GOOD).status_code == 403
        assert 'href="/draws"' not in staff.get("/").text
    [still] = _draws(world, world.club_a)
    assert still.state == "open" and world.audit_rows() == 0
