"""The gift cards page through the TestClient, on both engines: issue a batch with the
form, the per-batch report, the printable CSV, refusals, another club's batch."""

from __future__ import annotations

import csv

from backend import giftcards, store_audit, store_giftcards
from tests.panel.world import World, logged_in

GOOD = {"value": "۵۰۰٬۰۰۰", "expires": "۱۴۰۵/۱۰/۳۰", "count": "3"}


def test_owner_issues_a_batch_and_reads_its_report_and_csv(world: World) -> None:
    with logged_in(world, "ali") as b:
        r = b.post("/giftcards", GOOD)
        assert r.status_code == 303 and r.headers["location"] == "/giftcards?done=issued"
        page = b.get("/giftcards").text
        [batch] = _batches(world, world.club_a)
        assert f'id="batch-{batch.id}"' in page and "۵۰۰٬۰۰۰" in page and "۱٬۵۰۰٬۰۰۰" in page
        got = b.get(f"/giftcards/{batch.id}.csv")
        assert got.status_code == 200 and got.headers["content-type"].startswith("text/csv")
        rows = list(csv.reader(got.text.splitlines()))
        assert rows[0] == ["number", "value", "expiry"] and len(rows) == 4
        assert all(giftcards.is_gift_card(n) and v == "500000" and e == "1405/10/30"
                   for n, v, e in rows[1:])
        assert rows[1][0] not in page  # the page lists no numbers
    assert batch.count == 3 and batch.expires_on.isoformat() == "2027-01-20"
    with world.conn() as c:
        [entry] = store_audit.entries(c, world.club_a)
    assert entry.action == "giftcard.issue" and entry.after["count"] == 3
    with logged_in(world, "bita") as other:  # another club's owner
        assert other.get(f"/giftcards/{batch.id}.csv").status_code == 404
        assert f'id="batch-{batch.id}"' not in other.get("/giftcards").text


def test_bad_batches_come_back_with_the_error_and_change_nothing(world: World) -> None:
    cases = {"value": {**GOOD, "value": "0"}, "count": {**GOOD, "count": "200000"},
             "expires": {**GOOD, "expires": "1400/01/01"}}
    with logged_in(world, "ali") as b:
        for name, form in cases.items():
            r = b.post("/giftcards", form)
            assert r.status_code == 400 and f'id="e-{name}"' in r.text, name
        assert b.post("/giftcards", GOOD, token=False).status_code == 403
    assert _batches(world, world.club_a) == [] and world.audit_rows() == 0


def test_staff_cannot_see_or_issue_gift_cards(world: World) -> None:
    with logged_in(world, "sara") as b:
        assert b.get("/giftcards").status_code == 403
        assert b.post("/giftcards", GOOD).status_code == 403
    assert _batches(world, world.club_a) == []


def _batches(world: World, club_id: int) -> list[store_giftcards.Batch]:
    with world.conn() as c:
        return store_giftcards.batches(c, club_id)
