"""The request handler's money paths: reversals of purchases settled short, the referral
bonus after a reversed first purchase, pruning stored responses, the sweep's queries."""

from __future__ import annotations

from datetime import timedelta

from backend import engine, ledger, store
from backend.engine import Connection
from backend.handlers import Handler
from tests.backend.core_helpers import FakeClock, advice, phone, plan, request, reversal, traced
from tests.backend.engines import sqlite_only


def member(h: Handler, p: str) -> store.Member:
    m = store.member_by_phone(h.conn, p, club_id=1)
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


@sqlite_only
def test_backend_sweep_searches_by_index_only(handler: Handler, clock: FakeClock) -> None:
    """Every statement of the sweep, as it really runs, searches an index: none scans a
    table (the sweep holds the write lock, and every request waits behind it)."""
    p, q = phone(1), phone(2)
    for who in (p, q):
        ok(handler, request("enroll", {"phone": who}))
        ok(handler, advice(amount=1_000_000, occurred_at=clock.iso(), phone=who))
    ok(handler, request("inquiry", {"phone": q, "gross": 10_000}))  # a hold that lapses
    clock.jump(days=400)
    (holds, expired), ran = traced(handler.conn, handler.sweep)
    assert holds == 1 and expired == 2 * 30_000
    assert ledger.balance(handler.conn, member(handler, p).id) == 0
    reads = [s for s in ran if s.split()[0].upper() in {"SELECT", "UPDATE", "DELETE"}]
    assert any("FROM lots" in s and "expires_at" in s for s in reads), ran
    for sql in reads:
        used = plan(handler.conn, sql)
        assert "SCAN" not in used, (sql, used)
        if sql.startswith("SELECT member_id FROM lots"):
            assert "USING INDEX lots_expiring" in used, (sql, used)


def _fail_inserts_from(conn: Connection, tid: str) -> None:
    """A real failure inside one request: the database refuses its stored response."""
    with store.transaction(conn):
        if engine.dialect_of(conn) == engine.SQLITE:
            conn.execute(
                "CREATE TRIGGER refuse_tid BEFORE INSERT ON requests "
                f"WHEN substr(NEW.key, 1, 9) = '{tid}:' BEGIN SELECT RAISE(ABORT, 'refused'); END"
            )
        else:
            conn.execute(
                "CREATE FUNCTION refuse_tid() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
                f"IF substr(NEW.key, 1, 9) = '{tid}:' THEN RAISE EXCEPTION 'refused'; END IF; "
                "RETURN NEW; END $$"
            )
            conn.execute(
                "CREATE TRIGGER refuse_tid BEFORE INSERT ON requests "
                "FOR EACH ROW EXECUTE FUNCTION refuse_tid()"
            )


def test_backend_group_commit_keeps_the_others_when_one_request_fails(
    handler: Handler, clock: FakeClock
) -> None:
    """One transaction for the group, yet a request that fails is refused alone: the
    others' effects and stored answers are committed, the failed one left no trace."""
    a, b, c = phone(1), phone(2), phone(3)
    for p in (a, b, c):
        ok(handler, request("enroll", {"phone": p}))
    _fail_inserts_from(handler.conn, "T0000009")
    group = [
        advice(amount=100_000, occurred_at=clock.iso(), phone=a),
        advice(amount=100_000, occurred_at=clock.iso(), phone=b, tid="T0000009"),
        advice(amount=100_000, occurred_at=clock.iso(), phone=c),
    ]
    out = handler.handle_batch(group)
    assert [r.code for r in out] == ["00", "96", "00"]
    assert [r.id for r in out] == [r.id for r in group]
    balances = [ledger.balance(handler.conn, member(handler, p).id) for p in (a, b, c)]
    assert balances == [out[0].body["balance"], 0, out[2].body["balance"]]
    assert balances[0] > 0
    assert store.stored_response(handler.conn, group[1].key) is None
    # the others' answers were stored: repeated, they are the same and change nothing
    again = handler.handle_batch([group[0], group[2]])
    assert [(r.code, r.body) for r in again] == [(r.code, r.body) for r in (out[0], out[2])]
    assert ledger.balance(handler.conn, member(handler, a).id) == balances[0]
    for p in (a, b, c):
        ledger.check(handler.conn, member(handler, p).id)


@sqlite_only
def test_backend_sqlite_group_runs_without_savepoints(handler: Handler, clock: FakeClock) -> None:
    """On SQLite a group that fails nowhere takes no savepoint per request (two statements
    and a copy of every page it changes again); one failing request brings them back."""
    ok(handler, request("enroll", {"phone": phone(1)}))
    group = [advice(amount=50_000, occurred_at=clock.iso(), phone=phone(1)) for _ in range(3)]
    out, ran = traced(handler.conn, lambda: handler.handle_batch(group))  # type: ignore[arg-type]
    assert [r.code for r in out] == ["00"] * 3
    assert not [s for s in ran if s.startswith("SAVEPOINT")]
    assert sum(s == "BEGIN IMMEDIATE" for s in ran) == 1
    _fail_inserts_from(handler.conn, "T0000009")
    bad = advice(amount=50_000, occurred_at=clock.iso(), phone=phone(1), tid="T0000009")
    out, ran = traced(handler.conn, lambda: handler.handle_batch([*group, bad]))  # type: ignore
    assert [r.code for r in out] == ["00"] * 3 + ["96"]
    assert sum(s.startswith("SAVEPOINT") for s in ran) == 4


@sqlite_only
def test_backend_advice_tier_from_its_one_read_of_the_purchases(
    handler: Handler, clock: FakeClock
) -> None:
    """An advice reads the member's settled purchases once (for the daily aggregates and
    the tier alike) and the tier still counts only the window's spend: a large purchase
    older than the window lifts no one."""
    ok(handler, request("enroll", {"phone": phone(3)}))
    clock.jump(days=-(handler.program.tier_window_days + 1))
    ok(handler, advice(amount=30_000_000, occurred_at=clock.iso(), phone=phone(3)))
    clock.jump(days=handler.program.tier_window_days + 1)
    _, ran = traced(handler.conn, lambda: ok(
        handler, advice(amount=10_000_000, occurred_at=clock.iso(), phone=phone(3))))
    assert member(handler, phone(3)).tier == "bronze"
    reads = [s for s in ran if "purchases" in s and "member_id = " in s]
    assert len(reads) == 1, reads
    ok(handler, advice(amount=10_000_000, occurred_at=clock.iso(), phone=phone(3)))
    assert member(handler, phone(3)).tier == "silver"  # 20,000,000 within the window
    assert store.spend(handler.conn, member(handler, phone(3)).id,
                       clock() - timedelta(days=handler.program.tier_window_days),
                       clock()) == 20_000_000
