"""The versioned schema and its forward migrations: a small numbered-steps runner.

Why not Alembic: it needs SQLAlchemy (which the backend does not use, see engine.py), and
ten-odd tables moved forward one numbered step at a time need no autogeneration. Each step
is frozen once released: a database made by that version must still migrate. Steps are
written in SQLite's DDL and translated by `engine.ddl`; each runs in its own transaction
(DDL is transactional on both engines), under `engine.exclusive` so that two processes
starting on one new database do not both create it.

`schema_version` holds one row, the version; `schema_migrations` (from version 4) records
when each step was applied.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from backend import (
    engine,
    store_automsg,
    store_campaigns,
    store_daily,
    store_draws,
    store_giftcards,
    store_marketing,
    store_member_stats,
    store_member_tokens,
    store_rollups,
    store_segments,
    store_surveys,
    store_tiers,
    store_transfers,
)
from backend.engine import Connection

#: The oldest version a migration starts from: version 2 came before the first release.
OLDEST = 2
#: The club of a database made or migrated without a configuration (`[shop] name`'s default).
DEFAULT_CLUB = "فروشگاه"

_V2 = """
CREATE TABLE IF NOT EXISTS members (
    id INTEGER PRIMARY KEY,
    phone TEXT NOT NULL UNIQUE,
    code TEXT NOT NULL UNIQUE,
    referrer_id INTEGER REFERENCES members(id),
    birthday TEXT,
    enrolled_at INTEGER NOT NULL,
    tier TEXT NOT NULL,
    debt INTEGER NOT NULL DEFAULT 0 CHECK (debt >= 0)
);
CREATE TABLE IF NOT EXISTS cards (
    number TEXT PRIMARY KEY,
    member_id INTEGER NOT NULL REFERENCES members(id),
    active INTEGER NOT NULL DEFAULT 1,
    linked_at INTEGER NOT NULL,
    replaced_by TEXT
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS lots (
    id INTEGER PRIMARY KEY,
    member_id INTEGER NOT NULL REFERENCES members(id),
    earned_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    amount INTEGER NOT NULL CHECK (amount > 0),
    remaining INTEGER NOT NULL CHECK (remaining >= 0 AND remaining <= amount)
);
CREATE INDEX IF NOT EXISTS lots_open ON lots(member_id, expires_at) WHERE remaining > 0;
CREATE INDEX IF NOT EXISTS lots_expiring ON lots(expires_at) WHERE remaining > 0;
CREATE TABLE IF NOT EXISTS ledger (
    id INTEGER PRIMARY KEY,
    member_id INTEGER NOT NULL REFERENCES members(id),
    kind TEXT NOT NULL,
    amount INTEGER NOT NULL,
    key TEXT NOT NULL UNIQUE,
    at INTEGER NOT NULL,
    ref TEXT
);
CREATE INDEX IF NOT EXISTS ledger_member ON ledger(member_id, amount);
CREATE INDEX IF NOT EXISTS ledger_at ON ledger(at);
CREATE TABLE IF NOT EXISTS lot_uses (
    ledger_id INTEGER NOT NULL REFERENCES ledger(id),
    lot_id INTEGER NOT NULL REFERENCES lots(id),
    amount INTEGER NOT NULL CHECK (amount > 0),
    PRIMARY KEY (ledger_id, lot_id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS quotes (
    id TEXT PRIMARY KEY,
    member_id INTEGER NOT NULL REFERENCES members(id),
    terminal_id TEXT NOT NULL,
    gross INTEGER NOT NULL,
    discount INTEGER NOT NULL,
    status TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    advice_key TEXT
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS quotes_held ON quotes(expires_at) WHERE status = 'held';
CREATE INDEX IF NOT EXISTS quotes_member_held ON quotes(member_id) WHERE status = 'held';
CREATE TABLE IF NOT EXISTS purchases (
    key TEXT PRIMARY KEY,
    member_id INTEGER NOT NULL REFERENCES members(id),
    terminal_id TEXT NOT NULL,
    quote_id TEXT,
    amount INTEGER NOT NULL,
    gross INTEGER NOT NULL,
    approved INTEGER NOT NULL,
    redeemed INTEGER NOT NULL DEFAULT 0,
    earned INTEGER NOT NULL DEFAULT 0,
    recovered INTEGER NOT NULL DEFAULT 0,
    earn_lot INTEGER REFERENCES lots(id),
    occurred_at INTEGER NOT NULL,
    reversed INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS purchases_member ON purchases(member_id, occurred_at);
CREATE INDEX IF NOT EXISTS purchases_at ON purchases(occurred_at);
CREATE TABLE IF NOT EXISTS reversals (
    original_key TEXT PRIMARY KEY,
    key TEXT NOT NULL,
    terminal_id TEXT NOT NULL,
    member_id INTEGER REFERENCES members(id),
    received_at INTEGER NOT NULL,
    applied INTEGER NOT NULL DEFAULT 0,
    restored INTEGER NOT NULL DEFAULT 0,
    taken_back INTEGER NOT NULL DEFAULT 0,
    shortfall INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS requests (
    id INTEGER PRIMARY KEY,
    key TEXT NOT NULL UNIQUE,
    type TEXT NOT NULL,
    code TEXT NOT NULL,
    message TEXT NOT NULL,
    body TEXT NOT NULL,
    at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS requests_at ON requests(at);
CREATE TABLE IF NOT EXISTS otps (
    id INTEGER PRIMARY KEY,
    member_id INTEGER NOT NULL REFERENCES members(id),
    salt TEXT NOT NULL,
    hash TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    tries_left INTEGER NOT NULL,
    used INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS otps_member ON otps(member_id, id);
CREATE TABLE IF NOT EXISTS offers (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    percent REAL NOT NULL DEFAULT 0,
    amount INTEGER NOT NULL DEFAULT 0,
    start TEXT,
    until TEXT NOT NULL,
    weekdays TEXT NOT NULL DEFAULT '',
    hours TEXT,
    min_purchase INTEGER NOT NULL DEFAULT 0,
    target TEXT NOT NULL DEFAULT 'everyone',
    created_at INTEGER NOT NULL,
    ended_at INTEGER
);
CREATE TABLE IF NOT EXISTS sms_outbox (
    id INTEGER PRIMARY KEY,
    key TEXT NOT NULL UNIQUE,
    phone TEXT NOT NULL,
    text TEXT NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('welcome', 'purchase', 'otp', 'other')),
    status TEXT NOT NULL DEFAULT 'pending'
        CHECK (status IN ('pending', 'sending', 'sent', 'failed')),
    attempts INTEGER NOT NULL DEFAULT 0,
    created_at REAL NOT NULL,
    next_attempt_at REAL NOT NULL,
    claimed_by TEXT,
    claimed_until REAL,
    finished_at REAL,
    last_error TEXT
);
CREATE INDEX IF NOT EXISTS sms_outbox_due ON sms_outbox (status, next_attempt_at);
"""


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    statements: tuple[str, ...]
    #: data steps that SQL cannot say: run after the statements
    steps: tuple[Callable[[Connection, Setup], None], ...] = field(default=())


@dataclass(frozen=True)
class Setup:
    """What a data step may need besides the connection: the time, and the name of the
    club a single-shop database becomes (the configuration's `[shop] name`)."""

    now: datetime
    shop_name: str = DEFAULT_CLUB


def _split(script: str) -> tuple[str, ...]:
    return tuple(s.strip() for s in script.split(";") if s.strip())


_OUTBOX_V3 = """
CREATE TABLE sms_outbox (
    id INTEGER PRIMARY KEY,
    key TEXT NOT NULL UNIQUE,
    phone TEXT NOT NULL,
    text TEXT NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('welcome', 'purchase', 'reversal', 'otp', 'other')),
    status TEXT NOT NULL DEFAULT 'pending'
        CHECK (status IN ('pending', 'sending', 'sent', 'failed')),
    attempts INTEGER NOT NULL DEFAULT 0,
    created_at REAL NOT NULL,
    next_attempt_at REAL NOT NULL,
    claimed_by TEXT,
    claimed_until REAL,
    finished_at REAL,
    last_error TEXT
);
CREATE INDEX sms_outbox_due ON sms_outbox (status, next_attempt_at)
"""


def _outbox_reversal_kind(conn: Connection, setup: Setup) -> None:
    """Version 3. SQLite cannot alter a CHECK: the table is rebuilt, rows and ids kept;
    PostgreSQL replaces the constraint in place."""
    if engine.dialect_of(conn) == engine.POSTGRESQL:
        conn.execute(
            "ALTER TABLE sms_outbox DROP CONSTRAINT sms_outbox_kind_check, "
            "ADD CONSTRAINT sms_outbox_kind_check "
            "CHECK (kind IN ('welcome', 'purchase', 'reversal', 'otp', 'other'))"
        )
        return
    conn.execute("ALTER TABLE sms_outbox RENAME TO sms_outbox_old")
    conn.execute("DROP INDEX IF EXISTS sms_outbox_due")
    for statement in _split(_OUTBOX_V3):
        conn.execute(statement)
    conn.execute("INSERT INTO sms_outbox SELECT * FROM sms_outbox_old")
    conn.execute("DROP TABLE sms_outbox_old")


_REGISTRY_V5 = """
CREATE TABLE clubs (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    created_at INTEGER NOT NULL,
    sms TEXT
);
CREATE TABLE branches (
    id INTEGER PRIMARY KEY,
    club_id INTEGER NOT NULL REFERENCES clubs(id),
    name TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    UNIQUE (club_id, name)
);
CREATE TABLE terminals (
    id TEXT PRIMARY KEY,
    merchant_id TEXT NOT NULL,
    branch_id INTEGER NOT NULL REFERENCES branches(id),
    enabled INTEGER NOT NULL DEFAULT 1,
    added_at INTEGER NOT NULL,
    broker_user TEXT
) WITHOUT ROWID;
CREATE INDEX terminals_branch ON terminals(branch_id);
CREATE TABLE unknown_terminals (
    terminal_id TEXT NOT NULL,
    merchant_id TEXT NOT NULL,
    first_seen INTEGER NOT NULL,
    last_seen INTEGER NOT NULL,
    count INTEGER NOT NULL,
    PRIMARY KEY (terminal_id, merchant_id)
) WITHOUT ROWID;
CREATE TABLE registry_state (generation INTEGER NOT NULL)
"""

#: SQLite cannot drop the inline UNIQUE (phone): members is rebuilt (ids kept), with the
#: club last so that both engines have the columns in one order.
_MEMBERS_V5 = """
CREATE TABLE members_v5 (
    id INTEGER PRIMARY KEY,
    phone TEXT NOT NULL,
    code TEXT NOT NULL UNIQUE,
    referrer_id INTEGER REFERENCES members(id),
    birthday TEXT,
    enrolled_at INTEGER NOT NULL,
    tier TEXT NOT NULL,
    debt INTEGER NOT NULL DEFAULT 0 CHECK (debt >= 0),
    club_id INTEGER NOT NULL REFERENCES clubs(id),
    UNIQUE (club_id, phone)
)
"""


def _seen_terminals(conn: Connection) -> list[str]:
    """Every terminal id the database has met: in purchases, quotes, reversals and the
    stored responses' keys (a key starts with its terminal's id)."""
    from protocols.mqtt import SchemaError as TopicError
    from protocols.mqtt import check_terminal_id

    rows = conn.execute(
        "SELECT terminal_id FROM purchases UNION SELECT terminal_id FROM quotes "
        "UNION SELECT terminal_id FROM reversals UNION SELECT substr(key, 1, 8) FROM requests"
    ).fetchall()
    seen = []
    for (tid,) in rows:
        try:
            seen.append(check_terminal_id(tid))
        except TopicError:
            continue  # not a terminal id (never answered): nothing to register
    return sorted(set(seen))


def _registry(conn: Connection, setup: Setup) -> None:
    """Version 5. The database's shop becomes one club with one branch `main`; every
    terminal it has seen is registered there (merchant id '' = not checked, as none was
    stored), and every member, offer, quote and purchase belongs to them."""
    dialect = engine.dialect_of(conn)
    at = int(setup.now.timestamp())
    club = int(
        conn.execute(
            "INSERT INTO clubs(name, created_at) VALUES (?, ?)", (setup.shop_name, at)
        ).lastrowid
        or 0
    )
    branch = int(
        conn.execute(
            "INSERT INTO branches(club_id, name, created_at) VALUES (?, 'main', ?)", (club, at)
        ).lastrowid
        or 0
    )
    conn.executemany(
        "INSERT INTO terminals(id, merchant_id, branch_id, added_at) VALUES (?, '', ?, ?)",
        [(tid, branch, at) for tid in _seen_terminals(conn)],
    )
    conn.execute("INSERT INTO registry_state(generation) VALUES (1)")
    if dialect == engine.POSTGRESQL:
        conn.execute("ALTER TABLE members ADD COLUMN club_id BIGINT REFERENCES clubs(id)")
        conn.execute("UPDATE members SET club_id = ?", (club,))
        conn.execute(
            "ALTER TABLE members ALTER COLUMN club_id SET NOT NULL, "
            "DROP CONSTRAINT members_phone_key, "
            "ADD CONSTRAINT members_club_phone_key UNIQUE (club_id, phone)"
        )
    else:
        conn.execute(_MEMBERS_V5)
        conn.execute(
            "INSERT INTO members_v5 SELECT id, phone, code, referrer_id, birthday, "
            "enrolled_at, tier, debt, ? FROM members",
            (club,),
        )
        conn.execute("DROP TABLE members")
        conn.execute("ALTER TABLE members_v5 RENAME TO members")
    for statement in (
        "ALTER TABLE offers ADD COLUMN club_id INTEGER NOT NULL DEFAULT 0",
        "ALTER TABLE offers ADD COLUMN branches TEXT NOT NULL DEFAULT ''",
        "CREATE INDEX offers_club ON offers(club_id)",
        "ALTER TABLE quotes ADD COLUMN branch_id INTEGER",
        "ALTER TABLE quotes ADD COLUMN program_version INTEGER",
        "ALTER TABLE purchases ADD COLUMN branch_id INTEGER",
        "ALTER TABLE purchases ADD COLUMN program_version INTEGER",
        "ALTER TABLE sms_outbox ADD COLUMN club_id INTEGER",
    ):
        conn.execute(engine.ddl(dialect, statement))
    conn.execute("UPDATE offers SET club_id = ?", (club,))
    conn.execute("UPDATE quotes SET branch_id = ?, program_version = 0", (branch,))
    conn.execute("UPDATE purchases SET branch_id = ?, program_version = 0", (branch,))
    conn.execute("UPDATE sms_outbox SET club_id = ?", (club,))
    if dialect == engine.SQLITE:
        broken = conn.execute("PRAGMA foreign_key_check").fetchall()
        if broken:
            raise SchemaError(f"version 5: foreign keys broken by the rebuild: {broken[:5]}")


_PROGRAMS_V6 = """
CREATE TABLE programs (
    club_id INTEGER NOT NULL REFERENCES clubs(id),
    version INTEGER NOT NULL,
    body TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    author TEXT NOT NULL,
    PRIMARY KEY (club_id, version)
) WITHOUT ROWID
"""


#: Version 7 (panel-accounts, issue 14). A provider has no club, an owner or staff member
#: exactly one. The audit log keeps the club as its id and the user as a name (not a key:
#: a row outlives the user it names). `offer_uses` is written with the purchase, so an
#: offer's effect is what it gave, not a re-computation with today's rules.
_PANEL_V7 = """
CREATE TABLE panel_users (
    name TEXT PRIMARY KEY,
    role TEXT NOT NULL CHECK (role IN ('owner', 'staff', 'provider')),
    club_id INTEGER REFERENCES clubs(id),
    password_hash TEXT NOT NULL,
    disabled INTEGER NOT NULL DEFAULT 0,
    created_at INTEGER NOT NULL,
    changed_at INTEGER NOT NULL,
    last_login INTEGER,
    last_address TEXT,
    CHECK ((role = 'provider' AND club_id IS NULL) OR (role <> 'provider' AND club_id IS NOT NULL))
) WITHOUT ROWID;
CREATE TABLE audit_log (
    id INTEGER PRIMARY KEY,
    at INTEGER NOT NULL,
    user_name TEXT NOT NULL,
    club_id INTEGER REFERENCES clubs(id),
    action TEXT NOT NULL,
    target TEXT NOT NULL,
    before_json TEXT,
    after_json TEXT
);
CREATE INDEX audit_log_club ON audit_log(club_id, id);
ALTER TABLE members ADD COLUMN name TEXT;
ALTER TABLE members ADD COLUMN marketing_consent INTEGER NOT NULL DEFAULT 0;
ALTER TABLE members ADD COLUMN consent_changed_at INTEGER;
CREATE INDEX members_club_enrolled ON members(club_id, enrolled_at);
CREATE TABLE offer_uses (
    offer_id INTEGER NOT NULL REFERENCES offers(id),
    purchase_key TEXT NOT NULL REFERENCES purchases(key),
    extra INTEGER NOT NULL CHECK (extra >= 0),
    PRIMARY KEY (offer_id, purchase_key)
) WITHOUT ROWID;
CREATE INDEX offer_uses_purchase ON offer_uses(purchase_key)
"""


def _fill_daily(conn: Connection, setup: Setup) -> None:
    """Version 8: the pre-aggregates of every row already there."""
    store_daily.rebuild(conn, store_daily.TABLES)


def _fill_rollups(conn: Connection, setup: Setup) -> None:
    """Version 22: the roll-ups (per week, per month's weekday and hour, per tier) of
    every row already there, from the raw rows."""
    store_daily.rebuild(conn, store_rollups.TABLES)


_OUTBOX_KINDS_V9 = (
    "welcome", "purchase", "reversal", "otp", "other", "transfer", "campaign", "occasion",
    "winback", "birthday", "anniversary", "expiring", "tier_up", "survey", "draw", "link",
    "giftcard",
)
_OUTBOX_V9 = f"""
CREATE TABLE sms_outbox (
    id INTEGER PRIMARY KEY,
    key TEXT NOT NULL UNIQUE,
    phone TEXT NOT NULL,
    text TEXT NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN {_OUTBOX_KINDS_V9!r}),
    status TEXT NOT NULL DEFAULT 'pending'
        CHECK (status IN ('pending', 'sending', 'sent', 'failed')),
    attempts INTEGER NOT NULL DEFAULT 0,
    created_at REAL NOT NULL,
    next_attempt_at REAL NOT NULL,
    claimed_by TEXT,
    claimed_until REAL,
    finished_at REAL,
    last_error TEXT,
    club_id INTEGER,
    member_id INTEGER
);
CREATE INDEX sms_outbox_due ON sms_outbox (status, next_attempt_at)
"""
_OUTBOX_V8_COLUMNS = (
    "id, key, phone, text, kind, status, attempts, created_at, next_attempt_at, claimed_by, "
    "claimed_until, finished_at, last_error, club_id"
)


def _outbox_marketing(conn: Connection, setup: Setup) -> None:
    """Version 9: the outbox takes the marketing kinds and names the member an SMS is for.
    SQLite cannot alter a CHECK: the table is rebuilt, rows and ids kept."""
    if engine.dialect_of(conn) == engine.POSTGRESQL:
        conn.execute(
            "ALTER TABLE sms_outbox DROP CONSTRAINT sms_outbox_kind_check, "
            "ADD CONSTRAINT sms_outbox_kind_check "
            f"CHECK (kind IN {_OUTBOX_KINDS_V9!r}), ADD COLUMN member_id INTEGER"
        )
    else:
        conn.execute("ALTER TABLE sms_outbox RENAME TO sms_outbox_old")
        conn.execute("DROP INDEX IF EXISTS sms_outbox_due")
        for statement in _split(_OUTBOX_V9):
            conn.execute(statement)
        conn.execute(
            f"INSERT INTO sms_outbox ({_OUTBOX_V8_COLUMNS}) "
            f"SELECT {_OUTBOX_V8_COLUMNS} FROM sms_outbox_old"
        )
        conn.execute("DROP TABLE sms_outbox_old")
    conn.execute("CREATE INDEX sms_outbox_member ON sms_outbox (member_id, created_at)")


_OTP_PURPOSE_V15 = """
ALTER TABLE otps ADD COLUMN purpose TEXT NOT NULL DEFAULT 'till';
CREATE INDEX IF NOT EXISTS otps_member_purpose ON otps(member_id, purpose, id);
ALTER TABLE clubs ADD COLUMN public_url TEXT;
"""

MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        2,
        "baseline: members, cards, lots, ledger, quotes, purchases, reversals, "
        "stored responses, one-time codes, offers, SMS outbox",
        _split(_V2),
    ),
    Migration(
        3,
        'the SMS outbox takes the kind "reversal"',
        (),
        steps=(_outbox_reversal_kind,),
    ),
    Migration(
        4,
        "schema_migrations: when each version was applied",
        (
            "CREATE TABLE schema_migrations (version INTEGER NOT NULL PRIMARY KEY, "
            "name TEXT NOT NULL, applied_at INTEGER NOT NULL)",
        ),
    ),
    Migration(
        5,
        "clubs, branches, terminals (and those seen unregistered); members, offers, "
        "quotes and purchases per club and branch",
        _split(_REGISTRY_V5),
        steps=(_registry,),
    ),
    Migration(
        6,
        "programs per club, with versions; a club with none uses the configuration's",
        _split(_PROGRAMS_V6),
    ),
    Migration(
        7,
        "panel users and the audit log; members' names and marketing consent; offer uses",
        _split(_PANEL_V7),
    ),
    Migration(
        8,
        "per-day pre-aggregates for the panel's dashboard (per club, branch, Tehran day), "
        "filled from the raw rows",
        store_daily.SCHEMA,
        steps=(_fill_daily,),
    ),
    Migration(
        9,
        "the SMS outbox takes the marketing kinds (campaigns, occasions, ...) and the member "
        "an SMS is for",
        (),
        steps=(_outbox_marketing,),
    ),
    Migration(
        10,
        "per-member totals of settled purchases (visits, spend, first and last visit) on "
        "members, indexed per club for the members list, filled from the raw rows",
        store_member_stats.SCHEMA,
        steps=(lambda conn, setup: store_member_stats.fill(conn),),
    ),
    Migration(
        11,
        "members' LRFM scores and segments, and the per-day counts per segment",
        store_segments.SCHEMA,
    ),
    Migration(
        12,
        "per-club marketing delivery settings (quiet hours, daily limit) and automatic "
        "messages (birthday, occasions, win-back, ...) with their daily runs",
        store_marketing.SCHEMA + store_automsg.SCHEMA,
    ),
    Migration(
        13,
        "gift cards: batches, cards, their movements and holds, a secret key per club",
        store_giftcards.SCHEMA,
    ),
    Migration(
        14,
        "SMS campaigns: the campaign (text, filter, schedule, hold-out share and seed) and "
        "the members held out of each",
        store_campaigns.SCHEMA,
    ),
    Migration(
        15,
        "one-time codes name their purpose (the till's, a fresh member link, a credit "
        "transfer), so a code asked for one never voids or opens another; a club's public "
        "address for the links to its members' pages",
        _split(_OTP_PURPOSE_V15),
    ),
    Migration(
        16,
        "prize draws: the definition with its published commitment, the frozen entries "
        "with their tickets, the winners",
        store_draws.SCHEMA,
    ),
    Migration(
        17,
        "the member page's link tokens (hashed), bound to a member and club, expiring, "
        "revocable",
        store_member_tokens.SCHEMA,
    ),
    Migration(
        18,
        "credit transfers between members: asked for with a one-time code, then made as "
        "two ledger rows (transfer_out, transfer_in) under one key",
        store_transfers.SCHEMA,
    ),
    Migration(
        19,
        "after-purchase surveys: one row per purchase asked (its token hashed, the rating "
        "and comment once answered) and each club's sampling secret",
        store_surveys.SCHEMA,
    ),
    Migration(
        20,
        "each club's price of one SMS part, for the campaign estimate",
        store_marketing.SMS_PRICE_SCHEMA,
    ),
    Migration(
        21,
        "members' tier history: one row per tier change (from, to, when, the cause, up "
        "or down and the next threshold), for the tier-up message and the member's page",
        store_tiers.SCHEMA,
    ),
    Migration(
        22,
        "roll-ups of the dashboard's per-day pre-aggregates (per week, per month's weekday "
        "and hour, the buyers per tenth of a month) and the members of each tier as a "
        "count, filled from the raw rows",
        store_rollups.SCHEMA,
        steps=(_fill_rollups,),
    ),
    Migration(
        23,
        "the members list walks each order's index from a row's (value, id) and counts a "
        "filter off one index: (club_id, enrolled_at, id) replaces (club_id, enrolled_at); "
        "(club_id, tier, last_visit, spend, enrolled_at) for the filters",
        store_member_stats.LIST_SCHEMA,
    ),
)
LATEST = MIGRATIONS[-1].version
_VERSION_TABLE = "CREATE TABLE schema_version (version INTEGER NOT NULL)"


class SchemaError(Exception):
    """The database's schema is not this backend's; the message says what to do."""


def current_version(conn: Connection) -> int | None:
    """The database's schema version; None for a database with no schema yet."""
    if "schema_version" not in engine.table_names(conn):
        return None
    row = conn.execute("SELECT version FROM schema_version").fetchone()
    return int(row[0]) if row else None


def check(conn: Connection, where: object) -> None:
    """Refuse a database whose schema is older or newer than this backend's."""
    version = current_version(conn)
    if version == LATEST:
        return
    if version is None:
        raise SchemaError(f"{where}: the database has no schema; run migrate first")
    if version > LATEST:
        raise SchemaError(
            f"{where}: database schema version {version} is newer than this backend's "
            f"{LATEST}; run the newer backend (a database is never migrated backwards)"
        )
    raise SchemaError(
        f"{where}: database schema version {version} is older than this backend's {LATEST}; "
        f"migrate it first: loyalty-backend migrate --db {where}"
    )


def migrate(
    conn: Connection, now: datetime, *, shop_name: str = DEFAULT_CLUB
) -> list[Migration]:
    """Apply every step after the database's version, each in a transaction of its own;
    the steps applied. A database with no schema gets the whole schema.

    On SQLite foreign keys are off while the steps run (a rebuilt parent table would
    otherwise be emptied by DROP TABLE's implicit DELETE); a step that rebuilds checks
    them before it commits."""
    applied: list[Migration] = []
    sqlite = engine.dialect_of(conn) == engine.SQLITE
    if sqlite:
        conn.execute("PRAGMA foreign_keys = OFF")
    try:
        for step in MIGRATIONS:
            with engine.transaction(conn):
                engine.exclusive(conn, "schema")
                if _apply(conn, step, Setup(now, shop_name)):
                    applied.append(step)
    finally:
        if sqlite:
            conn.execute("PRAGMA foreign_keys = ON")
    return applied


def create(conn: Connection, now: datetime, *, shop_name: str = DEFAULT_CLUB) -> None:
    """The whole schema on a database with none, inside the caller's transaction (its
    tables are empty: a rebuild breaks no foreign key)."""
    if current_version(conn) is not None:
        raise SchemaError("the database already has a schema")
    for step in MIGRATIONS:
        _apply(conn, step, Setup(now, shop_name))


def _apply(conn: Connection, step: Migration, setup: Setup) -> bool:
    version = current_version(conn)
    if version is not None and version < OLDEST:
        raise SchemaError(
            f"database schema version {version} predates the first release and "
            "cannot be migrated; make a new database"
        )
    if version is not None and version > LATEST:
        raise SchemaError(
            f"database schema version {version} is newer than this backend's {LATEST}"
        )
    if version is not None and version >= step.version:
        return False
    dialect = engine.dialect_of(conn)
    for statement in step.statements:
        conn.execute(engine.ddl(dialect, statement))
    for fn in step.steps:
        fn(conn, setup)
    if version is None:
        conn.execute(engine.ddl(dialect, _VERSION_TABLE))
        conn.execute("INSERT INTO schema_version(version) VALUES (?)", (step.version,))
    else:
        conn.execute("UPDATE schema_version SET version = ?", (step.version,))
    if step.version >= 4:
        conn.execute(
            "INSERT INTO schema_migrations(version, name, applied_at) VALUES (?, ?, ?)",
            (step.version, step.name, int(setup.now.timestamp())),
        )
    return True
