"""Prize draws in the database: the definition, its frozen entries, its winners.

Why frozen: the entries are computed once, when the draw is closed after its period, and
from then on the draw reads only `draw_entries`; a purchase reversed or a segment changed
later moves nothing, so the exported CSV, the stored list and the re-run (`draw verify`)
stay the same list. The rules (who takes part, tickets, the winners) are backend/draws.py
and backend/draw_job.py; this module reads and writes rows.

Tables (SCHEMA, one migration step):
- `draws`: club, name (unique in the club), period as Tehran days (ISO Gregorian, both
  inclusive), segment (NULL: everyone who bought), tickets `per_purchase` or `per_rials`
  (exactly one), prizes, the published commitment (SHA-256 hex), state open -> closed ->
  drawn, the revealed secret (NULL until the run), when it was closed and drawn.
- `draw_entries(draw_id, position)`: member, member code, tickets; positions follow the
  exported CSV's order.
- `draw_winners(draw_id, prize)`: prize rank 1, 2, ... and the member who won it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime

from backend import engine
from backend.engine import Connection

TABLES = ("draws", "draw_entries", "draw_winners")

STATES = ("open", "closed", "drawn")

SCHEMA = (
    "CREATE TABLE draws (id INTEGER PRIMARY KEY, club_id INTEGER NOT NULL "
    "REFERENCES clubs(id), name TEXT NOT NULL, starts_on TEXT NOT NULL, "
    "ends_on TEXT NOT NULL, segment TEXT, per_purchase INTEGER CHECK (per_purchase > 0), "
    "per_rials INTEGER CHECK (per_rials > 0), prizes INTEGER NOT NULL CHECK (prizes > 0), "
    "commitment TEXT NOT NULL, created_at INTEGER NOT NULL, "
    "state TEXT NOT NULL DEFAULT 'open' CHECK (state IN ('open', 'closed', 'drawn')), "
    "secret TEXT, closed_at INTEGER, drawn_at INTEGER, UNIQUE (club_id, name), "
    "CHECK ((per_purchase IS NULL) <> (per_rials IS NULL)), "
    "CHECK (ends_on >= starts_on))",
    "CREATE TABLE draw_entries (draw_id INTEGER NOT NULL REFERENCES draws(id), "
    "position INTEGER NOT NULL, member_id INTEGER NOT NULL REFERENCES members(id), "
    "code TEXT NOT NULL, tickets INTEGER NOT NULL CHECK (tickets > 0), "
    "PRIMARY KEY (draw_id, position), UNIQUE (draw_id, member_id)) WITHOUT ROWID",
    "CREATE TABLE draw_winners (draw_id INTEGER NOT NULL REFERENCES draws(id), "
    "prize INTEGER NOT NULL CHECK (prize > 0), member_id INTEGER NOT NULL "
    "REFERENCES members(id), PRIMARY KEY (draw_id, prize), UNIQUE (draw_id, member_id)"
    ") WITHOUT ROWID",
)


@dataclass(frozen=True, slots=True)
class Draw:
    id: int
    club_id: int
    name: str
    starts_on: date
    ends_on: date
    segment: str | None
    per_purchase: int | None
    per_rials: int | None
    prizes: int
    commitment: str
    created_at: datetime
    state: str
    secret: str | None
    closed_at: datetime | None
    drawn_at: datetime | None

    @property
    def who(self) -> str:
        return "everyone who bought" if self.segment is None else f"segment:{self.segment}"

    @property
    def tickets_rule(self) -> str:
        if self.per_purchase is not None:
            return f"{self.per_purchase} per purchase"
        return f"1 per {self.per_rials} rials"


@dataclass(frozen=True, slots=True)
class StoredEntry:
    position: int
    member_id: int
    code: str
    tickets: int


@dataclass(frozen=True, slots=True)
class Winner:
    prize: int
    member_id: int
    code: str
    phone: str


@dataclass(frozen=True, slots=True)
class Bought:
    """One settled purchase of the period (approved, not reversed) of a member who takes
    part: the rows the tickets are counted from."""

    member_id: int
    code: str
    amount: int


_COLS = ("id, club_id, name, starts_on, ends_on, segment, per_purchase, per_rials, prizes, "
         "commitment, created_at, state, secret, closed_at, drawn_at")


def _at(value: object) -> datetime | None:
    return None if value is None else datetime.fromtimestamp(int(value), UTC)  # type: ignore[call-overload]


def _draw(row: tuple) -> Draw:
    return Draw(
        id=int(row[0]), club_id=int(row[1]), name=row[2],
        starts_on=date.fromisoformat(row[3]), ends_on=date.fromisoformat(row[4]),
        segment=row[5], per_purchase=None if row[6] is None else int(row[6]),
        per_rials=None if row[7] is None else int(row[7]), prizes=int(row[8]),
        commitment=row[9], created_at=datetime.fromtimestamp(int(row[10]), UTC),
        state=row[11], secret=row[12], closed_at=_at(row[13]), drawn_at=_at(row[14]),
    )


def insert(conn: Connection, club_id: int, name: str, starts_on: date, ends_on: date,
           segment: str | None, per_purchase: int | None, per_rials: int | None,
           prizes: int, commitment: str, now: datetime) -> Draw | None:
    """The new draw; None when the club has a draw of that name already (nothing written)."""
    row = conn.execute(
        "INSERT INTO draws(club_id, name, starts_on, ends_on, segment, per_purchase, "
        "per_rials, prizes, commitment, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
        f"ON CONFLICT (club_id, name) DO NOTHING RETURNING {_COLS}",
        (club_id, name, starts_on.isoformat(), ends_on.isoformat(), segment, per_purchase,
         per_rials, prizes, commitment, int(now.timestamp()))).fetchone()
    return None if row is None else _draw(row)


def find(conn: Connection, club_id: int, name: str, *, lock: bool = False) -> Draw | None:
    """The club's draw of that name (another club's is never found); `lock`: held until
    COMMIT, so a close and a run of the same draw happen one after the other."""
    row = conn.execute(f"SELECT {_COLS} FROM draws WHERE club_id = ? AND name = ?"
                       + engine.row_lock(conn, lock), (club_id, name)).fetchone()
    return None if row is None else _draw(row)


def get(conn: Connection, club_id: int, draw_id: int) -> Draw | None:
    row = conn.execute(f"SELECT {_COLS} FROM draws WHERE club_id = ? AND id = ?",
                       (club_id, draw_id)).fetchone()
    return None if row is None else _draw(row)


def list_draws(conn: Connection, club_id: int) -> list[Draw]:
    rows = conn.execute(f"SELECT {_COLS} FROM draws WHERE club_id = ? ORDER BY id DESC",
                        (club_id,)).fetchall()
    return [_draw(r) for r in rows]


def bought(conn: Connection, club_id: int, since: datetime, until: datetime,
           segment: str | None) -> list[Bought]:
    """The settled purchases in [since, until) of the club's members (of `segment` as last
    night's run scored them, when given), approved and not reversed, as the reports count
    sales."""
    seg_join = ("JOIN member_segments s ON s.member_id = m.id AND s.segment = ? "
                if segment is not None else "")
    params: tuple = (segment,) if segment is not None else ()
    rows = conn.execute(
        "SELECT m.id, m.code, p.amount FROM purchases p JOIN members m ON m.id = p.member_id "
        + seg_join + "WHERE m.club_id = ? AND p.approved = 1 AND p.reversed = 0 "
        "AND p.occurred_at >= ? AND p.occurred_at < ?",
        (*params, club_id, int(since.timestamp()), int(until.timestamp()))).fetchall()
    return [Bought(int(r[0]), r[1], int(r[2])) for r in rows]


def freeze(conn: Connection, draw_id: int, entries: list[StoredEntry], now: datetime) -> None:
    """Write the entries and close the draw, in the caller's transaction (its row locked)."""
    conn.executemany(
        "INSERT INTO draw_entries(draw_id, position, member_id, code, tickets) "
        "VALUES (?, ?, ?, ?, ?)",
        [(draw_id, e.position, e.member_id, e.code, e.tickets) for e in entries])
    conn.execute("UPDATE draws SET state = 'closed', closed_at = ? "
                 "WHERE id = ? AND state = 'open'", (int(now.timestamp()), draw_id))


def entries(conn: Connection, draw_id: int) -> list[StoredEntry]:
    rows = conn.execute("SELECT position, member_id, code, tickets FROM draw_entries "
                        "WHERE draw_id = ? ORDER BY position", (draw_id,)).fetchall()
    return [StoredEntry(int(r[0]), int(r[1]), r[2], int(r[3])) for r in rows]


def record_winners(conn: Connection, draw_id: int, secret: str, member_ids: list[int],
                   now: datetime) -> None:
    """Prize k+1 to `member_ids[k]`, the secret kept, the draw drawn (caller's transaction,
    its row locked and closed)."""
    conn.executemany("INSERT INTO draw_winners(draw_id, prize, member_id) VALUES (?, ?, ?)",
                     [(draw_id, k + 1, m) for k, m in enumerate(member_ids)])
    conn.execute("UPDATE draws SET state = 'drawn', secret = ?, drawn_at = ? "
                 "WHERE id = ? AND state = 'closed'", (secret, int(now.timestamp()), draw_id))


def winners(conn: Connection, draw_id: int) -> list[Winner]:
    rows = conn.execute(
        "SELECT w.prize, w.member_id, m.code, m.phone FROM draw_winners w "
        "JOIN members m ON m.id = w.member_id WHERE w.draw_id = ? ORDER BY w.prize",
        (draw_id,)).fetchall()
    return [Winner(int(r[0]), int(r[1]), r[2], r[3]) for r in rows]
