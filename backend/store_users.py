"""The panel's user accounts in the database: owners and staff of one club, providers of all.

Only hashes are stored (backend.passwords, Argon2id). A user is disabled, never deleted:
the audit log names users, and a name once used is not given to somebody else.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime

from backend import engine
from backend.engine import Connection
from backend.store import from_ts, ts

ROLES = ("owner", "staff", "provider")
#: Letters of any script, digits and `._@-`: a name typed on a Persian keyboard is fine,
#: one with spaces or control characters (hard to type at a login form) is not.
_NAME = re.compile(r"[\w.@-]{1,64}")


class UserError(ValueError):
    """A user that cannot be added or changed as asked (the message says why)."""


@dataclass(frozen=True, slots=True)
class UserAccount:
    name: str
    role: str
    club_id: int | None
    #: the club's name (None for a provider)
    club: str | None
    password_hash: str
    disabled: bool
    created_at: datetime
    last_login: datetime | None
    last_address: str | None


def check_name(name: str) -> str:
    if not _NAME.fullmatch(name):
        raise UserError(f"user name {name!r}: 1 to 64 letters, digits or ._@- (no spaces)")
    return name


def check_role(role: str, club_id: int | None) -> None:
    if role not in ROLES:
        raise UserError(f"role {role!r}: one of {', '.join(ROLES)}")
    if (role == "provider") != (club_id is None):
        raise UserError("a provider has no club; an owner or staff member has exactly one")


_COLS = ("u.name, u.role, u.club_id, c.name, u.password_hash, u.disabled, u.created_at, "
         "u.last_login, u.last_address")
_FROM = "panel_users u LEFT JOIN clubs c ON c.id = u.club_id"


def _account(row: tuple) -> UserAccount:
    name, role, club_id, club, hashed, disabled, created, last, address = row
    return UserAccount(name, role, club_id, club, hashed, bool(disabled), from_ts(created),
                       from_ts(last) if last is not None else None, address)


def add_user(conn: Connection, *, name: str, role: str, club_id: int | None,
             password_hash: str, now: datetime) -> UserAccount:
    """A new user; UserError if the name is taken (a disabled user's too)."""
    check_name(name)
    check_role(role, club_id)
    if find_user(conn, name) is not None:
        raise UserError(f"user {name!r} exists already")
    try:
        conn.execute(
            "INSERT INTO panel_users(name, role, club_id, password_hash, created_at, changed_at)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            (name, role, club_id, password_hash, ts(now), ts(now)))
    except engine.IntegrityError as exc:  # a race with another `user add`, or no such club
        raise UserError(f"user {name!r}: {exc}") from None
    found = find_user(conn, name)
    assert found is not None
    return found


def find_user(conn: Connection, name: str) -> UserAccount | None:
    row = conn.execute(f"SELECT {_COLS} FROM {_FROM} WHERE u.name = ?", (name,)).fetchone()
    return _account(row) if row else None


def list_users(conn: Connection, club_id: int | None = None) -> list[UserAccount]:
    """Every user, or a club's owners and staff; by club, then name."""
    if club_id is None:
        rows = conn.execute(f"SELECT {_COLS} FROM {_FROM} ORDER BY c.name, u.name")
    else:
        rows = conn.execute(
            f"SELECT {_COLS} FROM {_FROM} WHERE u.club_id = ? ORDER BY u.name", (club_id,))
    return [_account(r) for r in rows]


def set_disabled(conn: Connection, name: str, disabled: bool, now: datetime) -> bool:
    """Whether the user exists (disabling a disabled user changes nothing and is fine)."""
    cur = conn.execute("UPDATE panel_users SET disabled = ?, changed_at = ? WHERE name = ?",
                       (int(disabled), ts(now), name))
    return cur.rowcount == 1


def set_password(conn: Connection, name: str, password_hash: str, now: datetime) -> bool:
    cur = conn.execute("UPDATE panel_users SET password_hash = ?, changed_at = ? WHERE name = ?",
                       (password_hash, ts(now), name))
    return cur.rowcount == 1


def record_login(conn: Connection, name: str, when: datetime, address: str) -> None:
    conn.execute("UPDATE panel_users SET last_login = ?, last_address = ? WHERE name = ?",
                 (ts(when), address[:64], name))
