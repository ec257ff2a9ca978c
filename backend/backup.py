"""Backups of the ledger and restores from them, while the backend runs.

SQLite: SQLite's online backup API into a new single file, then `PRAGMA integrity_check`
on the copy. PostgreSQL: `pg_dump` in custom format (`-Fc`) of an exported snapshot, with
the figures a restore verifies (rows, balances, ledger sums) read in that same snapshot
and kept beside the dump; the dump is checked with `pg_restore --list`. pg_dump and
pg_restore are taken of the server's major version (Debian keeps each version's in
/usr/lib/postgresql/N/bin), and the password reaches them through PGPASSWORD or the
pgpass file only, never their command line (which `ps` shows to every user).

A backup is written under a hidden name and renamed when it checks out, so a file with
a backup's name is always a whole, checked backup. Names hold the UTC time, so they sort
by age; `--keep N` removes the oldest of this database's backups beyond N, and only files
named as this command names them.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit

from backend import engine, migrations, store, store_ops, transfer
from backend.engine import Target

SQLITE_EXT, DUMP_EXT = ".sqlite", ".dump"
FIGURES_EXT = ".figures.json"
_NAME = re.compile(r"(?P<stem>.+)-(?P<when>\d{8}T\d{6}\.\d{3}Z)(?P<ext>\.sqlite|\.dump)")
_SQLITE_MAGIC, _DUMP_MAGIC = b"SQLite format 3\x00", b"PGDMP"


class BackupError(Exception):
    """A backup or restore that was refused or did not check out (message for the operator)."""


@dataclass(frozen=True)
class Made:
    path: Path
    size: int
    what: str  # what was checked, for the operator
    removed: tuple[Path, ...]


# --- names ----------------------------------------------------------------------------


def stem_of(target: Target) -> str:
    """The database's name in its backups' names: the SQLite file's stem, or the
    PostgreSQL database's name."""
    if target.path is not None:
        return target.path.stem or "loyalty"
    return urlsplit(target.url or "").path.strip("/") or "loyalty"


def backup_name(stem: str, when: datetime, ext: str) -> str:
    when = when.astimezone(UTC)
    return f"{stem}-{when:%Y%m%dT%H%M%S}.{when.microsecond // 1000:03d}Z{ext}"


def backups_of(folder: Path, stem: str) -> list[Path]:
    """This database's backups in `folder` made by this command, oldest first."""
    found = []
    for p in folder.iterdir():
        m = _NAME.fullmatch(p.name)
        if m and m.group("stem") == stem and p.is_file():
            found.append((m.group("when"), p))
    return [p for _, p in sorted(found)]


def prune(folder: Path, stem: str, keep: int) -> tuple[Path, ...]:
    """Remove the oldest of this database's backups beyond the newest `keep`."""
    old = backups_of(folder, stem)[:-keep] if keep > 0 else []
    for p in old:
        p.unlink(missing_ok=True)
        Path(str(p) + FIGURES_EXT).unlink(missing_ok=True)
    return tuple(old)


# --- PostgreSQL's programs ----------------------------------------------------------------


def _major_of(program: Path) -> int | None:
    try:
        out = subprocess.run([str(program), "--version"], capture_output=True, text=True,
                             timeout=30).stdout
    except OSError:
        return None
    m = re.search(r"\(PostgreSQL\)\s+(\d+)", out)
    return int(m.group(1)) if m else None


def pg_bindir(major: int) -> Path:
    """The folder of a pg_dump and pg_restore that can read a server of version `major`:
    PG_BINDIR, Debian's /usr/lib/postgresql/`major`/bin, a newer Debian version's, then
    pg_config's and PATH's (pg_dump refuses a server newer than itself)."""
    candidates = [os.environ.get("PG_BINDIR", ""), f"/usr/lib/postgresql/{major}/bin"]
    root = Path("/usr/lib/postgresql")
    if root.is_dir():
        newer = sorted(int(p.name) for p in root.iterdir() if p.name.isdigit()
                        and int(p.name) > major)
        candidates += [f"/usr/lib/postgresql/{v}/bin" for v in newer]
    pg_config = shutil.which("pg_config")
    if pg_config:
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            candidates.append(subprocess.run([pg_config, "--bindir"], capture_output=True,
                                             text=True, timeout=30).stdout.strip())
    on_path = shutil.which("pg_dump")
    if on_path:
        candidates.append(str(Path(on_path).resolve().parent))
    for c in candidates:
        if not c:
            continue
        folder = Path(c)
        dump, restore = folder / "pg_dump", folder / "pg_restore"
        if dump.is_file() and restore.is_file() and (_major_of(dump) or 0) >= major:
            return folder
    raise BackupError(
        f"no pg_dump/pg_restore for PostgreSQL {major} found (PG_BINDIR, "
        f"/usr/lib/postgresql/{major}/bin, PATH); on Debian: apt-get install "
        f"postgresql-client-{major}"
    )


def _pg_env(target: Target) -> tuple[str, dict[str, str]]:
    """The URL without its password, and the environment that carries the password."""
    url, password = engine.split_password(target.url or "")
    env = dict(os.environ)
    if password is not None:
        env["PGPASSWORD"] = password
    return url, env


def _run(args: list[str], env: dict[str, str], what: str) -> str:
    try:
        done = subprocess.run(args, env=env, capture_output=True, text=True, timeout=6 * 3600)
    except OSError as exc:
        raise BackupError(f"{what}: cannot run {args[0]}: {exc.strerror}") from None
    if done.returncode != 0:
        raise BackupError(f"{what} failed: {engine.mask(done.stderr.strip())[-800:]}")
    return done.stdout


def _listed_tables(bindir: Path, dump: Path, env: dict[str, str]) -> set[str]:
    """The tables whose rows `dump` holds, as `pg_restore --list` reads its table of contents."""
    listing = _run([str(bindir / "pg_restore"), "--list", str(dump)], env, "pg_restore --list")
    return {m.group(1) for m in re.finditer(r"TABLE DATA \S+ (\w+) ", listing)}


# --- backup --------------------------------------------------------------------------------


def backup(db: str | Target, folder: Path, keep: int | None, now: datetime) -> Made:
    target = engine.parse_target(db)
    if keep is not None and keep < 1:
        raise BackupError("--keep must be at least 1")
    if not folder.is_dir():
        raise BackupError(f"--to {folder}: no such folder")
    stem = stem_of(target)
    if target.path is not None:
        made = _backup_sqlite(target.path, folder, backup_name(stem, now, SQLITE_EXT))
    else:
        made = _backup_pg(target, folder, backup_name(stem, now, DUMP_EXT))
    removed = prune(folder, stem, keep) if keep is not None else ()
    return Made(made.path, made.size, made.what, removed)


def _partial(folder: Path, name: str) -> Path:
    """Where a backup is written before it checks out: hidden, and private from the start
    (it holds every member's phone and balance), whatever the umask."""
    path = folder / f".{name}.partial"
    path.unlink(missing_ok=True)
    os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    return path


def _backup_sqlite(path: Path, folder: Path, name: str) -> Made:
    if not path.is_file():
        raise BackupError(f"{path}: no such database")
    partial = _partial(folder, name)
    try:
        try:
            store_ops.sqlite_backup(path, partial)
        except engine.DatabaseError as exc:
            raise BackupError(f"{path}: backup failed: {exc}") from None
        verdict = store_ops.sqlite_integrity(partial)
        if verdict != "ok":
            raise BackupError(f"the backup of {path} fails SQLite's integrity check: {verdict}")
        conn = store_ops.open_sqlite_readonly(partial)
        try:
            version = migrations.current_version(conn)
            if version is None:
                raise BackupError(f"{path}: no loyalty schema in this database")
            fig = transfer.figures(conn)
        finally:
            conn.close()
        final = folder / name
        os.replace(partial, final)
    finally:
        partial.unlink(missing_ok=True)
    what = (f"integrity ok, schema version {version}, {len(fig.balances):,} members, "
            f"{fig.rows['ledger']:,} ledger rows")
    return Made(final, final.stat().st_size, what, ())


def _backup_pg(target: Target, folder: Path, name: str) -> Made:
    try:
        conn = store.connect(target, check_schema=False, create=False)
    except store.StoreError as exc:
        raise BackupError(str(exc)) from None
    partial = _partial(folder, name)
    figures_partial = _partial(folder, name + FIGURES_EXT)
    try:
        bindir = pg_bindir(store_ops.server_major(conn))
        url, env = _pg_env(target)
        with store_ops.exported_snapshot(conn) as snapshot:
            version = migrations.current_version(conn)
            if version is None:
                raise BackupError(f"{target}: no loyalty schema in this database")
            fig = transfer.figures(conn)
            _run([str(bindir / "pg_dump"), "--format=custom", f"--snapshot={snapshot}",
                  f"--file={partial}", f"--dbname={url}"], env, "pg_dump")
        listed = _listed_tables(bindir, partial, env)
        missing = [t for t in transfer.TABLES if t not in listed]
        if missing:
            raise BackupError(f"the dump of {target} lists no rows of {', '.join(missing)}")
        doc = {"schema_version": version, "figures": fig.to_json(), "database": str(target)}
        figures_partial.write_text(json.dumps(doc), encoding="utf-8")
        final = folder / name
        os.replace(figures_partial, Path(str(final) + FIGURES_EXT))
        os.replace(partial, final)
    finally:
        conn.close()
        partial.unlink(missing_ok=True)
        figures_partial.unlink(missing_ok=True)
    what = (f"pg_restore --list ok ({len(listed)} tables), schema version {version}, "
            f"{len(fig.balances):,} members, {fig.rows['ledger']:,} ledger rows")
    return Made(final, final.stat().st_size, what, ())


# --- restore -------------------------------------------------------------------------------


def restore(source: Path, db: str | Target) -> tuple[list[transfer.Check], int | None]:
    """Restore the backup `source` into the empty database `db`; the checks (all ok),
    and the restored schema version."""
    target = engine.parse_target(db)
    try:
        with open(source, "rb") as f:
            head = f.read(16)
    except OSError as exc:
        raise BackupError(f"--from {source}: {exc.strerror}") from None
    if head.startswith(_SQLITE_MAGIC):
        return _restore_sqlite(source, target), migrations.LATEST
    if head.startswith(_DUMP_MAGIC):
        return _restore_pg(source, target)
    raise BackupError(f"--from {source}: neither a SQLite backup nor a pg_dump custom archive")


def _restore_sqlite(source: Path, target: Target) -> list[transfer.Check]:
    verdict = store_ops.sqlite_integrity(source)
    if verdict != "ok":
        raise BackupError(f"{source} fails SQLite's integrity check: {verdict}")
    created = target.path is not None and not target.path.exists()
    with tempfile.TemporaryDirectory(prefix="loyalty-restore-") as tmp:
        work = Path(tmp) / "backup.sqlite"
        store_ops.sqlite_backup(source, work)  # the backup file itself stays untouched
        conn = store.connect(work, check_schema=False, create=False)
        try:
            if migrations.current_version(conn) is None:
                raise BackupError(f"{source}: no loyalty schema in this file")
            migrations.migrate(conn, datetime.now(UTC))  # an older backup: this version's
            try:
                dest = store.connect(target, check_schema=False, create=False)
            except store.StoreError as exc:
                raise BackupError(str(exc)) from None
            try:
                return transfer.copy(conn, dest)
            except transfer.CopyError as exc:
                raise BackupError(f"{target}: {exc}") from None
            finally:
                dest.close()
        except BaseException:
            if created and target.path is not None:
                for suffix in ("", "-wal", "-shm"):
                    Path(str(target.path) + suffix).unlink(missing_ok=True)
            raise
        finally:
            conn.close()


def _restore_pg(source: Path, target: Target) -> tuple[list[transfer.Check], int | None]:
    if not target.is_postgresql:
        raise BackupError(f"{source} is a PostgreSQL dump: restore it into a postgresql:// URL")
    figures_file = Path(str(source) + FIGURES_EXT)
    try:
        doc = json.loads(figures_file.read_text(encoding="utf-8"))
        expected = transfer.Figures.from_json(doc["figures"])
    except (OSError, ValueError, KeyError, TypeError, transfer.CopyError) as exc:
        raise BackupError(f"{figures_file}: the dump's figures cannot be read ({exc}); "
                          "without them the restore cannot be verified") from None
    try:
        conn = store.connect(target, check_schema=False, create=False)
    except store.StoreError as exc:
        raise BackupError(str(exc)) from None
    try:
        tables = engine.table_names(conn)
        if tables:
            raise BackupError(f"{target}: not empty (it holds {', '.join(sorted(tables))}); "
                              "restore into a new database (createdb), nothing was written")
        bindir = pg_bindir(store_ops.server_major(conn))
        url, env = _pg_env(target)
        _listed_tables(bindir, source, env)
        _run([str(bindir / "pg_restore"), "--no-owner", "--no-privileges", "--exit-on-error",
              "--single-transaction", f"--dbname={url}", str(source)], env, "pg_restore")
        with engine.transaction(conn):
            checks = transfer.compare(expected, transfer.figures(conn))
            version = migrations.current_version(conn)
        bad = [c for c in checks if not c.ok]
        if bad:
            with engine.transaction(conn):
                store_ops.drop_tables(conn)
            raise BackupError("the restore did not verify and was taken back: " + "; ".join(
                f"{c.what}: {c.source} vs {c.target}" for c in bad))
        return checks, version
    finally:
        conn.close()
