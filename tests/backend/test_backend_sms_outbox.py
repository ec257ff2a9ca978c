"""The SMS outbox and worker on both engines: a real SQLite file (WAL, as the ledger opens
it) and a real PostgreSQL database (claims FOR UPDATE SKIP LOCKED)."""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from backend import store
from backend.engine import Connection
from backend.sms import FileSender, SendError, SmsWorker, counts, create_schema, enqueue, outbox
from backend.store import transaction
from protocols.backoff import Backoff

T0 = datetime(2026, 3, 21, 8, 0, tzinfo=UTC)
PHONE = "09121234567"


def open_db(db: str) -> Connection:
    """The backend's database (the outbox is part of its schema), autocommit mode."""
    return store.connect(db)


def queue(db: str, n: int, *, kind: str = "purchase", now: datetime = T0) -> None:
    conn = open_db(db)
    with transaction(conn):
        for i in range(n):
            enqueue(conn, key=f"k{i}", phone=PHONE, text=f"پیام {i}", kind=kind, now=now)
    conn.close()


def rows(db: str) -> list[dict[str, Any]]:
    conn = open_db(db)
    try:
        cur = conn.execute("SELECT * FROM sms_outbox ORDER BY id")
        names = [d[0] for d in cur.description]
        return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]
    finally:
        conn.close()


class ScriptedSender:
    """Fails as told, then succeeds; records every attempt."""

    def __init__(self, failures: list[SendError] | None = None, delay: float = 0.0) -> None:
        self.failures = list(failures or [])
        self.delay = delay
        self.attempts: list[tuple[str, str, str]] = []
        self.lock = threading.Lock()

    def send(self, phone: str, text: str, kind: str) -> None:
        with self.lock:
            self.attempts.append((phone, text, kind))
            failure = self.failures.pop(0) if self.failures else None
        if self.delay:
            time.sleep(self.delay)
        if failure is not None:
            raise failure


def test_schema_is_idempotent_and_survives_reopen(db: str) -> None:
    conn = open_db(db)
    create_schema(conn)
    create_schema(conn)
    conn.close()
    assert open_db(db).execute("SELECT COUNT(*) FROM sms_outbox").fetchone()[0] == 0


class _Rollback(Exception):
    pass


def test_enqueue_joins_the_callers_transaction(db: str) -> None:
    conn = open_db(db)
    other = open_db(db)

    def seen() -> int:
        return other.execute("SELECT COUNT(*) FROM sms_outbox").fetchone()[0]

    with pytest.raises(_Rollback), transaction(conn):
        assert enqueue(conn, key="p1", phone=PHONE, text="x", kind="purchase", now=T0)
        assert conn.in_transaction
        # Nothing is visible elsewhere until the caller commits: enqueue never commits.
        assert seen() == 0
        raise _Rollback
    assert seen() == 0

    with transaction(conn):
        assert enqueue(conn, key="p1", phone=PHONE, text="x", kind="purchase", now=T0)
        assert seen() == 0
    assert seen() == 1
    conn.close()
    other.close()


def test_enqueue_is_idempotent_by_key(db: str) -> None:
    conn = open_db(db)
    with transaction(conn):
        assert enqueue(conn, key="w:1", phone="+989121234567", text="a", kind="welcome", now=T0)
        assert not enqueue(conn, key="w:1", phone=PHONE, text="b", kind="welcome", now=T0)
    (row,) = rows(db)
    assert (row["key"], row["phone"], row["text"], row["status"]) == ("w:1", PHONE, "a", "pending")


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"kind": "promo"}, "kind"),
        ({"key": ""}, "key"),
        ({"text": "  "}, "text"),
        ({"phone": "12345"}, "phone"),
        ({"now": "2026-03-21"}, "datetime"),
    ],
)
def test_bad_enqueue_changes_nothing(db: str, changes: dict, message: str) -> None:
    conn = open_db(db)
    args = {"key": "k", "phone": PHONE, "text": "x", "kind": "otp", "now": T0} | changes
    with pytest.raises(ValueError, match=message), transaction(conn):
        enqueue(conn, **args)
    conn.close()
    assert rows(db) == []


def test_counts_by_status_and_period(db: str) -> None:
    conn = open_db(db)
    with transaction(conn):
        for i in range(5):
            enqueue(conn, key=f"k{i}", phone=PHONE, text="x", kind="other",
                    now=T0 + timedelta(days=i))  # fmt: skip
        conn.execute("UPDATE sms_outbox SET status = 'sent' WHERE key IN ('k0', 'k1', 'k3')")
        conn.execute("UPDATE sms_outbox SET status = 'failed' WHERE key = 'k2'")
        conn.execute("UPDATE sms_outbox SET status = 'sending' WHERE key = 'k4'")
    assert counts(conn) == {"sent": 3, "pending": 1, "failed": 1}
    day = timedelta(days=1)
    assert counts(conn, since=T0 + day, until=T0 + 3 * day) == {
        "sent": 1,
        "pending": 0,
        "failed": 1,
    }
    assert counts(conn, since=T0 + 3 * day) == {"sent": 1, "pending": 1, "failed": 0}
    assert counts(conn, until=T0) == {"sent": 0, "pending": 0, "failed": 0}


def test_worker_sends_to_the_file_sender(db: str, tmp_path: Path) -> None:
    queue(db, 3, kind="welcome")
    out = tmp_path / "sms.jsonl"
    worker = SmsWorker(db, FileSender(out))
    try:
        assert worker.run_once(T0) == 3
        assert worker.run_once(T0) == 0
    finally:
        worker.stop()
    lines = [json.loads(x) for x in out.read_text(encoding="utf-8").splitlines()]
    assert [(r["phone"], r["kind"], r["text"]) for r in lines] == [
        (PHONE, "welcome", f"پیام {i}") for i in range(3)
    ]
    assert all(r["status"] == "sent" and r["attempts"] == 1 for r in rows(db))
    assert counts(open_db(db)) == {"sent": 3, "pending": 0, "failed": 0}


def test_file_sender_takes_a_batch_in_one_write(db: str, tmp_path: Path) -> None:
    """The worker hands the file sender a whole claim at once: one line per SMS, all
    recorded sent; a file that cannot be written leaves every one of them to a retry."""
    queue(db, 40)
    blocked = tmp_path / "not-a-file"
    blocked.mkdir()  # open() fails: a temporary error for the whole batch
    worker = SmsWorker(db, FileSender(blocked), base_delay=10.0)
    try:
        assert worker.run_once(T0) == 0
    finally:
        worker.stop()
    assert {(r["status"], r["attempts"], r["next_attempt_at"]) for r in rows(db)} == {
        ("pending", 1, T0.timestamp() + 10.0)
    }
    out = tmp_path / "sms.jsonl"
    worker = SmsWorker(db, FileSender(out), batch=16)
    try:
        assert worker.run_once(T0 + timedelta(seconds=10)) == 40
    finally:
        worker.stop()
    lines = [json.loads(x) for x in out.read_text(encoding="utf-8").splitlines()]
    assert [r["text"] for r in lines] == [f"پیام {i}" for i in range(40)]
    assert all(r["status"] == "sent" and r["attempts"] == 2 for r in rows(db))


def test_temporary_failures_back_off_exponentially(db: str) -> None:
    queue(db, 1)
    outage = [SendError("gateway down", temporary=True) for _ in range(3)]
    sender = ScriptedSender(outage)
    worker = SmsWorker(db, sender, base_delay=10.0, max_delay=600.0)
    try:
        now = T0
        expected_delays = [10.0, 20.0, 40.0]
        for delay in expected_delays:
            assert worker.run_once(now) == 0
            (row,) = rows(db)
            assert row["status"] == "pending"
            assert row["next_attempt_at"] == pytest.approx(now.timestamp() + delay)
            tries = len(sender.attempts)
            # Not due yet: nothing is tried.
            assert worker.run_once(now + timedelta(seconds=delay - 1)) == 0
            assert len(sender.attempts) == tries
            now += timedelta(seconds=delay)
        assert worker.run_once(now) == 1
    finally:
        worker.stop()
    (row,) = rows(db)
    assert (row["status"], row["attempts"], row["last_error"]) == ("sent", 4, None)


def test_backoff_is_capped() -> None:
    delays = [Backoff(10.0, 300.0).delay(n) for n in range(1, 9)]
    assert delays == [10, 20, 40, 80, 160, 300, 300, 300]


def test_gives_up_after_max_attempts(db: str, caplog: pytest.LogCaptureFixture) -> None:
    queue(db, 1)
    sender = ScriptedSender([SendError("down", temporary=True) for _ in range(10)])
    worker = SmsWorker(db, sender, max_attempts=3, base_delay=1.0, max_delay=1.0)
    caplog.set_level(logging.INFO)
    try:
        now = T0
        for _ in range(5):
            worker.run_once(now)
            now += timedelta(seconds=1)
    finally:
        worker.stop()
    assert len(sender.attempts) == 3
    (row,) = rows(db)
    assert (row["status"], row["attempts"], row["last_error"]) == ("failed", 3, "down")
    assert any("gave up after 3 tries" in r.getMessage() for r in caplog.records)


def test_permanent_failure_is_marked_and_logged_masked(
    db: str, caplog: pytest.LogCaptureFixture
) -> None:
    queue(db, 2)
    sender = ScriptedSender([SendError("gateway status 411: bad receptor", temporary=False)])
    worker = SmsWorker(db, sender)
    caplog.set_level(logging.DEBUG)
    try:
        assert worker.run_once(T0) == 1
        assert worker.run_once(T0 + timedelta(days=1)) == 0
    finally:
        worker.stop()
    first, second = rows(db)
    assert (first["status"], first["attempts"]) == ("failed", 1)
    assert "411" in first["last_error"]
    assert second["status"] == "sent"
    assert len(sender.attempts) == 2
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "0912*****67" in logged
    assert PHONE not in logged


def test_a_sender_bug_is_retried_not_lost(db: str) -> None:
    queue(db, 1)
    sender = ScriptedSender([RuntimeError("oops")])  # type: ignore[list-item]
    worker = SmsWorker(db, sender, base_delay=5.0)
    try:
        assert worker.run_once(T0) == 0
        assert rows(db)[0]["status"] == "pending"
        assert worker.run_once(T0 + timedelta(seconds=5)) == 1
    finally:
        worker.stop()


def test_a_lapsed_claim_is_taken_over(db: str) -> None:
    queue(db, 1)
    conn = open_db(db)
    # A process claims the SMS and dies before sending it.
    (claimed,) = outbox.claim_due(conn, owner="dead", now=T0.timestamp(), lease=60.0)
    assert claimed.attempts == 1
    assert outbox.claim_due(conn, owner="other", now=T0.timestamp() + 59, lease=60.0) == []
    sender = ScriptedSender()
    worker = SmsWorker(db, sender, lease=60.0)
    try:
        assert worker.run_once(T0 + timedelta(seconds=30)) == 0
        assert worker.run_once(T0 + timedelta(seconds=60)) == 1
    finally:
        worker.stop()
    # The dead owner's late report cannot overwrite the new state.
    assert not outbox.mark_failed(conn, claimed.id, owner="dead", now=T0.timestamp(), error="x")
    assert rows(db)[0]["status"] == "sent"
    conn.close()


def test_two_workers_never_send_one_sms_twice(db: str) -> None:
    n = 60
    queue(db, n)
    sender = ScriptedSender(delay=0.002)
    workers = [SmsWorker(db, sender), SmsWorker(db, sender)]
    results: list[int] = []

    def drain(worker: SmsWorker) -> None:
        results.append(worker.run_once(T0))

    threads = [threading.Thread(target=drain, args=(w,)) for w in workers]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    for w in workers:
        w.stop()
    assert sum(results) == n
    sent = Counter(text for _, text, _ in sender.attempts)
    assert len(sent) == n and set(sent.values()) == {1}
    assert all(r["status"] == "sent" for r in rows(db))


def test_started_worker_sends_and_stops(db: str, tmp_path: Path) -> None:
    conn = open_db(db)
    out = tmp_path / "sms.jsonl"
    worker = SmsWorker(db, FileSender(out), poll_interval=0.05)
    worker.start()
    try:
        with transaction(conn):
            enqueue(conn, key="live", phone=PHONE, text="سلام", kind="other",
                    now=datetime.now(UTC))  # fmt: skip
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not out.exists():
            time.sleep(0.05)
    finally:
        worker.stop(timeout=20)
    assert json.loads(out.read_text(encoding="utf-8"))["text"] == "سلام"
    assert counts(conn) == {"sent": 1, "pending": 0, "failed": 0}
    conn.close()


def test_claims_come_in_batches_oldest_first(db: str) -> None:
    conn = open_db(db)
    with transaction(conn):
        for i in range(5):
            enqueue(conn, key=f"k{i}", phone=PHONE, text=str(i), kind="other",
                    now=T0 - timedelta(seconds=i))  # fmt: skip
    conn.close()
    auto = open_db(db)
    first = outbox.claim_due(auto, owner="a", now=T0.timestamp(), lease=60, limit=3)
    assert [c.text for c in first] == ["4", "3", "2"]
    second = outbox.claim_due(auto, owner="b", now=T0.timestamp(), lease=60, limit=3)
    assert [c.text for c in second] == ["1", "0"]
    assert outbox.release(auto, [c.id for c in first], owner="b") == 0  # not b's to release
    assert outbox.release(auto, [c.id for c in first], owner="a") == 3
    again = outbox.claim_due(auto, owner="c", now=T0.timestamp(), lease=60, limit=9)
    assert [(c.text, c.attempts) for c in again] == [("4", 1), ("3", 1), ("2", 1)]
    auto.close()


def test_sent_marks_are_grouped_and_only_for_the_owner(db: str) -> None:
    conn = open_db(db)
    with transaction(conn):
        for i in range(4):
            enqueue(conn, key=f"k{i}", phone=PHONE, text=str(i), kind="other", now=T0)
    conn.close()
    auto = open_db(db)
    mine = outbox.claim_due(auto, owner="a", now=T0.timestamp(), lease=60, limit=4)
    ids = [c.id for c in mine]
    assert outbox.mark_sent_many(auto, ids, owner="b", now=T0.timestamp()) == 0
    assert outbox.mark_sent_many(auto, ids[:3], owner="a", now=T0.timestamp()) == 3
    assert outbox.mark_sent_many(auto, [], owner="a", now=T0.timestamp()) == 0
    assert counts(auto) == {"sent": 3, "pending": 1, "failed": 0}
    auto.close()


def test_stop_finishes_the_sms_in_hand_and_hands_back_the_rest(db: str, tmp_path: Path) -> None:
    queue(db, 5)
    out = tmp_path / "sms.jsonl"

    class StopAfterFirst(FileSender):
        def send(self, phone: str, text: str, kind: str) -> None:
            worker.request_stop()  # as SIGTERM would, while this SMS is in hand
            super().send(phone, text, kind)

    worker = SmsWorker(db, StopAfterFirst(out), poll_interval=0.05)
    worker.start()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not out.exists():
        time.sleep(0.02)
    worker.stop(timeout=30)
    assert len(out.read_text(encoding="utf-8").splitlines()) == 1
    statuses = [(r["status"], r["attempts"], r["claimed_by"]) for r in rows(db)]
    assert statuses[0] == ("sent", 1, None)
    assert statuses[1:] == [("pending", 0, None)] * 4
    # Another worker sends the rest at once, with no lease to wait for.
    other = SmsWorker(db, FileSender(out))
    try:
        assert other.run_once(T0) == 4
    finally:
        other.stop()


class WatchedLock:
    """A real lock that also tells when a thread has asked for it with `with lock:`."""

    def __init__(self) -> None:
        self.inner = threading.Lock()
        self.asked = threading.Event()

    def __enter__(self) -> WatchedLock:
        self.asked.set()
        self.inner.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.inner.release()


def test_worker_writes_only_under_the_shared_lock(db: str, tmp_path: Path) -> None:
    queue(db, 3)
    out = tmp_path / "sms.jsonl"
    lock = WatchedLock()
    worker = SmsWorker(db, FileSender(out), write_lock=lock)  # type: ignore[arg-type]
    sent: list[int] = []
    try:
        with lock.inner:  # the ledger's writer is in a transaction: the worker must wait
            runner = threading.Thread(target=lambda: sent.append(worker.run_once(T0)))
            runner.start()
            assert lock.asked.wait(10)  # the worker has come to the lock ...
            # ... having claimed, sent and marked nothing before it
            untouched = [(r["status"], r["attempts"], r["claimed_by"]) for r in rows(db)]
            assert untouched == [("pending", 0, None)] * 3
            assert sent == [] and not out.exists()
        runner.join(30)
        assert sent == [3]
        assert [r["status"] for r in rows(db)] == ["sent"] * 3
    finally:
        worker.stop()
