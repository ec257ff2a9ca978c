"""`loyalty-backend user add|list|disable|enable|passwd`: the panel's accounts.

A password is read from the terminal (asked twice, never echoed) or from the first line
of `--password-file FILE`; it is never an argument, which `ps` and shell histories show.
Every change is also written to the audit log (as user `loyalty-backend`).
"""

from __future__ import annotations

import argparse
import getpass
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from backend import store, store_audit, store_users
from backend.config import Settings
from backend.passwords import hash_password

#: The audit log's "who" for changes made on the command line.
CLI_USER = "loyalty-backend"
MIN_PASSWORD = 8


class UsageError(Exception):
    """Reported by backend.cli as one line on stderr, exit status 2."""


def add_parser(sub: argparse._SubParsersAction,
               common: Callable[[argparse.ArgumentParser], None]) -> None:
    user = sub.add_parser("user", help="the web panel's users (owners, staff, providers)")
    usub = user.add_subparsers(dest="action", required=True)
    add = usub.add_parser("add", help="add a user")
    common(add)
    add.add_argument("name")
    add.add_argument("--role", required=True, choices=store_users.ROLES)
    add.add_argument("--club", help="the club of an owner or staff member (not a provider)")
    add.add_argument("--password-file", type=Path, help="read the password from this file")
    lst = usub.add_parser("list", help="list users")
    common(lst)
    lst.add_argument("--club", help="only this club's users")
    for action, text in (("disable", "stop a user logging in (at once, sessions too)"),
                         ("enable", "let a disabled user log in again")):
        sp = usub.add_parser(action, help=text)
        common(sp)
        sp.add_argument("name")
    pw = usub.add_parser("passwd", help="set a user's password")
    common(pw)
    pw.add_argument("name")
    pw.add_argument("--password-file", type=Path, help="read the password from this file")


def read_password(path: Path | None) -> str:
    if path is not None:
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise UsageError(f"--password-file {path}: {exc}") from None
        lines = text.splitlines()
        password = lines[0] if lines else ""
    else:
        try:
            password = getpass.getpass("password: ")
            again = getpass.getpass("password again: ")
        except (EOFError, KeyboardInterrupt):
            raise UsageError("no password given") from None
        if password != again:
            raise UsageError("the two passwords differ; nothing changed")
    if len(password) < MIN_PASSWORD:
        raise UsageError(f"a password has at least {MIN_PASSWORD} characters")
    return password


def _club_id(conn: store.Connection, name: str) -> int:
    from backend import store_registry

    club = store_registry.find_club(conn, name)
    if club is None:
        raise UsageError(f"no club named {name!r} (see `loyalty-backend club list`)")
    return club.id


def run(args: argparse.Namespace, settings: Settings) -> int:
    now = datetime.now(UTC)
    try:
        if args.action == "add":
            return _add(args, now)
        if args.action == "list":
            return _list(args)
        if args.action == "passwd":
            return _passwd(args, now)
        return _disable(args, now, disabled=args.action == "disable")
    except store_users.UserError as exc:
        raise UsageError(str(exc)) from None


def _add(args: argparse.Namespace, now: datetime) -> int:
    store_users.check_name(args.name)
    if (args.role == "provider") != (args.club is None):
        raise UsageError("--club is given for an owner or staff member, never for a provider")
    password = read_password(args.password_file)
    hashed = hash_password(password)
    conn = store.connect(args.db)
    try:
        with store.transaction(conn):
            club_id = _club_id(conn, args.club) if args.club is not None else None
            user = store_users.add_user(conn, name=args.name, role=args.role, club_id=club_id,
                                        password_hash=hashed, now=now)
            store_audit.record(conn, user=CLI_USER, club_id=club_id, action="user.add",
                               target=user.name, before=None,
                               after={"role": user.role, "club": user.club}, now=now)
    finally:
        conn.close()
    where = f" of club {user.club}" if user.club else " (every club)"
    print(f"user {user.name} added: {user.role}{where}")
    return 0


def _list(args: argparse.Namespace) -> int:
    conn = store.connect(args.db)
    try:
        club_id = _club_id(conn, args.club) if args.club is not None else None
        users = store_users.list_users(conn, club_id)
    finally:
        conn.close()
    if not users:
        print("no users")
    for u in users:
        state = "disabled" if u.disabled else "enabled"
        last = (f"last login {u.last_login:%Y-%m-%d %H:%M} UTC from {u.last_address}"
                if u.last_login else "never logged in")
        print(f"{u.name:<20} {u.role:<8} {u.club or '*':<20} {state:<8} {last}")
    return 0


def _passwd(args: argparse.Namespace, now: datetime) -> int:
    conn = store.connect(args.db)
    try:
        user = store_users.find_user(conn, args.name)
        if user is None:
            raise UsageError(f"no user named {args.name!r}")
        hashed = hash_password(read_password(args.password_file))
        with store.transaction(conn):
            store_users.set_password(conn, user.name, hashed, now)
            store_audit.record(conn, user=CLI_USER, club_id=user.club_id,
                               action="user.passwd", target=user.name, before=None,
                               after=None, now=now)
    finally:
        conn.close()
    print(f"password of {user.name} changed")
    return 0


def _disable(args: argparse.Namespace, now: datetime, *, disabled: bool) -> int:
    conn = store.connect(args.db)
    try:
        with store.transaction(conn):
            user = store_users.find_user(conn, args.name)
            if user is None:
                raise UsageError(f"no user named {args.name!r}")
            store_users.set_disabled(conn, user.name, disabled, now)
            if user.disabled != disabled:
                store_audit.record(conn, user=CLI_USER, club_id=user.club_id,
                                   action="user.disable" if disabled else "user.enable",
                                   target=user.name, before={"disabled": user.disabled},
                                   after={"disabled": disabled}, now=now)
    finally:
        conn.close()
    print(f"user {user.name} {'disabled' if disabled else 'enabled'}")
    return 0
