"""`loyalty-panel run`: loopback by default, the config file, and a real server process."""

from __future__ import annotations

import http.cookiejar
import os
import re
import subprocess
import sys
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from backend import store
from panel.cli import UsageError, load_settings, main, parse_listen

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("listen", ["127.0.0.1:8080", "[::1]:8080", "localhost:8080",
                                    "127.5.0.1:0"])
def test_loopback_is_accepted(listen: str) -> None:
    assert parse_listen(listen, allow_remote=False)[1] in (8080, 0)


@pytest.mark.parametrize("listen", ["0.0.0.0:8080", "192.168.1.10:8080", "[::]:8080",
                                    "panel.example:8080"])
def test_other_addresses_need_allow_remote(listen: str, capsys) -> None:
    with pytest.raises(UsageError, match="--allow-remote"):
        parse_listen(listen, allow_remote=False)
    assert parse_listen(listen, allow_remote=True)[1] == 8080
    assert main(["run", "--db", "x.db", "--listen", listen]) == 2
    assert "not a loopback address" in capsys.readouterr().err


def test_bad_listen_and_empty_db(capsys) -> None:
    assert main(["run", "--db", "x.db", "--listen", "nonsense"]) == 2
    assert main(["run", "--db", " "]) == 2
    err = capsys.readouterr().err
    assert "is not HOST:PORT" in err and "--db is empty" in err


def test_config_file(tmp_path: Path) -> None:
    cfg = tmp_path / "panel.toml"
    cfg.write_text('[panel]\nsecure_cookies = true\nidle_minutes = 5\nlanguage = "en"\n')
    s = load_settings("x.db", cfg)
    assert (s.secure_cookies, s.idle_timeout, s.default_language) == (True, 300.0, "en")
    assert load_settings("x.db", None).secure_cookies is None  # auto
    for bad in ("[panel]\nidle = 5\n", "[panel]\nidle_minutes = 0\n",
                '[panel]\nsecure_cookies = "yes"\n', "[panel\n"):
        cfg.write_text(bad)
        with pytest.raises(UsageError):
            load_settings("x.db", cfg)
    assert main(["run", "--db", "x.db", "--config", str(tmp_path / "missing.toml")]) == 2


def test_run_refuses_a_database_that_is_not_there(tmp_path: Path, capsys) -> None:
    assert main(["run", "--db", str(tmp_path / "typo.db")]) == 2
    assert "no such database" in capsys.readouterr().err
    assert not (tmp_path / "typo.db").exists()


def test_run_serves_the_users_of_the_database(tmp_path: Path) -> None:
    """A real process: `loyalty-backend user add`, then `loyalty-panel run`, then a login."""
    db = tmp_path / "shop.db"
    store.connect(db).close()
    (tmp_path / "pw").write_text("a long password\n")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    club = "فروشگاه"  # the club a new database names after [shop] name (the default)
    add = subprocess.run(
        [sys.executable, "-m", "backend", "user", "add", "ali", "--db", str(db), "--club",
         club, "--role", "owner", "--password-file", str(tmp_path / "pw")],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert add.returncode == 0, add.stderr
    proc = subprocess.Popen(
        [sys.executable, "-m", "panel", "run", "--db", str(db), "--listen", "127.0.0.1:0"],
        cwd=ROOT, stderr=subprocess.PIPE, text=True, env=env)
    try:
        log = []
        port = None
        assert proc.stderr is not None
        for line in proc.stderr:  # wait for the event: uvicorn says where it listens
            log.append(line)
            if m := re.search(r"Uvicorn running on http://127\.0\.0\.1:(\d+)", line):
                port = int(m.group(1))
                break
        assert port, "".join(log)
        opener = urllib.request.build_opener(
            urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()))
        base = f"http://127.0.0.1:{port}"
        with opener.open(f"{base}/login", timeout=10) as r:
            page = r.read().decode()
        assert r.status == 200 and 'dir="rtl"' in page and 'id="no-users"' not in page
        token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
        form = urllib.parse.urlencode({"name": "ali", "password": "a long password",
                                       "csrf_token": token}).encode()
        with opener.open(f"{base}/login", data=form, timeout=10) as r:
            home = r.read().decode()
        assert r.url == f"{base}/" and '<bdi id="user-name">ali</bdi>' in home
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def test_the_shipped_config_holds_the_defaults() -> None:
    assert load_settings("x.db", ROOT / "config" / "panel.toml") == load_settings("x.db", None)
