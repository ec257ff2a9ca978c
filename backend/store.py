"""The backend's database, SQLite or PostgreSQL: connecting, members, cards, quotes, offers.

Money lives in backend.ledger; this module holds everything around it. Times are stored
as integer Unix seconds (UTC) so that ranges compare as numbers.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import secrets
import sqlite3
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path

from backend import engine, migrations, store_daily, store_member_stats
from backend.engine import Connection
from backend.program import Offer, parse_hours, parse_weekdays

log = logging.getLogger(__name__)
SCHEMA_VERSION = migrations.LATEST
CODE_ALPHABET = "23456789ABCDEFGHJKMNPQRSTUVWXYZ"  # no 0/O, 1/I/L: read aloud safely
CODE_LENGTH = 7


class StoreError(Exception):
    """The database cannot be used (wrong schema version, not a database)."""


def ts(when: datetime) -> int:
    return int(when.timestamp())


def from_ts(value: int) -> datetime:
    return datetime.fromtimestamp(value, UTC)


def connect(
    db: str | Path | engine.Target,
    *,
    autocheckpoint: bool = True,
    check_schema: bool = True,
    create: bool = True,
    shop_name: str = migrations.DEFAULT_CLUB,
) -> Connection:
    """A connection to `db` (a SQLite path or a PostgreSQL URL) with the backend's settings.

    A database with no schema yet gets the current one (unless `create` is false); one of
    another version is refused (StoreError saying how to migrate) unless `check_schema`
    is false (for `migrate`). A new database's one club is named `shop_name` (the
    configuration's `[shop] name`).

    SQLite: autocommit mode (isolation_level=None), transactions are explicit BEGIN
    IMMEDIATE, so two processes on one file serialise their writes instead of failing to
    upgrade locks. `autocheckpoint=False` leaves WAL checkpoints to a `Checkpointer`
    thread, so that no request's commit pays for copying the WAL into the database.
    """
    try:
        target = engine.parse_target(db)
    except ValueError as exc:
        raise StoreError(str(exc)) from None
    if target.is_postgresql:
        try:
            conn: Connection = engine.connect_postgresql(target)
        except engine.ConnectError as exc:
            raise StoreError(str(exc)) from None
    else:
        conn = _connect_sqlite(target.path or Path(), autocheckpoint=autocheckpoint)
    try:
        if migrations.current_version(conn) is None and create:
            # the whole schema in one transaction: a second process starting on the same
            # new database waits for it and never sees a half-made schema
            with transaction(conn):
                engine.exclusive(conn, "schema")
                if migrations.current_version(conn) is None:
                    migrations.create(conn, datetime.now(UTC), shop_name=shop_name)
        if check_schema and migrations.current_version(conn) is not None:
            migrations.check(conn, target)
    except engine.DatabaseError as exc:
        conn.close()
        raise StoreError(f"{target}: {engine.mask(str(exc))}") from exc
    except migrations.SchemaError as exc:
        conn.close()
        raise StoreError(str(exc)) from None
    return conn


def _connect_sqlite(path: Path, *, autocheckpoint: bool) -> Connection:
    conn = sqlite3.connect(str(path), isolation_level=None, timeout=30.0, check_same_thread=False)
    try:
        conn.execute("PRAGMA busy_timeout = 30000")
        mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if mode.lower() != "wal":
            raise StoreError(f"{path}: cannot switch the database to WAL (got {mode})")
        conn.execute("PRAGMA synchronous = FULL")
        conn.execute("PRAGMA foreign_keys = ON")
        # a ledger of millions of rows: keep the hot pages in memory, read the rest by mmap
        conn.execute("PRAGMA cache_size = -65536")
        conn.execute("PRAGMA mmap_size = 268435456")
        # each request runs in a savepoint: its sub-journal stays in memory, not a temp file
        conn.execute("PRAGMA temp_store = MEMORY")
        if not autocheckpoint:
            conn.execute("PRAGMA wal_autocheckpoint = 0")
        # a restarted WAL is cut back to this size instead of keeping its largest
        conn.execute("PRAGMA journal_size_limit = 67108864")
    except sqlite3.DatabaseError as exc:
        conn.close()
        raise StoreError(f"{path}: {exc}") from exc
    except StoreError:
        conn.close()
        raise
    return conn


class Checkpointer:
    """Copies the WAL into the database now and then, on its own connection and thread.

    PASSIVE checkpoints never block writers; durability is the WAL's (each money commit
    fsyncs it), the checkpoint only keeps the WAL file from growing without end.
    """

    def __init__(self, path: str | Path, *, interval: float = 1.0) -> None:
        self.path = Path(path)
        self.interval = interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> Checkpointer:
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="wal-checkpoint", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def _run(self) -> None:
        conn = sqlite3.connect(str(self.path), isolation_level=None, check_same_thread=False)
        try:
            conn.execute("PRAGMA busy_timeout = 30000")
            conn.execute("PRAGMA synchronous = FULL")
            while not self._stop.wait(self.interval):
                try:
                    conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
                except sqlite3.Error as exc:  # another process's checkpoint, say: next time
                    log.warning("WAL checkpoint failed: %s", exc)
            conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
        except sqlite3.Error as exc:
            log.warning("WAL checkpoint failed: %s", exc)
        finally:
            conn.close()


class WriteLock:
    """The write turn of the backend processes on one SQLite file: a thread lock, then an
    exclusive `flock` on a file beside the database (`<db>-writer.lock`), taken before
    BEGIN IMMEDIATE.

    Why: SQLite's own wait for its write lock is a busy handler that polls, sleeping 1, 2,
    5 ... 100 ms between tries. Two backend processes on one file, each committing again the
    moment it has committed, meet it all the time: one of them keeps finding the lock taken
    and sleeps longer and longer (measured: one process 52 commits/s beside the other's 549,
    waits of 0.7-2.7 s; with 2,000 terminals, answers after 11 s and timeouts). A process
    blocked in flock is woken by the kernel the moment the lock is let go, so the processes
    take turns (measured: equal shares, the longest wait 21-194 ms, no loss of total rate).
    The lock file's lock dies with its process (SIGKILL included). Writers that do not take
    it (an operator's command, the panel) still meet SQLite's busy handler, as before.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(f"{path}-writer.lock")
        self._thread = threading.Lock()
        self._fd: int | None
        try:
            self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o660)
        except OSError as exc:  # a read-only folder, say: SQLite's busy handler alone
            log.warning("no writer lock file %s (%s); processes will contend in SQLite",
                        self.path, exc.strerror)  # fmt: skip
            self._fd = None

    def __enter__(self) -> WriteLock:
        self._thread.acquire()
        if self._fd is not None:
            try:
                fcntl.flock(self._fd, fcntl.LOCK_EX)
            except BaseException:
                self._thread.release()
                raise
        return self

    def __exit__(self, *exc: object) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
        self._thread.release()

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def catch_up_checkpoint(conn: Connection) -> None:
    """A PASSIVE checkpoint on the writing connection itself, between transactions: the
    Checkpointer has copied nearly everything, and with no write of ours running meanwhile
    the checkpoint completes, so our next write starts the WAL from its beginning."""
    conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()


#: BEGIN ... COMMIT on either engine (see engine.transaction)
transaction = engine.transaction


# --- members and cards ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Member:
    id: int
    phone: str
    code: str
    referrer_id: int | None
    birthday: str | None
    enrolled_at: int
    tier: str
    debt: int
    club_id: int
    #: the running totals of settled purchases (store_member_stats), as read with the row:
    #: read under the member's lock, they are the totals before this request's purchase
    visits: int
    spend: int
    first_visit: int | None
    last_visit: int | None

    @property
    def totals(self) -> store_member_stats.MemberTotals:
        return store_member_stats.MemberTotals(
            self.club_id, self.visits, self.spend, self.first_visit, self.last_visit)


_MEMBER_COLS = (
    "id, phone, code, referrer_id, birthday, enrolled_at, tier, debt, club_id, visits, spend, "
    "first_visit, last_visit"
)
#: the same columns of `members m`, for joins that read a member along with something else
MEMBER_COLS_M = ", ".join("m." + c.strip() for c in _MEMBER_COLS.split(","))


# `lock=True`: the member's money moves in this transaction. On PostgreSQL the row is
# locked (FOR NO KEY UPDATE: it does not block the foreign-key checks of other
# transactions' ledger rows) until COMMIT, so two processes serialise on one member;
# SQLite's BEGIN IMMEDIATE already serialises every writer.


def member_by_phone(
    conn: Connection, phone: str, *, club_id: int, lock: bool = False
) -> Member | None:
    """The club's member with this phone (the same phone in another club is another
    member)."""
    sql = f"SELECT {_MEMBER_COLS} FROM members WHERE club_id = ? AND phone = ?"
    row = conn.execute(sql + engine.row_lock(conn, lock), (club_id, phone)).fetchone()
    return Member(*row) if row else None


def member_by_id(conn: Connection, member_id: int, *, lock: bool = False) -> Member:
    sql = f"SELECT {_MEMBER_COLS} FROM members WHERE id = ?"
    row = conn.execute(sql + engine.row_lock(conn, lock), (member_id,)).fetchone()
    return Member(*row)


def member_by_card(
    conn: Connection, card: str, *, club_id: int, lock: bool = False
) -> Member | None:
    """The member an active card belongs to, if a member of this club (a card is issued
    once in the whole database; another club's card names no member here)."""
    sql = (
        f"SELECT {MEMBER_COLS_M} FROM cards c JOIN members m ON m.id = c.member_id "
        "WHERE c.number = ? AND c.active = 1 AND m.club_id = ?"
    )
    row = conn.execute(sql + engine.row_lock(conn, lock, of="m"), (card, club_id)).fetchone()
    return Member(*row) if row else None


def new_member_code(conn: Connection) -> str:
    while True:
        code = "".join(secrets.choice(CODE_ALPHABET) for _ in range(CODE_LENGTH))
        if conn.execute("SELECT 1 FROM members WHERE code = ?", (code,)).fetchone() is None:
            return code


def insert_member(
    conn: Connection,
    *,
    phone: str,
    referrer_id: int | None,
    tier: str,
    now: datetime,
    club_id: int,
) -> Member:
    code = new_member_code(conn)
    cur = conn.execute(
        "INSERT INTO members(phone, code, referrer_id, enrolled_at, tier, club_id, "
        "marketing_consent) VALUES (?, ?, ?, ?, ?, ?, COALESCE((SELECT consent_at_enrolment "
        "FROM club_marketing WHERE club_id = ?), 1))",
        # marketing consent comes with enrolment unless the club says otherwise
        (phone, code, referrer_id, ts(now), tier, club_id, club_id),
    )
    store_daily.member_enrolled(conn, int(cur.lastrowid or 0), ts(now))
    return Member(int(cur.lastrowid or 0), phone, code, referrer_id, None, ts(now), tier, 0,
                  club_id, 0, 0, None, None)


def set_tier(conn: Connection, member_id: int, tier: str) -> None:
    store_daily.tier_changed(conn, member_id, tier)  # members per tier, kept as a count
    conn.execute("UPDATE members SET tier = ? WHERE id = ?", (tier, member_id))


def add_debt(conn: Connection, member_id: int, delta: int) -> None:
    conn.execute("UPDATE members SET debt = debt + ? WHERE id = ?", (delta, member_id))


def set_birthday(conn: Connection, member_id: int, birthday: str | None) -> None:
    conn.execute("UPDATE members SET birthday = ? WHERE id = ?", (birthday, member_id))


def card_owner(conn: Connection, card: str) -> tuple[int, bool] | None:
    row = conn.execute("SELECT member_id, active FROM cards WHERE number = ?", (card,)).fetchone()
    return (row[0], bool(row[1])) if row else None


def link_card(conn: Connection, member_id: int, card: str, now: datetime) -> None:
    conn.execute(
        "INSERT INTO cards(number, member_id, linked_at) VALUES (?, ?, ?)",
        (card, member_id, ts(now)),
    )


def retire_card(conn: Connection, old: str, new: str) -> None:
    conn.execute("UPDATE cards SET active = 0, replaced_by = ? WHERE number = ?", (new, old))


def cards_of(conn: Connection, member_id: int) -> list[tuple[str, bool]]:
    rows = conn.execute(
        "SELECT number, active FROM cards WHERE member_id = ? ORDER BY linked_at", (member_id,)
    )
    return [(r[0], bool(r[1])) for r in rows]


# --- stored responses (idempotency) --------------------------------------------------


@dataclass(frozen=True, slots=True)
class StoredResponse:
    type: str
    code: str
    message: str
    body: dict


def stored_response(conn: Connection, key: str) -> StoredResponse | None:
    """The answer of a request already answered under `key`."""
    return stored_response_later(conn, key)()


def stored_response_later(
    conn: Connection, key: str
) -> Callable[[], StoredResponse | None]:
    """`stored_response`, read when the result is called for: in a pipelined transaction
    the look-ups of a whole group go out together."""
    cur = conn.execute("SELECT type, code, message, body FROM requests WHERE key = ?", (key,))

    def read() -> StoredResponse | None:
        row = cur.fetchone()
        return StoredResponse(row[0], row[1], row[2], json.loads(row[3])) if row else None

    return read


#: the stored body's JSON, one encoder for every response (json.dumps with options
#: builds a new encoder per call); its output is json.dumps' with the same options
_encode_body = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


def store_response(
    conn: Connection,
    *,
    key: str,
    type: str,
    code: str,
    message: str,
    body: dict,
    now: datetime,
) -> None:
    # Rows go to the end of the rowid table; only the small key index is written in key
    # order. The key starts with the terminal id, so the terminal is not stored again.
    body_text = _encode_body(body)
    conn.execute(
        "INSERT INTO requests(key, type, code, message, body, at) VALUES (?, ?, ?, ?, ?, ?)",
        (key, type, str(code), message, body_text, ts(now)),
    )


def prune_responses(conn: Connection, before: datetime, *, limit: int = 500) -> int:
    """Forget up to `limit` stored responses older than `before`; how many went.

    Small batches keep the write lock short. A request repeated after its response is gone
    still has no second effect (purchases, ledger rows and reversals keep their own unique
    keys); it is only no longer answered word for word.
    """
    cur = conn.execute(
        "DELETE FROM requests WHERE id IN "
        "(SELECT id FROM requests WHERE at < ? ORDER BY at LIMIT ?)",
        (ts(before), limit),
    )
    return cur.rowcount


# --- offers --------------------------------------------------------------------------


def _offer_from_row(row: sqlite3.Row | tuple) -> Offer:
    (oid, name, percent, amount, start, until, weekdays, hours, min_purchase, target, ended,
     club_id, branches) = row  # fmt: skip
    return Offer(
        id=oid,
        name=name,
        percent=percent,
        amount=amount,
        start=date.fromisoformat(start) if start else None,
        until=date.fromisoformat(until),
        weekdays=parse_weekdays(weekdays) if weekdays else frozenset(),
        hours=parse_hours(hours) if hours else None,
        min_purchase=min_purchase,
        target=target,
        ended=ended is not None,
        club_id=club_id,
        branches=frozenset(int(b) for b in branches.split(",") if b),
    )


_OFFER_COLS = (
    "id, name, percent, amount, start, until, weekdays, hours, min_purchase, target, ended_at, "
    "club_id, branches"
)


def offers(
    conn: Connection, *, club_id: int | None, include_ended: bool = False
) -> list[Offer]:
    """The club's offers (each says which of its branches it runs in); `club_id=None`:
    every club's (the backend's cache, split by club)."""
    where, args = [], []
    if club_id is not None:
        where.append("club_id = ?")
        args.append(club_id)
    if not include_ended:
        where.append("ended_at IS NULL")
    clause = f" WHERE {' AND '.join(where)}" if where else ""
    rows = conn.execute(f"SELECT {_OFFER_COLS} FROM offers{clause} ORDER BY id", tuple(args))
    return [_offer_from_row(r) for r in rows]


def add_offer(conn: Connection, offer: Offer, now: datetime) -> int:
    """A new offer of `offer.club_id` (in `offer.branches`, or all of them)."""
    from backend.program import WEEKDAYS

    if offer.club_id is None:
        raise ValueError("offer: no club")
    cur = conn.execute(
        "INSERT INTO offers(name, percent, amount, start, until, weekdays, hours, min_purchase, "
        "target, created_at, club_id, branches) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            offer.name,
            offer.percent,
            offer.amount,
            offer.start.isoformat() if offer.start else None,
            offer.until.isoformat(),
            ",".join(WEEKDAYS[d] for d in sorted(offer.weekdays)),
            f"{offer.hours[0]}-{offer.hours[1]}" if offer.hours else None,
            offer.min_purchase,
            offer.target,
            ts(now),
            offer.club_id,
            ",".join(str(b) for b in sorted(offer.branches)),
        ),
    )
    conn.execute("UPDATE registry_state SET generation = generation + 1")  # caches stale
    return int(cur.lastrowid or 0)


def end_offer(conn: Connection, offer_id: int, now: datetime) -> bool:
    cur = conn.execute(
        "UPDATE offers SET ended_at = ? WHERE id = ? AND ended_at IS NULL", (ts(now), offer_id)
    )
    if cur.rowcount != 1:
        return False
    conn.execute("UPDATE registry_state SET generation = generation + 1")  # caches stale
    return True


# --- quotes ----------------------------------------------------------------------------

HELD, SETTLED, DECLINED, EXPIRED, RELEASED, REVERSED = (
    "held", "settled", "declined", "expired", "released", "reversed",
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class Quote:
    id: str
    member_id: int
    terminal_id: str
    gross: int
    discount: int
    status: str
    created_at: int
    expires_at: int
    advice_key: str | None = None
    branch_id: int | None = None
    #: the club's program version the quote was computed with (0 = the configuration's)
    program_version: int | None = None

    def holds_at(self, now: datetime) -> bool:
        """Still holding its discount at `now` (held and not lapsed)."""
        return self.status == HELD and self.expires_at > ts(now)


_QUOTE_COLS = (
    "id, member_id, terminal_id, gross, discount, status, created_at, expires_at, advice_key, "
    "branch_id, program_version"
)
_QUOTE_COLS_Q = ", ".join("q." + c.strip() for c in _QUOTE_COLS.split(","))
_NQ = len(_QUOTE_COLS.split(","))


def new_quote_id(now: datetime) -> str:
    """Time first, then random: new quotes go to the end of the quotes B-tree instead of
    dirtying a random page of it on every inquiry (and again on its advice)."""
    return f"Q{int(now.timestamp() * 1_000_000):013x}{secrets.token_hex(6)}"


def insert_quote(conn: Connection, q: Quote) -> None:
    conn.execute(
        "INSERT INTO quotes(id, member_id, terminal_id, gross, discount, status, created_at, "
        "expires_at, branch_id, program_version) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (q.id, q.member_id, q.terminal_id, q.gross, q.discount, q.status, q.created_at,
         q.expires_at, q.branch_id, q.program_version),
    )  # fmt: skip


def quote(conn: Connection, quote_id: str) -> Quote | None:
    row = conn.execute(f"SELECT {_QUOTE_COLS} FROM quotes WHERE id = ?", (quote_id,)).fetchone()
    return Quote(*row) if row else None


def quote_and_member(
    conn: Connection, quote_id: str, *, lock: bool = False
) -> tuple[Quote, Member] | None:
    """A quote and its member. With `lock` on PostgreSQL the member row is locked first
    and the quote read after it, as no one else may change it now (members are always
    locked before their quotes change: no lock-order deadlock); the two statements go
    out together (a pipelined transaction waits once for both)."""
    if lock and engine.dialect_of(conn) == engine.POSTGRESQL:
        members = conn.execute(
            f"SELECT {_MEMBER_COLS} FROM members "
            "WHERE id = (SELECT member_id FROM quotes WHERE id = ?)" + engine.row_lock(conn),
            (quote_id,),
        )
        quotes = conn.execute(f"SELECT {_QUOTE_COLS} FROM quotes WHERE id = ?", (quote_id,))
        m, q = members.fetchone(), quotes.fetchone()
        return (Quote(*q), Member(*m)) if m is not None and q is not None else None
    row = conn.execute(
        f"SELECT {_QUOTE_COLS_Q}, {MEMBER_COLS_M} FROM quotes q "
        "JOIN members m ON m.id = q.member_id WHERE q.id = ?",
        (quote_id,),
    ).fetchone()
    return (Quote(*row[:_NQ]), Member(*row[_NQ:])) if row is not None else None


def lapsed_holds(conn: Connection, now: datetime, member_id: int | None = None) -> list[Quote]:
    """Held quotes whose hold time is over: of one member, or of everyone (the sweep)."""
    sql = f"SELECT {_QUOTE_COLS} FROM quotes WHERE status = 'held' AND expires_at <= ?"
    args: tuple = (ts(now),)
    if member_id is not None:
        sql += " AND member_id = ?"
        args += (member_id,)
    return [Quote(*r) for r in conn.execute(sql, args).fetchall()]


def set_quote_status(
    conn: Connection, quote_id: str, status: str, advice_key: str | None = None
) -> None:
    if advice_key is None:
        conn.execute("UPDATE quotes SET status = ? WHERE id = ?", (status, quote_id))
    else:
        conn.execute(
            "UPDATE quotes SET status = ?, advice_key = ? WHERE id = ?",
            (status, advice_key, quote_id),
        )


@dataclass(frozen=True, slots=True)
class Upkeep:
    """Whether a member's lapsed holds or expired lots need upkeep now, and the balance."""

    holds: bool
    lots: bool
    balance: int
    #: the member's open lots (id, remaining) in FIFO order, read with the look when a
    #: redemption will take from them (PostgreSQL's pipeline: no wait of its own for them);
    #: valid while the lots are unchanged (no expiry: `lots` False)
    open_lots: list[tuple[int, int]] | None = None


#: the upkeep look's three columns for the member whose id is {m}, at the time {t}
_UPKEEP_COLS = (
    "EXISTS (SELECT 1 FROM quotes WHERE member_id = {m} AND status = 'held' "
    "AND expires_at <= {t}), EXISTS (SELECT 1 FROM lots WHERE member_id = {m} "
    "AND remaining > 0 AND expires_at <= {t}), "
    "(SELECT COALESCE(SUM(amount), 0) FROM ledger WHERE member_id = {m})"
)
#: the upkeep look as a statement of its own ({m}: the member's id from ?1, ?2 the time)
_UPKEEP = "SELECT " + _UPKEEP_COLS.replace("{t}", "?2")
_UPKEEP_BY_ID = _UPKEEP.format(m="?1")


def _upkeep(row: tuple) -> Upkeep:
    return Upkeep(bool(row[0]), bool(row[1]), int(row[2]))


def upkeep_due(conn: Connection, member_id: int, now: datetime) -> Upkeep:
    """One cheap look, nearly always (False, False): whether a hold has lapsed and a lot
    has expired for the member; the balance with it, read in the same statement (a
    request that needs no upkeep needs no further round trip for it)."""
    return _upkeep(conn.execute(_UPKEEP_BY_ID, (member_id, ts(now))).fetchone())


def _locked_with_upkeep(
    conn: Connection, select: str, member_id_of: str, arg: str, club_id: int, now: datetime
) -> tuple[tuple, Upkeep] | None:
    """The row of `select` (the member's columns first, ?1 = `arg`, ?2 = the club; "{up}"
    where further columns may go, `m` the members table), its member locked, and that
    member's upkeep look read after the lock. On SQLite the look is three more columns of
    the same statement (BEGIN IMMEDIATE has locked everyone out already). In a pipelined
    transaction the look goes out with the lock (`member_id_of`: the member's id from ?1
    and the club ?3), one round trip."""
    if engine.dialect_of(conn) == engine.SQLITE:
        up = ", " + _UPKEEP_COLS.format(m="m.id", t="?3")
        row = conn.execute(select.format(up=up), (arg, club_id, ts(now))).fetchone()
        return (row[:-3], _upkeep(row[-3:])) if row is not None else None
    rows = conn.execute(select.format(up=""), (arg, club_id))
    if engine.pipelined(conn):
        due = conn.execute(_UPKEEP.format(m=f"({member_id_of})"), (arg, ts(now), club_id))
        row = rows.fetchone()
        look = due.fetchone()
        return (row, _upkeep(look)) if row is not None else None
    row = rows.fetchone()
    return (row, upkeep_due(conn, row[0], now)) if row is not None else None


def locked_member_by_phone(
    conn: Connection, phone: str, now: datetime, *, club_id: int
) -> tuple[Member, Upkeep] | None:
    """The club's member of `phone`, locked for this transaction, and its upkeep look (the
    same phone in another club is another member)."""
    found = _locked_with_upkeep(
        conn,
        f"SELECT {MEMBER_COLS_M}{{up}} FROM members m WHERE m.club_id = ?2 AND m.phone = ?1"
        + engine.row_lock(conn, of="m"),
        "SELECT id FROM members WHERE club_id = ?3 AND phone = ?1",
        phone,
        club_id,
        now,
    )
    return (Member(*found[0]), found[1]) if found else None


def locked_member_by_card(
    conn: Connection, card: str, now: datetime, *, club_id: int
) -> tuple[Member, Upkeep] | None:
    """The member of an active `card` if a member of this club, locked for this
    transaction, and its upkeep look (another club's card names no member here)."""
    found = _locked_with_upkeep(
        conn,
        f"SELECT {MEMBER_COLS_M}{{up}} FROM cards c JOIN members m ON m.id = c.member_id "
        "WHERE c.number = ?1 AND c.active = 1 AND m.club_id = ?2" + engine.row_lock(conn, of="m"),
        "SELECT c.member_id FROM cards c JOIN members m ON m.id = c.member_id "
        "WHERE c.number = ?1 AND c.active = 1 AND m.club_id = ?3",
        card,
        club_id,
        now,
    )
    return (Member(*found[0]), found[1]) if found else None


def locked_quote_and_member(
    conn: Connection, quote_id: str, now: datetime
) -> tuple[Quote, Member, Upkeep] | None:
    """A quote and its member, the member locked first and the quote read after the lock
    (members are always locked before their quotes change: no lock-order deadlock), and
    the member's upkeep look; one round trip in a pipelined transaction."""
    if engine.dialect_of(conn) == engine.SQLITE:  # one statement, the look's columns too
        row = conn.execute(
            f"SELECT {_QUOTE_COLS_Q}, {MEMBER_COLS_M}, {_UPKEEP_COLS.format(m='m.id', t='?2')} "
            "FROM quotes q JOIN members m ON m.id = q.member_id WHERE q.id = ?1",
            (quote_id, ts(now)),
        ).fetchone()
        if row is None:
            return None
        return Quote(*row[:_NQ]), Member(*row[_NQ:-3]), _upkeep(row[-3:])
    if not engine.pipelined(conn):
        found = quote_and_member(conn, quote_id, lock=True)
        if found is None:
            return None
        return found[0], found[1], upkeep_due(conn, found[1].id, now)
    of_quote = "SELECT member_id FROM quotes WHERE id = ?1"
    members = conn.execute(
        f"SELECT {_MEMBER_COLS} FROM members WHERE id = ({of_quote})" + engine.row_lock(conn),
        (quote_id,),
    )
    quotes = conn.execute(f"SELECT {_QUOTE_COLS} FROM quotes WHERE id = ?", (quote_id,))
    due = conn.execute(_UPKEEP.format(m=f"({of_quote})"), (quote_id, ts(now)))
    # the lots a settled redemption takes from, read after the lock with the rest
    lots = conn.execute(
        f"SELECT id, remaining FROM lots WHERE member_id = ({of_quote}) AND remaining > 0 "
        "AND EXISTS (SELECT 1 FROM quotes WHERE id = ?1 AND discount > 0) "
        "ORDER BY expires_at, id",
        (quote_id,),
    )
    m, q, look, open_lots = members.fetchone(), quotes.fetchone(), due.fetchone(), lots.fetchall()
    if m is None or q is None:
        return None
    quote = Quote(*q)
    upkeep = _upkeep(look)
    if quote.discount > 0:
        upkeep = Upkeep(upkeep.holds, upkeep.lots, upkeep.balance,
                        [(int(a), int(b)) for a, b in open_lots])
    return quote, Member(*m), upkeep


# --- purchases and reversals ------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PurchaseRecord:
    key: str
    member_id: int
    terminal_id: str
    quote_id: str | None
    amount: int
    gross: int
    approved: bool
    redeemed: int
    earned: int
    recovered: int
    earn_lot: int | None
    occurred_at: int
    reversed: bool = False
    branch_id: int | None = None
    program_version: int | None = None


_PURCHASE_COLS = (
    "key, member_id, terminal_id, quote_id, amount, gross, approved, redeemed, earned, "
    "recovered, earn_lot, occurred_at, reversed, branch_id, program_version"
)


def _purchase(row: tuple) -> PurchaseRecord:
    r = list(row)
    r[6], r[12] = bool(r[6]), bool(r[12])
    return PurchaseRecord(*r)


def purchase(conn: Connection, key: str) -> PurchaseRecord | None:
    row = conn.execute(f"SELECT {_PURCHASE_COLS} FROM purchases WHERE key = ?", (key,)).fetchone()
    return _purchase(row) if row else None


def advice_state(conn: Connection, key: str) -> tuple[PurchaseRecord | None, bool]:
    """One statement: the purchase already recorded under `key`, and whether its reversal
    came first and waits for it."""
    return advice_state_later(conn, key)()


#: advice_state_later's statement, built once (not per advice)
_ADVICE_STATE_SQL = (
    "SELECT (SELECT 1 FROM reversals WHERE original_key = ?1 AND applied = 0), "
    + ", ".join("p." + c.strip() for c in _PURCHASE_COLS.split(","))
    + " FROM (SELECT 1) AS one LEFT JOIN purchases p ON p.key = ?1"
)


def advice_state_later(
    conn: Connection, key: str
) -> Callable[[], tuple[PurchaseRecord | None, bool]]:
    """`advice_state`, read when the result is called for (sent ahead for a group)."""
    cur = conn.execute(
        _ADVICE_STATE_SQL,
        (key,),
    )

    def read() -> tuple[PurchaseRecord | None, bool]:
        row = cur.fetchone()
        done = _purchase(row[1:]) if row[1] is not None else None
        return done, row[0] is not None

    return read


#: answer_and_advice_state's statement: the stored answer's columns, then advice_state's
_ANSWER_AND_ADVICE_STATE_SQL = (
    "SELECT r.type, r.code, r.message, r.body, "
    + _ADVICE_STATE_SQL.removeprefix("SELECT ").replace(
        " FROM (SELECT 1) AS one LEFT JOIN purchases p ON p.key = ?1",
        " FROM (SELECT 1) AS one LEFT JOIN requests r ON r.key = ?1 "
        "LEFT JOIN purchases p ON p.key = ?1")
)


def answer_and_advice_state(
    conn: Connection, key: str
) -> tuple[StoredResponse | None, tuple[PurchaseRecord | None, bool]]:
    """`stored_response` and `advice_state` in one statement, for an advice read at its
    own turn under its key lock (nothing sent ahead for it)."""
    row = conn.execute(_ANSWER_AND_ADVICE_STATE_SQL, (key,)).fetchone()
    stored = (StoredResponse(row[0], row[1], row[2], json.loads(row[3]))
              if row[0] is not None else None)
    done = _purchase(row[5:]) if row[5] is not None else None
    return stored, (done, row[4] is not None)


def insert_purchase(
    conn: Connection, p: PurchaseRecord, before: store_member_stats.MemberTotals | None = None
) -> store_daily.Settled | None:
    """Insert `p` and keep the aggregates; a settled one returns the member's settled
    purchases as read for them (the tier is computed from the same read). `before`: the
    member's running totals before `p` when the caller read them with the locked member
    (`Member.totals`: no second read of the row)."""
    conn.execute(
        f"INSERT INTO purchases({_PURCHASE_COLS}) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (p.key, p.member_id, p.terminal_id, p.quote_id, p.amount, p.gross, int(p.approved),
         p.redeemed, p.earned, p.recovered, p.earn_lot, p.occurred_at, int(p.reversed),
         p.branch_id, p.program_version),
    )  # fmt: skip
    settled = store_daily.purchase_recorded(conn, p, before)
    store_member_stats.purchase_recorded(conn, p)
    return settled


def mark_reversed(conn: Connection, key: str) -> None:
    before = purchase(conn, key)
    cur = conn.execute("UPDATE purchases SET reversed = 1 WHERE key = ? AND reversed = 0", (key,))
    if before is not None and cur.rowcount == 1:
        store_daily.purchase_reversed(conn, before)
        store_member_stats.purchase_reversed(conn, before)


def visits(conn: Connection, member_id: int) -> int:
    """Approved purchases not reversed."""
    row = conn.execute(
        "SELECT COUNT(*) FROM purchases WHERE member_id = ? AND approved = 1 AND reversed = 0",
        (member_id,),
    ).fetchone()
    return int(row[0])


def spend(conn: Connection, member_id: int, since: datetime, until: datetime) -> int:
    """Rials charged in (since, until], approved and not reversed (the tier's measure)."""
    row = conn.execute(
        "SELECT COALESCE(SUM(amount), 0) FROM purchases WHERE member_id = ? AND approved = 1 "
        "AND reversed = 0 AND occurred_at > ? AND occurred_at <= ?",
        (member_id, ts(since), ts(until)),
    ).fetchone()
    return int(row[0])


def purchase_totals(conn: Connection, member_id: int) -> tuple[int, int]:
    """(purchases, rials) of a member, approved and not reversed."""
    n, total = conn.execute(
        "SELECT COUNT(*), COALESCE(SUM(amount), 0) FROM purchases WHERE member_id = ? "
        "AND approved = 1 AND reversed = 0",
        (member_id,),
    ).fetchone()
    return int(n), int(total)


@dataclass(frozen=True, slots=True)
class ReversalRecord:
    original_key: str
    key: str
    terminal_id: str
    member_id: int | None
    received_at: int
    applied: bool = False
    restored: int = 0
    taken_back: int = 0
    shortfall: int = 0


def reversal(conn: Connection, original_key: str) -> ReversalRecord | None:
    row = conn.execute(
        "SELECT original_key, key, terminal_id, member_id, received_at, applied, restored, "
        "taken_back, shortfall FROM reversals WHERE original_key = ?",
        (original_key,),
    ).fetchone()
    if row is None:
        return None
    r = list(row)
    r[5] = bool(r[5])
    return ReversalRecord(*r)


def insert_reversal(conn: Connection, r: ReversalRecord) -> None:
    conn.execute(
        "INSERT INTO reversals(original_key, key, terminal_id, member_id, received_at) "
        "VALUES (?, ?, ?, ?, ?)",
        (r.original_key, r.key, r.terminal_id, r.member_id, r.received_at),
    )


def reversal_applied(
    conn: Connection, original_key: str, *, member_id: int, restored: int, taken: int,
    shortfall: int,
) -> None:  # fmt: skip
    conn.execute(
        "UPDATE reversals SET applied = 1, restored = ?, taken_back = ?, shortfall = ?, "
        "member_id = ? WHERE original_key = ?",
        (restored, taken, shortfall, member_id, original_key),
    )


# --- one-time codes ---------------------------------------------------------------------


#: What a one-time code is for: the till's redemption, a fresh member link, a transfer.
OTP_TILL, OTP_LINK, OTP_TRANSFER = "till", "link", "transfer"


@dataclass(frozen=True, slots=True)
class Otp:
    id: int
    salt: str
    hash: str
    expires_at: int
    tries_left: int


def new_otp(
    conn: Connection, member_id: int, *, salt: str, digest: str, now: datetime, seconds: int,
    tries: int, purpose: str = OTP_TILL,
) -> int:  # fmt: skip
    """A new code for the member and purpose (every earlier one of that purpose void)."""
    conn.execute(
        "UPDATE otps SET used = 1 WHERE member_id = ? AND purpose = ? AND used = 0",
        (member_id, purpose),
    )
    cur = conn.execute(
        "INSERT INTO otps(member_id, salt, hash, created_at, expires_at, tries_left, purpose) "
        "VALUES (?, ?, ?, ?, ?, ?, ?)",
        (member_id, salt, digest, ts(now), ts(now) + seconds, tries, purpose),
    )
    return int(cur.lastrowid or 0)


def open_otp(conn: Connection, member_id: int, purpose: str = OTP_TILL) -> Otp | None:
    row = conn.execute(
        "SELECT id, salt, hash, expires_at, tries_left FROM otps WHERE member_id = ? "
        "AND purpose = ? AND used = 0 ORDER BY id DESC LIMIT 1",
        (member_id, purpose),
    ).fetchone()
    return Otp(*row) if row else None


def set_otp(conn: Connection, otp_id: int, *, tries_left: int, used: bool) -> None:
    conn.execute(
        "UPDATE otps SET tries_left = ?, used = ? WHERE id = ?", (tries_left, int(used), otp_id)
    )
