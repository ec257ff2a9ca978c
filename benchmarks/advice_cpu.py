"""CPU per settled purchase in-process, without MQTT: the handler's own cost.

    python benchmarks/advice_cpu.py [--members N] [--rows N] [--history N] [--advices N]
                                    [--group N] [--db sqlite|postgresql] [--profile FILE]
                                    [--statements]

Loads members and ledger rows as benchmarks/backend.py does, `--history` settled
purchases per member before (so a member's past is not empty, as in a running shop),
then inquiries and the advices settling their quotes through `Handler.handle_batch` in
groups of `--group`, and prints the process CPU time (time.process_time: every thread of
this process, on PostgreSQL not the server's) per advice. On a loaded machine the CPU time
moves little with the load, unlike wall time; compare runs made back to back.
`--statements` (SQLite) counts the statements the advices ran (BEGIN, COMMIT and the
aggregates' flush included), a figure the load does not move (its callback costs CPU:
time the advices in a run without it).
"""

from __future__ import annotations

import argparse
import cProfile
import random
import shutil
import sqlite3
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from backend import store, store_daily, store_member_stats, transfer  # noqa: E402
from backend.handlers import Handler  # noqa: E402
from benchmarks.backend import TERMINALS, advice_after, bulk_load, phone  # noqa: E402
from demo.postgres import Postgres  # noqa: E402
from protocols import mqtt as schema  # noqa: E402


def add_history(db: Path, members: int, per: int) -> None:
    """`per` settled purchases of each member over the last 300 days, straight into the
    table, then the running totals and aggregates computed again from them."""
    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute("PRAGMA synchronous = OFF")
    now = int(datetime.now(UTC).timestamp())
    rnd = random.Random(3)
    conn.execute("BEGIN")
    conn.executemany(
        "INSERT INTO purchases(key, member_id, terminal_id, quote_id, amount, gross, approved, "
        "redeemed, earned, recovered, earn_lot, occurred_at, reversed, branch_id, "
        "program_version) VALUES (?, ?, 'T0000000', NULL, 50000, 50000, 1, 0, 0, 0, NULL, ?, "
        "0, 1, 1)",
        ((f"h:{m}:{k}", m + 1, now - 86400 - rnd.randrange(300 * 86400))
         for m in range(members) for k in range(per)))
    conn.execute("COMMIT")
    conn.close()
    c = store.connect(db)
    with store.transaction(c):
        store_member_stats.fill(c)
        store_daily.rebuild(c)
    c.close()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--members", type=int, default=10_000)
    ap.add_argument("--rows", type=int, default=100_000)
    ap.add_argument("--history", type=int, default=0, help="settled purchases per member before")
    ap.add_argument("--advices", type=int, default=3_000)
    ap.add_argument("--group", type=int, default=50)
    ap.add_argument("--db", choices=("sqlite", "postgresql"), default="sqlite")
    ap.add_argument("--profile", type=Path, help="cProfile the advices into FILE")
    ap.add_argument("--statements", action="store_true",
                    help="SQLite: count the statements per advice too")
    a = ap.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="advice-cpu-"))
    pg = None
    try:
        db_path = work / "loyalty.db"
        bulk_load(db_path, a.members, a.rows)
        if a.history:
            add_history(db_path, a.members, a.history)
        db: str = str(db_path)
        if a.db == "postgresql":
            work.chmod(0o755)
            (work / "pg").mkdir()
            pg = Postgres(durable=True, workdir=work / "pg")
            pg.start()
            db = pg.create_database("loyalty")
            source, target = store.connect(db_path), store.connect(db, check_schema=False,
                                                                    create=False)
            transfer.copy(source, target)
            source.close()
            target.close()
        conn = store.connect(db, autocheckpoint=True)
        handler = Handler(conn)
        tids = [f"T{i:07d}" for i in range(TERMINALS)]
        rnd = random.Random(1)
        stamp = datetime.now(UTC).strftime("%m%d%H%M%S")
        picks = rnd.sample(range(a.members), a.advices)
        inquiries = [schema.Request(
            type="inquiry", id=f"i{n}", key=f"{tids[n % 20]}:0100:{n:06d}:{stamp}",
            terminal_id=tids[n % 20], merchant_id="M00000000000001",
            body={"phone": phone(m), "gross": 100_000, "redeem": None, "otp": None})
            for n, m in enumerate(picks)]
        answers = []
        for i in range(0, len(inquiries), a.group):
            answers += handler.handle_batch(inquiries[i:i + a.group])
        occurred = schema.utc_now_iso()
        advices = []
        for n, (q, resp) in enumerate(zip(inquiries, answers, strict=True)):
            assert resp.code == "00", resp
            advices.append(advice_after(q, resp, n, stamp, occurred))
        prof = cProfile.Profile(time.process_time) if a.profile else None
        ran = [0]
        if a.statements and isinstance(conn, sqlite3.Connection):
            conn.set_trace_callback(lambda _sql: ran.__setitem__(0, ran[0] + 1))
        c0, w0 = time.process_time(), time.perf_counter()
        if prof:
            prof.enable()
        for i in range(0, len(advices), a.group):
            for r in handler.handle_batch(advices[i:i + a.group]):
                assert r.code == "00", r
        if prof:
            prof.disable()
            prof.dump_stats(a.profile)
        cpu, wall = time.process_time() - c0, time.perf_counter() - w0
        if ran[0]:
            conn.set_trace_callback(None)
            print(f"{ran[0] / a.advices:.2f} statements per advice")
        print(f"{a.db}, history {a.history}/member, groups of {a.group}: "
              f"{cpu / a.advices * 1e6:.0f} us CPU per advice "
              f"({a.advices:,} in {wall:.2f} s wall)")
        conn.close()
    finally:
        if pg is not None:
            pg.stop()
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
