"""A gift card sold, used twice in part at the till through the agent, reversed, and
expired (issue 16): a real terminal over a pseudo-terminal, the agent, Mosquitto and the
backend as real processes, on both engines. The 0110 is PROTOCOL.md's own: TR `gift`,
the card's rest in CB and MG (docs/protocol-readings.md 26)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest

from backend import giftcards, store, store_giftcards, store_registry
from demo.mosquitto import Mosquitto
from tests.agent.agent_terminal import (
    Terminal,
    header,
    start_agent,
    start_backend,
    status,
    stop,
    tlv,
    wait_for,
)
from tests.backend import engines

pytestmark = pytest.mark.slow
db, pg_url, postgres_server = engines.db, engines.pg_url, engines.postgres_server


def balance(target: str, number: str) -> int:
    con = store.connect(target)
    try:
        return giftcards.balance(store_giftcards.movements(con, number))
    finally:
        con.close()


def inquiry(stan: int, number: str, gross: int) -> dict[str, str]:
    return {"t": "0100", "3": "310000", "4": f"{gross:012d}", **header(stan),
            "48": tlv({"CN": number})}


def advice(stan: int, gross: int, net: int, qi: str) -> dict[str, str]:
    return {"t": "0220", "3": "000000", "4": f"{net:012d}", **header(stan),
            "37": f"{stan:012d}", "38": "A1B2C3", "39": "00",
            "48": tlv({"GA": str(gross), "QI": qi}), "49": "364"}


def test_gift_card_used_twice_in_part_reversed_and_expired_at_the_till(
    tmp_path: Path, broker: Mosquitto, term: Terminal, db: str
) -> None:
    engines.register_test_terminals(db)
    con = store.connect(db)
    try:
        club = min(store_registry.list_clubs(con), key=lambda c: c.id)
        with store.transaction(con):
            _, cards = store_giftcards.issue(con, club.id, 500_000, date(2099, 1, 1), 2,
                                             datetime.now(UTC))
            store_giftcards.mark_sold(con, cards[0].number, datetime.now(UTC))
    finally:
        con.close()
    number = cards[0].number
    backend = start_backend(tmp_path, broker.address, db)
    agent = start_agent(tmp_path, broker.address, term.path, "--advice-wait", "0")
    try:
        wait_for(lambda: status(term, 1)["ST"] == "ON", timeout=30)
        # first use: 200,000 of the card's 500,000
        q1 = term.ask(inquiry(2, number, 200_001), timeout=5)
        assert q1["t"] == "0110" and q1["39"] == "00", q1
        t1 = q1["tlv"]
        assert (t1["TR"], t1["DA"], t1["NA"], t1["CB"]) == ("gift", "200000", "1", "300000")
        assert t1["MG"].startswith("کارت هدیه") and "OV" not in t1
        assert term.ask(advice(3, 200_001, 1, t1["QI"]))["39"] == "00"
        wait_for(lambda: status(term, 4)["QD"] == "0", timeout=30)
        assert balance(db, number) == 300_000
        # second use, the rest, with the bank card paying the remainder; then reversed
        q2 = term.ask(inquiry(5, number, 400_000), timeout=5)
        t2 = q2["tlv"]
        assert (q2["39"], t2["DA"], t2["NA"], t2["CB"]) == ("00", "300000", "100000", "0")
        assert term.ask(advice(6, 400_000, 100_000, t2["QI"]))["39"] == "00"
        wait_for(lambda: status(term, 7)["QD"] == "0", timeout=30)
        assert balance(db, number) == 0
        rev = {"t": "0420", "3": "000000", "4": f"{100_000:012d}", **header(6),
               "37": f"{6:012d}", "48": tlv({"QI": t2["QI"]})}
        assert term.ask(rev)["39"] == "00"
        wait_for(lambda: balance(db, number) == 300_000, timeout=30)
        # an unknown gift card number: 14, as an unknown loyalty card
        body = number[:-1]
        other = next(b + giftcards.luhn_check_digit(b) for b in
                     (body[:-4] + f"{(int(body[-4:]) + i) % 10_000:04d}" for i in range(1, 9))
                     if b + giftcards.luhn_check_digit(b) not in {c.number for c in cards})
        assert term.ask(inquiry(8, other, 10_000), timeout=5)["39"] == "14"
    finally:
        stop(agent)
        stop(backend)
    # after its last day: the rest expires, and the report says so per batch
    later = datetime(2099, 1, 3, tzinfo=UTC)
    con = store.connect(db)
    try:
        with store.transaction(con):
            assert store_giftcards.expire_due(con, club.id, later) == 800_000
        [r] = store_giftcards.report(con, club.id, later - timedelta(days=1))
        assert (r.issued, r.sold, r.used, r.expired, r.outstanding) == (
            2, 1, 200_000, 800_000, 0)
    finally:
        con.close()
