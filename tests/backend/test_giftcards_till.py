"""Gift cards in the database and at the till (issue 16), through the handler on both
engines: issued, used twice in part, released, reversed, expired; repeats move nothing."""

from __future__ import annotations

import csv
from datetime import date
from pathlib import Path

import pytest

from backend import giftcards, migrations, store, store_giftcards, store_members, store_registry
from backend.cli import main
from backend.engine import Connection
from backend.handlers import Handler
from backend.program import Program
from protocols import mqtt as schema
from protocols.mqtt import Request
from tests.backend.core_helpers import FakeClock, advice, request, reversal

TID = "T0000001"
EXPIRES = date(2026, 12, 31)


def club_id(conn: Connection) -> int:
    return min(store_registry.list_clubs(conn), key=lambda c: c.id).id


def issue(conn: Connection, clock: FakeClock, count: int = 3, value: int = 500_000) -> list[str]:
    with store.transaction(conn):
        _, cards = store_giftcards.issue(conn, club_id(conn), value, EXPIRES, count, clock())
    return [c.number for c in cards]


def balance(conn: Connection, number: str) -> int:
    return giftcards.balance(store_giftcards.movements(conn, number))


def inquire(h: Handler, number: str, gross: int) -> tuple[Request, dict]:
    req = request("inquiry", {"card": number, "gross": gross})
    resp = h.handle(req)
    assert resp.code == "00", resp
    return req, resp.body


def release_of(inquiry: Request, quote_id: str) -> Request:
    return Request(type="release", id=f"release-{inquiry.id}",
                   key=schema.release_key(inquiry.key), terminal_id=TID,
                   merchant_id="M00000000000001",
                   body={"inquiry_key": inquiry.key, "quote_id": quote_id, "reason": "unanswered"})


def test_gift_cards_store_numbers_and_key(conn: Connection, clock: FakeClock) -> None:
    first = issue(conn, clock, 5)
    second = issue(conn, clock, 5)
    numbers = first + second
    assert len(set(numbers)) == 10 and all(giftcards.is_gift_card(n) for n in numbers)
    secret = conn.execute("SELECT secret, next_serial FROM gift_keys").fetchone()
    assert len(bytes(secret[0])) == 32 and secret[1] == 10
    assert [balance(conn, n) for n in numbers] == [500_000] * 10
    assert migrations.current_version(conn) == migrations.LATEST
    with pytest.raises(giftcards.GiftCardError), store.transaction(conn):
        store_giftcards.issue(conn, club_id(conn), 0, EXPIRES, 1, clock())
    assert len(store_giftcards.batches(conn, club_id(conn))) == 2  # the refused one: nothing


def test_gift_card_used_twice_in_part_released_reversed_expired(
    handler: Handler, conn: Connection, clock: FakeClock
) -> None:
    number, other, _ = issue(conn, clock)
    # first use, in part: 200,000 of the 500,000
    _, q1 = inquire(handler, number, 200_001)
    assert (q1["discount"], q1["net"], q1["balance"], q1["tier"]) == (200_000, 1, 300_000, "gift")
    assert q1["quote_id"].startswith("G") and "کارت هدیه" in q1["display"]
    assert balance(conn, number) == 300_000  # held
    adv1 = advice(amount=1, gross=200_001, occurred_at=clock.iso(), quote_id=q1["quote_id"])
    assert handler.handle(adv1).body["balance"] == 300_000
    rows = len(store_giftcards.movements(conn, number))
    assert handler.handle(adv1).body["balance"] == 300_000  # the same advice again
    again = advice(amount=1, gross=200_001, occurred_at=clock.iso(), quote_id=q1["quote_id"])
    assert handler.handle(again).code == "12"  # another advice on a used quote: refused
    assert len(store_giftcards.movements(conn, number)) == rows
    # an inquiry the agent gives up: its hold is freed, once
    inq2, q2 = inquire(handler, number, 400_000)
    assert (q2["discount"], q2["net"], q2["balance"]) == (300_000, 100_000, 0)
    assert handler.handle(release_of(inq2, q2["quote_id"])).body["released"] == 300_000
    assert balance(conn, number) == 300_000
    # second use, in part of the purchase, then reversed: the card has its rest back
    _, q3 = inquire(handler, number, 400_000)
    adv3 = advice(amount=100_000, gross=400_000, occurred_at=clock.iso(),
                  quote_id=q3["quote_id"])
    assert handler.handle(adv3).body["balance"] == 0
    rev = reversal(adv3, occurred_at=clock.iso())
    assert handler.handle(rev).body["restored"] == 300_000
    assert handler.handle(rev).body["balance"] == 300_000
    assert balance(conn, number) == 300_000
    # after the expiry date: answered as an unknown card, the rest expires once
    clock.jump(days=40)
    assert handler.handle(request("inquiry", {"card": number, "gross": 10_000})).code == "14"
    [r] = store_giftcards.report(conn, club_id(conn), clock())  # counted before the sweep
    assert (r.expired, r.outstanding) == (1_300_000, 0)
    with store.transaction(conn):
        assert store_giftcards.expire_due(conn, club_id(conn), clock()) == 1_300_000
    with store.transaction(conn):
        assert store_giftcards.expire_due(conn, club_id(conn), clock()) == 0
    [r] = store_giftcards.report(conn, club_id(conn), clock())
    assert (r.issued, r.used, r.expired, r.outstanding) == (3, 200_000, 1_300_000, 0)
    assert balance(conn, other) == 0


def test_gift_card_holds_lapse_declines_and_reversal_before_advice(
    handler: Handler, conn: Connection, clock: FakeClock
) -> None:
    number = issue(conn, clock, 1)[0]
    _, q = inquire(handler, number, 100_001)
    clock.jump(seconds=Program().hold_seconds + 1)
    _, q2 = inquire(handler, number, 600_000)  # the lapsed hold is the card's again
    assert q2["discount"] == 500_000
    declined = advice(amount=600_000, gross=600_000, occurred_at=clock.iso(),
                      quote_id=q2["quote_id"], bank_code="51")
    assert handler.handle(declined).body["balance"] == 500_000
    # the lapsed quote's late advice takes what the card still has of it
    late = advice(amount=1, gross=100_001, occurred_at=clock.iso(), quote_id=q["quote_id"])
    assert handler.handle(late).body["balance"] == 400_000
    # reversed before its advice came: the hold is freed, the advice takes nothing
    _, q4 = inquire(handler, number, 50_001)
    adv4 = advice(amount=1, gross=50_001, occurred_at=clock.iso(), quote_id=q4["quote_id"])
    assert handler.handle(reversal(adv4, occurred_at=clock.iso())).code == "00"
    assert balance(conn, number) == 400_000
    assert handler.handle(adv4).body["balance"] == 400_000
    [r] = store_giftcards.report(conn, club_id(conn), clock())
    assert (r.used, r.outstanding) == (100_000, 400_000)


def handler_of(conn: Connection, clock: FakeClock) -> Handler:
    return Handler(conn, Program(), clock=clock)


def test_gift_card_unknown_and_capped(conn: Connection, clock: FakeClock) -> None:
    number = issue(conn, clock, 1)[0]
    body = number[:-5] + ("00000" if number[-5:-1] != "0000" else "11110")
    fake = body[:-1] + giftcards.luhn_check_digit(body[:-1])
    assert giftcards.is_gift_card(fake) and fake != number
    h = Handler(conn, Program(gift_max_percent=50), clock=clock)
    assert h.handle(request("inquiry", {"card": fake, "gross": 10_000})).code == "14"
    _, q = inquire(h, number, 400_000)
    assert (q["discount"], q["net"]) == (200_000, 200_000)
    # the bank card always pays at least 1 rial: an approved 0220 of 0 would be refused
    _, q = inquire(handler_of(conn, clock), number, 1_000)
    assert (q["discount"], q["net"], q["balance"]) == (999, 1, 299_001)


def test_giftcard_cli_issue_list_show(
    db: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "cards.csv"
    assert main(["giftcard", "issue", "--db", db, "--value", "250000", "--expires",
                 "1499/01/01", "--count", "4", "--csv", str(out)]) == 0
    assert "4 cards of 250000 rials" in capsys.readouterr().out
    rows = list(csv.reader(out.read_text(encoding="ascii").splitlines()))
    assert rows[0] == ["number", "value", "expiry"] and len(rows) == 5
    assert all(giftcards.is_gift_card(r[0]) and r[1:] == ["250000", "1499/01/01"]
               for r in rows[1:])
    number = rows[1][0]
    assert main(["giftcard", "show", number, "--db", db]) == 0
    shown = capsys.readouterr().out
    assert number not in shown and number[-4:] in shown and "balance 250000" in shown
    assert main(["giftcard", "show", number, "--db", db, "--unmasked"]) == 0
    assert number in capsys.readouterr().out
    assert main(["giftcard", "list", "--db", db]) == 0
    assert capsys.readouterr().out.splitlines()[1].split()[3:] == ["4", "0", "0", "0",
                                                                    "1000000"]
    assert main(["giftcard", "sell", rows[1][0], rows[2][0], "--db", db]) == 0
    assert main(["giftcard", "sell", rows[3][0], "1234", "--db", db]) == 2  # all or nothing
    assert main(["giftcard", "list", "--db", db]) == 0
    assert capsys.readouterr().out.splitlines()[-1].split()[3:5] == ["4", "2"]
    # refused: a past date, a CSV that exists; nothing written
    assert main(["giftcard", "issue", "--db", db, "--value", "1", "--expires", "2020-01-01",
                 "--count", "1"]) == 2
    assert main(["giftcard", "issue", "--db", db, "--value", "1", "--expires", "1499-01-01",
                 "--count", "1", "--csv", str(out)]) == 2
    assert "after today" in capsys.readouterr().err
    conn = store.connect(db)
    try:
        assert len(store_giftcards.batches(conn, club_id(conn))) == 1
    finally:
        conn.close()


@pytest.mark.parametrize("rest", [0, 300_000, 12_300_000, 1_000_000_000])
def test_gift_card_mg_keeps_the_expiry_whole(rest: int) -> None:
    """MG's limit is in bytes: the expiry date is never cut in half."""
    card = giftcards.GiftCard("9981000000000000", 1, rest + 1, EXPIRES)
    q = giftcards.GiftQuote(10, 1, 9, 9, rest)
    mg = giftcards.inquiry_fields(q, card)["MG"]
    assert len(mg.encode()) <= 64 and mg.endswith("۱۴۰۵/۱۰/۱۰")


def test_gift_card_number_is_never_linked_as_a_loyalty_card(
    handler: Handler, conn: Connection, clock: FakeClock, db: str,
    capsys: pytest.CaptureFixture[str]
) -> None:
    number = issue(conn, clock, 1)[0]
    assert handler.handle(request("enroll", {"phone": "09120000001"})).code == "00"
    m = store.member_by_phone(conn, "09120000001", club_id=club_id(conn))
    assert m is not None
    with pytest.raises(store_members.CardError), store.transaction(conn):
        store_members.link_card(conn, m.id, number, clock())
    assert main(["card", "add", "09120000001", number, "--db", db]) == 2
    assert "gift card" in capsys.readouterr().err
    assert store.card_owner(conn, number) is None


def test_the_sweep_frees_lapsed_gift_holds_and_expires_past_cards(
    handler: Handler, conn: Connection, clock: FakeClock
) -> None:
    number, unused = issue(conn, clock, 2)
    inquire(handler, number, 100_001)
    clock.jump(seconds=Program().hold_seconds + 1)
    handler.sweep()
    assert balance(conn, number) == 500_000
    [h] = conn.execute("SELECT status FROM gift_holds").fetchall()
    assert h[0] == "expired"
    clock.jump(days=40)
    handler.sweep()
    handler.sweep()  # twice: expired once
    assert balance(conn, number) == 0 and balance(conn, unused) == 0
    [r] = store_giftcards.report(conn, club_id(conn), clock())
    assert (r.expired, r.outstanding) == (1_000_000, 0)


def test_another_clubs_gift_card_is_unknown_here(
    handler: Handler, conn: Connection, clock: FakeClock
) -> None:
    with store.transaction(conn):
        other = store_registry.add_club(conn, "کافه دوم", clock())
        _, [theirs] = store_giftcards.issue(conn, other.id, 100_000, EXPIRES, 1, clock())
    assert handler.handle(request("inquiry", {"card": theirs.number, "gross": 50_000})).code \
        == "14"
    assert balance(conn, theirs.number) == 100_000
    assert store_giftcards.report(conn, club_id(conn), clock()) == []


def test_a_number_another_club_made_is_skipped(conn: Connection, clock: FakeClock) -> None:
    """Two clubs' keys may map two serials to one number: the batch skips it."""
    with store.transaction(conn):
        other = store_registry.add_club(conn, "کافه دوم", clock())
        theirs, _ = store_giftcards.issue(conn, other.id, 1_000, EXPIRES, 1, clock())
        ours = club_id(conn)
        store_giftcards.issue(conn, ours, 1_000, EXPIRES, 1, clock())  # makes our key
        secret = bytes(conn.execute("SELECT secret FROM gift_keys WHERE club_id = ?",
                                    (ours,)).fetchone()[0])
        taken = giftcards.card_number(secret, 1)  # our next number, given to the other club
        conn.execute("INSERT INTO gift_cards(number, batch_id, serial) VALUES (?, ?, 99)",
                     (taken, theirs.id))
    with store.transaction(conn):
        _, cards = store_giftcards.issue(conn, ours, 1_000, EXPIRES, 2, clock())
    assert taken not in [c.number for c in cards] and len(set(c.number for c in cards)) == 2
    assert conn.execute("SELECT next_serial FROM gift_keys WHERE club_id = ?",
                        (ours,)).fetchone()[0] == 4
    assert [balance(conn, c.number) for c in cards] == [1_000, 1_000]
