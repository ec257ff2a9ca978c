"""`loyalty-backend backup` and `restore`, on both engines, with the backend running.

Real processes throughout: Mosquitto, the backend (`python -m backend run`), the backup
and restore commands, pg_dump and pg_restore against a real PostgreSQL server.
"""

from __future__ import annotations

import os
import re
import stat
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from backend import backup, engine, ledger, store
from demo.mosquitto import stop_process
from tests.backend.core_helpers import ROOT, TestAgent, advice, phone, start_backend
from tests.backend.core_helpers import request as make_request
from tests.backend.engines import fresh_database_name


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    run_env = dict(env or os.environ, PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, "-m", "backend", *args], capture_output=True,
                          text=True, cwd=ROOT, env=run_env, timeout=300)


def _now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _empty_target(db: str, tmp_path: Path, request_: pytest.FixtureRequest) -> str:
    """A new, empty database of `db`'s engine (SQLite: a file not yet there)."""
    if engine.parse_target(db).is_postgresql:
        return request_.getfixturevalue("empty_pg_url")
    return str(tmp_path / f"restored-{fresh_database_name()}.sqlite")


def _seed(db: str, n: int) -> None:
    """`n` members, each with an earn, through the real handler."""
    from backend.handlers import Handler

    conn = store.connect(db)
    try:
        h = Handler(conn)
        for i in range(n):
            assert h.handle(make_request("enroll", {"phone": phone(100 + i)})).code == "00"
            earn = advice(amount=1_000_000 + i, occurred_at=_now_iso(), phone=phone(100 + i))
            assert h.handle(earn).code == "00"
    finally:
        conn.close()


def test_backup_names_keep_and_restore(db: str, tmp_path: Path,
                                       request: pytest.FixtureRequest) -> None:
    _seed(db, 5)
    folder = tmp_path / "backups"
    folder.mkdir()
    stem = backup.stem_of(engine.parse_target(db))
    other = folder / "notes.txt"
    other.write_text("not a backup")
    foreign = folder / "another-20200101T000000.000Z.sqlite"  # another database's backup
    foreign.write_bytes(b"x")
    made = []
    for _ in range(3):
        done = cli("backup", "--db", db, "--to", str(folder), "--keep", "2")
        assert done.returncode == 0, done.stderr
        made.append(Path(re.search(r"^backup (\S+) ", done.stdout).group(1)))
        assert "ok" in done.stdout and "5 members" in done.stdout
    assert f"removed {made[0]}" in done.stdout
    names = [p.name for p in made]
    assert names == sorted(names)  # UTC time in the name: sortable
    assert all(re.fullmatch(re.escape(stem) + r"-\d{8}T\d{6}\.\d{3}Z\.(sqlite|dump)", n)
               for n in names)
    kept = backup.backups_of(folder, stem)
    assert kept == made[1:]
    assert other.exists() and foreign.exists()  # only files `backup` made are removed
    assert not [p for p in folder.iterdir() if p.name.startswith(".")]  # no partial left
    for p in kept:
        assert stat.S_IMODE(p.stat().st_mode) == 0o600

    target = _empty_target(db, tmp_path, request)
    done = cli("restore", "--from", str(kept[-1]), "--db", target)
    assert done.returncode == 0, done.stderr
    assert "restored" in done.stdout and "DIFF" not in done.stdout
    assert re.search(r"rows in members\s+5\s+5\s+ok", done.stdout)
    assert re.search(r"members whose balance equals\s+5\s+5\s+ok", done.stdout)
    conn = store.connect(target)
    try:
        assert conn.execute("SELECT COUNT(*) FROM purchases").fetchone()[0] == 5
        for (mid,) in conn.execute("SELECT id FROM members").fetchall():
            ledger.check(conn, mid)
    finally:
        conn.close()

    # a target that is not empty is refused and left as it was
    again = cli("restore", "--from", str(kept[-1]), "--db", target)
    assert again.returncode == 2 and "not empty" in again.stderr, again.stderr
    conn = store.connect(target)
    try:
        assert conn.execute("SELECT COUNT(*) FROM members").fetchone()[0] == 5
    finally:
        conn.close()


def test_restore_refuses_what_is_not_a_backup(db: str, tmp_path: Path,
                                             request: pytest.FixtureRequest) -> None:
    junk = tmp_path / "junk.sqlite"
    junk.write_bytes(b"hello, I am not a database" * 100)
    target = _empty_target(db, tmp_path, request)
    done = cli("restore", "--from", str(junk), "--db", target)
    assert done.returncode == 2 and "neither a SQLite backup" in done.stderr
    if not engine.parse_target(target).is_postgresql:
        assert not Path(target).exists()  # nothing written
    # a SQLite backup whose pages were damaged fails its integrity check
    folder = tmp_path / "b"
    folder.mkdir()
    _seed(db, 2)
    done = cli("backup", "--db", db, "--to", str(folder))
    assert done.returncode == 0, done.stderr
    made = Path(re.search(r"^backup (\S+) ", done.stdout).group(1))
    if made.suffix == ".sqlite":
        data = bytearray(made.read_bytes())
        for page in range(2, len(data) // 4096):
            data[page * 4096 + 8 : page * 4096 + 200] = b"\xff" * 192
        made.write_bytes(bytes(data))
        done = cli("restore", "--from", str(made), "--db", target)
        assert done.returncode == 2 and "integrity" in done.stderr, done.stderr
        assert not Path(target).exists()
    else:
        # a dump without the figures it is verified against is refused before writing
        Path(str(made) + backup.FIGURES_EXT).unlink()
        done = cli("restore", "--from", str(made), "--db", target)
        assert done.returncode == 2 and "figures" in done.stderr, done.stderr
        conn = store.connect(target, check_schema=False, create=False)
        try:
            assert not engine.table_names(conn)
        finally:
            conn.close()


@pytest.mark.parametrize("db", ["postgresql"], indirect=True)
def test_pg_password_never_on_a_command_line(db: str, tmp_path: Path) -> None:
    """pg_dump and pg_restore get the password in PGPASSWORD: a wrapper in PG_BINDIR
    records each one's command line and whether the variable was set, then runs the real
    program."""
    _, password = engine.split_password(engine.parse_target(db).url or "")
    assert password  # the test server's URL carries one
    real = backup.pg_bindir(1)
    wrap = tmp_path / "bin"
    wrap.mkdir()
    calls = tmp_path / "calls.log"
    for name in ("pg_dump", "pg_restore"):
        script = wrap / name
        script.write_text(
            "#!/bin/sh\n"
            f'echo "$0 $* PGPASSWORD=${{PGPASSWORD:+set}}" >> {calls}\n'
            f'exec {real / name} "$@"\n')
        script.chmod(0o755)
    folder = tmp_path / "b"
    folder.mkdir()
    env = dict(os.environ, PG_BINDIR=str(wrap))
    done = cli("backup", "--db", db, "--to", str(folder), env=env)
    assert done.returncode == 0, done.stderr
    log = calls.read_text()
    assert "pg_dump" in log and "pg_restore --list" in log
    assert password not in log and password not in done.stdout + done.stderr
    runs = [line for line in log.splitlines() if "--version" not in line]
    assert runs and all(line.endswith("PGPASSWORD=set") for line in runs), log


def test_backup_while_purchases_stream_in(db: str, broker, tmp_path: Path,
                                          request: pytest.FixtureRequest) -> None:
    """Every purchase answered before the backup began is in the restored copy, and every
    restored member's balance equals the ledger."""
    members = 8
    agent = TestAgent(broker.address)
    cfg = tmp_path / "backend.toml"  # its SMS file here, not in the working directory
    cfg.write_text(f'[sms]\nsender = "file"\nfile = "{tmp_path / "sms.jsonl"}"\n')
    proc = start_backend(broker.address, db, "bk", "--config", str(cfg))  # type: ignore[arg-type]
    answered: list[tuple[float, str]] = []  # (when the answer came, the advice's key)
    stop = threading.Event()
    errors: list[BaseException] = []

    def stream() -> None:
        n = 0
        try:
            while not stop.is_set():
                p = phone(200 + n % members)
                req = advice(amount=100_000 + n, occurred_at=_now_iso(), phone=p)
                resp = agent.ask(req)
                assert resp.code == "00", resp
                answered.append((time.monotonic(), req.key))
                n += 1
        except BaseException as exc:
            errors.append(exc)

    try:
        agent.wait_for(lambda: agent.status.get("bk") is True)
        for i in range(members):
            assert agent.ask(make_request("enroll", {"phone": phone(200 + i)})).code == "00"
        streamer = threading.Thread(target=stream, daemon=True)
        streamer.start()
        agent.wait_for(lambda: len(answered) >= 30)
        folder = tmp_path / "backups"
        folder.mkdir()
        began = time.monotonic()
        done = cli("backup", "--db", db, "--to", str(folder))
        ended = time.monotonic()
        assert done.returncode == 0, done.stderr
        count = len(answered)
        agent.wait_for(lambda: len(answered) >= count + 10)  # still streaming after it
        stop.set()
        streamer.join(30)
        assert not errors, errors
    finally:
        stop.set()
        assert stop_process(proc) == 0
        agent.close()
    during = [k for t, k in answered if began <= t <= ended]
    assert during, "no purchase was answered while the backup ran"
    before = [k for t, k in answered if t < began]
    made = Path(re.search(r"^backup (\S+) ", done.stdout).group(1))
    target = _empty_target(db, tmp_path, request)
    restored = cli("restore", "--from", str(made), "--db", target)
    assert restored.returncode == 0, restored.stderr
    assert "DIFF" not in restored.stdout
    conn = store.connect(target)
    try:
        missing = [k for k in before if store.purchase(conn, k) is None]
        assert not missing, f"{len(missing)} purchases answered before the backup are lost"
        n = conn.execute("SELECT COUNT(*) FROM purchases").fetchone()[0]
        assert len(before) <= n <= len(answered)
        ids = [r[0] for r in conn.execute("SELECT id FROM members").fetchall()]
        assert len(ids) == members
        for mid in ids:
            ledger.check(conn, mid)  # balance = the ledger's sum = open lots - held
    finally:
        conn.close()


@pytest.mark.parametrize("db", ["postgresql"], indirect=True)
def test_pg_restore_that_does_not_verify_is_taken_back(db: str, tmp_path: Path,
                                                       request: pytest.FixtureRequest) -> None:
    """The dump restores, but its figures say otherwise (a balance differs): the restored
    tables are dropped again and the target is as empty as it was."""
    import json

    _seed(db, 3)
    folder = tmp_path / "b"
    folder.mkdir()
    done = cli("backup", "--db", db, "--to", str(folder))
    assert done.returncode == 0, done.stderr
    made = Path(re.search(r"^backup (\S+) ", done.stdout).group(1))
    figures = Path(str(made) + backup.FIGURES_EXT)
    doc = json.loads(figures.read_text())
    member = next(iter(doc["figures"]["balances"]))
    doc["figures"]["balances"][member] += 1
    figures.write_text(json.dumps(doc))
    target = request.getfixturevalue("empty_pg_url")
    done = cli("restore", "--from", str(made), "--db", target)
    assert done.returncode == 2, done.stdout
    assert "did not verify" in done.stderr and "members whose balance equals: 3 vs 2" in done.stderr
    conn = store.connect(target, check_schema=False, create=False)
    try:
        assert not engine.table_names(conn)
    finally:
        conn.close()
