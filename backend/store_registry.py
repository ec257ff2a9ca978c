"""The club registry in the database: clubs, their branches and terminals, the terminals
seen unregistered, and each club's program versions (REGISTRY.md is the contract).

A club is one business's loyalty program; a branch one of its shops; a terminal (field
41, with its merchant id, field 42) belongs to one branch. Every request is resolved
terminal -> branch -> club by `resolve_terminal`. Every write here bumps the registry's
generation (`generation`), which a running backend reads once per batch to know when its
cached registry and programs are stale.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from backend.engine import Connection
from backend.store import from_ts, ts

#: a migrated terminal's merchant id: none was stored, so any merchant id is accepted
ANY_MERCHANT = ""


class RegistryError(ValueError):
    """A registry change refused (a duplicate, a name that is not there); nothing changed."""


@dataclass(frozen=True, slots=True)
class Club:
    id: int
    name: str
    created_at: datetime
    #: the club's SMS settings (the [sms] table's keys); None = the provider's default
    sms: dict[str, Any] | None
    #: where the member's page is served (https://club.example.ir); None: no links in SMS
    public_url: str | None = None


@dataclass(frozen=True, slots=True)
class Branch:
    id: int
    club_id: int
    name: str


@dataclass(frozen=True, slots=True)
class Terminal:
    id: str
    merchant_id: str
    branch_id: int
    club_id: int
    branch: str
    club: str
    enabled: bool
    added_at: datetime
    broker_user: str | None = None


@dataclass(frozen=True, slots=True)
class UnknownTerminal:
    terminal_id: str
    merchant_id: str
    first_seen: datetime
    last_seen: datetime
    count: int


@dataclass(frozen=True, slots=True)
class ProgramVersion:
    club_id: int
    version: int
    #: TOML: the [program] (with its tiers) and [otp] tables of config/backend.toml
    body: str
    created_at: datetime
    author: str


# --- the generation: has anything changed? ---------------------------------------------


def generation(conn: Connection) -> int:
    """A number that grows with every change of clubs, branches, terminals, programs or
    offers: one indexed read tells a running backend whether its caches are stale."""
    row = conn.execute("SELECT generation FROM registry_state").fetchone()
    return int(row[0]) if row else 0


def bump(conn: Connection) -> None:
    """Mark the registry changed (in the caller's transaction)."""
    conn.execute("UPDATE registry_state SET generation = generation + 1")


# --- clubs -----------------------------------------------------------------------------

_CLUB_COLS = "id, name, created_at, sms, public_url"


def _club(row: tuple) -> Club:
    return Club(int(row[0]), row[1], from_ts(row[2]), json.loads(row[3]) if row[3] else None,
                row[4])


def list_clubs(conn: Connection) -> list[Club]:
    return [_club(r) for r in conn.execute(f"SELECT {_CLUB_COLS} FROM clubs ORDER BY name")]


def find_club(conn: Connection, name: str) -> Club | None:
    row = conn.execute(f"SELECT {_CLUB_COLS} FROM clubs WHERE name = ?", (name,)).fetchone()
    return _club(row) if row else None


def club_by_id(conn: Connection, club_id: int) -> Club | None:
    row = conn.execute(f"SELECT {_CLUB_COLS} FROM clubs WHERE id = ?", (club_id,)).fetchone()
    return _club(row) if row else None


def add_club(conn: Connection, name: str, now: datetime) -> Club:
    """A new club with its branch `main`; a name already taken is refused."""
    name = name.strip()
    if not name:
        raise RegistryError("a club needs a name")
    if find_club(conn, name) is not None:
        raise RegistryError(f"club {name!r} already exists")
    cur = conn.execute("INSERT INTO clubs(name, created_at) VALUES (?, ?)", (name, ts(now)))
    club = Club(int(cur.lastrowid or 0), name, from_ts(ts(now)), None)
    add_branch(conn, club.id, "main", now)
    return club


def set_club_sms(conn: Connection, club_id: int, sms: dict[str, Any] | None) -> None:
    """The club's own SMS settings, or None for the provider's default."""
    text = json.dumps(sms, ensure_ascii=False, sort_keys=True) if sms is not None else None
    conn.execute("UPDATE clubs SET sms = ? WHERE id = ?", (text, club_id))
    bump(conn)


def set_public_url(conn: Connection, club_id: int, url: str | None) -> None:
    """Where the club's member pages are served (checked by member_tokens.public_url)."""
    conn.execute("UPDATE clubs SET public_url = ? WHERE id = ?", (url, club_id))
    bump(conn)


def club_counts(conn: Connection, club_id: int) -> dict[str, int]:
    """How many branches, terminals, members and running offers the club has."""
    row = conn.execute(
        "SELECT (SELECT COUNT(*) FROM branches WHERE club_id = ?1), "
        "(SELECT COUNT(*) FROM terminals t JOIN branches b ON b.id = t.branch_id "
        "WHERE b.club_id = ?1), "
        "(SELECT COUNT(*) FROM members WHERE club_id = ?1), "
        "(SELECT COUNT(*) FROM offers WHERE club_id = ?1 AND ended_at IS NULL)",
        (club_id,),
    ).fetchone()
    return dict(zip(("branches", "terminals", "members", "offers"), map(int, row), strict=True))


# --- branches --------------------------------------------------------------------------


def list_branches(conn: Connection, club_id: int | None = None) -> list[Branch]:
    if club_id is None:
        rows = conn.execute("SELECT id, club_id, name FROM branches ORDER BY club_id, name")
    else:
        rows = conn.execute(
            "SELECT id, club_id, name FROM branches WHERE club_id = ? ORDER BY name", (club_id,)
        )
    return [Branch(int(r[0]), int(r[1]), r[2]) for r in rows]


def find_branch(conn: Connection, club_id: int, name: str) -> Branch | None:
    row = conn.execute(
        "SELECT id, club_id, name FROM branches WHERE club_id = ? AND name = ?", (club_id, name)
    ).fetchone()
    return Branch(int(row[0]), int(row[1]), row[2]) if row else None


def add_branch(conn: Connection, club_id: int, name: str, now: datetime) -> Branch:
    name = name.strip()
    if not name:
        raise RegistryError("a branch needs a name")
    if find_branch(conn, club_id, name) is not None:
        raise RegistryError(f"the club already has a branch {name!r}")
    cur = conn.execute(
        "INSERT INTO branches(club_id, name, created_at) VALUES (?, ?, ?)",
        (club_id, name, ts(now)),
    )
    bump(conn)
    return Branch(int(cur.lastrowid or 0), club_id, name)


# --- terminals -------------------------------------------------------------------------

_TERMINAL_SELECT = (
    "SELECT t.id, t.merchant_id, t.branch_id, b.club_id, b.name, c.name, t.enabled, "
    "t.added_at, t.broker_user FROM terminals t JOIN branches b ON b.id = t.branch_id "
    "JOIN clubs c ON c.id = b.club_id"
)


def _terminal(row: tuple) -> Terminal:
    return Terminal(
        row[0], row[1], int(row[2]), int(row[3]), row[4], row[5], bool(row[6]),
        from_ts(row[7]), row[8],
    )  # fmt: skip


def terminal(conn: Connection, terminal_id: str) -> Terminal | None:
    """A registered terminal, enabled or not."""
    row = conn.execute(f"{_TERMINAL_SELECT} WHERE t.id = ?", (terminal_id,)).fetchone()
    return _terminal(row) if row else None


def resolve_terminal(conn: Connection, terminal_id: str, merchant_id: str) -> Terminal | None:
    """The enabled terminal a request comes from, with its branch and club; None when the
    terminal is unknown, disabled, or registered with another merchant id."""
    t = terminal(conn, terminal_id)
    if t is None or not t.enabled or not merchant_matches(t, merchant_id):
        return None
    return t


def merchant_matches(t: Terminal, merchant_id: str) -> bool:
    return t.merchant_id in (ANY_MERCHANT, merchant_id)


def list_terminals(conn: Connection, club_id: int | None = None) -> list[Terminal]:
    if club_id is None:
        rows = conn.execute(f"{_TERMINAL_SELECT} ORDER BY c.name, b.name, t.id")
    else:
        rows = conn.execute(
            f"{_TERMINAL_SELECT} WHERE b.club_id = ? ORDER BY b.name, t.id", (club_id,)
        )
    return [_terminal(r) for r in rows]


def add_terminal(
    conn: Connection,
    terminal_id: str,
    merchant_id: str,
    branch_id: int,
    now: datetime,
    *,
    broker_user: str | None = None,
) -> None:
    """Register a terminal; one already registered (in any club) is refused. Its rows
    among the unknown terminals go: it is known now."""
    if terminal(conn, terminal_id) is not None:
        raise RegistryError(f"terminal {terminal_id} is already registered")
    conn.execute(
        "INSERT INTO terminals(id, merchant_id, branch_id, added_at, broker_user) "
        "VALUES (?, ?, ?, ?, ?)",
        (terminal_id, merchant_id, branch_id, ts(now), broker_user),
    )
    conn.execute("DELETE FROM unknown_terminals WHERE terminal_id = ?", (terminal_id,))
    bump(conn)


def set_terminal_enabled(conn: Connection, terminal_id: str, enabled: bool) -> bool:
    """Enable or disable a terminal; whether it is registered."""
    cur = conn.execute(
        "UPDATE terminals SET enabled = ? WHERE id = ?", (int(enabled), terminal_id)
    )
    if cur.rowcount != 1:
        return False
    bump(conn)
    return True


def set_broker_user(conn: Connection, terminal_id: str, user: str | None) -> None:
    conn.execute("UPDATE terminals SET broker_user = ? WHERE id = ?", (user, terminal_id))


# --- terminals seen unregistered ---------------------------------------------------------


def count_unknown(conn: Connection, terminal_id: str, merchant_id: str, now: datetime) -> None:
    """A request from a terminal the registry does not know (or a disabled one): counted
    so that an operator sees it. Not part of the generation (no cache depends on it)."""
    conn.execute(
        "INSERT INTO unknown_terminals(terminal_id, merchant_id, first_seen, last_seen, count) "
        "VALUES (?1, ?2, ?3, ?3, 1) ON CONFLICT (terminal_id, merchant_id) DO UPDATE SET "
        "last_seen = excluded.last_seen, count = unknown_terminals.count + 1",
        (terminal_id, merchant_id, ts(now)),
    )


def list_unknown_terminals(conn: Connection) -> list[UnknownTerminal]:
    rows = conn.execute(
        "SELECT terminal_id, merchant_id, first_seen, last_seen, count FROM unknown_terminals "
        "ORDER BY last_seen DESC, terminal_id"
    )
    return [UnknownTerminal(r[0], r[1], from_ts(r[2]), from_ts(r[3]), int(r[4])) for r in rows]


# --- programs ---------------------------------------------------------------------------


def _program(row: tuple) -> ProgramVersion:
    return ProgramVersion(int(row[0]), int(row[1]), row[2], from_ts(row[3]), row[4])


def latest_program(conn: Connection, club_id: int) -> ProgramVersion | None:
    """The club's newest program version; None = the configuration's program (version 0)."""
    row = conn.execute(
        "SELECT club_id, version, body, created_at, author FROM programs WHERE club_id = ? "
        "ORDER BY version DESC LIMIT 1",
        (club_id,),
    ).fetchone()
    return _program(row) if row else None


def program_version(conn: Connection, club_id: int, version: int) -> ProgramVersion | None:
    row = conn.execute(
        "SELECT club_id, version, body, created_at, author FROM programs "
        "WHERE club_id = ? AND version = ?",
        (club_id, version),
    ).fetchone()
    return _program(row) if row else None


def program_history(conn: Connection, club_id: int) -> list[ProgramVersion]:
    rows = conn.execute(
        "SELECT club_id, version, body, created_at, author FROM programs WHERE club_id = ? "
        "ORDER BY version",
        (club_id,),
    )
    return [_program(r) for r in rows]


def latest_program_versions(conn: Connection) -> dict[int, int]:
    """club id -> its newest program version, for the clubs that have one."""
    rows = conn.execute("SELECT club_id, MAX(version) FROM programs GROUP BY club_id")
    return {int(c): int(v) for c, v in rows}


def add_program(
    conn: Connection, club_id: int, body: str, author: str, now: datetime
) -> ProgramVersion:
    """A new version of the club's program (the caller has checked `body`)."""
    latest = latest_program(conn, club_id)
    version = (latest.version if latest else 0) + 1
    conn.execute(
        "INSERT INTO programs(club_id, version, body, created_at, author) VALUES (?, ?, ?, ?, ?)",
        (club_id, version, body, ts(now), author),
    )
    bump(conn)
    return ProgramVersion(club_id, version, body, from_ts(ts(now)), author)
