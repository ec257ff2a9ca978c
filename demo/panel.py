"""The demo's panel: an owner for the demo's club, and `loyalty-panel run` as a process.

The panel reads the terminals' presence from the broker with the backend's account, so
its `[panel] backend_config` is the demo's backend configuration plus an `[mqtt]` table
with that account (a file of mode 600 in the demo's folder).
"""

from __future__ import annotations

import os
import secrets
import socket
import subprocess
import time
import urllib.request
from datetime import UTC, datetime
from pathlib import Path

from backend import store, store_registry, store_users
from backend.passwords import hash_password
from demo.mosquitto import stop_process

OWNER = "owner"


def add_owner(db: Path) -> str:
    """An owner of the demo's (only) club with a fresh password; the password. A demo run
    again in the same folder gets a new password for the same user."""
    password = secrets.token_urlsafe(9)
    conn = store.connect(db)
    try:
        with store.transaction(conn):
            club = store_registry.list_clubs(conn)[0]
            now = datetime.now(UTC)
            if store_users.find_user(conn, OWNER) is None:
                store_users.add_user(conn, name=OWNER, role="owner", club_id=club.id,
                                     password_hash=hash_password(password), now=now)
            else:
                store_users.set_password(conn, OWNER, hash_password(password), now)
    finally:
        conn.close()
    return password


def set_public_url(db: Path, url: str) -> None:
    """The demo club's public address, so its SMS carry links to the members' pages
    (served by the panel the demo starts at that address)."""
    conn = store.connect(db)
    try:
        with store.transaction(conn):
            club = store_registry.list_clubs(conn)[0]
            store_registry.set_public_url(conn, club.id, url)
    finally:
        conn.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def write_config(workdir: Path, backend_config: Path, broker: str,
                 login: tuple[str, str] | None) -> Path:
    mqtt = f'\n[mqtt]\nbroker = "{broker}"\n'
    if login is not None:
        mqtt += f'username = "{login[0]}"\npassword = "{login[1]}"\n'
    backend = workdir / "panel-backend.toml"
    fd = os.open(backend, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(backend_config.read_text(encoding="utf-8") + mqtt)
    panel = workdir / "panel.toml"
    panel.write_text(f'[panel]\nbackend_config = "{backend}"\nsecure_cookies = false\n',
                     encoding="utf-8")
    return panel


def start_panel(python: str, db: Path, config: Path, workdir: Path, port: int,
                timeout: float = 30.0) -> subprocess.Popen:
    """`python -m panel run` on 127.0.0.1:port; returns once /health answers."""
    log = open(workdir / "panel.log", "ab")  # noqa: SIM115 - the child keeps it
    try:
        proc = subprocess.Popen(
            [python, "-m", "panel", "run", "--db", str(db), "--listen", f"127.0.0.1:{port}",
             "--config", str(config)], stdin=subprocess.DEVNULL, stdout=log,
            stderr=subprocess.STDOUT, env=dict(os.environ, PYTHONUNBUFFERED="1"),
            start_new_session=True)
    finally:
        log.close()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the panel stopped (see {workdir / 'panel.log'})")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1) as r:
                if r.status == 200:
                    return proc
        except OSError:
            time.sleep(0.1)
    stop_process(proc)
    raise RuntimeError("the panel did not answer in time")
