"""LRFM segments of a club of 100,000 members from 1,000,000 purchases, through the store.

    python benchmarks/segments.py [--db sqlite|postgresql|both] [--quick]

The database is bulk-loaded as benchmarks/panel.py loads it (one club, purchases over
two years, 2 % declined, 1 % reversed). Measured in the same run, on each engine:
- one plain scan of the purchases (`SELECT COUNT(*), SUM(amount) FROM purchases`), the
  reference;
- the per-member aggregate query (store_segments.aggregates: GROUP BY member);
- scoring and naming every member (backend.segments.segment_club);
- the bulk write of every member's row and the day's counts (store_segments.write);
and the ratio of the whole run to the scan. Goal (issue 15): under 10 s in all.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from backend import segment_job, segments, store, store_segments, transfer  # noqa: E402
from benchmarks.panel import bulk_load  # noqa: E402
from demo.postgres import Postgres  # noqa: E402

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def measure(db: str, label: str) -> float:
    conn = store.connect(db)
    try:
        t0 = time.perf_counter()
        n, total = conn.execute("SELECT COUNT(*), SUM(amount) FROM purchases").fetchone()
        scan = time.perf_counter() - t0
        today = segment_job.tehran_today(NOW)
        t0 = time.perf_counter()
        rows = store_segments.aggregates(conn, 1)
        aggregate = time.perf_counter() - t0
        t0 = time.perf_counter()
        result = segments.segment_club(rows, today)
        scoring = time.perf_counter() - t0
        t0 = time.perf_counter()
        with store.transaction(conn):
            store_segments.write(conn, 1, today, result)
        write = time.perf_counter() - t0
    finally:
        conn.close()
    whole = aggregate + scoring + write
    print(f"\n{label}: {len(rows):,} members, {int(n):,} purchases (sum {int(total):,} rials)")
    print(f"  plain scan of the purchases     {scan:7.3f} s   (reference)")
    print(f"  aggregate query (GROUP BY)      {aggregate:7.3f} s")
    print(f"  scores and segments (Python)    {scoring:7.3f} s")
    print(f"  bulk write of the rows, counts  {write:7.3f} s")
    print(f"  whole run                       {whole:7.3f} s   = {whole / scan:.1f} x the scan"
          f"   (goal < 10 s)")
    print("  members per segment:", segments.counts(result), flush=True)
    return whole


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--db", choices=("sqlite", "postgresql", "both"), default="sqlite")
    ap.add_argument("--quick", action="store_true", help="10,000 members, 100,000 purchases")
    a = ap.parse_args(argv)
    members, purchases = (10_000, 100_000) if a.quick else (100_000, 1_000_000)
    work = Path(tempfile.mkdtemp(prefix="segments-bench-"))
    os.chmod(work, 0o755)  # PostgreSQL runs as its own user when we are root
    pg = None
    try:
        sqlite_db = work / "loyalty.db"
        print(f"bulk load: {members:,} members, {purchases:,} purchases ...", flush=True)
        t0 = time.perf_counter()
        bulk_load(sqlite_db, members, purchases, 0, NOW)
        print(f"  loaded in {time.perf_counter() - t0:.1f} s", flush=True)
        if a.db in ("sqlite", "both"):
            measure(str(sqlite_db), "SQLite")
        if a.db in ("postgresql", "both"):
            (work / "pg").mkdir()
            pg = Postgres(workdir=work / "pg").start()
            url = pg.create_database("loyalty")
            source = store.connect(sqlite_db)
            target = store.connect(url, check_schema=False, create=False)
            transfer.copy(source, target)
            target.execute("ANALYZE")
            source.close()
            target.close()
            measure(url, "PostgreSQL")
        print(f"\n(machine: {os.cpu_count()} cores, shared with other work while measured)")
    finally:
        if pg is not None:
            pg.stop()
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
