"""The backend as an operator runs it: metrics, health, the broker password from a file.

Real processes: Mosquitto, `python -m backend run`, `python -m backend health`; every
wait is for an event (a presence, a metric's value, a log line).
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import urllib.request
from datetime import UTC, datetime
from pathlib import Path

import pytest

from backend import engine, store
from backend.metrics import METRICS
from backend.sms import outbox
from demo.mosquitto import Mosquitto, free_port, stop_process
from tests.backend.core_helpers import (
    ROOT,
    TestAgent,
    advice,
    phone,
    start_backend,
    wait_until,
)
from tests.backend.core_helpers import request as make_request
from tests.backend.engines import db, empty_pg_url, pg_url, postgres_server  # noqa: F401


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, "-m", "backend", *args], capture_output=True,
                          text=True, cwd=ROOT, env=env, timeout=120)


def scrape(port: int) -> dict[str, float]:
    """Series (name with labels) -> value."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
        text = r.read().decode()
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            series, _, value = line.rpartition(" ")
            out[series] = float(value)
    return out


def sms_config(tmp_path: Path) -> list[str]:
    """--config whose SMS file is in the test's folder (with PostgreSQL a relative one
    would land in the working directory, the repository)."""
    cfg = tmp_path / "backend.toml"
    cfg.write_text(f'[sms]\nsender = "file"\nfile = "{tmp_path / "sms.jsonl"}"\n')
    return ["--config", str(cfg)]


def _now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def test_backend_metrics(db: str, broker: Mosquitto, tmp_path: Path) -> None:  # noqa: F811
    port = free_port()
    agent = TestAgent(broker.address)
    proc = start_backend(broker.address, db, "m1", "--metrics", f"127.0.0.1:{port}",  # type: ignore[arg-type]
                         *sms_config(tmp_path))
    try:
        agent.wait_for(lambda: agent.status.get("m1") is True)
        p = phone(700)
        assert agent.ask(make_request("enroll", {"phone": p})).code == "00"
        assert agent.ask(advice(amount=2_000_000, occurred_at=_now_iso(), phone=p)).code == "00"
        quote = agent.ask(make_request("inquiry", {"phone": p, "gross": 100_000}))
        assert quote.code == "00"
        unknown = agent.ask(make_request("inquiry", {"phone": phone(701), "gross": 1000}))
        assert unknown.code == "14"
        m = scrape(port)
        assert m.get('loyalty_backend_requests_total{code="14",type="inquiry"}') == 1, m
        assert m['loyalty_backend_requests_total{code="00",type="enroll"}'] == 1
        assert m['loyalty_backend_requests_total{code="00",type="inquiry"}'] == 1
        assert m['loyalty_backend_requests_total{code="14",type="inquiry"}'] == 1
        assert m['loyalty_backend_handling_seconds_count{type="inquiry"}'] == 2
        assert m['loyalty_backend_handling_seconds_bucket{le="+Inf",type="advice"}'] == 1
        assert 1 <= m["loyalty_backend_commit_seconds_count"] <= 4
        assert m["loyalty_backend_group_commit_size_sum"] == 4
        assert m["loyalty_backend_open_holds"] == 1  # the quote holds credit
        assert sum(v for k, v in m.items() if k.startswith("loyalty_backend_sms_outbox{")) >= 1
        assert {f'loyalty_backend_sms_outbox{{status="{s}"}}' for s in
                ("pending", "sending", "sent", "failed")} <= set(m)
        info = [k for k in m if k.startswith("loyalty_backend_info{")]
        assert len(info) == 1 and re.search(r'version="\d', info[0])
        names = {re.sub(r"(_bucket|_count|_sum|_created)?(\{.*)?$", "", k) for k in m}
        assert {"loyalty_backend_" + n for n in METRICS} <= names | {
            "loyalty_backend_handling_seconds", "loyalty_backend_commit_seconds",
            "loyalty_backend_group_commit_size"}
        settle = advice(amount=50_000, gross=100_000, occurred_at=_now_iso(),
                        quote_id=quote.body["quote_id"])
        assert agent.ask(settle).code == "00"
        assert scrape(port)["loyalty_backend_open_holds"] == 0  # read at scrape time
    finally:
        assert stop_process(proc) == 0
        agent.close()


def test_backend_metrics_loopback_only(tmp_path: Path, broker: Mosquitto) -> None:
    done = cli("run", "--db", str(tmp_path / "x.db"), "--broker", broker.address,
               "--metrics", "0.0.0.0:9740")
    assert done.returncode == 2
    assert "not a loopback address" in done.stderr and "--metrics-allow-remote" in done.stderr
    assert not (tmp_path / "x.db").exists()  # refused before anything was made


def test_backend_health(db: str, broker: Mosquitto, tmp_path: Path) -> None:  # noqa: F811
    port = free_port()

    def health(*extra: str, on: str = db) -> tuple[int, str]:
        done = cli("health", "--db", on, "--broker", broker.address, "--timeout", "2", *extra)
        return done.returncode, (done.stdout + done.stderr).strip()

    code, said = health()
    assert (code, said) == (1, f"loyalty-backend: unhealthy: backend: no backend online on "
                               f"broker {broker.address}")
    code, said = health(on=str(tmp_path / "missing.db"))
    assert code == 1 and "database:" in said and "does not exist" in said
    assert not (tmp_path / "missing.db").exists()
    dead = f"127.0.0.1:{free_port()}"
    done = cli("health", "--db", db, "--broker", dead, "--timeout", "2")
    assert done.returncode == 1 and f"broker {dead}: cannot connect" in done.stdout

    proc = start_backend(broker.address, db, "h1", "--metrics", f"127.0.0.1:{port}",  # type: ignore[arg-type]
                         *sms_config(tmp_path))
    agent = TestAgent(broker.address)
    try:
        agent.wait_for(lambda: agent.status.get("h1") is True)
        assert health() == (0, "loyalty-backend: healthy")
        assert health("--metrics", f"http://127.0.0.1:{port}/metrics")[0] == 0
        code, said = health("--metrics", f"http://127.0.0.1:{free_port()}/metrics")
        assert code == 1 and "its metrics at" in said and "do not answer" in said
        # an SMS waiting in the outbox beyond the threshold (another database: this
        # backend's SMS worker would send it)
        other = str(tmp_path / "other.db")
        conn = store.connect(other)
        try:
            with store.transaction(conn):
                outbox.enqueue(conn, key="k1", phone=phone(9), text="hello", kind="other",
                               now=datetime.now(UTC))
        finally:
            conn.close()
        assert health(on=other)[0] == 0
        code, said = health("--max-sms-waiting", "0", on=other)
        assert (code, said) == (1, "loyalty-backend: unhealthy: sms: 1 SMS waiting to be sent "
                                   "(> 0)")
    finally:
        assert stop_process(proc) == 0
        agent.close()
    # the backend said offline when it stopped: health sees it
    code, said = health()
    assert code == 1 and "no backend online" in said


def test_backend_health_refuses_an_old_schema(tmp_path: Path, broker: Mosquitto) -> None:
    path = tmp_path / "old.db"
    conn = store.connect(path)
    try:
        conn.execute("UPDATE schema_version SET version = version - 1")
    finally:
        conn.close()
    done = cli("health", "--db", str(path), "--broker", broker.address, "--timeout", "2")
    assert done.returncode == 1 and "database:" in done.stdout and "migrate" in done.stdout


def test_backend_broker_password_file_and_sighup(tmp_path: Path) -> None:
    acl = "user backend\ntopic readwrite loyalty/#\n\nuser tester\ntopic readwrite loyalty/#\n"
    secret = tmp_path / "broker.password"
    secret.write_text("wrong\n")
    secret.chmod(0o644)
    ledger = tmp_path / "loyalty.db"
    with Mosquitto(tmp_path / "broker", users={"backend": "s3cret", "tester": "t"},
                   acl=acl) as b:
        # world-readable: refused at start, exit 2, nothing made
        done = cli("run", "--db", str(ledger), "--broker", b.address, "--broker-username",
                   "backend", "--broker-password-file", str(secret))
        assert done.returncode == 2 and "readable or writable by other users" in done.stderr
        assert not ledger.exists()
        secret.chmod(0o600)
        log = tmp_path / "backend.log"
        config = tmp_path / "backend.toml"
        config.write_text(f'[mqtt]\nusername = "backend"\npassword_file = "{secret}"\n'
                          f'[log]\nformat = "json"\nfile = "{log}"\n')
        agent = TestAgent(b.address, credentials=("tester", "t"))
        proc = subprocess.Popen(
            [sys.executable, "-m", "backend", "run", "--db", str(ledger), "--broker", b.address,
             "--instance", "pw", "--config", str(config)],
            cwd=ROOT, env=dict(os.environ, PYTHONPATH=str(ROOT)), stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)

        def said(pattern: str) -> bool:
            return log.exists() and any(re.search(pattern, json.loads(line)["message"])
                                        for line in log.read_text().splitlines() if line)

        try:
            wait_until(lambda: said(r"^broker refused the connection"), timeout=30)
            assert said(r"starting; settings ")
            assert "wrong" not in log.read_text()
            secret.write_text("s3cret\n")
            proc.send_signal(signal.SIGHUP)
            wait_until(lambda: said(r"^SIGHUP: reloaded: log level INFO, broker password "
                                    r"changed$"), timeout=15)
            agent.wait_for(lambda: agent.status.get("pw") is True)
            assert agent.ask(make_request("enroll", {"phone": phone(800)})).code == "00"
            assert "s3cret" not in log.read_text()
        finally:
            assert stop_process(proc) == 0
            agent.close()


@pytest.mark.parametrize("db", ["sqlite"], indirect=True)
def test_backend_health_writes_nothing(db: str, broker: Mosquitto) -> None:  # noqa: F811
    before = Path(db).stat().st_mtime_ns, engine.parse_target(db)
    code = cli("health", "--db", db, "--broker", broker.address, "--timeout", "1").returncode
    assert code == 1  # no backend online
    assert Path(db).stat().st_mtime_ns == before[0]
