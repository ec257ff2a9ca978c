"""Start and stop a private PostgreSQL server on a free loopback port.

Used by the tests and the benchmarks: Debian's PostgreSQL binaries (`initdb`, `postgres`)
make a cluster in a temporary folder, the server listens on 127.0.0.1 only (its unix
socket stays in that folder), and it is stopped by its own process id. PostgreSQL refuses
to run as root: started by root, the server runs as the `postgres` system user (Debian's
package makes it), or `nobody`.
"""

from __future__ import annotations

import os
import pwd
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import psycopg

from demo.mosquitto import free_port, stop_process

INSTALL_HINT = (
    "PostgreSQL is not installed. On Debian or Ubuntu: sudo apt-get install -y postgresql "
    "(or run scripts/setup.sh, which does it)."
)
USER = "loyalty"


class PostgresError(RuntimeError):
    pass


def find_bindir() -> Path:
    """The folder of `initdb` and `postgres`: PG_BINDIR, pg_config, or Debian's path."""
    candidates = [os.environ.get("PG_BINDIR", "")]
    pg_config = shutil.which("pg_config")
    if pg_config:
        try:
            out = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True)
            candidates.append(out.stdout.strip())
        except OSError:
            pass
    root = Path("/usr/lib/postgresql")
    if root.is_dir():
        versions = sorted(root.iterdir(), key=lambda p: int(p.name) if p.name.isdigit() else 0)
        candidates += [str(v / "bin") for v in reversed(versions)]
    for c in candidates:
        if c and (Path(c) / "initdb").is_file() and (Path(c) / "postgres").is_file():
            return Path(c)
    raise PostgresError(INSTALL_HINT)


def _run_as() -> tuple[int, int] | None:
    """(uid, gid) to run the server as when we are root; None otherwise."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        try:
            entry = pwd.getpwnam(name)
        except KeyError:
            continue
        return entry.pw_uid, entry.pw_gid
    raise PostgresError("running as root and there is no `postgres` or `nobody` user")


@dataclass
class Postgres:
    """One server. `durable=False` (tests) turns fsync off; the benchmarks keep it on."""

    durable: bool = False
    port: int = 0
    password: str = field(default_factory=lambda: secrets.token_hex(12))
    workdir: Path | None = None
    proc: subprocess.Popen | None = None
    _owned_dir: bool = False

    @property
    def host(self) -> str:
        return "127.0.0.1"

    def url(self, dbname: str = "postgres", *, with_password: bool = True) -> str:
        auth = f"{USER}:{self.password}" if with_password else USER
        return f"postgresql://{auth}@{self.host}:{self.port}/{dbname}"

    def start(self) -> Postgres:
        if self.proc and self.proc.poll() is None:
            return self
        bindir = find_bindir()
        ids = _run_as()
        if self.workdir is None:
            self.workdir = Path(tempfile.mkdtemp(prefix="loyalty-pg-"))
            self._owned_dir = True
        if ids is not None:
            os.chown(self.workdir, *ids)
        kw: dict = {"user": ids[0], "group": ids[1], "extra_groups": []} if ids else {}
        data = self.workdir / "data"
        if not (data / "PG_VERSION").exists():
            pwfile = self.workdir / "pwfile"
            pwfile.write_text(self.password + "\n")
            if ids is not None:
                os.chown(pwfile, *ids)
            os.chmod(pwfile, 0o600)
            done = subprocess.run(
                [
                    str(bindir / "initdb"),
                    "-D", str(data), "-U", USER, f"--pwfile={pwfile}",
                    "--auth-local=trust", "--auth-host=scram-sha-256",
                    "-E", "UTF8", "--locale=C", "--no-sync", "--no-instructions",
                ],
                capture_output=True, text=True, cwd=self.workdir, **kw,
            )  # fmt: skip
            pwfile.unlink()
            if done.returncode != 0:
                raise PostgresError(f"initdb failed: {done.stderr[-800:]}")
        if not self.port:
            self.port = free_port()
        settings = {
            "listen_addresses": "127.0.0.1",
            "port": str(self.port),
            "unix_socket_directories": str(self.workdir),
            "fsync": "on" if self.durable else "off",
            "synchronous_commit": "on",
            "full_page_writes": "on" if self.durable else "off",
            "max_connections": "200",
            "shared_buffers": "128MB",
            "log_min_messages": "warning",
        }
        args = [str(bindir / "postgres"), "-D", str(data)]
        for k, v in settings.items():
            args += ["-c", f"{k}={v}"]
        log = open(self.workdir / "postgres.log", "ab")  # noqa: SIM115
        self.proc = subprocess.Popen(
            args,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            cwd=self.workdir,
            start_new_session=True,
            **kw,
        )
        log.close()
        self._wait_ready()
        return self

    def _wait_ready(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            if self.proc is None or self.proc.poll() is not None:
                raise PostgresError(f"postgres exited: {self.log_tail()}")
            try:
                psycopg.connect(self.url(), connect_timeout=2).close()
                return
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    self.stop()
                    raise PostgresError(f"postgres did not start: {self.log_tail()}") from None
                time.sleep(0.05)

    def log_tail(self) -> str:
        path = (self.workdir or Path()) / "postgres.log"
        return path.read_text(errors="replace")[-800:] if path.exists() else ""

    def admin(self) -> psycopg.Connection:
        return psycopg.connect(self.url(), autocommit=True)

    def create_database(self, name: str, template: str | None = None) -> str:
        """A new database (a copy of `template` when given); its URL."""
        sql = f'CREATE DATABASE "{name}"'
        if template:
            sql += f' TEMPLATE "{template}"'
        with self.admin() as conn:
            conn.execute(sql)
        return self.url(name)

    def drop_database(self, name: str) -> None:
        with self.admin() as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def stop(self, timeout: float = 15.0) -> None:
        """Fast shutdown (SIGINT) by our own process id, then SIGKILL; the folder goes."""
        proc, self.proc = self.proc, None
        stop_process(proc, sig=signal.SIGINT, timeout=timeout)
        if self._owned_dir and self.workdir is not None:
            shutil.rmtree(self.workdir, ignore_errors=True)
            self.workdir = None

    def __enter__(self) -> Postgres:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
