"""Operator commands: output, and exit status 2 with nothing changed on bad input."""

from __future__ import annotations

import hashlib
import os
import re
import signal
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from backend import engine, ledger, store
from backend.cli import main
from backend.handlers import Handler
from tests.backend.core_helpers import (
    ROOT,
    FakeClock,
    TestAgent,
    advice,
    card,
    phone,
    request,
    stop_process,
)
from tests.backend.engines import ENGINES, register_test_terminals


def _shop(target: str | Path) -> None:
    register_test_terminals(target)
    conn = store.connect(target)
    clock = FakeClock(datetime.now(UTC))
    h = Handler(conn, clock=clock)
    h.handle(request("enroll", {"phone": phone(1)}))
    h.handle(request("enroll", {"phone": phone(2), "referrer": phone(1)}))
    h.handle(advice(amount=2_000_000, occurred_at=clock.iso(), phone=phone(2)))
    conn.close()


@pytest.fixture(params=ENGINES)
def any_db(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A small shop's database, once per engine (`--db` as the operator types it)."""
    target = str(tmp_path / "loyalty.db")
    if request.param == "postgresql":
        target = request.getfixturevalue("pg_url")
    _shop(target)
    return target


@pytest.fixture
def db(tmp_path: Path) -> Path:
    """The same shop on SQLite only: for what the engine has no part in (argument and
    config errors found before the database is opened, pipes, rendering)."""
    path = tmp_path / "loyalty.db"
    _shop(path)
    return path


def _digest(target: str | Path) -> str:
    """Every row of every table, on either engine: equal digests, nothing changed."""
    conn = store.connect(target)
    try:
        dump = [
            f"{table}: {sorted(repr(tuple(row)) for row in conn.execute(f'SELECT * FROM {table}'))}"
            for table in sorted(engine.table_names(conn))
        ]
    finally:
        conn.close()
    return hashlib.sha256("\n".join(dump).encode()).hexdigest()


def test_backend_cli_member_and_report(any_db: str, capsys: pytest.CaptureFixture[str]) -> None:
    db = any_db
    assert main(["adjust", phone(2), "+5000", "--reason", "goodwill", "--db", db]) == 0
    assert "balance 65,000 rials" in capsys.readouterr().out
    assert main(["adjust", phone(2), "-5000", "--reason", "undo", "--db", db]) == 0
    capsys.readouterr()
    assert main(["member", phone(2), "--db", str(db)]) == 0
    out = capsys.readouterr().out
    assert "balance   60,000 rials" in out and "tier      bronze" in out and "earn" in out
    assert main(["member", phone(1), "--db", str(db)]) == 0
    assert "referral" in capsys.readouterr().out
    # marketing consent: on, then off as a "لغو" reply turns it off
    assert main(["member", phone(1), "--consent", "on", "--db", str(db)]) == 0
    assert "marketing consent given" in capsys.readouterr().out
    assert main(["member", phone(1), "--consent", "off", "--db", str(db)]) == 0
    assert "marketing no consent" in capsys.readouterr().out
    assert main(["report", "--db", str(db), "--lang", "en"]) == 0
    out = capsys.readouterr().out
    assert "new members" in out and "credit issued" in out and "SMS sent" in out
    assert "110,000" in out  # 60,000 earned + 50,000 referral bonus
    argv = ["report", "--db", str(db), "--from", "1405-01-01", "--to", "1405-01-02"]
    assert main([*argv, "--lang", "en"]) == 0
    assert re.search(r"^\s+purchases\s+0$", capsys.readouterr().out, re.M)


def test_backend_cli_offers_and_cards(any_db: str, capsys: pytest.CaptureFixture[str]) -> None:
    db = any_db
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
    assert store.member_by_card(conn, card(1), club_id=1) is None
    m = store.member_by_card(conn, card(2), club_id=1)
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
    any_db: str, argv: list[str], needle: str, capsys: pytest.CaptureFixture[str]
) -> None:
    db = any_db
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
        (
            "[[offers]]\nname = 'a'\npercent = 2\nuntil = 2099-01-01\ntarget = 'tier:platinum'\n",
            "offers[0].target: offer: target 'tier:platinum' names no tier of the program "
            "(known tiers: bronze, silver, gold)",
        ),
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


# --- offer targets name a tier of the program in use ------------------------------------


def test_backend_cli_offer_target_must_name_a_known_tier(
    any_db: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = any_db
    args = ["offer", "add", "VIP", "--percent", "2", "--until", "2099-01-01", "--db", str(db)]
    before = _digest(db)
    assert main([*args, "--target", "tier:platinum"]) == 2
    err = capsys.readouterr().err
    assert "tier:platinum" in err and "known tiers: bronze, silver, gold" in err
    assert _digest(db) == before
    # the program in use is the config's: its own tier names, and only those
    cfg = tmp_path / "backend.toml"
    cfg.write_text(
        "[[program.tiers]]\nname = 'regular'\nmin_spend = 0\ncashback_percent = 2\n"
        "[[program.tiers]]\nname = 'vip'\nmin_spend = 1000\ncashback_percent = 9\n"
    )
    assert main([*args, "--config", str(cfg), "--target", "tier:gold"]) == 2
    assert "known tiers: regular, vip" in capsys.readouterr().err
    assert _digest(db) == before
    assert main([*args, "--config", str(cfg), "--target", "tier:vip"]) == 0
    assert "for tier:vip" in capsys.readouterr().out


# --- a date that does not exist is not a badly written one -------------------------------


@pytest.mark.parametrize(
    "argv, needle",
    [
        (["member", phone(1), "--birthday", "1990-02-30"], "month 2 of 1990 has 28 days"),
        (["member", phone(1), "--birthday", "02-30"], "month 2 has at most 29 days"),
        (["member", phone(1), "--birthday", "1990-13-01"], "there is no month 13"),
        (["member", phone(1), "--birthday", "11-00"], "there is no day 0"),
        (["member", phone(1), "--birthday", "1404-12-30"], "Jalali year 1404 has 29 days"),
        (["report", "--from", "2026-02-29"], "month 2 of 2026 has 28 days"),
    ],
)
def test_backend_cli_a_date_that_does_not_exist_is_named_so(
    db: Path, argv: list[str], needle: str, capsys: pytest.CaptureFixture[str]
) -> None:
    before = _digest(db)
    assert main([*argv, "--db", str(db)]) == 2
    err = capsys.readouterr().err
    assert "that date does not exist" in err and needle in err, err
    assert "use YYYY-MM-DD" not in err and "is not a date" not in err
    assert _digest(db) == before


@pytest.mark.parametrize("text", ["1990/02", "1990-02-3x", "birthday", "1-2-3-4"])
def test_backend_cli_a_badly_written_birthday_asks_for_the_format(
    db: Path, text: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["member", phone(1), "--birthday", text, "--db", str(db)]) == 2
    err = capsys.readouterr().err
    assert "use YYYY-MM-DD or MM-DD" in err and "does not exist" not in err


@pytest.mark.parametrize(
    "text, stored", [("02-29", "02-29"), ("1403-12-30", "2025-03-20"), ("1990-2-28", "1990-02-28")]
)
def test_backend_cli_birthdays_that_exist_are_taken(
    any_db: str, text: str, stored: str, capsys: pytest.CaptureFixture[str]
) -> None:
    db = any_db
    assert main(["member", phone(1), "--birthday", text, "--db", str(db)]) == 0
    assert f"birthday  {stored}" in capsys.readouterr().out


# --- linking a card twice ----------------------------------------------------------------


def test_backend_cli_linking_a_card_again_is_a_no_op(
    any_db: str, capsys: pytest.CaptureFixture[str]
) -> None:
    db = any_db
    args = ["--db", str(db)]
    assert main(["card", "add", phone(1), card(1), *args]) == 0
    assert "linked to" in capsys.readouterr().out
    before = _digest(db)
    assert main(["card", "add", phone(1), card(1), *args]) == 0
    assert f"card {card(1)} already linked to {phone(1)}" in capsys.readouterr().out
    assert _digest(db) == before
    # the same card to another member stays an error
    assert main(["card", "add", phone(2), card(1), *args]) == 2
    assert "already linked to another member" in capsys.readouterr().err
    assert _digest(db) == before
    # a replaced card does not come back by linking it again
    assert main(["card", "replace", card(1), card(2), *args]) == 0
    before = _digest(db)
    assert main(["card", "add", phone(1), card(1), *args]) == 2
    assert "was replaced" in capsys.readouterr().err
    assert _digest(db) == before


# --- every command in a pipe -------------------------------------------------------------


def _backend(*argv: str) -> list[str]:
    return [sys.executable, "-m", "backend", *argv]


def _env() -> dict[str, str]:
    return dict(os.environ, PYTHONPATH=str(ROOT))


PIPED = [
    ["member", phone(1)],
    ["report"],
    ["report", "--lang", "en", "--format", "csv"],
    ["report", "--format", "json"],
    ["offer", "list"],
    ["offer", "add", "P", "--amount", "5", "--until", "2099-01-01"],
    ["card", "add", phone(1), card(7)],
    ["adjust", phone(1), "100", "--reason", "pipe"],
]


@pytest.mark.parametrize("argv", PIPED, ids=lambda a: " ".join(a[:2]))
def test_backend_cli_a_reader_that_went_away_ends_the_command_quietly(
    db: Path, argv: list[str]
) -> None:
    """stdout a real pipe whose reader has already gone: every write fails with EPIPE."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        done = subprocess.run(
            _backend(*argv, "--db", str(db)),
            cwd=ROOT,
            env=_env(),
            stdout=write_end,
            stderr=subprocess.PIPE,
            text=True,
            timeout=60,
        )
    finally:
        os.close(write_end)
    assert done.stderr == "", done.stderr
    assert done.returncode == 128 + signal.SIGPIPE


def test_backend_cli_member_piped_into_head(db: Path) -> None:
    """`loyalty-backend member ... | head -2`: more output than the pipe holds, head stops."""
    conn = store.connect(db)
    member = store.member_by_phone(conn, phone(1), club_id=1)
    assert member is not None
    now = datetime.now(UTC)
    with store.transaction(conn):
        for i in range(3000):  # ~250 KB of ledger lines, well past a pipe's 64 KiB
            ledger.credit(
                conn,
                member.id,
                "adjustment",
                1,
                f"pipe:{i}",
                earned_at=now,
                expires_at=now + timedelta(days=1),
            )
    conn.close()
    backend = subprocess.Popen(
        _backend("member", phone(1), "--rows", "3000", "--db", str(db)),
        cwd=ROOT,
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert backend.stdout is not None and backend.stderr is not None
    head = subprocess.run(["head", "-2"], stdin=backend.stdout, capture_output=True, timeout=60)
    backend.stdout.close()  # head has it now; the backend's writes now meet a closed pipe
    err = backend.stderr.read().decode()
    assert backend.wait(60) == 128 + signal.SIGPIPE
    assert head.stdout.decode().splitlines() == [f"phone     {phone(1)}", "code      " + _code(db)]
    assert err == "", err


def _code(db: Path) -> str:
    conn = store.connect(db)
    try:
        m = store.member_by_phone(conn, phone(1), club_id=1)
        assert m is not None
        return m.code
    finally:
        conn.close()


@pytest.mark.timeout(120)
def test_backend_cli_run_keeps_serving_when_its_stdout_reader_goes(broker, tmp_path: Path) -> None:
    """`loyalty-backend run ... | head -1` must not take the service down with the pipe."""
    db = tmp_path / "loyalty.db"
    register_test_terminals(db)
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        proc = subprocess.Popen(
            _backend(
                "run",
                "--broker",
                broker.address,
                "--db",
                str(db),
                "--instance",
                "piped",
                "--log-level",
                "WARNING",
            ),
            cwd=ROOT,
            env=_env(),
            stdout=write_end,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
    finally:
        os.close(write_end)
    agent = TestAgent(broker.address)
    try:
        agent.wait_for(lambda: agent.status.get("piped") is True)
        # "running as ..." went to the dead pipe right after start; the service still answers
        assert agent.ask(request("enroll", {"phone": phone(50)})).code == "00"
        assert stop_process(proc) == 0
        assert proc.stderr is not None
        err = proc.stderr.read().decode()
        assert "Traceback" not in err and "BrokenPipe" not in err, err
    finally:
        stop_process(proc)
        agent.close()


# --- the report in the shop owner's language, and for spreadsheets and scripts ----------


def test_backend_cli_report_is_persian_by_default(
    db: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import jdatetime

    from backend.program import TEHRAN
    from protocols.persian import persian_digits

    assert main(["report", "--db", str(db)]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[0] == "گزارش باشگاه مشتریان"
    today = jdatetime.date.fromgregorian(date=datetime.now(TEHRAN).date())
    fa_today = persian_digits(today.strftime("%Y/%m/%d"))
    assert lines[1] == f"از آغاز تا پایان {fa_today} (به وقت تهران)"
    assert re.search(r"^  اعتبار داده\u200cشده \(ریال\) +۱۱۰٬۰۰۰$", out, re.M), out
    assert re.search(r"^  عضو جدید +۲$", out, re.M), out
    assert not re.search(r"[0-9]", out), "ASCII digits in the Persian report"
    assert main(["report", "--db", str(db), "--from", "1405-01-01", "--to", "1405-01-02"]) == 0
    assert "از ۱۴۰۵/۰۱/۰۱ تا پایان ۱۴۰۵/۰۱/۰۲" in capsys.readouterr().out


def test_backend_cli_report_as_csv_and_json(
    any_db: str, capsys: pytest.CaptureFixture[str]
) -> None:
    import csv
    import json

    db = any_db

    argv = ["report", "--db", str(db), "--from", "2026-03-21", "--to", "2026-03-21"]
    assert main([*argv, "--format", "csv"]) == 0
    rows = list(csv.reader(capsys.readouterr().out.splitlines()))
    assert rows[0] == ["figure", "label", "value"]
    table = {name: (label, value) for name, label, value in rows[1:]}
    assert table["from"] == ("از", "1405/01/01 00:00") and table["to"][1] == "1405/01/02 00:00"
    assert table["new_members"] == ("عضو جدید", "0")
    assert main([*argv, "--format", "csv", "--lang", "en"]) == 0
    rows = list(csv.reader(capsys.readouterr().out.splitlines()))
    assert ["from", "from", "2026-03-21T00:00:00+03:30"] in rows
    assert main(["report", "--db", str(db), "--format", "json", "--lang", "en"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["from"] is None and doc["figures"]["credit_issued"] == 110_000
    assert doc["figures"]["sales"] == 2_000_000 and doc["figures"]["new_members"] == 2
    assert doc["labels"]["returning_members"] == "returning members"
    assert "sales" in doc["money"] and "purchases" not in doc["money"]


@pytest.mark.parametrize("argv", [["--lang", "de"], ["--format", "xlsx"]])
def test_backend_cli_report_refuses_unknown_language_or_format(
    db: Path, argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["report", "--db", str(db), *argv])
    assert exit_.value.code == 2 and "invalid choice" in capsys.readouterr().err


def test_backend_cli_member_revoke_links(any_db: str, capsys: pytest.CaptureFixture[str]
                                         ) -> None:
    from backend import member_tokens, store_member_tokens

    conn = store.connect(any_db)
    try:
        m = store.member_by_phone(conn, phone(2), club_id=1)
        assert m is not None
        now = datetime.now(UTC)
        with store.transaction(conn):
            token = store_member_tokens.issue(conn, m.id, 1, now)
    finally:
        conn.close()
    assert main(["member", phone(2), "--revoke-links", "--db", any_db]) == 0
    assert "links     1 ended" in capsys.readouterr().out
    conn = store.connect(any_db)
    try:
        found = store_member_tokens.find(conn, member_tokens.hash_token(token))
        assert found is not None and found.revoked_at is not None
        (action,) = conn.execute("SELECT action FROM audit_log ORDER BY id DESC").fetchone()
        assert action == "member.revoke_links"
    finally:
        conn.close()
