"""Money handling found wrong in review: each test failed before its fix."""

from __future__ import annotations

import tomllib
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from backend import config, ledger, store
from backend.handlers import Handler
from backend.program import Program
from tests.backend.core_helpers import FakeClock, advice, phone, request, reversal


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def handler(tmp_path: Path, clock: FakeClock) -> Iterator[Handler]:
    conn = store.connect(tmp_path / "loyalty.db")
    yield Handler(conn, Program(), clock=clock, response_retention=timedelta(days=30))
    conn.close()


def member(h: Handler, p: str) -> store.Member:
    m = store.member_by_phone(h.conn, p)
    assert m is not None
    return m


def ok(h: Handler, req: object) -> dict:
    resp = h.handle(req)  # type: ignore[arg-type]
    assert resp.code == "00", resp
    return resp.body


def lapsed_quote_settled_short(h: Handler, clock: FakeClock, p: str) -> object:
    """A quote whose hold lapsed and whose credit was spent elsewhere, then settled:
    900 redeemed of 30,000, debt 29,100 less the 900 its earning paid off."""
    ok(h, request("enroll", {"phone": p}))
    ok(h, advice(amount=1_000_000, occurred_at=clock.iso(), phone=p))  # earns 30,000
    q1 = ok(h, request("inquiry", {"phone": p, "gross": 60_000}))
    assert q1["discount"] == 30_000
    clock.jump(seconds=400)  # the hold lapses
    q2 = ok(h, request("inquiry", {"phone": p, "gross": 60_000}, tid="T0000002"))
    ok(h, advice(amount=30_000, gross=60_000, occurred_at=clock.iso(), quote_id=q2["quote_id"],
                 tid="T0000002"))  # fmt: skip
    assert ledger.balance(h.conn, member(h, p).id) == 900
    late = advice(amount=30_000, gross=60_000, occurred_at=clock.iso(), quote_id=q1["quote_id"])
    assert ok(h, late)["balance"] == 0
    assert member(h, p).debt == 28_200
    return late


def test_backend_reversal_voids_the_debt_of_its_own_redemption(
    handler: Handler, clock: FakeClock
) -> None:
    p = phone(1)
    late = lapsed_quote_settled_short(handler, clock, p)
    ok(handler, reversal(late, occurred_at=clock.iso()))  # type: ignore[arg-type]
    m = member(handler, p)
    # as if that purchase had never been: 900 left from the other one, nothing owed
    assert (m.debt, ledger.balance(handler.conn, m.id)) == (0, 900)
    ledger.check(handler.conn, m.id)


def test_backend_reversal_refunds_a_void_debt_already_repaid(
    handler: Handler, clock: FakeClock
) -> None:
    p = phone(1)
    late = lapsed_quote_settled_short(handler, clock, p)
    ok(handler, advice(amount=1_000_000, occurred_at=clock.iso(), phone=p))  # repays 28,200
    assert member(handler, p).debt == 0
    ok(handler, reversal(late, occurred_at=clock.iso()))  # type: ignore[arg-type]
    m = member(handler, p)
    assert (m.debt, ledger.balance(handler.conn, m.id)) == (0, 30_900)  # 30,000 + 900
    ledger.check(handler.conn, m.id)


def test_backend_reversed_first_purchase_pays_no_referral(
    handler: Handler, clock: FakeClock
) -> None:
    ref, p = phone(1), phone(2)
    ok(handler, request("enroll", {"phone": ref}))
    ok(handler, request("enroll", {"phone": p, "referrer": ref}))
    adv = advice(amount=100_000, occurred_at=clock.iso(), phone=p)
    ok(handler, reversal(adv, occurred_at=clock.iso()))  # the reversal overtakes its advice
    assert ok(handler, adv)["earned"] == 0
    assert ledger.balance(handler.conn, member(handler, ref).id) == 0
    ok(handler, advice(amount=100_000, occurred_at=clock.iso(), phone=p))  # the real first
    assert ledger.balance(handler.conn, member(handler, ref).id) == 50_000


def test_backend_stored_responses_pruned_in_batches_without_second_effect(
    handler: Handler, clock: FakeClock
) -> None:
    p = phone(1)
    ok(handler, request("enroll", {"phone": p}))
    adv = advice(amount=1_000_000, occurred_at=clock.iso(), phone=p)
    first = ok(handler, adv)
    clock.jump(days=29)
    ok(handler, request("inquiry", {"phone": p, "gross": 10_000}))
    assert handler.prune_responses(batch=1) == 0  # nothing is 30 days old yet
    clock.jump(days=2)
    assert handler.prune_responses(batch=1, max_batches=1) == 1  # small batches
    assert handler.prune_responses(batch=1) == 1
    keys = [k for (k,) in handler.conn.execute("SELECT key FROM requests")]
    assert len(keys) == 1 and ":0100:" in keys[0]  # the 29-day-old inquiry stays
    rows = handler.conn.execute("SELECT COUNT(*) FROM ledger").fetchone()[0]
    again = ok(handler, adv)  # the agent repeats it after all: answered, not applied twice
    assert again["earned"] == first["earned"]
    assert handler.conn.execute("SELECT COUNT(*) FROM ledger").fetchone()[0] == rows


def test_backend_retention_setting_checked() -> None:
    assert config.parse({}).service.requests_retention_days == 30
    doc = tomllib.loads("[service]\nrequests_retention_days = 7\n")
    with pytest.raises(config.ConfigError, match="requests_retention_days"):
        config.parse(doc)


def test_backend_checkpointer_copies_the_wal_into_the_database(tmp_path: Path) -> None:
    db = tmp_path / "loyalty.db"
    conn = store.connect(db, autocheckpoint=False)
    with store.transaction(conn):
        conn.executemany(
            "INSERT INTO members(phone, code, enrolled_at, tier) VALUES (?, ?, 0, 'bronze')",
            ((phone(i), f"C{i:06d}") for i in range(3000)),
        )
    before = db.stat().st_size  # the rows are only in the WAL: no request checkpoints
    cp = store.Checkpointer(db, interval=60).start()
    cp.stop()  # a final checkpoint on the way out
    assert db.stat().st_size > before + 50_000
    conn.close()


def test_backend_catch_up_checkpoint_lets_the_wal_start_over(tmp_path: Path) -> None:
    db = tmp_path / "loyalty.db"
    conn = store.connect(db, autocheckpoint=False)

    def write(first: int) -> None:
        with store.transaction(conn):
            conn.executemany(
                "INSERT INTO members(phone, code, enrolled_at, tier) VALUES (?, ?, 0, 'bronze')",
                ((phone(i), f"C{i:06d}") for i in range(first, first + 500)),
            )

    def wal_frames() -> int:
        return (db.with_name(db.name + "-wal").stat().st_size - 32) // (4096 + 24)

    write(0)
    write(500)
    grown = wal_frames()
    write(1000)
    assert wal_frames() > grown  # nothing checkpoints this connection's WAL by itself
    store.catch_up_checkpoint(conn)
    size = db.with_name(db.name + "-wal").stat().st_size
    write(1500)  # starts the WAL over: its file does not grow past where it was
    assert db.with_name(db.name + "-wal").stat().st_size <= size
    conn.close()
