"""One log set-up for every service: text or JSON lines, a logrotate-safe file, and no
phone, card number or key in any line, in any format, a whole demo day long."""

from __future__ import annotations

import json
import logging
import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from demo.day import AFTERNOON_OFFLINE, BACKEND_DOWN, EVENING, MORNING
from demo.mosquitto import Mosquitto
from demo.stack import MAC_KEY
from protocols import servicelog
from protocols.identity import ascii_digits
from tests.agent.agent_terminal import REPO, stop, wait_for

# What must never be in a log, whatever wrote it (also the ones we do not know about).
LEAKS = {
    "phone": re.compile(r"(?<!\d)(?:\+?98|0)?9\d{9}(?!\d)"),
    "card": re.compile(r"(?<!\d)\d{4}[ -]?\d{4}[ -]?\d{4}[ -]?\d{4}(?!\d)"),
    "key": re.compile(r"(?<![0-9A-Fa-f])[0-9A-Fa-f]{32}(?![0-9A-Fa-f])"),
}


@pytest.fixture
def root_logger() -> Iterator[None]:
    root = logging.getLogger()
    saved, level = root.handlers[:], root.level
    yield
    for h in root.handlers[:]:
        root.removeHandler(h)
        h.close()
    for h in saved:
        root.addHandler(h)
    root.setLevel(level)


def leaks(text: str) -> list[str]:
    text = ascii_digits(text)  # Persian digits read as digits
    return [f"{kind}: {m.group(0)}" for kind, rx in LEAKS.items() for m in rx.finditer(text)]


SECRETS = ("09123456789", "+98۹۱۲۱۲۳۴۵۶۷", "۰۹۱۲۳۴۵۶۷۸۹", "989121234567", "6037991234567891",
           "6037 9912 3456 7891", "6037-9912-3456-7891", "00112233445566778899AABBCCDDEEFF")


@pytest.mark.parametrize("fmt", servicelog.FORMATS)
def test_every_format_masks_messages_arguments_and_tracebacks(
        tmp_path: Path, fmt: str, root_logger: None) -> None:
    path = tmp_path / "svc.log"
    servicelog.configure("loyalty-test", "DEBUG", fmt, str(path))
    log = logging.getLogger("backend.whatever")
    for secret in SECRETS:
        log.info("customer %s at the till", secret)
        log.warning(f"inline {secret}")
        try:
            raise ValueError(f"bad {secret}")
        except ValueError:
            log.exception("failed for %r", {"who": secret})
    log.info("no secrets: stan 000123 rrn 123456789012 amount 1500000")
    text = path.read_text(encoding="utf-8")
    assert not leaks(text), leaks(text)
    assert "0912*****89" in text and "603799******7891" in text and "<key>" in text
    assert "rrn 123456789012 amount 1500000" in text  # what is not secret stays readable
    assert "Traceback" in text
    if fmt == "json":
        records = [json.loads(line) for line in text.splitlines()]
        assert {r["service"] for r in records} == {"loyalty-test"}
        assert any("exception" in r for r in records)
    else:
        assert re.match(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} INFO backend\.whatever: ",
                        text)


def test_the_leak_check_itself_finds_each_kind() -> None:
    for secret in SECRETS:
        assert leaks(f"x {secret} y"), secret


def test_log_file_follows_logrotate(tmp_path: Path, root_logger: None) -> None:
    path = tmp_path / "svc.log"
    servicelog.configure("loyalty-test", "INFO", "text", str(path))
    logging.getLogger("x").info("before rotation")
    os.rename(path, tmp_path / "svc.log.1")  # what logrotate does (without copytruncate)
    logging.getLogger("x").info("after rotation")
    assert "before rotation" in (tmp_path / "svc.log.1").read_text()
    assert "after rotation" in path.read_text()
    assert "after" not in (tmp_path / "svc.log.1").read_text()


def test_bad_level_or_format_is_refused(root_logger: None) -> None:
    with pytest.raises(ValueError, match="log level"):
        servicelog.configure("x", "LOUD")
    with pytest.raises(ValueError, match="log format"):
        servicelog.configure("x", "INFO", "xml")


def test_settings_line_hides_secrets() -> None:
    shown = servicelog.mask_settings({
        "broker_password": "hunter2", "mac_key": b"\x00" * 16, "broker_password_file": "/etc/p",
        "db": "postgresql://shop:s3cret@db:5432/loyalty", "phone": "09123456789", "baud": 9600,
    })
    assert shown["broker_password"] == "<hidden>" and shown["mac_key"] == "<hidden>"
    assert shown["broker_password_file"] == "/etc/p" and shown["baud"] == 9600
    assert "s3cret" not in shown["db"] and shown["phone"] == "0912*****89"


def test_a_whole_demo_day_logs_no_phone_card_or_key(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "demo.main", "--workdir", str(tmp_path),
                           "--no-receipts"], capture_output=True, text=True, timeout=170,
                          cwd=REPO)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    logs = sorted(tmp_path.rglob("*.log")) + sorted(tmp_path.rglob("*.stderr"))
    assert {p.name for p in logs} >= {"agent.log", "backend.log", "mosquitto.log"}
    lines = [(p.name, line) for p in logs
             for line in p.read_text(encoding="utf-8", errors="replace").splitlines()]
    found = [(name, line, leaks(line)) for name, line in lines if leaks(line)]
    assert not found, found[:5]
    # the day's customers are in the logs, masked: the check above had something to check
    text = "\n".join(line for _, line in lines)
    phones = {ascii_digits(v.phone) for v in MORNING + AFTERNOON_OFFLINE + BACKEND_DOWN
              + EVENING if v.phone}
    assert any(f"{p[:4]}*****{p[-2:]}" in text for p in phones), text[-2000:]
    assert MAC_KEY not in text.lower()


def test_backend_sighup_rereads_its_log_level_and_sigterm_stops_it(
        tmp_path: Path, broker: Mosquitto) -> None:
    config = tmp_path / "backend.toml"
    config.write_text('[log]\nlevel = "INFO"\n')
    log = tmp_path / "backend.log"
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    backend = subprocess.Popen(
        [sys.executable, "-m", "backend", "run", "--broker", broker.address, "--db",
         str(tmp_path / "b.db"), "--config", str(config), "--log-file", str(log),
         "--log-format", "json"],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        env=env, cwd=REPO, start_new_session=True)

    def said(pattern: str) -> bool:
        return log.exists() and any(re.search(pattern, json.loads(line)["message"])
                                    for line in log.read_text().splitlines())

    try:
        wait_for(lambda: said(r"^connected to "), timeout=30)
        assert said(r"^loyalty-backend \S+ starting; settings .*'log_format': 'json'")
        config.write_text('[log]\nlevel = "DEBUG"\n')
        backend.send_signal(signal.SIGHUP)
        wait_for(lambda: said(r"^SIGHUP: reloaded: log level DEBUG$"), timeout=15)
        config.write_text('[log]\nlevel = "LOUD"\n')
        backend.send_signal(signal.SIGHUP)
        wait_for(lambda: said(r"^SIGHUP: log level not reloaded: .*log\.level"), timeout=15)
        assert backend.poll() is None
    finally:
        stop(backend)
    assert backend.returncode == 0
    assert said(r"^stopped: ")
