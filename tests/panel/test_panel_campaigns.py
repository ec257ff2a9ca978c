"""The campaigns page through the TestClient, on both engines: the estimate shows reach,
parts and cost and saves nothing; send queues the SMS once (the hold-out none); cancel
stops what is pending; bad input comes back with the error; staff and another club's
owner cannot touch it."""

from __future__ import annotations

from backend import store_campaigns
from backend.store import transaction
from tests.panel.world import World, logged_in

TEXT = "س" * 80  # Persian, 80 characters: 2 SMS parts each
FORM = {"text": TEXT, "holdout": "0", "price": "۵۰۰", "at": "", "hour": "",
        "segment": "", "tier": "", "visited_before": "", "visited_after": "",
        "min_spend": "", "branch": ""}


def _consent(world: World) -> int:
    with world.conn() as c:
        with transaction(c):
            c.execute("UPDATE members SET marketing_consent = 1 WHERE club_id = ?",
                      (world.club_a,))
        return int(c.execute("SELECT COUNT(*) FROM members WHERE club_id = ?",
                             (world.club_a,)).fetchone()[0])


def _outbox(world: World) -> list[tuple[str, str]]:
    with world.conn() as c:
        return [(r[0], r[1]) for r in c.execute(
            "SELECT key, status FROM sms_outbox WHERE kind = 'campaign' ORDER BY key")]


def test_estimate_then_send_then_cancel(world: World) -> None:
    n = _consent(world)
    with logged_in(world, "ali") as b:
        r = b.post("/campaigns", {**FORM, "action": "estimate"})
        assert r.status_code == 200
        assert f'id="est-reach">{"۰۱۲۳۴۵۶۷۸۹"[n]}<' in r.text
        assert 'id="est-parts">۴<' in r.text and 'id="est-cost">۲٬۰۰۰<' in r.text
        assert _outbox(world) == [] and world.audit_rows() == 0
        r = b.post("/campaigns", {**FORM, "at": "۱۴۹۹/۰۱/۰۱", "action": "send"})
        assert r.status_code == 303 and r.headers["location"] == "/campaigns?done=added"
        assert b.post("/campaigns", {**FORM, "at": "۱۴۹۹/۰۱/۰۱", "action": "send"}
                      ).status_code == 303  # the same again: queued once
        [c] = _campaigns(world, world.club_a)
        assert [s for _, s in _outbox(world)] == ["pending"] * n
        page = b.get("/campaigns").text
        assert f'id="campaign-{c.id}"' in page and "scheduled" in page
        assert f'id="effect-{c.id}-7"' in page and f'id="effect-{c.id}-30"' in page
        with logged_in(world, "bita") as other:  # another club's owner
            assert other.post(f"/campaigns/{c.id}/cancel").status_code == 404
            assert f'id="campaign-{c.id}"' not in other.get("/campaigns").text
        r = b.post(f"/campaigns/{c.id}/cancel")
        assert r.status_code == 303 and r.headers["location"] == "/campaigns?done=cancelled"
    assert [s for _, s in _outbox(world)] == ["failed"] * n
    assert world.audit_rows() == 2


def test_bad_campaigns_come_back_with_the_error_and_change_nothing(world: World) -> None:
    _consent(world)
    cases = {"text": {**FORM, "text": "سلام {foo}"}, "holdout": {**FORM, "holdout": "90"},
             "at": {**FORM, "at": "1405/13/01"}}
    with logged_in(world, "ali") as b:
        for name, form in cases.items():
            r = b.post("/campaigns", {**form, "action": "send"})
            assert r.status_code == 400 and f'id="e-{name}"' in r.text, name
        r = b.post("/campaigns", {**FORM, "segment": "vip", "action": "send"})
        assert r.status_code == 400 and "unknown segment" in r.text
        assert b.post("/campaigns", {**FORM, "action": "send"}, token=False).status_code == 403
    with logged_in(world, "sara") as staff:
        assert staff.get("/campaigns").status_code == 403
        assert staff.post("/campaigns", {**FORM, "action": "send"}).status_code == 403
    assert _campaigns(world, world.club_a) == [] and _outbox(world) == []


def _campaigns(world: World, club_id: int) -> list[store_campaigns.Campaign]:
    with world.conn() as c:
        return store_campaigns.list_campaigns(c, club_id)
