"""The panel's pages: server time per page over a shop of realistic size, both engines.

    python benchmarks/panel.py [--db sqlite|postgresql|both] [--quick] [--samples N]
                               [--keep DIR] [--pages REGEX]

A club of 100,000 members with 1,000,000 purchases over two years and 3,000,000 ledger
rows (--quick: 10,000 / 100,000 / 300,000) is bulk-loaded straight into the tables (as
benchmarks/backend.py does), the pre-aggregates are rebuilt from those rows as migrations
8 and 9 do, and each page is requested N times through the app (Starlette's TestClient, in
process, logged in as the club's owner). Printed per page: p50 and p95 of the wall time
and of the process's CPU time per request, beside /health (a trivial page of the same
app) measured in the same run. Goal (issue 14): every page p95 < 150 ms, the dashboard
for any period included. A deep page of the members list is asked for as its "next" or
"previous" link does (after or before a row's sort value and id; the row found by one
walk of the list before timing). /members.csv (every member) is measured apart: the whole
download's wall and CPU time, the time to its first byte and the peak of the memory Python
allocated while it ran (tracemalloc, one request), beside the same for /health.

--keep DIR keeps the built data set (the SQLite file and PostgreSQL's data folder) in DIR
and uses it again on the next run of the same size (migrations added since are applied
when it is opened): building the full set takes several minutes. --pages REGEX measures
only the pages whose name matches (searched, e.g. "dashboard"; /health always, as the
reference), and skips the downloads unless one matches.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import re
import shutil
import sqlite3
import sys
import tempfile
import time
import tracemalloc
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import psycopg  # noqa: E402
from starlette.testclient import TestClient  # noqa: E402

from backend import (  # noqa: E402
    migrations,
    store,
    store_daily,
    store_member_stats,
    store_registry,
    store_users,
    transfer,
)
from backend.passwords import hash_password  # noqa: E402
from backend.store import CODE_ALPHABET  # noqa: E402
from demo.postgres import Postgres  # noqa: E402
from panel.app import PanelSettings, create_app  # noqa: E402
from panel.database import Database  # noqa: E402

PASSWORD = "benchmark owner password"
TERMINALS = tuple(f"T{n:07d}" for n in range(1, 21))
MERCHANT = "M00000000000001"
#: the busy hours of a shop, as weights of the 24 hours of the day
HOURS = (0, 0, 0, 0, 0, 0, 0, 1, 3, 6, 8, 9, 10, 8, 6, 6, 7, 9, 10, 9, 7, 4, 2, 1)
_DROPPED = ("ledger_member", "ledger_at", "purchases_member", "purchases_at")


def pct(values: list[float], p: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(len(s) * p / 100))]


def bulk_load(db: Path, members: int, purchases: int, ledger_rows: int, now: datetime) -> None:
    """Members, purchases and ledger rows straight into the tables of a new database, its
    secondary indexes made again once at the end; then the aggregates from the rows."""
    store.connect(db).close()  # the schema, with its one club and branch
    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute("PRAGMA synchronous = OFF")
    schema = {name: sql for name, sql in conn.execute(
        "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL")}
    for name in _DROPPED:
        conn.execute(f"DROP INDEX {name}")
    rnd = random.Random(14)
    end = int(now.timestamp())
    days = 730
    start = end - days * 86400
    conn.execute("BEGIN")
    conn.executemany(
        "INSERT INTO members(id, phone, code, enrolled_at, tier, club_id) "
        "VALUES (?, ?, ?, ?, ?, 1)",
        ((i + 1, f"0912{i:07d}", "".join(rnd.choice(CODE_ALPHABET) for _ in range(9)),
          start + rnd.randrange(days * 86400), rnd.choice(("bronze", "silver", "gold")))
         for i in range(members)))
    conn.execute("UPDATE members SET enrolled_at = ? WHERE enrolled_at > ?", (start, end))
    hours = [h for h, w in enumerate(HOURS) for _ in range(w)]

    def moment() -> int:
        day = start + rnd.randrange(days) * 86400
        # Tehran is UTC+3:30: the shop's hour h is h - 3.5 in UTC
        return day + int((rnd.choice(hours) - 3.5) * 3600) + rnd.randrange(3600)

    times = sorted(moment() for _ in range(purchases))

    def purchase_rows():
        for n, at in enumerate(times):
            tid = TERMINALS[n % len(TERMINALS)]
            amount = rnd.randrange(20_000, 2_000_000, 1000)
            approved = 0 if rnd.random() < 0.02 else 1
            reversed_ = 1 if approved and rnd.random() < 0.01 else 0
            yield (f"{tid}:0220:{n:09d}:bench", rnd.randrange(members) + 1, tid, amount,
                   amount, approved, at, reversed_, 1, 0)

    conn.executemany(
        "INSERT INTO purchases(key, member_id, terminal_id, amount, gross, approved, "
        "occurred_at, reversed, branch_id, program_version) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        purchase_rows())
    kinds = ("earn", "earn", "redeem", "hold", "release", "expiry", "adjustment", "referral")

    def ledger():
        for n in range(ledger_rows):
            kind = kinds[n % len(kinds)]
            amount = rnd.randrange(1_000, 60_000)
            sign = -1 if kind in ("redeem", "hold", "expiry") else 1
            yield (n + 1, rnd.randrange(members) + 1, kind, sign * amount, f"bulk:{n}",
                   times[n * len(times) // ledger_rows])

    conn.executemany(
        "INSERT INTO ledger(id, member_id, kind, amount, key, at) VALUES (?, ?, ?, ?, ?, ?)",
        ledger())
    conn.execute("COMMIT")
    for name in _DROPPED:
        conn.execute(schema[name])
    conn.close()
    conn = store.connect(db)
    with store.transaction(conn):
        store_daily.rebuild(conn)
        store_member_stats.fill(conn)
        (club,) = store_registry.list_clubs(conn)
        branch = store_registry.find_branch(conn, club.id, "main")
        assert branch is not None
        for tid in TERMINALS:
            store_registry.add_terminal(conn, tid, MERCHANT, branch.id, now)
        store_users.add_user(conn, name="owner", role="owner", club_id=club.id,
                             password_hash=hash_password(PASSWORD), now=now)
        from backend.sms import outbox
        for n in range(2000):
            outbox.enqueue(conn, key=f"bench-sms:{n}", phone=f"0912{n % members:07d}",
                           text="benchmark", kind="purchase", now=now, club_id=club.id)
    conn.close()


def login(client: TestClient) -> None:
    token = re.search(r'name="csrf_token" value="([^"]+)"', client.get("/login").text)
    assert token
    r = client.post("/login", data={"name": "owner", "password": PASSWORD,
                                    "csrf_token": token.group(1)}, follow_redirects=False)
    assert r.status_code == 303, r.text


def measure(db: str, now: datetime, samples: int, only: re.Pattern[str] | None = None
            ) -> tuple[list[tuple[str, float, float, float, float]], list[dict]]:
    app = create_app(PanelSettings(idle_timeout=3600), database=Database(db),
                     wall_clock=lambda: now)
    pages = [
        ("/health (reference)", "/health"),
        ("dashboard today", "/dashboard?period=today"),
        ("dashboard this week", "/dashboard?period=week"),
        ("dashboard this month", "/dashboard?period=month"),
        ("dashboard last 30 days", "/dashboard?period=last30"),
        ("dashboard one year", "/dashboard?period=range&from=1404/09/11&to=1405/09/10"),
        ("dashboard two years", "/dashboard?period=range&from=1403/09/11&to=1405/09/10"),
        ("dashboard CSV (heat map)", "/dashboard/heat.csv?period=last30"),
        ("terminals", "/terminals"),
        ("SMS", "/sms"),
        ("members list", "/members"),
        ("members by spend", "/members?sort=spend&dir=desc"),
        ("members by last visit", "/members?sort=last_visit&dir=desc"),
        ("members, last visit asc p.40",
         lambda: keyset(db, "sort=last_visit&dir=asc", 40)),
        ("members p.1000 (by enrolment)", lambda: keyset(db, "", 1000)),
        ("members p.999, previous", lambda: keyset(db, "", 1000, "before")),
        ("members, the last page", "/members?last=1"),
        ("members by spend p.1000", lambda: keyset(db, "sort=spend&dir=desc", 1000)),
        ("members, last visit p.1500", lambda: keyset(db, "sort=last_visit&dir=desc", 1500)),
        ("members by visits p.1000", lambda: keyset(db, "sort=visits&dir=desc", 1000)),
        ("members by name p.1000", lambda: keyset(db, "sort=name&dir=asc", 1000)),
        ("members filtered", "/members?" + FILTERED),
        ("members filtered p.200", lambda: keyset(db, FILTERED, 200)),
        ("member search (phone)", "/members?q=09120004242"),
        ("member page", "/members/1"),
        ("offers", "/offers"),
        ("program", "/program"),
        ("users", "/users"),
        ("audit log", "/audit"),
    ]
    if only is not None:
        pages = [pages[0], *(p for p in pages[1:] if only.search(p[0]))]
    out = []
    with TestClient(app, base_url="http://127.0.0.1") as client:
        login(client)
        for name, path in pages:
            path = path() if callable(path) else path
            r = client.get(path)
            assert r.status_code == 200, (path, r.status_code, r.text[:300])
            wall: list[float] = []
            cpu: list[float] = []
            for _ in range(samples):
                c0, t0 = time.process_time(), time.perf_counter()
                r = client.get(path)
                wall.append((time.perf_counter() - t0) * 1000)
                cpu.append((time.process_time() - c0) * 1000)
            out.append((name, pct(wall, 50), pct(wall, 95), pct(cpu, 50), pct(cpu, 95)))
        paths = ["/health", "/members.csv"]
        if only is not None and not only.search("/members.csv"):
            paths = []
        downloads = [download(app, client, path, max(3, samples // 10)) for path in paths]
    app.state.panel.database.close()
    return out, downloads


#: the filtered list measured: gold members, spend >= 2M, visited since 1405/06/01, by spend
FILTERED = "tier=gold&min_spend=2000000&visited_from=1405/06/01&sort=spend"


def keyset(db: str, query: str, page: int, side: str = "after") -> str:
    """The path of page `page` of the members list as its "next" link gives it (`side`
    "before": page `page` - 1 as the "previous" link of page `page` does): the cursor of
    the row it starts past, found by walking the list once (setup, not measured)."""
    from itertools import islice

    from backend import store_members
    from panel.pages.members import PAGE, parse_filter, place_query

    params = dict(p.split("=", 1) for p in query.split("&") if p)
    flt, errors = parse_filter(params)
    assert not errors, errors
    position = (page - 1) * PAGE - 1 if side == "after" else (page - 1) * PAGE
    conn = store.connect(db)
    try:
        [row] = islice(store_members.each_member(conn, 1, flt), position, position + 1)
    finally:
        conn.close()
    return "/members?" + place_query(params, side, row, flt.sort,
                                     page if side == "after" else page - 1)


def download(app, client: TestClient, path: str, samples: int) -> dict:
    """One page fetched whole `samples` times straight through ASGI (no test client in
    between, so the time of the first body chunk is seen): p50 / p95 of the time to the
    first byte and to the last, CPU, the bytes, and the peak of Python's allocations during
    one more request (tracemalloc, off while timing)."""
    cookie = "; ".join(f"{k}={v}" for k, v in client.cookies.items())
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
             "method": "GET", "scheme": "http", "path": path, "raw_path": path.encode(),
             "query_string": b"", "root_path": "", "client": ("127.0.0.1", 50000),
             "server": ("127.0.0.1", 80),
             "headers": [(b"host", b"127.0.0.1"), (b"cookie", cookie.encode())]}

    async def once() -> tuple[float, float, int]:
        t0 = time.perf_counter()
        first: list[float] = []
        size = 0
        status = 0
        sent = False
        forever = asyncio.Event()

        async def receive() -> dict:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": b"", "more_body": False}
            await forever.wait()
            return {"type": "http.disconnect"}

        async def send(message: dict) -> None:
            nonlocal size, status
            if message["type"] == "http.response.start":
                status = message["status"]
            elif message["type"] == "http.response.body":
                if not first and message.get("body"):
                    first.append(time.perf_counter())
                size += len(message.get("body", b""))

        await app(dict(scope), receive, send)
        assert status == 200, (path, status)
        end = time.perf_counter()
        return (first[0] - t0) * 1000, (end - t0) * 1000, size

    ttfb: list[float] = []
    whole: list[float] = []
    cpu: list[float] = []
    size = 0
    for _ in range(samples):
        c0 = time.process_time()
        a, b, size = asyncio.run(once())
        cpu.append((time.process_time() - c0) * 1000)
        ttfb.append(a)
        whole.append(b)
    tracemalloc.start()
    asyncio.run(once())
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return {"path": path, "samples": samples, "bytes": size, "first": (pct(ttfb, 50),
            pct(ttfb, 95)), "whole": (pct(whole, 50), pct(whole, 95)),
            "cpu": (pct(cpu, 50), pct(cpu, 95)), "peak": peak}


def report(engine: str, measured: tuple[list, list[dict]]) -> None:
    rows, downloads = measured
    ref = rows[0][2]
    print(f"\n{engine}: ms per request (wall p50, p95 | CPU p50, p95), p95 / reference p95")
    for name, w50, w95, c50, c95 in rows:
        mark = "" if w95 < 150 else "   <- over the 150 ms goal"
        print(f"  {name:28} {w50:7.1f} {w95:7.1f} | {c50:7.1f} {c95:7.1f}   "
              f"x{w95 / ref:5.1f}{mark}")
    if not downloads:
        print(f"  (load average {' '.join(f'{x:.1f}' for x in os.getloadavg())}, "
              f"{time.strftime('%H:%M:%S', time.gmtime())} UTC)", flush=True)
        return
    print("  downloads straight through ASGI, ms p50 / p95 (first byte | whole | CPU), "
          "bytes, peak Python memory")
    for d in downloads:
        print(f"  {d['path']:14} x{d['samples']}: {d['first'][0]:7.1f} {d['first'][1]:7.1f} | "
              f"{d['whole'][0]:7.1f} {d['whole'][1]:7.1f} | {d['cpu'][0]:7.1f} "
              f"{d['cpu'][1]:7.1f}   {d['bytes']:,} B, {d['peak'] / 2**20:.1f} MiB")
    print(f"  (load average {' '.join(f'{x:.1f}' for x in os.getloadavg())}, "
          f"{time.strftime('%H:%M:%S', time.gmtime())} UTC)", flush=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--db", choices=("sqlite", "postgresql", "both"), default="both")
    ap.add_argument("--quick", action="store_true",
                    help="10,000 members, 100,000 purchases, 300,000 ledger rows")
    ap.add_argument("--samples", type=int, default=40)
    ap.add_argument("--keep", metavar="DIR", type=Path,
                    help="keep the built data set in DIR and use it again next time")
    ap.add_argument("--pages", metavar="REGEX", type=re.compile,
                    help="measure only the pages whose name matches (and /health)")
    a = ap.parse_args(argv)
    members, purchases, ledger_rows = ((10_000, 100_000, 300_000) if a.quick
                                       else (100_000, 1_000_000, 3_000_000))
    now = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)  # 1405/09/10, 15:30 in Tehran
    size = {"members": members, "purchases": purchases, "ledger": ledger_rows}
    if a.keep:
        work = a.keep.resolve()
        work.mkdir(parents=True, exist_ok=True)
    else:
        work = Path(tempfile.mkdtemp(prefix="panel-bench-"))
    os.chmod(work, 0o755)  # PostgreSQL runs as its own user when we are root
    marker = work / "built.json"
    built = json.loads(marker.read_text()) if marker.exists() else {}
    if built.get("size") != size:
        for old in ("loyalty.db", "loyalty.db-wal", "loyalty.db-shm", "pg"):
            target = work / old
            shutil.rmtree(target) if target.is_dir() else target.unlink(missing_ok=True)
        built = {"size": size}
    pg = None
    try:
        sqlite_db = work / "loyalty.db"
        if built.get("sqlite"):
            print(f"kept data set in {work}: {members:,} members, {purchases:,} purchases, "
                  f"{ledger_rows:,} ledger rows", flush=True)
            migrate(str(sqlite_db), now)
        else:
            print(f"bulk load: {members:,} members, {purchases:,} purchases, "
                  f"{ledger_rows:,} ledger rows ...", flush=True)
            t0 = time.perf_counter()
            bulk_load(sqlite_db, members, purchases, ledger_rows, now)
            print(f"  loaded and aggregated in {time.perf_counter() - t0:.1f} s "
                  f"(schema version {migrations.LATEST})", flush=True)
            built["sqlite"] = True
            marker.write_text(json.dumps(built))
        if a.db in ("sqlite", "both"):
            report("SQLite", measure(str(sqlite_db), now, a.samples, a.pages))
        if a.db in ("postgresql", "both"):
            (work / "pg").mkdir(exist_ok=True)
            if built.get("pg"):
                pg = Postgres(workdir=work / "pg", password=built["pg"]).start()
                url = pg.url("loyalty")
                migrate(url, now)
            else:
                pg = Postgres(workdir=work / "pg").start()
                url = pg.create_database("loyalty")
                t0 = time.perf_counter()
                source = store.connect(sqlite_db)
                target = store.connect(url, check_schema=False, create=False)
                transfer.copy(source, target)
                source.close()
                target.close()
                print(f"\n  copied into PostgreSQL in {time.perf_counter() - t0:.1f} s",
                      flush=True)
            # the steady state autovacuum reaches soon after a restore: statistics and the
            # visibility map (index-only scans), instead of measuring while it runs
            with psycopg.connect(url, autocommit=True) as admin:
                admin.execute("VACUUM ANALYZE")
            if not built.get("pg"):
                built["pg"] = pg.password
                marker.write_text(json.dumps(built))
            report("PostgreSQL", measure(url, now, a.samples, a.pages))
        print(f"\n(machine: {os.cpu_count()} cores, shared with other work while measured)")
    finally:
        if pg is not None:
            pg.stop()
        if not a.keep:
            shutil.rmtree(work, ignore_errors=True)
    return 0


def migrate(db: str, now: datetime) -> None:
    """A kept data set brought to this code's schema (the steps added since it was built)."""
    conn = store.connect(db, check_schema=False, create=False)
    try:
        applied = migrations.migrate(conn, now)
    finally:
        conn.close()
    if applied:
        print(f"  migrated: {', '.join(m.name for m in applied)}", flush=True)


if __name__ == "__main__":
    sys.exit(main())
