"""`loyalty-backend user ...` and the store of users and the audit log, on both engines."""

from __future__ import annotations

import getpass
from datetime import UTC, datetime
from pathlib import Path

import pytest

from backend import store, store_audit, store_registry, store_users
from backend.cli import main
from backend.passwords import verify_password

NOW = datetime(2026, 12, 1, 8, 0, tzinfo=UTC)


def club_name(db: str) -> str:
    conn = store.connect(db)
    try:
        return store_registry.list_clubs(conn)[0].name
    finally:
        conn.close()


def account(db: str, name: str) -> store_users.UserAccount | None:
    conn = store.connect(db)
    try:
        return store_users.find_user(conn, name)
    finally:
        conn.close()


def audit(db: str) -> list[store_audit.AuditEntry]:
    conn = store.connect(db)
    try:
        return store_audit.entries(conn, None)
    finally:
        conn.close()


@pytest.fixture
def pwfile(tmp_path: Path) -> Path:
    path = tmp_path / "pw"
    path.write_text("درست و بلند ۱۴۰۵\n", encoding="utf-8")
    return path


def test_user_add_list_disable_passwd(db: str, pwfile: Path, tmp_path: Path,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    club = club_name(db)
    assert main(["user", "add", "ali", "--db", db, "--club", club, "--role", "owner",
                 "--password-file", str(pwfile)]) == 0
    assert main(["user", "add", "boss", "--db", db, "--role", "provider",
                 "--password-file", str(pwfile)]) == 0
    ali = account(db, "ali")
    assert ali is not None and ali.role == "owner" and ali.club == club
    assert verify_password(ali.password_hash, "درست و بلند ۱۴۰۵")
    assert "درست" not in ali.password_hash
    capsys.readouterr()
    assert main(["user", "list", "--db", db]) == 0
    out = capsys.readouterr().out
    assert "ali" in out and "boss" in out and "never logged in" in out
    assert main(["user", "disable", "ali", "--db", db]) == 0
    assert account(db, "ali").disabled
    assert main(["user", "enable", "ali", "--db", db]) == 0
    other = tmp_path / "pw2"
    other.write_text("another long one\n", encoding="utf-8")
    assert main(["user", "passwd", "ali", "--db", db, "--password-file", str(other)]) == 0
    assert verify_password(account(db, "ali").password_hash, "another long one")
    actions = [e.action for e in reversed(audit(db))]
    assert actions == ["user.add", "user.add", "user.disable", "user.enable", "user.passwd"]
    assert all(e.user == "loyalty-backend" for e in audit(db))
    assert "hash" not in str([e.after for e in audit(db)])


def test_the_password_is_asked_twice(db: str, monkeypatch: pytest.MonkeyPatch,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    answers = iter(["typed twice ok", "typed twice ok", "one thing", "another"])
    monkeypatch.setattr(getpass, "getpass", lambda prompt="": next(answers))
    club = club_name(db)
    assert main(["user", "add", "sara", "--db", db, "--club", club, "--role", "staff"]) == 0
    assert verify_password(account(db, "sara").password_hash, "typed twice ok")
    assert main(["user", "passwd", "sara", "--db", db]) == 2
    assert "differ" in capsys.readouterr().err
    assert verify_password(account(db, "sara").password_hash, "typed twice ok")


@pytest.mark.parametrize("args, why", [
    (["--role", "provider", "--club", "CLUB"], "never for a provider"),
    (["--role", "owner"], "--club"),
    (["--role", "staff", "--club", "no such club"], "no club named"),
    (["--role", "owner", "--club", "CLUB", "--password-file", "/nonexistent/pw"], "pw"),
])
def test_bad_user_add_exits_2_and_adds_nobody(db: str, pwfile: Path, args: list[str], why: str,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    club = club_name(db)
    args = [club if a == "CLUB" else a for a in args]
    if "--password-file" not in args:
        args += ["--password-file", str(pwfile)]
    assert main(["user", "add", "x", "--db", db, *args]) == 2
    assert why in capsys.readouterr().err
    assert account(db, "x") is None and audit(db) == []


def test_duplicates_bad_names_short_passwords_unknown_users(
        db: str, pwfile: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    club = club_name(db)
    base = ["--db", db, "--club", club, "--role", "staff", "--password-file", str(pwfile)]
    assert main(["user", "add", "sara", *base]) == 0
    assert main(["user", "add", "sara", *base]) == 2
    assert "exists" in capsys.readouterr().err
    assert main(["user", "add", "a b", *base]) == 2
    short = tmp_path / "short"
    short.write_text("short\n")
    assert main(["user", "add", "x", "--db", db, "--club", club, "--role", "staff",
                 "--password-file", str(short)]) == 2
    assert "at least 8" in capsys.readouterr().err
    for action in ("disable", "enable", "passwd"):
        assert main(["user", action, "nobody", "--db", db, "--password-file", str(pwfile)]
                    if action == "passwd" else ["user", action, "nobody", "--db", db]) == 2
    assert [e.action for e in audit(db)] == ["user.add"]


def test_store_refuses_wrong_roles_and_audit_needs_a_transaction(db: str) -> None:
    conn = store.connect(db)
    try:
        club = store_registry.list_clubs(conn)[0]
        with pytest.raises(store_users.UserError), store.transaction(conn):
            store_users.add_user(conn, name="p", role="provider", club_id=club.id,
                                 password_hash="h", now=NOW)
        with pytest.raises(store_users.UserError), store.transaction(conn):
            store_users.add_user(conn, name="o", role="owner", club_id=None,
                                 password_hash="h", now=NOW)
        with pytest.raises(store_users.UserError), store.transaction(conn):
            store_users.add_user(conn, name="o", role="admin", club_id=club.id,
                                 password_hash="h", now=NOW)
        with pytest.raises(RuntimeError):
            store_audit.record(conn, user="u", club_id=None, action="a", target="t",
                               before=None, after=None, now=NOW)
        with store.transaction(conn):
            store_users.add_user(conn, name="o", role="owner", club_id=club.id,
                                 password_hash="h", now=NOW)
            first = store_audit.record(conn, user="u", club_id=club.id, action="a",
                                       target="t", before={"x": 1}, after={"x": "۲"}, now=NOW)
            store_audit.record(conn, user="u", club_id=None, action="b", target="t",
                               before=None, after=None, now=NOW)
        store_users.record_login(conn, "o", NOW, "127.0.0.1")
        assert store_users.find_user(conn, "o").last_login == NOW
        assert [e.action for e in store_audit.entries(conn, club.id)] == ["a"]
        assert [e.action for e in store_audit.entries(conn, None)] == ["b", "a"]
        [e] = store_audit.entries(conn, None, before_id=first + 1)
        assert e.before == {"x": 1} and e.after == {"x": "۲"} and e.at == NOW
        assert [u.name for u in store_users.list_users(conn, club.id)] == ["o"]
    finally:
        conn.close()


def test_the_advice_records_which_offer_gave_what(db: str) -> None:
    """The panel's offer effect comes from rows the purchase's own transaction writes."""
    from datetime import date

    from backend import store_offers
    from backend.handlers import Handler
    from backend.program import Offer, Program
    from tests.backend.core_helpers import FakeClock, advice, phone, request, reversal
    from tests.backend.engines import register_test_terminals

    register_test_terminals(db)
    conn = store.connect(db)
    try:
        clock = FakeClock()
        h = Handler(conn, Program(), offers=[Offer("config", amount=1, until=date(2099, 1, 1))],
                    clock=clock)
        with store.transaction(conn):
            pct = store.add_offer(conn, Offer("pct", percent=2, until=date(2099, 1, 1),
                                              club_id=1), clock())
            big = store.add_offer(conn, Offer("big", amount=9_000, min_purchase=5_000_000,
                                              until=date(2099, 1, 1), club_id=1), clock())
        assert h.handle(request("enroll", {"phone": phone(1)})).code == "00"
        small = advice(amount=1_000_000, occurred_at=clock.iso(), phone=phone(1))
        assert h.handle(small).code == "00"
        clock.jump(seconds=60)
        large = advice(amount=6_000_000, occurred_at=clock.iso(), phone=phone(1))
        assert h.handle(large).code == "00"
        assert store_offers.effects(conn, 1) == {
            pct: store_offers.OfferEffect(2, 20_000 + 120_000),
            big: store_offers.OfferEffect(1, 9_000)}
        clock.jump(seconds=60)
        assert h.handle(reversal(large, occurred_at=clock.iso())).code == "00"
        assert store_offers.effects(conn, 1) == {pct: store_offers.OfferEffect(1, 20_000)}
    finally:
        conn.close()
