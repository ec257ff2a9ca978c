"""Schema versions: a real version-2 file migrates with nothing lost; `run` refuses an
older or newer schema; `copy` moves a shop's SQLite file into an empty PostgreSQL one."""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest

from backend import cli, engine, ledger, migrations, store, store_registry, transfer
from backend.handlers import Handler
from backend.program import Program
from tests.backend.core_helpers import ROOT, FakeClock, advice, phone

FIXTURE = Path(__file__).parent / "fixtures" / "schema_v2.sqlite"
V2_TABLES = (
    "members", "cards", "lots", "ledger", "lot_uses", "quotes", "purchases", "reversals",
    "requests", "otps", "offers", "sms_outbox",
)  # fmt: skip


def _v2_copy(tmp_path: Path) -> Path:
    path = tmp_path / "shop.db"
    shutil.copyfile(FIXTURE, path)
    return path


def _v2_columns() -> dict[str, list[str]]:
    raw = sqlite3.connect(FIXTURE)
    try:
        return {
            t: [d[0] for d in raw.execute(f"SELECT * FROM {t} LIMIT 0").description]
            for t in V2_TABLES
        }
    finally:
        raw.close()


def _rows(path: Path) -> dict[str, list[tuple]]:
    """Every row of every table of version 2, in the columns version 2 had."""
    raw = sqlite3.connect(path)
    try:
        return {
            t: sorted(raw.execute(f"SELECT {', '.join(cols)} FROM {t}").fetchall(), key=repr)
            for t, cols in _v2_columns().items()
        }
    finally:
        raw.close()


def _backend(*argv: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.run(
        [sys.executable, "-m", "backend", *argv],
        capture_output=True, text=True, env=env, cwd=ROOT, timeout=60,
    )  # fmt: skip


class Ran:
    def __init__(self, returncode: int, stdout: str, stderr: str) -> None:
        self.returncode, self.stdout, self.stderr = returncode, stdout, stderr


def _cli(capsys: pytest.CaptureFixture[str], *argv: str) -> Ran:
    """A command in this process (a subprocess costs a second of imports)."""
    capsys.readouterr()
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return Ran(code, out, err)


def test_backend_migrate_version_2_file_loses_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _v2_copy(tmp_path)
    before = _rows(path)
    assert sum(len(v) for v in before.values()) > 50  # the fixture is not empty
    assert all(before[t] for t in V2_TABLES if t != "otps")
    # the backend refuses it before it is migrated
    with pytest.raises(store.StoreError, match=r"older than this backend's .*migrate --db"):
        store.connect(path)
    assert cli.main(["migrate", "--db", str(path)]) == 0
    assert _rows(path) == before  # every row of every table, column by column
    conn = store.connect(path)
    try:
        # one club (named after the default [shop] name), one branch, every terminal seen
        (club,) = store_registry.list_clubs(conn)
        assert club.name == migrations.DEFAULT_CLUB and club.sms is None
        assert [b.name for b in store_registry.list_branches(conn)] == ["main"]
        seen = {
            tid for (tid,) in conn.execute(
                "SELECT terminal_id FROM purchases UNION SELECT terminal_id FROM quotes "
                "UNION SELECT terminal_id FROM reversals UNION SELECT substr(key, 1, 8) "
                "FROM requests"
            )
        }  # fmt: skip
        terminals = store_registry.list_terminals(conn)
        assert seen and {t.id for t in terminals} == seen
        assert all(t.club == club.name and t.branch == "main" and t.enabled for t in terminals)
        # everything belongs to the club and its branch
        for sql in (
            "SELECT COUNT(*) FROM members WHERE club_id <> ?1",
            "SELECT COUNT(*) FROM offers WHERE club_id <> ?1",
            "SELECT COUNT(*) FROM quotes WHERE ?1 = ?1 AND (branch_id IS NULL "
            "OR program_version <> 0)",
            "SELECT COUNT(*) FROM purchases WHERE ?1 = ?1 AND (branch_id IS NULL "
            "OR program_version <> 0)",
        ):
            assert conn.execute(sql, (club.id,)).fetchone()[0] == 0, sql
        members_of_club = conn.execute(
            "SELECT COUNT(*) FROM members WHERE club_id = ?", (club.id,)
        ).fetchone()[0]
        assert members_of_club == len(before["members"])
        assert migrations.current_version(conn) == migrations.LATEST
        history = conn.execute("SELECT version FROM schema_migrations").fetchall()
        assert [v for (v,) in history] == [
            m.version for m in migrations.MIGRATIONS if m.version >= 4
        ]
        members = [m for (m,) in conn.execute("SELECT id FROM members")]
        for m in members:
            ledger.check(conn, m)
        # the migrated file works: a member of the old file buys and earns
        m1 = store.member_by_phone(conn, phone(1), club_id=club.id)
        assert m1 is not None
        was = ledger.balance(conn, m1.id)
        clock = FakeClock()
        clock.jump(days=1)
        h = Handler(conn, Program(), clock=clock)
        # the shop's terminal, registered by the migration (no merchant id was stored)
        # a STAN the fixture's stored responses never used: the shared counter of the test
        # helpers may reach one of them, and the replay of that response would answer
        resp = h.handle(advice(amount=1_000_000, occurred_at=clock.iso(), phone=phone(1),
                               stan=999_999))
        assert resp.code == "00" and resp.body["balance"] == was + resp.body["earned"] > was
    finally:
        conn.close()
    # a second migrate has nothing to do
    done = _cli(capsys, "migrate", "--db", str(path))
    assert done.returncode == 0 and "already current" in done.stdout


def test_backend_run_refuses_older_and_newer_schema(tmp_path: Path) -> None:
    old = _v2_copy(tmp_path)
    done = _backend("run", "--broker", "127.0.0.1:9", "--db", str(old))
    assert done.returncode == 2
    assert (
        "schema version 2 is older" in done.stderr and "loyalty-backend migrate --db" in done.stderr
    )
    newer = tmp_path / "newer.db"
    store.connect(newer).close()
    raw = sqlite3.connect(newer)
    raw.execute("UPDATE schema_version SET version = ?", (migrations.LATEST + 1,))
    raw.commit()
    raw.close()
    done = _backend("run", "--broker", "127.0.0.1:9", "--db", str(newer))
    assert done.returncode == 2 and "is newer than this backend's" in done.stderr
    done = _backend("migrate", "--db", str(newer))
    assert done.returncode == 2 and "newer" in done.stderr


def test_backend_migrate_creates_postgresql_schema(
    empty_pg_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    done = _cli(capsys, "migrate", "--db", empty_pg_url)
    assert done.returncode == 0, done.stderr
    assert f"schema version none -> {migrations.LATEST}" in done.stdout
    assert empty_pg_url.split("@")[0].split(":")[-1] not in done.stdout  # no password shown
    conn = store.connect(empty_pg_url)
    try:
        assert migrations.current_version(conn) == migrations.LATEST
        assert set(V2_TABLES) <= engine.table_names(conn)
    finally:
        conn.close()


def _migrated(tmp_path: Path) -> Path:
    path = _v2_copy(tmp_path)
    conn = store.connect(path, check_schema=False)
    migrations.migrate(conn, FakeClock()())
    conn.close()
    return path


def test_backend_copy_sqlite_to_postgresql(
    tmp_path: Path, empty_pg_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _migrated(tmp_path)
    before = _rows(path)
    done = _cli(capsys, "copy", "--from", str(path), "--to", empty_pg_url)
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "rows in ledger" in out and "members whose balance equals" in out
    assert "DIFF" not in out and out.count(" ok") >= len(V2_TABLES) + 3
    assert ":***@" in out and empty_pg_url.split(":")[2].split("@")[0] not in out
    with psycopg.connect(empty_pg_url) as pg:
        for table in V2_TABLES:
            cols = _v2_columns()[table]
            got = pg.execute(f"SELECT {', '.join(cols)} FROM {table}").fetchall()
            assert sorted(got, key=repr) == before[table], table
    # the copy is a working database: new ids follow the copied ones
    conn = store.connect(empty_pg_url)
    try:
        with store.transaction(conn):
            m = store.insert_member(
                conn, phone="09129999999", referrer_id=None, tier="bronze", now=FakeClock()(),
                club_id=1,
            )
        assert m.id == max(r[0] for r in before["members"]) + 1
        for (mid,) in conn.execute("SELECT id FROM members").fetchall():
            ledger.check(conn, mid)
    finally:
        conn.close()
    # now the target is not empty: refused, nothing written
    done = _cli(capsys, "copy", "--from", str(path), "--to", empty_pg_url)
    assert done.returncode == 2 and "not empty" in done.stderr
    with psycopg.connect(empty_pg_url) as pg:
        assert pg.execute("SELECT COUNT(*) FROM members").fetchone() == (
            len(before["members"]) + 1,
        )


def test_backend_copy_refuses_foreign_tables_and_old_source(
    tmp_path: Path, empty_pg_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with psycopg.connect(empty_pg_url, autocommit=True) as pg:
        pg.execute("CREATE TABLE somebody_elses (x int)")
    path = _migrated(tmp_path)
    done = _cli(capsys, "copy", "--from", str(path), "--to", empty_pg_url)
    assert done.returncode == 2 and "other tables" in done.stderr
    with psycopg.connect(empty_pg_url) as pg:
        assert "members" not in {r[0] for r in pg.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'"
        )}  # fmt: skip
    (tmp_path / "old").mkdir()
    old = _v2_copy(tmp_path / "old")
    done = _cli(capsys, "copy", "--from", str(old), "--to", empty_pg_url)
    assert done.returncode == 2 and "migrate" in done.stderr


def test_backend_copy_verification_failure_writes_nothing(
    tmp_path: Path, empty_pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = _migrated(tmp_path)
    source = store.connect(path)
    target = store.connect(empty_pg_url, check_schema=False, create=False)
    real = transfer._balances
    calls = iter(range(2))

    def lying(conn: engine.Connection) -> dict[int, int]:
        got = real(conn)
        if next(calls) == 1:  # the target's side: one member's balance off by a rial
            m = min(got)
            got[m] += 1
        return got

    monkeypatch.setattr(transfer, "_balances", lying)
    try:
        with pytest.raises(transfer.CopyError, match="verification failed"):
            transfer.copy(source, target)
        assert engine.table_names(target) == set()
    finally:
        source.close()
        target.close()


def test_outbox_kinds_are_the_latest_migrations() -> None:
    """A kind added to marketing_rules.KIND_CLASS needs a migration that lets the outbox's
    CHECK take it: the two lists are one set."""
    from backend.sms import outbox

    assert set(migrations._OUTBOX_KINDS_V9) == set(outbox.KINDS)


def test_every_table_with_an_assigned_id_resets_its_sequence_after_a_copy(
    tmp_path: Path,
) -> None:
    """A copied table whose `id` the database assigns must be in engine.ROWID_TABLES, or
    `copy` to PostgreSQL leaves its identity at 1 and the next insert collides."""
    conn = store.connect(tmp_path / "schema.db")
    try:
        assigned = {
            table for table in transfer.TABLES
            if any(col[1] == "id" and col[5] == 1 and col[2].upper() == "INTEGER"
                   for col in conn.execute(f"PRAGMA table_info({table})"))
        }
    finally:
        conn.close()
    assert assigned and assigned <= engine.ROWID_TABLES, sorted(assigned - engine.ROWID_TABLES)
