"""Holds: who may end one (docs/backend.md, "Holds"), through the handler on a real SQLite
file with a fake clock. Each test is a case of issue 10 that failed before the fix."""

from __future__ import annotations

import shutil
import sqlite3
from datetime import UTC, datetime
from pathlib import Path

import pytest

from backend import ledger, migrations, store
from backend.handlers import Handler
from protocols import mqtt as schema
from protocols.mqtt import Request
from tests.backend.core_helpers import FakeClock, advice, phone, request, reversal

TID = "T0000001"


def member_with_credit(h: Handler, clock: FakeClock, p: str) -> int:
    """Enrol `p` and give them 30,000 of credit (3 % of a 1,000,000 purchase)."""
    assert h.handle(request("enroll", {"phone": p})).code == "00"
    earn = h.handle(advice(amount=1_000_000, occurred_at=clock.iso(), phone=p))
    assert earn.code == "00" and earn.body["balance"] == 30_000
    m = store.member_by_phone(h.conn, p, club_id=1)
    assert m is not None
    return m.id


def release(inquiry: Request, quote_id: str | None, *, tid: str = TID) -> Request:
    return Request(
        type="release",
        id=f"release-{inquiry.id}",
        key=schema.release_key(inquiry.key).replace(TID, tid, 1),
        terminal_id=tid,
        merchant_id="M00000000000001",
        body={"inquiry_key": inquiry.key, "quote_id": quote_id, "reason": "unanswered"},
    )


def status(h: Handler, qid: str) -> str:
    return h.conn.execute("SELECT status FROM quotes WHERE id = ?", (qid,)).fetchone()[0]


def test_backend_new_inquiry_does_not_end_a_held_quote(handler: Handler, clock: FakeClock) -> None:
    """Issue 10.1: the second inquiry at the same till gets only the free credit, and the
    first quote's late advice redeems exactly its DA, with no debt."""
    mid = member_with_credit(handler, clock, phone(1))
    q1 = handler.handle(request("inquiry", {"phone": phone(1), "gross": 100_000}))
    assert q1.code == "00" and q1.body["discount"] == 30_000
    q2 = handler.handle(request("inquiry", {"phone": phone(1), "gross": 100_000}))
    assert q2.code == "00" and q2.body["discount"] == 0
    assert status(handler, q1.body["quote_id"]) == "held"
    clock.jump(seconds=30)
    a1 = handler.handle(
        advice(amount=70_000, gross=100_000, occurred_at=clock.iso(),
               quote_id=q1.body["quote_id"])
    )
    assert a1.code == "00"
    row = handler.conn.execute(
        "SELECT redeemed FROM purchases WHERE quote_id = ?", (q1.body["quote_id"],)
    ).fetchone()
    assert row[0] == 30_000
    assert store.member_by_id(handler.conn, mid).debt == 0
    # discounts given (30,000 + 0) never exceed the credit the member had (30,000)
    assert q1.body["discount"] + q2.body["discount"] <= 30_000
    ledger.check(handler.conn, mid)


def test_backend_release_ends_the_hold_of_an_answered_inquiry(
    handler: Handler, clock: FakeClock
) -> None:
    """Issue 10.2: the agent gave the quote up (91 sent, or 0110 not delivered)."""
    mid = member_with_credit(handler, clock, phone(1))
    inq = request("inquiry", {"phone": phone(1), "gross": 100_000})
    q = handler.handle(inq)
    qid = q.body["quote_id"]
    assert ledger.balance(handler.conn, mid) == 0
    rel = handler.handle(release(inq, qid))
    assert rel.code == "00" and rel.body == {"released": 30_000}
    assert status(handler, qid) == "released" and ledger.balance(handler.conn, mid) == 30_000
    again = handler.handle(release(inq, qid))  # a repeat: the stored answer, no second effect
    assert again.code == "00" and again.body == {"released": 30_000}
    assert ledger.balance(handler.conn, mid) == 30_000
    ledger.check(handler.conn, mid)


def test_backend_release_before_the_inquiry_means_it_never_holds(
    handler: Handler, clock: FakeClock
) -> None:
    """Issue 10.2: a hung backend resumes and carries out an inquiry the agent answered 91
    long ago, after the release was already applied: nothing is held."""
    mid = member_with_credit(handler, clock, phone(1))
    inq = request("inquiry", {"phone": phone(1), "gross": 100_000})
    rel = handler.handle(release(inq, None))
    assert rel.code == "00" and rel.body == {"released": 0}
    late = handler.handle(inq)
    assert late.code == "12" and "released" in late.message
    assert ledger.balance(handler.conn, mid) == 30_000
    assert handler.conn.execute("SELECT COUNT(*) FROM quotes").fetchone()[0] == 0


def test_backend_release_never_touches_a_settled_or_foreign_quote(
    handler: Handler, clock: FakeClock
) -> None:
    """Only its own agent may release a quote, and only while it is held."""
    mid = member_with_credit(handler, clock, phone(1))
    inq = request("inquiry", {"phone": phone(1), "gross": 100_000})
    qid = handler.handle(inq).body["quote_id"]
    foreign = handler.handle(release(inq, qid, tid="T0000002"))
    assert foreign.code == "12"
    assert status(handler, qid) == "held"
    handler.handle(advice(amount=70_000, gross=100_000, occurred_at=clock.iso(), quote_id=qid))
    late = handler.handle(release(inq, qid))
    assert late.code == "00" and late.body == {"released": 0}
    assert status(handler, qid) == "settled"
    assert ledger.balance(handler.conn, mid) == 70_000 * 3 // 100  # only the new earning
    ledger.check(handler.conn, mid)


def test_backend_reversal_before_advice_frees_the_quote(
    handler: Handler, clock: FakeClock
) -> None:
    """A 0420 with the quote's QI ends its hold at once (PROTOCOL.md 3.2); the late advice
    then settles and is undone, leaving the member where they were."""
    mid = member_with_credit(handler, clock, phone(1))
    qid = handler.handle(request("inquiry", {"phone": phone(1), "gross": 100_000})).body[
        "quote_id"
    ]
    adv = advice(amount=70_000, gross=100_000, occurred_at=clock.iso(), quote_id=qid)
    rev = handler.handle(reversal(adv, occurred_at=clock.iso()))
    assert rev.code == "00" and rev.body["balance"] == 30_000
    assert status(handler, qid) == "reversed"
    assert handler.handle(adv).code == "00"
    assert ledger.balance(handler.conn, mid) == 30_000
    assert store.member_by_id(handler.conn, mid).debt == 0
    ledger.check(handler.conn, mid)


def test_backend_reversal_of_a_declined_advice_changes_nothing(
    handler: Handler, clock: FakeClock
) -> None:
    """Issue 10.4 (backend side): answered 00, no ledger row, no SMS."""
    mid = member_with_credit(handler, clock, phone(1))
    qid = handler.handle(request("inquiry", {"phone": phone(1), "gross": 100_000})).body[
        "quote_id"
    ]
    declined = advice(amount=0, gross=100_000, occurred_at=clock.iso(), quote_id=qid,
                      bank_code="51")
    assert handler.handle(declined).code == "00"
    rows = handler.conn.execute("SELECT COUNT(*) FROM ledger").fetchone()[0]
    sms = handler.conn.execute("SELECT COUNT(*) FROM sms_outbox").fetchone()[0]
    rev = handler.handle(reversal(declined, occurred_at=clock.iso()))
    assert rev.code == "00" and rev.body["restored"] == 0 and rev.body["taken_back"] == 0
    assert handler.conn.execute("SELECT COUNT(*) FROM ledger").fetchone()[0] == rows
    assert handler.conn.execute("SELECT COUNT(*) FROM sms_outbox").fetchone()[0] == sms
    assert ledger.balance(handler.conn, mid) == 30_000


def test_backend_reversal_sends_the_member_an_sms(handler: Handler, clock: FakeClock) -> None:
    """Issue 11: a reversal's SMS says what was undone and the new balance, once."""
    member_with_credit(handler, clock, phone(1))
    qid = handler.handle(request("inquiry", {"phone": phone(1), "gross": 100_000})).body[
        "quote_id"
    ]
    adv = advice(amount=70_000, gross=100_000, occurred_at=clock.iso(), quote_id=qid)
    handler.handle(adv)
    rev = reversal(adv, occurred_at=clock.iso())
    assert handler.handle(rev).code == "00"
    handler.handle(rev)
    texts = handler.conn.execute(
        "SELECT text FROM sms_outbox WHERE kind = 'reversal'"
    ).fetchall()
    assert len(texts) == 1
    text = texts[0][0]
    assert "برگشت" in text and "۳۰٬۰۰۰" in text and "۲٬۱۰۰" in text  # restored, taken back


def test_backend_mistyped_referrer_enrols_and_says_so(handler: Handler) -> None:
    """Issue 10.3: RF = 12345 enrols the member without a referrer, and the display says so."""
    resp = handler.handle(request("enroll", {"phone": phone(1), "referrer": "12345"}))
    assert resp.code == "00" and resp.body["new"] is True
    assert "معرف" in resp.body["display"]
    m = store.member_by_phone(handler.conn, phone(1), club_id=1)
    assert m is not None and m.referrer_id is None
    unknown = handler.handle(request("enroll", {"phone": phone(2), "referrer": phone(9)}))
    assert unknown.code == "00" and "معرف" in unknown.body["display"]
    plain = handler.handle(request("enroll", {"phone": phone(3)}))
    assert "معرف" not in plain.body["display"]


def test_backend_schema_2_outbox_takes_reversal_sms(tmp_path: Path) -> None:
    """A schema-2 database (its outbox CHECK without `reversal`) is migrated in place."""
    db = tmp_path / "old.db"
    shutil.copyfile(Path(__file__).parent / "fixtures" / "schema_v2.sqlite", db)
    raw = sqlite3.connect(db)
    raw.execute(
        "INSERT INTO sms_outbox (key, phone, text, kind, created_at, next_attempt_at) "
        "VALUES ('welcome:x1', '09121234567', 'hi', 'welcome', 1, 1)"
    )
    raw.commit()
    before = raw.execute("SELECT key FROM sms_outbox ORDER BY id").fetchall()
    raw.close()
    with pytest.raises(store.StoreError, match="migrate"):
        store.connect(db)
    conn = store.connect(db, check_schema=False)
    try:
        migrations.migrate(conn, datetime.now(UTC))
        assert conn.execute("SELECT version FROM schema_version").fetchone()[0] >= 3
        assert conn.execute("SELECT key FROM sms_outbox ORDER BY id").fetchall() == before
        conn.execute(
            "INSERT INTO sms_outbox (key, phone, text, kind, created_at, next_attempt_at) "
            "VALUES ('reversal:1', '09121234567', 'x', 'reversal', 1, 1)"
        )
        plan = conn.execute(
            "EXPLAIN QUERY PLAN SELECT id FROM sms_outbox WHERE status = 'pending' "
            "AND next_attempt_at <= 5"
        ).fetchall()
        assert any("sms_outbox_due" in str(r) for r in plan)
    finally:
        conn.close()


def test_backend_release_of_one_inquiry_never_ends_another_inquirys_quote(
    handler: Handler, clock: FakeClock
) -> None:
    """The release names its inquiry; a quote_id in its body is never trusted to end a
    quote that inquiry did not make (found in review)."""
    member_with_credit(handler, clock, phone(1))
    i1 = request("inquiry", {"phone": phone(1), "gross": 100_000})
    q1 = handler.handle(i1).body["quote_id"]
    i2 = request("inquiry", {"phone": phone(7), "gross": 100_000})  # not a member: 14
    assert handler.handle(i2).code == "14"
    resp = handler.handle(release(i2, q1))
    assert status(handler, q1) == "held"
    assert resp.body == {"released": 0}
