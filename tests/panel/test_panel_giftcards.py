"""The gift cards page through the TestClient, on both engines: issue a batch with the
form, the per-batch report, the printable CSV, refusals, another club's batch."""

from __future__ import annotations

import csv

from backend import giftcards, store_audit, store_giftcards
from tests.panel.world import NOW, World, logged_in

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


def test_owner_records_a_sale_once_and_never_another_clubs_card(world: World) -> None:
    with logged_in(world, "ali") as b:
        assert b.post("/giftcards", GOOD).status_code == 303
    with logged_in(world, "bita") as b:
        assert b.post("/giftcards", GOOD).status_code == 303
    [mine] = _batches(world, world.club_a)
    [theirs] = _batches(world, world.club_b)
    with world.conn() as c:
        number = store_giftcards.batch_cards(c, mine.id)[0].number
        other = store_giftcards.batch_cards(c, theirs.id)[0].number
    spaced = " ".join(number[i:i + 4] for i in range(0, 16, 4))
    with logged_in(world, "ali") as b:
        for bad in (other, number[:-1] + str((int(number[-1]) + 1) % 10), "12"):
            r = b.post("/giftcards/sell", {"number": bad})
            assert r.status_code == 400 and 'id="e-number"' in r.text, bad
        assert b.post("/giftcards/sell", {"number": number}, token=False).status_code == 403
        assert world.audit_rows() == 2  # the two issues only
        r = b.post("/giftcards/sell", {"number": spaced})
        assert r.status_code == 303 and r.headers["location"] == "/giftcards?done=sold"
        again = b.post("/giftcards/sell", {"number": number})
        assert again.headers["location"] == "/giftcards?done=already_sold"
    with world.conn() as c:
        [report] = store_giftcards.report(c, world.club_a, NOW)
        [their_report] = store_giftcards.report(c, world.club_b, NOW)
        actions = [e.action for e in store_audit.entries(c, world.club_a)]
    assert report.sold == 1 and their_report.sold == 0
    assert actions.count("giftcard.sell") == 1
    with logged_in(world, "sara") as b:
        assert b.post("/giftcards/sell", {"number": number}).status_code == 403


def _batches(world: World, club_id: int) -> list[store_giftcards.Batch]:
    with world.conn() as c:
        return store_giftcards.batches(c, club_id)
