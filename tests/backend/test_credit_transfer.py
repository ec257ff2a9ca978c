"""Credit transfer between members (backend.credit_transfer), on both engines.

The code is read back from the SMS outbox, as the member reads it from the phone. After
every transfer the ledger invariants hold for both members and the per-day aggregates
equal the raw rows.
"""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest

from backend import credit_transfer, ledger, store, store_daily, store_transfers
from backend.credit_transfer import CodeRefused, TransferError
from backend.engine import Connection
from backend.handlers import Handler
from backend.program import Program
from backend.sms.senders import otp_token
from tests.backend.core_helpers import FakeClock, phone, request

PROGRAM = Program(transfer_min=10_000, transfer_max=500_000, transfer_day_max=600_000)
SHOP = "کافه"
CLUB = 1


def member(conn: Connection, n: int, clock: FakeClock, *lots: tuple[int, int]) -> int:
    """A member of phone(n) with lots of (amount, days to expiry)."""
    with store.transaction(conn):
        m = store.insert_member(conn, phone=phone(n), referrer_id=None, tier="bronze",
                                now=clock(), club_id=CLUB)
        for i, (amount, days) in enumerate(lots):
            ledger.credit(conn, m.id, "adjustment", amount, f"seed:{m.id}:{i}",
                          earned_at=clock(), expires_at=clock() + timedelta(days=days))
    return m.id


def code_of(conn: Connection, transfer_id: int) -> str:
    t = store_transfers.get(conn, transfer_id)
    assert t is not None and t.otp_id is not None
    text = conn.execute("SELECT text FROM sms_outbox WHERE key = ?",
                        (f"otp:{t.otp_id}",)).fetchone()[0]
    return otp_token(text)


def start(conn: Connection, sender: int, to: str, amount: int, clock: FakeClock,
          program: Program = PROGRAM) -> int:
    return credit_transfer.start(conn, CLUB, sender, to, amount, clock(), program=program,
                                 shop_name=SHOP)


def confirm(conn: Connection, tid: int, code: str, clock: FakeClock, *, member_id: int,
            program: Program = PROGRAM) -> credit_transfer.Made:
    return credit_transfer.confirm(conn, tid, code, clock(), member_id=member_id,
                                   program=program, shop_name=SHOP)


def consistent(conn: Connection, *members: int) -> None:
    for m in members:
        ledger.check(conn, m)
    kept, raw = store_daily.kept(conn), store_daily.from_raw(conn)
    assert kept.credit == raw.credit and kept.members == raw.members


def wrong(code: str) -> str:
    return str((int(code) + 1) % 10 ** len(code)).zfill(len(code))


def rows_of(conn: Connection, kind: str) -> list[tuple[int, int, str]]:
    return [tuple(r) for r in conn.execute(
        "SELECT member_id, amount, key FROM ledger WHERE kind = ? ORDER BY id", (kind,))]


def test_transfer_enrols_the_receiver_and_keeps_the_expiries(conn: Connection,
                                                             clock: FakeClock) -> None:
    """Code by SMS, then one transaction: two ledger rows under one key, the receiver
    enrolled with a welcome SMS, lots with the giver's expiries (oldest first), SMS both."""
    a = member(conn, 1, clock, (100_000, 10), (200_000, 100))
    tid = start(conn, a, "+98 912 000 0099", 150_000, clock)
    assert ledger.balance(conn, a) == 300_000  # nothing moves before the code
    assert store.member_by_phone(conn, phone(99), club_id=CLUB) is None
    clock.jump(seconds=30)
    made = confirm(conn, tid, code_of(conn, tid), clock, member_id=a)
    b = made.receiver_id
    assert made.enrolled and not made.again and made.amount == 150_000
    assert store.member_by_id(conn, b).phone == phone(99)
    key = store_transfers.get(conn, tid).key
    assert rows_of(conn, "transfer_out") == [(a, -150_000, f"transfer:{key}:out")]
    assert rows_of(conn, "transfer_in") == [(b, 150_000, f"transfer:{key}:in")]
    assert ledger.balance(conn, a) == 150_000 and ledger.balance(conn, b) == 150_000
    lots = conn.execute("SELECT amount, expires_at FROM lots WHERE member_id = ? "
                        "ORDER BY expires_at", (b,)).fetchall()
    start_ts = store.ts(clock() - timedelta(seconds=30))
    assert [(int(x), int(e)) for x, e in lots] == [
        (100_000, start_ts + 10 * 86_400), (50_000, start_ts + 100 * 86_400)]
    sms = {k: (p, kind) for k, p, kind in conn.execute(
        "SELECT key, phone, kind FROM sms_outbox").fetchall()}
    assert sms[f"transfer:{key}:out"] == (phone(1), "transfer")
    assert sms[f"transfer:{key}:in"] == (phone(99), "transfer")
    assert sms[f"welcome:{b}"] == (phone(99), "welcome")
    consistent(conn, a, b)


def test_an_existing_receiver_gets_the_credit_and_no_welcome(conn: Connection,
                                                             clock: FakeClock) -> None:
    a = member(conn, 1, clock, (300_000, 30))
    b = member(conn, 2, clock, (5_000, 5))
    tid = start(conn, a, phone(2), 20_000, clock)
    made = confirm(conn, tid, code_of(conn, tid), clock, member_id=a)
    assert made.receiver_id == b and not made.enrolled
    assert ledger.balance(conn, b) == 25_000
    assert conn.execute("SELECT COUNT(*) FROM sms_outbox WHERE kind = 'welcome'"
                        ).fetchone()[0] == 0
    consistent(conn, a, b)


@pytest.mark.parametrize(("amount", "reason"), [
    (9_999, "minimum"), (500_001, "per_transfer"), (0, "minimum"), (400_001, "balance"),
])
def test_limits_and_balance_refuse_with_nothing_written(conn: Connection, clock: FakeClock,
                                                        amount: int, reason: str) -> None:
    a = member(conn, 1, clock, (400_000, 30))
    with pytest.raises(TransferError) as exc:
        start(conn, a, phone(2), amount, clock)
    assert exc.value.reason == reason
    assert conn.execute("SELECT COUNT(*) FROM transfers").fetchone()[0] == 0
    assert conn.execute("SELECT COUNT(*) FROM otps").fetchone()[0] == 0
    assert conn.execute("SELECT COUNT(*) FROM sms_outbox").fetchone()[0] == 0


def test_per_day_limit_counts_the_tehran_day(conn: Connection, clock: FakeClock) -> None:
    """600,000 a day: 400,000 then 200,000 pass, 10,000 more does not, until the next
    Tehran day."""
    a = member(conn, 1, clock, (2_000_000, 30))
    for amount in (400_000, 200_000):
        tid = start(conn, a, phone(2), amount, clock)
        confirm(conn, tid, code_of(conn, tid), clock, member_id=a)
    with pytest.raises(TransferError) as exc:
        start(conn, a, phone(2), 10_000, clock)
    assert exc.value.reason == "per_day"
    clock.now = credit_transfer.day_start(clock()) + timedelta(days=1, minutes=1)
    tid = start(conn, a, phone(2), 10_000, clock)
    confirm(conn, tid, code_of(conn, tid), clock, member_id=a)
    assert ledger.balance(conn, a) == 2_000_000 - 610_000


def test_off_self_and_bad_phone_are_refused(conn: Connection, clock: FakeClock) -> None:
    a = member(conn, 1, clock, (400_000, 30))
    cases = [(Program(transfer_enabled=False), phone(2), "off"), (PROGRAM, phone(1), "self"),
             (PROGRAM, "12345", "phone")]
    for program, to, reason in cases:
        with pytest.raises(TransferError) as exc:
            start(conn, a, to, 50_000, clock, program)
        assert exc.value.reason == reason
    with pytest.raises(TransferError) as exc:
        credit_transfer.start(conn, 2, a, phone(2), 50_000, clock(), program=PROGRAM,
                              shop_name=SHOP)
    assert exc.value.reason == "club"


def test_held_credit_is_not_free(conn: Connection, clock: FakeClock) -> None:
    """A till's open hold keeps its credit: asking for more than the rest is refused, and
    a hold made between asking and confirming refuses the confirmation."""
    handler = Handler(conn, Program(), clock=clock)
    a = member(conn, 1, clock, (200_000, 30))
    q = handler.handle(request("inquiry", {"phone": phone(1), "gross": 200_000}))
    assert q.code == "00" and q.body["discount"] == 100_000
    with pytest.raises(TransferError) as exc:
        start(conn, a, phone(2), 100_001, clock)
    assert exc.value.reason == "balance"
    tid = start(conn, a, phone(2), 100_000, clock)
    q2 = handler.handle(request("inquiry", {"phone": phone(1), "gross": 20_000}))
    assert q2.body["discount"] == 10_000
    with pytest.raises(TransferError) as exc:
        confirm(conn, tid, code_of(conn, tid), clock, member_id=a)
    assert exc.value.reason == "balance"
    assert store_transfers.get(conn, tid).status == store_transfers.REFUSED
    assert rows_of(conn, "transfer_out") == []
    clock.jump(seconds=PROGRAM.hold_seconds + 1)  # the holds lapse: the credit is free again
    tid = start(conn, a, phone(2), 200_000, clock)
    made = confirm(conn, tid, code_of(conn, tid), clock, member_id=a)
    assert ledger.balance(conn, a) == 0 and ledger.balance(conn, made.receiver_id) == 200_000
    consistent(conn, a, made.receiver_id)


def test_confirming_twice_changes_nothing(conn: Connection, clock: FakeClock) -> None:
    a = member(conn, 1, clock, (300_000, 30))
    tid = start(conn, a, phone(2), 100_000, clock)
    code = code_of(conn, tid)
    first = confirm(conn, tid, code, clock, member_id=a)
    before = conn.execute("SELECT COUNT(*), SUM(amount) FROM ledger").fetchone()
    again = confirm(conn, tid, code, clock, member_id=a)
    assert again.again and again.receiver_id == first.receiver_id
    assert conn.execute("SELECT COUNT(*), SUM(amount) FROM ledger").fetchone() == before
    assert ledger.balance(conn, a) == 200_000


def test_three_wrong_codes_end_the_transfer(conn: Connection, clock: FakeClock) -> None:
    a = member(conn, 1, clock, (300_000, 30))
    tid = start(conn, a, phone(2), 100_000, clock)
    code = code_of(conn, tid)
    for _ in range(PROGRAM.otp_tries):
        with pytest.raises(CodeRefused) as exc:
            confirm(conn, tid, wrong(code), clock, member_id=a)
        assert exc.value.reason == "wrong"
    with pytest.raises(TransferError) as closed:
        confirm(conn, tid, code, clock, member_id=a)
    assert closed.value.reason == "closed"
    assert store_transfers.get(conn, tid).status == store_transfers.REFUSED
    assert ledger.balance(conn, a) == 300_000 and rows_of(conn, "transfer_in") == []


def test_a_wrong_code_then_the_right_one(conn: Connection, clock: FakeClock) -> None:
    a = member(conn, 1, clock, (300_000, 30))
    tid = start(conn, a, phone(2), 100_000, clock)
    code = code_of(conn, tid)
    with pytest.raises(CodeRefused):
        confirm(conn, tid, wrong(code), clock, member_id=a)
    assert confirm(conn, tid, code, clock, member_id=a).amount == 100_000


def test_an_expired_code_ends_the_transfer(conn: Connection, clock: FakeClock) -> None:
    a = member(conn, 1, clock, (300_000, 30))
    tid = start(conn, a, phone(2), 100_000, clock)
    clock.jump(seconds=PROGRAM.otp_seconds)
    with pytest.raises(CodeRefused) as exc:
        confirm(conn, tid, code_of(conn, tid), clock, member_id=a)
    assert exc.value.reason == "expired"
    assert store_transfers.get(conn, tid).status == store_transfers.REFUSED
    assert ledger.balance(conn, a) == 300_000


def test_only_the_sender_confirms_and_a_new_ask_voids_the_old(conn: Connection,
                                                              clock: FakeClock) -> None:
    a = member(conn, 1, clock, (300_000, 30))
    b = member(conn, 2, clock, (300_000, 30))
    tid = start(conn, a, phone(3), 100_000, clock)
    with pytest.raises(TransferError) as exc:
        confirm(conn, tid, code_of(conn, tid), clock, member_id=b)
    assert exc.value.reason == "unknown"
    old_code = code_of(conn, tid)
    tid2 = start(conn, a, phone(3), 50_000, clock)
    with pytest.raises(TransferError) as exc:
        confirm(conn, tid, old_code, clock, member_id=a)
    assert exc.value.reason == "closed"
    assert confirm(conn, tid2, code_of(conn, tid2), clock, member_id=a).amount == 50_000
    assert ledger.balance(conn, a) == 250_000 and ledger.balance(conn, b) == 300_000


def test_the_same_phone_in_another_club_is_another_member(conn: Connection,
                                                          clock: FakeClock) -> None:
    from backend import store_registry

    with store.transaction(conn):
        other = store_registry.add_club(conn, "دیگری", clock())
        store.insert_member(conn, phone=phone(2), referrer_id=None, tier="bronze",
                            now=clock(), club_id=other.id)
    a = member(conn, 1, clock, (300_000, 30))
    tid = start(conn, a, phone(2), 100_000, clock)
    made = confirm(conn, tid, code_of(conn, tid), clock, member_id=a)
    assert made.enrolled and store.member_by_id(conn, made.receiver_id).club_id == CLUB


def test_two_confirmations_at_once_move_the_credit_once(db: str, clock: FakeClock) -> None:
    """Two connections (on PostgreSQL two server sessions) confirm the same transfer at
    the same moment: one makes it, the other finds it made."""
    setup = store.connect(db)
    try:
        a = member(setup, 1, clock, (300_000, 30))
        tid = start(setup, a, phone(2), 100_000, clock)
        code = code_of(setup, tid)
    finally:
        setup.close()
    barrier = threading.Barrier(2)
    results: list[credit_transfer.Made] = []
    errors: list[BaseException] = []

    def run() -> None:
        c = store.connect(db)
        try:
            barrier.wait(timeout=30)
            results.append(confirm(c, tid, code, clock, member_id=a))
        except BaseException as exc:  # reported below
            errors.append(exc)
        finally:
            c.close()

    threads = [threading.Thread(target=run) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors, errors
    assert sorted(r.again for r in results) == [False, True]
    check = store.connect(db)
    try:
        assert len(rows_of(check, "transfer_out")) == 1
        assert ledger.balance(check, a) == 200_000
        consistent(check, a, results[0].receiver_id)
    finally:
        check.close()


def test_operator_transfer_skips_the_code_and_is_audited(conn: Connection,
                                                         clock: FakeClock) -> None:
    a = member(conn, 1, clock, (300_000, 30))
    made = credit_transfer.by_operator(conn, CLUB, phone(1), phone(5), 120_000, clock(),
                                       program=PROGRAM, shop_name=SHOP, user="ops")
    assert made.enrolled and ledger.balance(conn, made.receiver_id) == 120_000
    assert conn.execute("SELECT action, target FROM audit_log").fetchall() == [
        ("member.transfer", phone(1))]
    with pytest.raises(TransferError) as exc:
        credit_transfer.by_operator(conn, CLUB, phone(1), phone(5), 500_001, clock(),
                                    program=PROGRAM, shop_name=SHOP, user="ops")
    assert exc.value.reason == "per_transfer"
    consistent(conn, a, made.receiver_id)


def test_loyalty_backend_transfer(db: str, clock: FakeClock,
                                  capsys: pytest.CaptureFixture[str]) -> None:
    """`loyalty-backend transfer`: made at once and audited; a refused one exits 2 with the
    reason and changes nothing."""
    from backend.cli import main

    c = store.connect(db)
    try:
        a = member(c, 1, clock, (300_000, 30))
    finally:
        c.close()
    assert main(["transfer", "--from", phone(1), "--to", phone(7), "--amount", "50000",
                 "--db", db]) == 0
    assert "giver 250,000, receiver (enrolled now) 50,000" in capsys.readouterr().out
    assert main(["transfer", "--from", phone(1), "--to", phone(7), "--amount", "999999",
                 "--db", db]) == 2
    assert "free balance" in capsys.readouterr().err
    c = store.connect(db)
    try:
        assert ledger.balance(c, a) == 250_000 and len(rows_of(c, "transfer_in")) == 1
        assert c.execute("SELECT COUNT(*) FROM audit_log").fetchone()[0] == 1
    finally:
        c.close()
