"""Per-member running totals of settled purchases: visits, spend, first and last visit.

They are columns of `members` (the row the money path has locked already), kept exact in
the purchase's own transaction: a settled purchase adds to them, a reversal takes its
purchase away again. The panel's members list sorts and filters on them through an index
per order, reading one page of rows instead of totalling every purchase of the club;
segments may read them too. "Settled" is approved and not reversed, as the tier counts.
`fill` computes them again from the raw rows (the migration, a bulk load).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from backend.engine import Connection

if TYPE_CHECKING:
    from backend.store import PurchaseRecord

COLUMNS = ("visits", "spend", "first_visit", "last_visit")

SCHEMA = (
    "ALTER TABLE members ADD COLUMN visits INTEGER NOT NULL DEFAULT 0",
    "ALTER TABLE members ADD COLUMN spend INTEGER NOT NULL DEFAULT 0",
    "ALTER TABLE members ADD COLUMN first_visit INTEGER",
    "ALTER TABLE members ADD COLUMN last_visit INTEGER",
    # one index per order of the members list (the id breaks ties, as the list does);
    # members_club_enrolled_id (LIST_SCHEMA) serves the order by enrolment
    "CREATE INDEX members_club_last_visit ON members(club_id, last_visit, id)",
    "CREATE INDEX members_club_spend ON members(club_id, spend, id)",
    "CREATE INDEX members_club_visits ON members(club_id, visits, id)",
    "CREATE INDEX members_club_name ON members(club_id, name, id)",
)

#: Migration 23: the indexes the members list (backend.store_members) walks and counts
#: through. Each order walks an index (club_id, column, id), so a page "after this
#: (value, id)" starts where the last one ended; the order by enrolment had only
#: (club_id, enrolled_at), which PostgreSQL cannot walk by (enrolled_at, id) (SQLite's
#: rowid made it so there). The count of a filtered list reads members_club_filter alone
#: (tier first, the form's one equality; then the other filters' columns), never the
#: rows. (club_id, tier) stays for the dashboard's count per tier (narrower, and written
#: only when a tier changes, where this one follows every purchase's totals.)
LIST_SCHEMA = (
    "CREATE INDEX members_club_enrolled_id ON members(club_id, enrolled_at, id)",
    "DROP INDEX members_club_enrolled",
    "CREATE INDEX members_club_filter ON members(club_id, tier, last_visit, spend, "
    "enrolled_at)",
)


_SETTLED = "approved = 1 AND reversed = 0"


@dataclass(frozen=True, slots=True)
class MemberTotals:
    """One member's running totals (and club), as kept."""

    club_id: int
    visits: int
    spend: int
    first_visit: int | None
    last_visit: int | None


def totals_of(conn: Connection, member_id: int) -> MemberTotals:
    """The member's totals now (one read of the member's row, by its key)."""
    c, n, s, f, last = conn.execute(
        "SELECT club_id, visits, spend, first_visit, last_visit FROM members WHERE id = ?",
        (member_id,)).fetchone()
    return MemberTotals(int(c), int(n), int(s), None if f is None else int(f),
                        None if last is None else int(last))


def purchase_recorded(conn: Connection, p: PurchaseRecord) -> None:
    """A purchase row was just inserted; only a settled one counts."""
    if not p.approved or p.reversed:
        return
    at = p.occurred_at
    conn.execute(
        "UPDATE members SET visits = visits + 1, spend = spend + ?, "
        "first_visit = CASE WHEN first_visit IS NULL OR first_visit > ? THEN ? "
        "ELSE first_visit END, "
        "last_visit = CASE WHEN last_visit IS NULL OR last_visit < ? THEN ? "
        "ELSE last_visit END WHERE id = ?",
        (p.amount, at, at, at, at, p.member_id))


def purchase_reversed(conn: Connection, p: PurchaseRecord) -> None:
    """The settled purchase `p` (as it was before) has just been marked reversed: its
    visit and rials come off, and the first and last visit are read again from the
    member's remaining settled purchases (through the purchases' member index)."""
    if not p.approved or p.reversed:
        return
    mine = f"FROM purchases WHERE member_id = ? AND {_SETTLED}"
    conn.execute(
        "UPDATE members SET visits = visits - 1, spend = spend - ?, "
        f"first_visit = (SELECT MIN(occurred_at) {mine}), "
        f"last_visit = (SELECT MAX(occurred_at) {mine}) WHERE id = ?",
        (p.amount, p.member_id, p.member_id, p.member_id))


def fill(conn: Connection) -> None:
    """Every member's totals computed again from the purchases (one pass over them)."""
    conn.execute("UPDATE members SET visits = 0, spend = 0, first_visit = NULL, "
                 "last_visit = NULL")
    conn.execute(
        "UPDATE members SET visits = t.n, spend = t.s, first_visit = t.f, last_visit = t.l "
        "FROM (SELECT member_id, COUNT(*) AS n, SUM(amount) AS s, MIN(occurred_at) AS f, "
        f"MAX(occurred_at) AS l FROM purchases WHERE {_SETTLED} GROUP BY member_id) AS t "
        "WHERE members.id = t.member_id")


def kept(conn: Connection) -> dict[int, tuple[int, int, int | None, int | None]]:
    """Each member's totals as kept (for the tests' comparison with `from_raw`)."""
    return {int(i): (int(n), int(s), f, last) for i, n, s, f, last in conn.execute(
        "SELECT id, visits, spend, first_visit, last_visit FROM members")}


def from_raw(conn: Connection) -> dict[int, tuple[int, int, int | None, int | None]]:
    """Each member's totals computed from the purchases."""
    out = {int(i): (0, 0, None, None) for (i,) in conn.execute("SELECT id FROM members")}
    for mid, n, s, f, last in conn.execute(
            "SELECT member_id, COUNT(*), SUM(amount), MIN(occurred_at), MAX(occurred_at) "
            f"FROM purchases WHERE {_SETTLED} GROUP BY member_id"):
        out[int(mid)] = (int(n), int(s), int(f), int(last))
    return out
