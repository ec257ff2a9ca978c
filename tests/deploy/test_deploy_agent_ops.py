"""The agent as an operator runs it: metrics, health, SIGHUP, SIGTERM, logs in JSON.

Real processes: Mosquitto, the backend and the agent on a pseudo-terminal, each stopped
by its own pid. Every wait is for an event (a log line, a metric's value, an answer).
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from agent.config import ConfigError, build
from agent.metrics import METRICS
from demo.mosquitto import Mosquitto, free_port
from tests.agent.agent_terminal import (
    KEY_HEX,
    MID,
    REPO,
    TID,
    header,
    start_backend,
    status,
    stop,
    tlv,
    wait_for,
)

PHONE = "09121234567"


def _env() -> dict[str, str]:
    return dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))


def write_config(path: Path, tmp: Path, broker: str, serial: str, level: str,
                 metrics: int) -> None:
    path.write_text(f"""
serial = "{serial}"
broker = "{broker}"
terminal_id = "{TID}"
merchant_id = "{MID}"
mac_key = "{KEY_HEX}"
journal = "{tmp / 'journal.log'}"
broker_username = "{TID}"
broker_password_file = "{tmp / 'password'}"
inquiry_budget = 0.5
log_level = "{level}"
log_format = "json"
log_file = "{tmp / 'agent.log'}"
metrics = "127.0.0.1:{metrics}"
""", encoding="utf-8")


def log_records(path: Path) -> list[dict]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def logged(path: Path, pattern: str) -> re.Match | None:
    for record in log_records(path):
        found = re.search(pattern, record["message"])
        if found:
            return found
    return None


def scrape(port: int) -> dict[str, float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        text = r.read().decode()
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            out[name.partition("{")[0]] = float(value)
    return out


def health(config: Path, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "agent", "health", "--config", str(config),
                           "--timeout", "2", *extra], capture_output=True, text=True,
                          timeout=60, env=_env(), cwd=REPO)


def test_metrics_health_sighup_and_sigterm(tmp_path: Path, broker: Mosquitto, term) -> None:
    password = tmp_path / "password"
    password.write_text("first\n")
    password.chmod(0o600)
    config = tmp_path / f"{TID}.toml"
    write_config(config, tmp_path, broker.address, term.path, "INFO", free_port())
    log = tmp_path / "agent.log"
    agent = subprocess.Popen([sys.executable, "-m", "agent", "run", "--config", str(config)],
                             stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                             stderr=open(tmp_path / "agent.stderr", "wb"),  # noqa: SIM115
                             env=_env(), cwd=REPO, start_new_session=True)
    backend = None
    try:
        port = int(wait_for(lambda: logged(log, r"metrics on http://127\.0\.0\.1:(\d+)/"),
                            timeout=30).group(1))
        started = logged(log, r"loyalty-agent \S+ starting; settings (.*)")
        assert started and "<hidden>" in started.group(1) and KEY_HEX not in started.group(1)
        first = scrape(port)
        for name in METRICS:
            wire = "loyalty_agent_" + name
            assert wire in first or wire + "_total" in first, name
        assert first["loyalty_agent_link_up"] == 1 and f"127.0.0.1:{port}" in config.read_text()
        # the backend is not there: the terminal hears OF, an inquiry gets 91
        assert status(term, 1)["ST"] == "OF"
        inq = {"t": "0100", "3": "310000", "4": "000001500000", **header(2),
               "48": tlv({"PN": PHONE})}
        assert term.ask(inq)["39"] == "91"
        now = scrape(port)
        assert now["loyalty_agent_unreachable_answers_total"] == 1
        assert now["loyalty_agent_frames_received_total"] >= 2
        assert now["loyalty_agent_frames_sent_total"] >= 2
        assert now["loyalty_agent_backend_reachable"] == 0
        down = health(config)
        assert down.returncode == 1 and "no backend online" in down.stdout, down
        # the backend comes: reachable, healthy
        backend = start_backend(tmp_path, broker.address)
        wait_for(lambda: scrape(port)["loyalty_agent_backend_reachable"] == 1, timeout=30)
        up = health(config)
        assert up.returncode == 0 and "healthy" in up.stdout, up
        strict = health(config, "--max-journal-mb", "0")
        assert strict.returncode == 1 and "journal" in strict.stdout
        # SIGHUP: the new level and password, said in the log
        write_config(config, tmp_path, broker.address, term.path, "DEBUG", port)
        password.write_text("second\n")
        agent.send_signal(signal.SIGHUP)
        wait_for(lambda: logged(log, r"SIGHUP: reloaded: log level DEBUG, broker password "
                                     r"changed"), timeout=15)
        assert status(term, 3)["ST"] == "ON"
        term.ask({**inq, **header(4)})  # its handling time is a DEBUG line
        wait_for(lambda: any(r["level"] == "DEBUG" for r in log_records(log)), timeout=15)
        # a broken config on SIGHUP: the old settings stay, the log says why
        config.write_text(config.read_text().replace('log_level = "DEBUG"', 'log_level = "X"'))
        agent.send_signal(signal.SIGHUP)
        wait_for(lambda: logged(log, r"SIGHUP: settings not reloaded"), timeout=15)
        assert agent.poll() is None
    finally:
        stop(agent)
        stop(backend)
    assert agent.returncode == 0
    assert logged(log, r"^agent stopped$")
    assert all({"time", "level", "logger", "message", "service"} <= set(r)
               for r in log_records(log))
    assert "second" not in log.read_text() and "first" not in log.read_text()


def test_metrics_on_a_network_address_only_when_allowed(tmp_path: Path) -> None:
    base = {"listen": "127.0.0.1:0", "broker": "127.0.0.1:1883", "terminal_id": TID,
            "merchant_id": MID, "mac_key": KEY_HEX, "journal": str(tmp_path / "j")}
    with pytest.raises(ConfigError, match=r"metrics: .*not a loopback"):
        build({**base, "metrics": "0.0.0.0:9731"})
    assert build({**base, "metrics": "0.0.0.0:9731", "metrics_allow_remote": True}
                 ).metrics_host == "0.0.0.0"
    assert build({**base, "metrics": "[::1]:9731"}).metrics_port == 9731
    refused = subprocess.run(
        [sys.executable, "-m", "agent", "run", *(part for k, v in base.items()
                                                for part in ("--" + k.replace("_", "-"), v)),
         "--metrics", "192.0.2.1:9731"],
        capture_output=True, text=True, timeout=60, env=_env(), cwd=REPO)
    assert refused.returncode == 2 and "metrics" in refused.stderr
    assert "--metrics-allow-remote" in refused.stderr


def test_health_names_the_reason(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('terminal_id = "T1"\n')
    out = health(bad)
    assert out.returncode == 1 and "unhealthy: journal" in out.stdout
    (tmp_path / "j").write_text("")
    bad.write_text(f'journal = "{tmp_path / "j"}"\nterminal_id = "T1"\n')
    out = health(bad)
    assert out.returncode == 1 and "unhealthy: config:" in out.stdout
    nobody = tmp_path / "nobody.toml"
    nobody.write_text(f'listen = "127.0.0.1:0"\nbroker = "127.0.0.1:{free_port()}"\n'
                      f'terminal_id = "{TID}"\nmerchant_id = "{MID}"\nmac_key = "{KEY_HEX}"\n'
                      f'journal = "{tmp_path / "j"}"\n')
    out = health(nobody)
    assert out.returncode == 1 and "broker 127.0.0.1:" in out.stdout and "cannot connect" in (
        out.stdout), out.stdout
