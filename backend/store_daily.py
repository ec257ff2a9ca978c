"""Per-day pre-aggregates: per club, per branch, per Tehran calendar day (and hour).

Why: the panel's dashboard must answer for any period in well under 150 ms over millions
of purchases and ledger rows; sums over a few hundred days of these small tables do, a
scan of the raw rows does not. Kept exact in the very transaction that moves the raw
rows: `store.insert_purchase`, `store.mark_reversed`, `store.insert_member` and the
ledger's one row writer call the hooks below, so every path (advice, reversal, expiry
sweep, adjustment, enrolment, referral) is covered without a hook in each handler.
`rebuild` computes everything again from the raw rows (the migration fills the tables
with it; the property test checks the kept sums against it).

Tables (migration step 8):
- `daily_purchases(club_id, branch_id, day, hour)`: settled purchases (approved, not
  reversed), their rials charged (`sales`) and before discount (`gross`), declined,
  reversed; by the purchase's own time (`occurred_at`), as the report counts them.
- `daily_credit(club_id, day, kind)`: the signed sum of the club's ledger rows of each
  kind (holds and releases left out: they always come back out).
- `daily_members(club_id, day)`: members enrolled.
- `daily_intervals(club_id, day, bin)`: settled purchases by the days since the member's
  previous settled purchase (bins of daily_rules.INTERVAL_EDGES; FIRST_VISIT: none).
- `daily_buyers(club_id, day, chunk)`: three bitmaps of the members (bit i of chunk c is
  member c * 4096 + i) who bought that day, bought twice or more, and bought with a
  purchase strictly before: distinct members over any period are then an OR of a few
  hundred small bitmaps, exact, instead of a scan of the period's purchases.
- `monthly_buyers(club_id, month, chunk)`: the same per Gregorian month (YYYYMM), so a
  long period reads its whole months as one row each (daily_rules.merge_flags).
`day` is the integer YYYYMMDD of the Tehran date. Their roll-ups per week and month and
the members per tier (backend.store_rollups) are written with them.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from backend import daily_rules, engine, store_member_stats, store_rollups
from backend.daily_rules import CREDIT_KINDS, tehran_day, tehran_day_hour
from backend.engine import Connection
from backend.store_member_stats import MemberTotals

if TYPE_CHECKING:
    from backend.store import PurchaseRecord

TABLES = ("daily_purchases", "daily_credit", "daily_members", "daily_intervals",
          "daily_buyers", "monthly_buyers")

SCHEMA = (
    "CREATE TABLE daily_purchases (club_id INTEGER NOT NULL, branch_id INTEGER NOT NULL, "
    "day INTEGER NOT NULL, hour INTEGER NOT NULL, settled INTEGER NOT NULL DEFAULT 0, "
    "sales INTEGER NOT NULL DEFAULT 0, gross INTEGER NOT NULL DEFAULT 0, "
    "declined INTEGER NOT NULL DEFAULT 0, reversed INTEGER NOT NULL DEFAULT 0, "
    "PRIMARY KEY (club_id, day, branch_id, hour)) WITHOUT ROWID",
    "CREATE TABLE daily_credit (club_id INTEGER NOT NULL, day INTEGER NOT NULL, "
    "kind TEXT NOT NULL, amount INTEGER NOT NULL DEFAULT 0, "
    "PRIMARY KEY (club_id, day, kind)) WITHOUT ROWID",
    "CREATE TABLE daily_members (club_id INTEGER NOT NULL, day INTEGER NOT NULL, "
    "enrolled INTEGER NOT NULL DEFAULT 0, PRIMARY KEY (club_id, day)) WITHOUT ROWID",
    "CREATE TABLE daily_intervals (club_id INTEGER NOT NULL, day INTEGER NOT NULL, "
    "bin INTEGER NOT NULL, visits INTEGER NOT NULL DEFAULT 0, "
    "PRIMARY KEY (club_id, day, bin)) WITHOUT ROWID",
    "CREATE TABLE daily_buyers (club_id INTEGER NOT NULL, day INTEGER NOT NULL, "
    "chunk INTEGER NOT NULL, bought BLOB NOT NULL, twice BLOB NOT NULL, "
    "earlier BLOB NOT NULL, PRIMARY KEY (club_id, day, chunk)) WITHOUT ROWID",
    "CREATE TABLE monthly_buyers (club_id INTEGER NOT NULL, month INTEGER NOT NULL, "
    "chunk INTEGER NOT NULL, bought BLOB NOT NULL, twice BLOB NOT NULL, "
    "earlier BLOB NOT NULL, PRIMARY KEY (club_id, month, chunk)) WITHOUT ROWID",
    # members per tier (the dashboard's chart) counted off the index, not the rows
    "CREATE INDEX members_club_tier ON members(club_id, tier)",
)

_SETTLED = "approved = 1 AND reversed = 0"


# --- kept in the caller's transaction ---------------------------------------------------
#
# The hooks below only note what changes (engine.deferred: the transaction's list); `_apply`
# writes it just before COMMIT, in the same transaction: the deltas summed per row, the
# rows in one order (table, then key) so that two processes lock them alike and never
# deadlock, each row written once per group. Outside an engine.transaction they are
# written at once. A request rolled back to its savepoint takes its entries with it.

_PURCHASE_SQL = (
    "INSERT INTO daily_purchases(club_id, branch_id, day, hour, settled, sales, gross, "
    "declined, reversed) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) "
    "ON CONFLICT (club_id, day, branch_id, hour) DO UPDATE SET "
    "settled = daily_purchases.settled + excluded.settled, "
    "sales = daily_purchases.sales + excluded.sales, "
    "gross = daily_purchases.gross + excluded.gross, "
    "declined = daily_purchases.declined + excluded.declined, "
    "reversed = daily_purchases.reversed + excluded.reversed")
_CREDIT_SQL = (
    "INSERT INTO daily_credit(club_id, day, kind, amount) VALUES (?, ?, ?, ?) "
    "ON CONFLICT (club_id, day, kind) DO UPDATE SET "
    "amount = daily_credit.amount + excluded.amount")
_MEMBERS_SQL = (
    "INSERT INTO daily_members(club_id, day, enrolled) VALUES (?, ?, ?) "
    "ON CONFLICT (club_id, day) DO UPDATE SET enrolled = daily_members.enrolled + "
    "excluded.enrolled")
_INTERVALS_SQL = (
    "INSERT INTO daily_intervals(club_id, day, bin, visits) VALUES (?, ?, ?, ?) "
    "ON CONFLICT (club_id, day, bin) DO UPDATE SET "
    "visits = daily_intervals.visits + excluded.visits")

# entry kinds (the first item of an entry)
_P, _C, _M, _I, _B, _T = "p", "c", "m", "i", "b", "t"


def _note(conn: Connection, entry: tuple) -> None:
    pending = engine.deferred(conn)
    if pending is None:
        _apply(conn, [entry])
    else:
        pending.append(entry)


def _padded(items: list) -> list:
    """`items` with its last one repeated up to a power of two: a statement whose text
    depends on the length comes in a few texts only (each prepared and cached once)."""
    size = 1 << (len(items) - 1).bit_length()
    return items + items[-1:] * (size - len(items))


def _clubs(conn: Connection, members: set[int]) -> dict[int, int]:
    if not members:
        return {}
    ids = _padded(sorted(members))
    marks = ", ".join("?" * len(ids))
    return {int(m): int(c) for m, c in conn.execute(
        f"SELECT id, club_id FROM members WHERE id IN ({marks})", ids).fetchall()}


def _apply(conn: Connection, entries: list[tuple]) -> None:
    """Write the noted changes: one row write per aggregate row, in key order."""
    clubs = _clubs(conn, {e[1] for e in entries if e[0] in (_P, _C, _M, _T)})
    purchases: dict[tuple, list[int]] = {}
    credit: Counter[tuple] = Counter()
    members: Counter[tuple] = Counter()
    intervals: Counter[tuple] = Counter()
    bits: dict[tuple, dict[int, int]] = {}
    tiers: Counter[tuple] = Counter()
    for e in entries:
        kind = e[0]
        if kind == _P:
            acc = purchases.setdefault((clubs[e[1]], e[3], e[4], e[2]), [0] * 5)
            for i, v in enumerate(e[5:]):
                acc[i] += v
        elif kind == _C:
            credit[(clubs[e[1]], e[2], e[3])] += e[4]
        elif kind == _M:
            members[(clubs[e[1]], e[2])] += 1
        elif kind == _I:
            intervals[e[1:4]] += e[4]
        elif kind == _T:
            tiers[(clubs[e[1]], e[2])] += e[3]
        else:
            bits.setdefault(e[1:5], {})[e[5]] = e[6]
    # table order as in TABLES; within a table, primary-key order
    rows = [(c, b, d, h, *v) for (c, d, h, b), v in sorted(purchases.items()) if any(v)]
    if rows:
        conn.executemany(_PURCHASE_SQL, rows)
    rows = [(*k, v) for k, v in sorted(credit.items()) if v]
    if rows:
        conn.executemany(_CREDIT_SQL, rows)
    rows = [(*k, v) for k, v in sorted(members.items()) if v]
    if rows:
        conn.executemany(_MEMBERS_SQL, rows)
    rows = [(*k, v) for k, v in sorted(intervals.items()) if v]
    if rows:
        conn.executemany(_INTERVALS_SQL, rows)
    for (table, club_id, span, chunk), flags in sorted(bits.items()):
        _set_bits(conn, table, club_id, span, chunk, flags)
    store_rollups.write_deltas(
        conn, {(c, b, d, h): v for (c, d, h, b), v in purchases.items()}, credit, members,
        intervals, tiers)


_EMPTY = bytes(daily_rules.CHUNK // 8)
#: the buyers' bitmaps: (table, its span's column, the span of a day): per day, per tenth
#: of a month (store_rollups' dekad_buyers) and per month
_BITMAPS = (("daily_buyers", "day", lambda d: d),
            ("dekad_buyers", "dekad", daily_rules.dekad_of),
            ("monthly_buyers", "month", daily_rules.month_of))
_COLUMN = {table: column for table, column, _ in _BITMAPS}
_FLAGS = (daily_rules.BOUGHT, daily_rules.TWICE, daily_rules.EARLIER)


def _set_bits(conn: Connection, table: str, club_id: int, span: int, chunk: int,
              flags: dict[int, int]) -> None:
    """Members' three bits of a day (or month) of one chunk set to their flags (bit ->
    flags).

    On PostgreSQL in one UPDATE of the bits (`set_bit`, bit 0 the first byte's lowest, as
    here), after the row is made if missing: two processes setting two members' bits of
    one chunk at once wait for each other's row and each sets only its own bits (a read,
    change and write of the whole maps would lose the first one's). On SQLite, whose
    BEGIN IMMEDIATE lets one writer in at a time, read, change, write."""
    column = _COLUMN[table]
    if engine.dialect_of(conn) == engine.POSTGRESQL:
        conn.execute(
            f"INSERT INTO {table}(club_id, {column}, chunk, bought, twice, earlier) "
            f"VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (club_id, {column}, chunk) DO NOTHING",
            (club_id, span, chunk, _EMPTY, _EMPTY, _EMPTY))
        sets: list[str] = []
        args: list[int] = []
        for i, name in enumerate(("bought", "twice", "earlier")):
            expr = name
            for bit, f in _padded(sorted(flags.items())):
                expr = f"set_bit({expr}, ?::int, ?::int)"
                args += [bit, int(bool(f & _FLAGS[i]))]
            sets.append(f"{name} = {expr}")
        conn.execute(
            f"UPDATE {table} SET {', '.join(sets)} "
            f"WHERE club_id = ? AND {column} = ? AND chunk = ?",
            (*args, club_id, span, chunk))
        return
    row = conn.execute(
        f"SELECT bought, twice, earlier FROM {table} WHERE club_id = ? AND {column} = ? "
        "AND chunk = ?", (club_id, span, chunk)).fetchone()
    maps = [bytearray(bytes(b)) for b in row] if row else [bytearray(_EMPTY) for _ in _FLAGS]
    for bit, f in flags.items():
        for i, flag in enumerate(_FLAGS):
            if f & flag:
                maps[i][bit // 8] |= 1 << (bit % 8)
            else:
                maps[i][bit // 8] &= ~(1 << (bit % 8)) & 0xFF
    conn.execute(
        f"INSERT INTO {table}(club_id, {column}, chunk, bought, twice, earlier) "
        f"VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (club_id, {column}, chunk) DO UPDATE SET "
        "bought = excluded.bought, twice = excluded.twice, earlier = excluded.earlier",
        (club_id, span, chunk, *(bytes(m) for m in maps)))


engine.before_commit(_apply)


@dataclass(frozen=True, slots=True)
class Settled:
    """A member's settled purchases (approved, not reversed) after a purchase was added:
    their running totals (store_member_stats' columns), and the purchases themselves when
    they had to be read. The tier's spend over its window comes from it."""

    club_id: int
    visits: int
    total: int
    first_visit: int | None
    last_visit: int | None
    #: (occurred_at, key, amount) of each, when read (None: only the totals are known)
    purchases: list[tuple[int, str, int]] | None = None

    def spend(self, since: int, until: int) -> int | None:
        """Rials charged in (since, until] (Unix seconds), as store.spend counts them;
        None when the totals cannot tell (some purchase outside the window)."""
        if self.purchases is not None:
            return sum(amount for at, _, amount in self.purchases if since < at <= until)
        if self.first_visit is None or self.last_visit is None:
            return 0
        if since < self.first_visit and self.last_visit <= until:
            return self.total
        return None


def settled_of(conn: Connection, member_id: int) -> Settled:
    """The member's settled purchases now (one read through the purchases' member index)."""
    rows = conn.execute(
        "SELECT m.club_id, p.occurred_at, p.key, p.amount FROM members m LEFT JOIN purchases p "
        "ON p.member_id = m.id AND p.approved = 1 AND p.reversed = 0 WHERE m.id = ?",
        (member_id,)).fetchall()
    purchases = [(int(at), str(key), int(amount)) for _, at, key, amount in rows
                 if at is not None]
    return Settled(int(rows[0][0]), len(purchases), sum(a for _, _, a in purchases),
                   min((at for at, _, _ in purchases), default=None),
                   max((at for at, _, _ in purchases), default=None), purchases)


_SETTLED_OF = "FROM purchases WHERE member_id = ? AND approved = 1 AND reversed = 0"
#: a member's settled purchases of one month (tag 0), the latest other one at or before a
#: moment (1), the earliest after it (2), the time of the first (3), the member's club (4)
_NEIGHBOURS_SQL = (
    f"SELECT 0, occurred_at, key {_SETTLED_OF} AND occurred_at >= ? AND occurred_at < ? "
    f"UNION ALL SELECT * FROM (SELECT 1, occurred_at, key {_SETTLED_OF} "
    "AND occurred_at <= ? AND key <> ? ORDER BY occurred_at DESC LIMIT 1) AS b "
    f"UNION ALL SELECT * FROM (SELECT 2, occurred_at, key {_SETTLED_OF} "
    "AND occurred_at > ? ORDER BY occurred_at LIMIT 1) AS a "
    f"UNION ALL SELECT 3, MIN(occurred_at), '' {_SETTLED_OF} "
    "UNION ALL SELECT 4, club_id, '' FROM members WHERE id = ?")


def _neighbours(conn: Connection, p: PurchaseRecord, *, added: bool) -> bool:
    """The member's visit intervals and buyer bits after `p` was settled (added) or
    reversed, from `p`'s neighbours alone, in one read through the purchases' member
    index: its month's purchases, the one before and the one after it, the first time.

    Exact because the interval counts depend only on the sorted times (ties in any
    order give the same gaps), so `p` in or out changes its own gap and its next one's
    (daily_rules.neighbours_change); and a bucket's flags depend on its own purchases and
    the member's first time, which `p` does not move when another purchase is at or
    before it. False (nothing noted) when none is: `p` is or was the member's first, whose
    change moves the EARLIER flag of other buckets; the caller then recomputes."""
    at, month = p.occurred_at, tehran_day(p.occurred_at) // 100
    since, until = daily_rules.month_bounds(month)
    rows = conn.execute(_NEIGHBOURS_SQL, (
        p.member_id, since, until, p.member_id, at, p.key, p.member_id, at, p.member_id,
        p.member_id)).fetchall()
    got: dict[int, int] = {}
    bucket: list[tuple[int, str]] = []
    for tag, value, key in rows:
        if tag == 0:
            bucket.append((int(value), str(key)))
        elif value is not None:
            got[int(tag)] = int(value)
    if 1 not in got:
        return False
    club_id, first = got[4], got[3]
    mine = (at, p.key)  # the month's purchases read are those after the change
    before = [v for v in bucket if v != mine] if added else [*bucket, mine]
    after = bucket
    change = daily_rules.neighbours_change(got[1], at, got.get(2))
    for (day, bin_), n in change.items():
        if n:
            _note(conn, (_I, club_id, day, bin_, n if added else -n))
    chunk, bit = divmod(p.member_id, daily_rules.CHUNK)
    day = tehran_day(at)
    for table, _, of in _BITMAPS:  # each span lies within the month read
        span = of(day)
        was = daily_rules.bucket_flags([v for v in before if of(tehran_day(v[0])) == span],
                                       first)
        became = daily_rules.bucket_flags([v for v in after if of(tehran_day(v[0])) == span],
                                          first)
        if was != became:
            _note(conn, (_B, table, club_id, span, chunk, bit, became))
    return True


def _recompute(conn: Connection, p: PurchaseRecord, *, added: bool) -> Settled:
    """The member's visit intervals and buyer bits after `p` was settled (added) or
    reversed, from the member's whole history with and without `p`, only the difference
    noted: the exact way for what the running totals cannot tell (a reversal, a purchase
    older than the member's latest)."""
    now_settled = settled_of(conn, p.member_id)
    club_id = now_settled.club_id
    now = [(at, key) for at, key, _ in now_settled.purchases or ()]
    mine = (p.occurred_at, p.key)
    other = [v for v in now if v != mine] if added else [*now, mine]
    before, after = other, now
    change = daily_rules.visit_bins(after)
    change.subtract(daily_rules.visit_bins(before))
    for (day, bin_), n in change.items():
        if n:
            _note(conn, (_I, club_id, day, bin_, n))
    chunk, bit = divmod(p.member_id, daily_rules.CHUNK)
    for table, _, of in _BITMAPS:
        was = daily_rules.member_flags(before, of=of)
        became = daily_rules.member_flags(after, of=of)
        for span in sorted(was.keys() | became.keys()):
            if was.get(span, 0) != became.get(span, 0):
                _note(conn, (_B, table, club_id, span, chunk, bit, became.get(span, 0)))
    return now_settled


def _added(conn: Connection, p: PurchaseRecord, before: MemberTotals) -> Settled:
    """`p` settled, at or after the member's latest settled purchase (nearly always): its
    interval and its day's and month's bits follow from the running totals read before
    it (`before`) alone, in O(1). Older than the latest: `_recompute`."""
    at = p.occurred_at
    last, first = before.last_visit, before.first_visit
    day = tehran_day(at)
    last_day = tehran_day(last) if last is not None else 0
    if last is not None and (first is None or at < last or last_day > day):
        # older than the latest (a late advice): from its neighbours, or the history
        if first is not None and _neighbours(conn, p, added=True):
            return Settled(before.club_id, before.visits + 1, before.spend + p.amount,
                           min(first, at), max(last, at))
        return _recompute(conn, p, added=True)
    club_id = before.club_id
    chunk, bit = divmod(p.member_id, daily_rules.CHUNK)
    if last is None or first is None:
        # the member's first settled purchase: no interval, bought once, nothing before
        _note(conn, (_I, club_id, day, daily_rules.FIRST_VISIT, 1))
        for table, _, of in _BITMAPS:
            _note(conn, (_B, table, club_id, of(day), chunk, bit, daily_rules.BOUGHT))
        return Settled(club_id, 1, p.amount, at, at)
    # the sorted visits gain `at` at their end: one interval, from the latest to it
    _note(conn, (_I, club_id, day, daily_rules.interval_bin(last, at), 1))
    # a bucket's flags: TWICE when it held the latest already (then two in it), EARLIER
    # when `at` (its latest now) is after the first visit, which `at` does not move
    earlier = daily_rules.EARLIER if at > first else 0
    for table, _, of in _BITMAPS:
        span = of(day)
        twice = daily_rules.TWICE if of(last_day) == span else 0
        _note(conn, (_B, table, club_id, span, chunk, bit, daily_rules.BOUGHT | twice | earlier))
    return Settled(club_id, before.visits + 1, before.spend + p.amount, first, at)


def _purchase_counts(p: PurchaseRecord, *counts: int) -> tuple:
    day, hour = tehran_day_hour(p.occurred_at)
    return (_P, p.member_id, p.branch_id or 0, day, hour, *counts)


def purchase_recorded(conn: Connection, p: PurchaseRecord, before: MemberTotals | None = None
                      ) -> Settled | None:
    """A purchase row was just inserted (approved or declined, possibly reversed already).
    Returns the member's settled purchases, `p` included, when `p` is one of them.
    `before`: the member's running totals before `p` (store_member_stats.totals_of; read
    here when not given)."""
    is_settled = p.approved and not p.reversed
    _note(conn, _purchase_counts(
        p, int(is_settled), p.amount if is_settled else 0, p.gross if is_settled else 0,
        int(not p.approved), int(p.approved and p.reversed)))
    if not is_settled:
        return None
    return _added(conn, p, before or store_member_stats.totals_of(conn, p.member_id))


def purchase_reversed(conn: Connection, p: PurchaseRecord) -> None:
    """The settled purchase `p` (as it was before) has just been marked reversed."""
    if not p.approved or p.reversed:
        return  # a declined purchase stays declined; a reversed one is counted already
    _note(conn, _purchase_counts(p, -1, -p.amount, -p.gross, 0, 1))
    if not _neighbours(conn, p, added=False):
        _recompute(conn, p, added=False)


def member_enrolled(conn: Connection, member_id: int, enrolled_at: int) -> None:
    """A member row was just inserted: its day's enrolments and its tier's count."""
    _note(conn, (_M, member_id, tehran_day(enrolled_at)))
    row = conn.execute("SELECT tier FROM members WHERE id = ?", (member_id,)).fetchone()
    _note(conn, (_T, member_id, str(row[0]), 1))


def tier_changed(conn: Connection, member_id: int, tier: str) -> None:
    """The member's tier is about to become `tier` (called by store.set_tier before its
    UPDATE): one member moves from the old tier's count to the new one's."""
    row = conn.execute("SELECT tier FROM members WHERE id = ?", (member_id,)).fetchone()
    if row is not None and str(row[0]) != tier:
        _note(conn, (_T, member_id, str(row[0]), -1))
        _note(conn, (_T, member_id, tier, 1))


def credit_moved(conn: Connection, member_id: int, kind: str, amount: int, at: int) -> None:
    """A ledger row was written (called by the ledger's only row writer)."""
    if kind not in CREDIT_KINDS or amount == 0:
        return
    _note(conn, (_C, member_id, tehran_day(at), kind, amount))


# --- everything again from the raw rows --------------------------------------------------


@dataclass
class Snapshot:
    """Every non-zero aggregate, as dicts keyed like the tables' primary keys."""

    purchases: dict[tuple[int, int, int, int], tuple[int, int, int, int, int]] = field(
        default_factory=dict)
    credit: dict[tuple[int, int, str], int] = field(default_factory=dict)
    members: dict[tuple[int, int], int] = field(default_factory=dict)
    intervals: dict[tuple[int, int, int], int] = field(default_factory=dict)
    #: (club, day, chunk) -> the three bitmaps as ints (bit i: member chunk * CHUNK + i)
    buyers: dict[tuple[int, int, int], tuple[int, int, int]] = field(default_factory=dict)
    #: (club, month, chunk) -> the same per month
    monthly: dict[tuple[int, int, int], tuple[int, int, int]] = field(default_factory=dict)
    #: (club, dekad, chunk) -> the same per tenth of a month (daily_rules.dekad_of)
    dekads: dict[tuple[int, int, int], tuple[int, int, int]] = field(default_factory=dict)
    #: the roll-ups (store_rollups): (club, week) -> settled, sales, gross, declined,
    #: reversed, enrolled; (club, week, kind); (club, week, bin); (club, month, weekday,
    #: hour) -> settled; (club, tier) -> members
    weekly: store_rollups.Weekly = field(default_factory=dict)
    weekly_credit: dict[tuple[int, int, str], int] = field(default_factory=dict)
    weekly_intervals: dict[tuple[int, int, int], int] = field(default_factory=dict)
    hours: dict[tuple[int, int, int, int], int] = field(default_factory=dict)
    tiers: dict[tuple[int, str], int] = field(default_factory=dict)

    def roll_up(self) -> None:
        """The roll-ups of this snapshot's day-level sums."""
        self.weekly, self.weekly_credit, self.weekly_intervals, self.hours = \
            store_rollups.roll_up(self.purchases, self.credit, self.members, self.intervals)


_HALF_HOUR = 1800  # Tehran's offsets (+3:30, +4:30) are whole half hours: a UTC half hour
# lies in one Tehran hour, so the raw rows are grouped by it in SQL and mapped in Python.


def from_raw(conn: Connection) -> Snapshot:
    snap = Snapshot()
    purchases: dict[tuple[int, int, int, int], list[int]] = {}
    for club, branch, half, *sums in conn.execute(
        "SELECT m.club_id, COALESCE(p.branch_id, 0), p.occurred_at / 1800, "
        "SUM(CASE WHEN p.approved = 1 AND p.reversed = 0 THEN 1 ELSE 0 END), "
        "SUM(CASE WHEN p.approved = 1 AND p.reversed = 0 THEN p.amount ELSE 0 END), "
        "SUM(CASE WHEN p.approved = 1 AND p.reversed = 0 THEN p.gross ELSE 0 END), "
        "SUM(CASE WHEN p.approved = 0 THEN 1 ELSE 0 END), "
        "SUM(CASE WHEN p.approved = 1 AND p.reversed = 1 THEN 1 ELSE 0 END) "
        "FROM purchases p JOIN members m ON m.id = p.member_id GROUP BY 1, 2, 3"
    ).fetchall():
        day, hour = tehran_day_hour(int(half) * _HALF_HOUR)
        acc = purchases.setdefault((int(club), int(branch), day, hour), [0] * 5)
        for i, v in enumerate(sums):
            acc[i] += int(v)
    snap.purchases = {k: tuple(v) for k, v in purchases.items() if any(v)}  # type: ignore[misc]
    marks = ", ".join("?" * len(CREDIT_KINDS))
    credit: Counter[tuple[int, int, str]] = Counter()
    for club, kind, half, total in conn.execute(
        f"SELECT m.club_id, l.kind, l.at / 1800, SUM(l.amount) FROM ledger l "
        f"JOIN members m ON m.id = l.member_id WHERE l.kind IN ({marks}) GROUP BY 1, 2, 3",
        CREDIT_KINDS,
    ).fetchall():
        credit[(int(club), tehran_day(int(half) * _HALF_HOUR), str(kind))] += int(total)
    snap.credit = {k: v for k, v in credit.items() if v}
    members: Counter[tuple[int, int]] = Counter()
    for club, half, n in conn.execute(
        "SELECT club_id, enrolled_at / 1800, COUNT(*) FROM members GROUP BY 1, 2"
    ).fetchall():
        members[(int(club), tehran_day(int(half) * _HALF_HOUR))] += int(n)
    snap.members = {k: v for k, v in members.items() if v}
    intervals: Counter[tuple[int, int, int]] = Counter()
    bits: dict[tuple[int, int, int], list[int]] = {}
    dekad_bits: dict[tuple[int, int, int], list[int]] = {}
    month_bits: dict[tuple[int, int, int], list[int]] = {}
    visits: list[tuple[int, str]] = []
    current: tuple[int, int] | None = None

    def flush() -> None:
        if current is None:
            return
        member, club = current
        for (day, bin_), n in daily_rules.visit_bins(visits).items():
            intervals[(club, day, bin_)] += n
        chunk, bit = divmod(member, daily_rules.CHUNK)
        for target, (_, _, of) in zip((bits, dekad_bits, month_bits), _BITMAPS, strict=True):
            for span, flags in daily_rules.member_flags(visits, of=of).items():
                acc = target.setdefault((club, span, chunk), [0, 0, 0])
                for i, flag in enumerate(_FLAGS):
                    if flags & flag:
                        acc[i] |= 1 << bit

    for member, club, at, key in conn.execute(
        "SELECT p.member_id, m.club_id, p.occurred_at, p.key FROM purchases p "
        "JOIN members m ON m.id = p.member_id WHERE p.approved = 1 AND p.reversed = 0 "
        "ORDER BY p.member_id, p.occurred_at, p.key"
    ):
        if current is None or current[0] != member:
            flush()
            current, visits = (int(member), int(club)), []
        visits.append((int(at), str(key)))
    flush()
    snap.intervals = {k: v for k, v in intervals.items() if v}
    snap.buyers = {k: (v[0], v[1], v[2]) for k, v in bits.items() if any(v)}
    snap.monthly = {k: (v[0], v[1], v[2]) for k, v in month_bits.items() if any(v)}
    snap.dekads = {k: (v[0], v[1], v[2]) for k, v in dekad_bits.items() if any(v)}
    snap.roll_up()
    snap.tiers = store_rollups.tiers_from_raw(conn)
    return snap


def kept(conn: Connection) -> Snapshot:
    """What the tables hold now (rows that sum to zero left out)."""
    snap = Snapshot()
    snap.purchases = {
        (int(c), int(b), int(d), int(h)): tuple(int(x) for x in rest)  # type: ignore[misc]
        for c, b, d, h, *rest in conn.execute(
            "SELECT club_id, branch_id, day, hour, settled, sales, gross, declined, reversed "
            "FROM daily_purchases").fetchall()
        if any(rest)
    }
    snap.credit = {(int(c), int(d), str(k)): int(a) for c, d, k, a in conn.execute(
        "SELECT club_id, day, kind, amount FROM daily_credit WHERE amount <> 0").fetchall()}
    snap.members = {(int(c), int(d)): int(n) for c, d, n in conn.execute(
        "SELECT club_id, day, enrolled FROM daily_members WHERE enrolled <> 0").fetchall()}
    snap.intervals = {(int(c), int(d), int(b)): int(n) for c, d, b, n in conn.execute(
        "SELECT club_id, day, bin, visits FROM daily_intervals WHERE visits <> 0").fetchall()}
    for table, into in (("daily_buyers", snap.buyers), ("monthly_buyers", snap.monthly),
                        ("dekad_buyers", snap.dekads)):
        for c, d, k, *maps in conn.execute(
                f"SELECT club_id, {_COLUMN[table]}, chunk, bought, twice, earlier "
                f"FROM {table}").fetchall():
            ints = tuple(int.from_bytes(bytes(m), "little") for m in maps)
            if any(ints):
                into[(int(c), int(d), int(k))] = ints  # type: ignore[assignment]
    (snap.weekly, snap.weekly_credit, snap.weekly_intervals, snap.hours,
     snap.tiers) = store_rollups.kept(conn)
    return snap


def rebuild(conn: Connection, tables: tuple[str, ...] = (*TABLES, *store_rollups.TABLES)
            ) -> None:
    """Empty the tables and fill them from the raw rows (in the caller's transaction):
    the day tables (TABLES, migration 8) and the roll-ups (store_rollups.TABLES, migration
    22), or only those of one of the two."""
    snap = from_raw(conn)
    size = daily_rules.CHUNK // 8
    if set(store_rollups.TABLES) & set(tables):
        store_rollups.write(conn, snap.weekly, snap.weekly_credit, snap.weekly_intervals,
                            snap.hours, snap.tiers)
        conn.executemany(
            "INSERT INTO dekad_buyers(club_id, dekad, chunk, bought, twice, earlier) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            [(*k, *(m.to_bytes(size, "little") for m in v)) for k, v in snap.dekads.items()])
    if not set(TABLES) & set(tables):
        return
    for table in TABLES:
        conn.execute(f"DELETE FROM {table}")
    conn.executemany(
        "INSERT INTO daily_purchases(club_id, branch_id, day, hour, settled, sales, gross, "
        "declined, reversed) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [(*k, *v) for k, v in snap.purchases.items()])
    conn.executemany("INSERT INTO daily_credit(club_id, day, kind, amount) VALUES (?, ?, ?, ?)",
                     [(*k, v) for k, v in snap.credit.items()])
    conn.executemany("INSERT INTO daily_members(club_id, day, enrolled) VALUES (?, ?, ?)",
                     [(*k, v) for k, v in snap.members.items()])
    conn.executemany("INSERT INTO daily_intervals(club_id, day, bin, visits) VALUES (?, ?, ?, ?)",
                     [(*k, v) for k, v in snap.intervals.items()])
    for table, rows in (("daily_buyers", snap.buyers), ("monthly_buyers", snap.monthly)):
        conn.executemany(
            f"INSERT INTO {table} VALUES (?, ?, ?, ?, ?, ?)",
            [(*k, *(m.to_bytes(size, "little") for m in v)) for k, v in rows.items()])
