"""Operator commands: output, and exit status 2 with nothing changed on bad input."""

from __future__ import annotations

import hashlib
import re
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from backend import store
from backend.cli import main
from backend.handlers import Handler
from tests.backend.core_helpers import ROOT, FakeClock, advice, card, phone, request


@pytest.fixture
def db(tmp_path: Path) -> Path:
    path = tmp_path / "loyalty.db"
    conn = store.connect(path)
    clock = FakeClock(datetime.now(UTC))
    h = Handler(conn, clock=clock)
    h.handle(request("enroll", {"phone": phone(1)}))
    h.handle(request("enroll", {"phone": phone(2), "referrer": phone(1)}))
    h.handle(advice(amount=2_000_000, occurred_at=clock.iso(), phone=phone(2)))
    conn.close()
    return path


def _digest(path: Path) -> str:
    conn = store.connect(path)
    try:
        dump = "\n".join(conn.iterdump())
    finally:
        conn.close()
    return hashlib.sha256(dump.encode()).hexdigest()


def test_backend_cli_member_and_report(db: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["member", phone(2), "--db", str(db)]) == 0
    out = capsys.readouterr().out
    assert "balance   60,000 rials" in out and "tier      bronze" in out and "earn" in out
    assert main(["member", phone(1), "--db", str(db)]) == 0
    assert "referral" in capsys.readouterr().out
    assert main(["report", "--db", str(db), "--lang", "en"]) == 0
    out = capsys.readouterr().out
    assert "new members" in out and "credit issued" in out and "SMS sent" in out
    assert "110,000" in out  # 60,000 earned + 50,000 referral bonus
    argv = ["report", "--db", str(db), "--from", "1405-01-01", "--to", "1405-01-02"]
    assert main([*argv, "--lang", "en"]) == 0
    assert re.search(r"^\s+purchases\s+0$", capsys.readouterr().out, re.M)


def test_backend_cli_offers_and_cards(db: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = ["--db", str(db)]
    assert (
        main(
            [
                "offer",
                "add",
                "Friday",
                "--percent",
                "2",
                "--until",
                "2099-01-01",
                "--weekdays",
                "fri",
                "--hours",
                "12-15",
                "--target",
                "tier:gold",
                *args,
            ]
        )
        == 0
    )
    assert main(["offer", "list", *args]) == 0
    out = capsys.readouterr().out
    assert "'Friday' +2%" in out and "on fri" in out and "for tier:gold" in out
    assert main(["offer", "end", "1", *args]) == 0
    assert main(["offer", "end", "1", *args]) == 2
    assert main(["card", "add", phone(1), card(1), *args]) == 0
    assert main(["card", "replace", card(1), card(2), *args]) == 0
    conn = store.connect(db)
    assert store.member_by_card(conn, card(1)) is None
    m = store.member_by_card(conn, card(2))
    assert m is not None and m.phone == phone(1)
    conn.close()
    assert main(["member", phone(1), "--birthday", "11-27", *args]) == 0
    assert "birthday  11-27" in capsys.readouterr().out


@pytest.mark.parametrize(
    "argv, needle",
    [
        (["member", "12345"], "phone"),
        (["member", "09351111111"], "not a member"),
        (["offer", "add", "X", "--percent", "2", "--until", "not-a-date"], "not a date"),
        (
            ["offer", "add", "X", "--amount", "5", "--until", "2099-01-01", "--target", "vip"],
            "target",
        ),
        (["offer", "add", "X", "--amount", "5", "--until", "2099-01-01", "--hours", "9"], "hours"),
        (["offer", "add", "X", "--amount", "5", "--until", "2000-01-01"], "past"),
        (["card", "add", phone(1), "1234567812345678"], "Luhn"),
        (["card", "replace", card(5), card(6)], "not an active card"),
        (["report", "--from", "2026-02-01", "--to", "2026-01-01"], "after"),
        (["adjust", phone(1), "-999999999", "--reason", "x"], "negative"),
    ],
)
def test_backend_cli_bad_arguments_exit_2_and_change_nothing(
    db: Path, argv: list[str], needle: str, capsys: pytest.CaptureFixture[str]
) -> None:
    before = _digest(db)
    assert main([*argv, "--db", str(db)]) == 2
    err = capsys.readouterr().err
    assert needle in err and err.startswith("loyalty-backend: error:")
    assert _digest(db) == before


@pytest.mark.parametrize(
    "text, needle",
    [
        ("[program\n", "not valid TOML"),
        ("[program]\nmax_redeem_percent = 'half'\n", "program.max_redeem_percent"),
        ("[program]\nholds_seconds = 5\n", "holds_seconds"),
        ("[[program.tiers]]\nname = 'x'\nmin_spend = 5\n", "min_spend 0"),
        ("[otp]\ntries = 0\n", "otp.tries"),
        ("[[offers]]\nname = 'a'\npercent = 2\n", "until"),
        ("[sms]\nsender = 'pigeon'\n", "sms.sender"),
        ("[bogus]\n", "bogus"),
    ],
)
def test_backend_cli_broken_config_exit_2(
    db: Path, tmp_path: Path, text: str, needle: str, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = tmp_path / "backend.toml"
    cfg.write_text(text)
    before = _digest(db)
    assert (
        main(
            [
                "offer",
                "add",
                "X",
                "--amount",
                "5",
                "--until",
                "2099-01-01",
                "--db",
                str(db),
                "--config",
                str(cfg),
            ]
        )
        == 2
    )
    assert needle in capsys.readouterr().err
    assert _digest(db) == before


def test_backend_cli_entry_points(tmp_path: Path) -> None:
    """`python -m backend` works, argparse errors exit 2, a missing db is not created."""
    missing = tmp_path / "nope.db"
    r = subprocess.run(
        [sys.executable, "-m", "backend", "member", phone(1), "--db", str(missing)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 2 and "no such database" in r.stderr and not missing.exists()
    r = subprocess.run(
        [sys.executable, "-m", "backend", "frobnicate"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 2 and "invalid choice" in r.stderr
    r = subprocess.run(
        [sys.executable, "-m", "backend", "run", "--db", str(missing), "--broker", "nohost"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 2 and "HOST:PORT" in r.stderr


def test_backend_cli_sample_config_loads() -> None:
    from backend.config import load

    settings = load(ROOT / "config" / "backend.toml")
    assert [t.name for t in settings.program.tiers] == ["bronze", "silver", "gold"]
    assert settings.program.referral_bonus == 50_000 and settings.sms["sender"] == "file"


def test_backend_report_counts_returning_members(tmp_path: Path) -> None:
    """A member who buys again is returning, also in an unbounded report."""
    from backend import report

    conn = store.connect(tmp_path / "loyalty.db")
    clock = FakeClock(datetime(2026, 11, 23, 9, 0, tzinfo=UTC))
    h = Handler(conn, clock=clock)
    for n in (1, 2):
        h.handle(request("enroll", {"phone": phone(n)}))
    h.handle(advice(amount=500_000, occurred_at=clock.iso(), phone=phone(1)))
    h.handle(advice(amount=700_000, occurred_at=clock.iso(), phone=phone(2)))
    assert report.summary(conn, since=None, until=None).returning_members == 0
    clock.jump(hours=1)
    h.handle(advice(amount=300_000, occurred_at=clock.iso(), phone=phone(1)))
    figures = report.summary(conn, since=None, until=None)
    assert figures.returning_members == 1 and figures.purchases == 3
    later = datetime(2026, 11, 23, 9, 30, tzinfo=UTC)
    assert report.summary(conn, since=later, until=None).returning_members == 1
    conn.close()
