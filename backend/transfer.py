"""`loyalty-backend copy`: a shop's SQLite database into an empty PostgreSQL database.

All in ONE transaction on the target: the schema, every row (ids kept, so keys and
references stay as they were), the id sequences moved past the copied ids, and the
verification; a difference, or any error, rolls everything back, so a failed copy
leaves the target as empty as it was. The source is only read.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from backend import (
    engine,
    migrations,
    store_campaigns,
    store_draws,
    store_giftcards,
    store_member_tokens,
    store_surveys,
    store_tiers,
    store_transfers,
)
from backend.engine import Connection

#: Every table of the schema, parents before children (foreign keys hold row by row).
TABLES = (
    "clubs", "branches", "terminals", "unknown_terminals", "registry_state", "programs",
    "members", "cards", "lots", "ledger", "lot_uses", "quotes", "purchases", "reversals",
    "requests", "otps", "offers", "sms_outbox", "panel_users", "audit_log", "offer_uses",
    "daily_purchases", "daily_credit", "daily_members", "daily_intervals", "daily_buyers",
    "monthly_buyers", "member_segments", "segment_counts",
    "club_marketing", "auto_messages", "automsg_runs",
    *store_giftcards.TABLES,
    *store_campaigns.TABLES,
    *store_draws.TABLES,
    *store_member_tokens.TABLES,
    *store_transfers.TABLES,
    *store_surveys.TABLES,
    *store_tiers.TABLES,
)  # fmt: skip
#: Rows a new schema is made with (its one club): replaced by the source's.
_MADE_WITH_SCHEMA = ("registry_state", "branches", "clubs")
#: Made by the target's own migration, not copied.
SCHEMA_TABLES = ("schema_version", "schema_migrations")
#: Copied in this order so that a member's referrer is there before the member.
_ORDER = {
    "members": "id", "ledger": "id", "lots": "id", "requests": "id", "clubs": "id",
    "branches": "id", "gift_batches": "id", "gift_movements": "id", "campaigns": "id",
    "transfers": "id",
}  # fmt: skip


class CopyError(Exception):
    """The copy was refused or did not verify; nothing was written."""


@dataclass(frozen=True)
class Check:
    what: str
    source: int
    target: int

    @property
    def ok(self) -> bool:
        return self.source == self.target


def _columns(conn: Connection, table: str) -> list[str]:
    cur = conn.execute(f"SELECT * FROM {table} LIMIT 0")
    return [d[0] for d in cur.description]


def _count(conn: Connection, table: str) -> int:
    return int(conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0])


def _balances(conn: Connection) -> dict[int, int]:
    rows = conn.execute("SELECT member_id, SUM(amount) FROM ledger GROUP BY member_id")
    return {int(m): int(s) for m, s in rows}


def _sums(conn: Connection) -> dict[str, int]:
    rows = conn.execute("SELECT kind, SUM(amount) FROM ledger GROUP BY kind")
    return {str(k): int(s) for k, s in rows}


@dataclass(frozen=True)
class Figures:
    """What a copy, a backup and a restore compare: rows per table, each member's
    balance, the ledger's sums by kind, the members' debt."""

    rows: dict[str, int]
    balances: dict[int, int]
    sums: dict[str, int]
    debt: int

    def to_json(self) -> dict[str, Any]:
        return {"rows": self.rows, "balances": {str(m): b for m, b in self.balances.items()},
                "sums": self.sums, "debt": self.debt}

    @classmethod
    def from_json(cls, doc: Any) -> Figures:
        try:
            return cls(rows={str(k): int(v) for k, v in doc["rows"].items()},
                       balances={int(k): int(v) for k, v in doc["balances"].items()},
                       sums={str(k): int(v) for k, v in doc["sums"].items()},
                       debt=int(doc["debt"]))
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise CopyError(f"the backup's figures cannot be read: {exc!r}") from None


def figures(conn: Connection) -> Figures:
    """The figures of `conn`, read in the caller's transaction (one snapshot)."""
    tables = engine.table_names(conn)
    debt = "SELECT COALESCE(SUM(debt), 0) FROM members"
    return Figures(
        rows={t: _count(conn, t) if t in tables else 0 for t in TABLES},
        balances=_balances(conn),
        sums=_sums(conn),
        debt=int(conn.execute(debt).fetchone()[0]),
    )


def compare(src: Figures, dst: Figures) -> list[Check]:
    """One check per figure: rows per table, balances, ledger sums, debt."""
    checks = [Check(f"rows in {t}", src.rows.get(t, 0), dst.rows.get(t, 0)) for t in TABLES]
    same = sum(1 for m, b in src.balances.items() if dst.balances.get(m) == b)
    same -= len(set(dst.balances) - set(src.balances))  # a member only the target has
    checks.append(Check("members whose balance equals", len(src.balances), same))
    for kind in sorted(set(src.sums) | set(dst.sums)):
        checks.append(Check(f"ledger sum of {kind}", src.sums.get(kind, 0), dst.sums.get(kind, 0)))
    checks.append(Check("ledger sum", sum(src.sums.values()), sum(dst.sums.values())))
    checks.append(Check("members' debt", src.debt, dst.debt))
    return checks


def refuse_unless_empty(target: Connection) -> None:
    """CopyError unless `target` holds no rows (no tables, or this schema with no rows)."""
    tables = engine.table_names(target)
    if not tables:
        return
    if migrations.current_version(target) is None:
        raise CopyError(f"the target holds other tables ({', '.join(sorted(tables))})")
    # a new schema's own club and branch do not make a target full; a second one does
    full = [
        t for t in TABLES
        if t in tables and _count(target, t) > (1 if t in _MADE_WITH_SCHEMA else 0)
    ]  # fmt: skip
    if full:
        raise CopyError(f"the target is not empty ({', '.join(full)} hold rows)")


def copy(source: Connection, target: Connection) -> list[Check]:
    """Copy every row of `source` (at the current schema version) into `target`."""
    version = migrations.current_version(source)
    if version != migrations.LATEST:
        raise CopyError(
            f"the source's schema version is {version}, not {migrations.LATEST}: "
            "migrate it first (loyalty-backend migrate --db PATH)"
        )
    unknown = engine.table_names(source) - set(TABLES) - set(SCHEMA_TABLES)
    if unknown:
        raise CopyError(f"the source holds tables this backend does not know: {sorted(unknown)}")
    with engine.transaction(source), engine.transaction(target):
        engine.exclusive(target, "schema")
        refuse_unless_empty(target)
        have = migrations.current_version(target)
        if have is None:
            migrations.create(target, datetime.now(UTC))
        elif have != migrations.LATEST:
            raise CopyError(f"the target's schema version is {have}, not {migrations.LATEST}")
        for table in _MADE_WITH_SCHEMA:
            target.execute(f"DELETE FROM {table}")
        for table in TABLES:
            cols = _columns(source, table)
            order = f" ORDER BY {_ORDER[table]}" if table in _ORDER else ""
            rows = source.execute(f"SELECT {', '.join(cols)} FROM {table}{order}")
            engine.bulk_insert(target, table, cols, rows)
            if table in engine.ROWID_TABLES:
                engine.reset_id_sequence(target, table)
        checks = compare(figures(source), figures(target))
        bad = [c for c in checks if not c.ok]
        if bad:
            raise CopyError(
                "verification failed, nothing written: "
                + "; ".join(f"{c.what}: {c.source} vs {c.target}" for c in bad)
            )
    return checks


def render(
    checks: list[Check], source: object, target: object, *, verb: str = "copied",
    labels: tuple[str, str] = ("sqlite", "postgresql"),
) -> str:
    lines = [f"{verb} {source} -> {target}", f"  {'':<34} {labels[0]:>12} {labels[1]:>12}"]
    for c in checks:
        lines.append(f"  {c.what:<34} {c.source:>12,} {c.target:>12,}  {'ok' if c.ok else 'DIFF'}")
    return "\n".join(lines)
