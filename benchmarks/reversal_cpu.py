"""CPU of reversals and late advices for members with a long history (store layer only).

    python benchmarks/reversal_cpu.py [HISTORY]

20 members with HISTORY (default 300) settled purchases each over 300 days (SQLite,
straight into the table, then the aggregates rebuilt); then, for each member 5 times, a
reversal of a purchase in the middle of its history and a purchase of 150 days ago (a
late advice), each in its own transaction. Prints the process CPU per operation and
checks that the kept aggregates equal the raw rows.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from backend import store, store_daily, store_member_stats
from backend.store import PurchaseRecord

MEMBERS = 20
NOW = 1_764_000_000
DAY = 86_400


def load(conn: store.Connection, history: int) -> None:
    conn.execute("BEGIN")
    for m in range(1, MEMBERS + 1):
        conn.execute(
            "INSERT INTO members(id, phone, code, enrolled_at, tier, club_id) "
            "VALUES (?, ?, ?, ?, 'bronze', 1)", (m, f"0912{m:07d}", f"C{m:08d}", NOW - 400 * DAY))
        conn.executemany(
            "INSERT INTO purchases(key, member_id, terminal_id, amount, gross, approved, "
            "occurred_at, reversed, branch_id) VALUES (?, ?, 'T0000001', 1000, 1000, 1, ?, 0, 1)",
            [(f"k{m}:{i}", m, NOW - 300 * DAY + i * 300 * DAY // history)
             for i in range(history)])
    conn.execute("COMMIT")
    with store.transaction(conn):
        store_daily.rebuild(conn)
        store_member_stats.fill(conn)


def late(m: int, i: int) -> PurchaseRecord:
    return PurchaseRecord(
        key=f"late{m}:{i}", member_id=m, terminal_id="T0000001", quote_id=None, amount=500,
        gross=500, approved=True, redeemed=0, earned=0, recovered=0, earn_lot=None,
        occurred_at=NOW - 150 * DAY + i * 3600, branch_id=1)


def main() -> None:
    history = int(sys.argv[1]) if len(sys.argv) > 1 else 300
    conn = store.connect(os.path.join(tempfile.mkdtemp(), "loyalty.db"))
    load(conn, history)
    reversal = advice = 0.0
    n = 0
    for m in range(1, MEMBERS + 1):
        for i in range(5):
            c = time.process_time()
            with store.transaction(conn):
                store.mark_reversed(conn, f"k{m}:{history // 2 + i}")
            reversal += time.process_time() - c
            c = time.process_time()
            with store.transaction(conn):
                store.insert_purchase(conn, late(m, i))
            advice += time.process_time() - c
            n += 1
    assert store_daily.kept(conn) == store_daily.from_raw(conn)
    print(f"history {history}: reversal {reversal / n * 1000:.2f} ms CPU, late advice "
          f"{advice / n * 1000:.2f} ms CPU (each with its transaction)")


if __name__ == "__main__":
    main()
