"""The performance fixes keep their behaviour: the sweep's look-up of expired lots and the
in-process write lock the SMS worker shares with the ledger's writer."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

from backend import ledger, store
from backend.sms import FileSender, SmsWorker, enqueue

T0 = datetime(2026, 3, 21, 8, 0, tzinfo=UTC)
PHONE = "09121234567"


def _member(conn, phone: str) -> int:
    return store.insert_member(conn, phone=phone, referrer_id=None, tier="bronze", now=T0).id


def test_members_with_expired_lots_once_each_by_the_expiry_index(tmp_path: Path) -> None:
    conn = store.connect(tmp_path / "l.db")
    with store.transaction(conn):
        a, b, c = (_member(conn, f"0912000000{i}") for i in range(3))
        for n, (mid, days) in enumerate([(a, 1), (a, 2), (b, 3), (c, 400)]):
            ledger.credit(
                conn, mid, "earn", 1000, f"k{n}", earned_at=T0,
                expires_at=T0 + timedelta(days=days),
            )  # fmt: skip
    later = T0 + timedelta(days=10)
    assert sorted(ledger.members_with_expired_lots(conn, later)) == [a, b]
    assert ledger.members_with_expired_lots(conn, T0) == []
    plan = " ".join(
        str(r[-1])
        for r in conn.execute(
            "EXPLAIN QUERY PLAN SELECT member_id FROM lots WHERE remaining > 0 AND expires_at <= ?",
            (0,),
        )
    )
    assert "lots_expiring" in plan, plan
    conn.close()


def test_sms_worker_writes_only_under_the_shared_lock(tmp_path: Path) -> None:
    db = tmp_path / "l.db"
    conn = store.connect(db)
    with store.transaction(conn):
        for i in range(3):
            enqueue(conn, key=f"k{i}", phone=PHONE, text=f"پیام {i}", kind="purchase", now=T0)
    lock = threading.Lock()
    worker = SmsWorker(db, FileSender(tmp_path / "sms.jsonl"), write_lock=lock)
    sent: list[int] = []
    try:
        with lock:  # the ledger's writer is in a transaction: the worker must wait
            runner = threading.Thread(target=lambda: sent.append(worker.run_once(T0)))
            runner.start()
            runner.join(0.5)
            assert runner.is_alive() and sent == []
            assert (
                conn.execute("SELECT COUNT(*) FROM sms_outbox WHERE status = 'pending'").fetchone()[
                    0
                ]
                == 3
            )
        runner.join(30)
        assert sent == [3]
        assert (
            conn.execute("SELECT COUNT(*) FROM sms_outbox WHERE status = 'sent'").fetchone()[0] == 3
        )
    finally:
        worker.stop()
        conn.close()
