"""What the panel's terminals page reads of the purchases: each terminal's sales of a day.

The terminals themselves (registered, unknown) are the registry's (backend.store_registry).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from backend.engine import Connection
from backend.store import from_ts


@dataclass(frozen=True, slots=True)
class TerminalSales:
    terminal_id: str
    purchases: int  # settled: approved, not reversed
    sales: int  # rials charged
    last_purchase: datetime


def sales_by_terminal(conn: Connection, club_id: int, since: int, until: int
                      ) -> dict[str, TerminalSales]:
    """Settled purchases in [since, until) (Unix seconds) of the club's branches, per
    terminal (a terminal is in one branch of one club)."""
    rows = conn.execute(
        "SELECT terminal_id, COUNT(*), COALESCE(SUM(amount), 0), MAX(occurred_at) "
        "FROM purchases WHERE approved = 1 AND reversed = 0 AND occurred_at >= ? "
        "AND occurred_at < ? AND branch_id IN (SELECT id FROM branches WHERE club_id = ?) "
        "GROUP BY terminal_id",
        (since, until, club_id),
    ).fetchall()
    return {str(t): TerminalSales(str(t), int(n), int(s), from_ts(int(last)))
            for t, n, s, last in rows}
