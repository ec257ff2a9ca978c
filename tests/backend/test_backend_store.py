"""The store: one stored-response row per key, other schema versions refused, and the WAL
checkpointed into the database (by the checkpointer thread and after a commit), and the
write turn of several processes on one SQLite file."""

from __future__ import annotations

import fcntl
import os
import signal
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from backend import engine, migrations, store
from backend.engine import Connection
from tests.backend.core_helpers import ROOT, phone


def test_backend_store_response_key_unique_and_compact(conn: Connection) -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    args = {"type": "advice", "code": "00", "message": "", "now": now}
    store.store_response(conn, key="T1:0200:1", body={"earned": 5, "name": "علی"}, **args)
    with pytest.raises(engine.IntegrityError), store.transaction(conn):
        store.store_response(conn, key="T1:0200:1", body={}, **args)
    assert store.stored_response(conn, "T1:0200:1") == store.StoredResponse(
        "advice", "00", "", {"earned": 5, "name": "علی"}
    )
    (text,) = conn.execute("SELECT body FROM requests").fetchone()
    assert text == '{"earned":5,"name":"علی"}'


@pytest.mark.parametrize(("version", "says"), [(1, "older"), (migrations.LATEST + 1, "newer")])
def test_backend_store_other_schema_version_refused(db: str, version: int, says: str) -> None:
    raw = store.connect(db, check_schema=False)
    raw.execute("UPDATE schema_version SET version = ?", (version,))
    raw.close()
    with pytest.raises(store.StoreError, match=f"schema version {version} is {says}"):
        store.connect(db)


def test_backend_checkpointer_copies_the_wal_into_the_database(tmp_path: Path) -> None:
    db = tmp_path / "loyalty.db"
    conn = store.connect(db, autocheckpoint=False)
    with store.transaction(conn):
        conn.executemany(
            "INSERT INTO members(phone, code, enrolled_at, tier, club_id) "
                "VALUES (?, ?, 0, 'bronze', 1)",
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
                "INSERT INTO members(phone, code, enrolled_at, tier, club_id) "
                "VALUES (?, ?, 0, 'bronze', 1)",
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


_HOLDER = """
import sys
from backend import store
lock = store.WriteLock(sys.argv[1])
with lock:
    print("held", flush=True)
    sys.stdin.readline()
print("let go", flush=True)
sys.stdin.readline()
"""


def test_backend_write_lock_is_one_turn_across_processes(tmp_path: Path) -> None:
    """Two backend processes on one SQLite file: one write turn at a time, handed over
    when let go, and freed when its holder is killed."""
    db = tmp_path / "loyalty.db"
    store.connect(db).close()
    mine = store.WriteLock(db)

    def holder() -> subprocess.Popen[str]:
        proc = subprocess.Popen(
            [sys.executable, "-c", _HOLDER, str(db)],
            cwd=ROOT, env={"PYTHONPATH": str(ROOT)}, text=True,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        )  # fmt: skip
        assert proc.stdout is not None and proc.stdout.readline() == "held\n"
        return proc

    def taken() -> bool:
        fd = os.open(mine.path, os.O_RDWR)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        finally:
            os.close(fd)  # closing lets go of a lock this probe took
        return False

    other = holder()
    assert taken()
    assert other.stdin is not None and other.stdout is not None
    other.stdin.write("\n")
    other.stdin.flush()
    assert other.stdout.readline() == "let go\n"
    assert not taken()
    with mine:  # our turn; the other process still runs
        assert taken()
    other.stdin.write("\n")
    other.stdin.close()
    assert other.wait(30) == 0
    killed = holder()
    assert taken()
    killed.send_signal(signal.SIGKILL)
    killed.wait(30)
    with mine:
        pass
    mine.close()


def test_backend_store_one_time_codes_of_one_purpose_leave_the_others(conn: Connection) -> None:
    """A fresh-link or transfer code asked for on the member's page never voids the code
    the till just sent, nor opens in its place."""
    now = datetime(2026, 1, 1, tzinfo=UTC)
    with store.transaction(conn):
        member = store.insert_member(conn, phone=phone(1), referrer_id=None, tier="base",
                                     now=now, club_id=1).id
        args = {"salt": "s", "now": now, "seconds": 120, "tries": 3}
        till = store.new_otp(conn, member, digest="till", **args)
        link = store.new_otp(conn, member, digest="link", purpose=store.OTP_LINK, **args)
    assert store.open_otp(conn, member).id == till
    assert store.open_otp(conn, member, store.OTP_LINK).id == link
    assert store.open_otp(conn, member, store.OTP_TRANSFER) is None
    with store.transaction(conn):
        again = store.new_otp(conn, member, digest="till2", **args)
    assert store.open_otp(conn, member).id == again
    assert store.open_otp(conn, member, store.OTP_LINK).id == link
