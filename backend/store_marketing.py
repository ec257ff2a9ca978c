"""Per-club marketing delivery settings and members' consent, as the SMS worker reads them.

Why a table of its own: `clubs.sms` names the club's gateway (None = the provider's), and
the worker treats any value there as "this club has its own gateway"; quiet hours and the
daily limit are another matter, with defaults (marketing_rules.Settings) for a club that
never set them.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace
from datetime import datetime, time

from backend.engine import Connection
from backend.marketing_rules import KIND_CLASS, MARKETING, Settings, is_stop_reply
from protocols.identity import normalize_phone
from protocols.persian import ascii_digits

MARKETING_KINDS = tuple(k for k, c in KIND_CLASS.items() if c == MARKETING)
SCHEMA = (
    "CREATE TABLE club_marketing (club_id INTEGER NOT NULL PRIMARY KEY REFERENCES clubs(id), "
    "quiet_start TEXT NOT NULL DEFAULT '21:00', quiet_end TEXT NOT NULL DEFAULT '09:00', "
    "daily_limit INTEGER, consent_at_enrolment INTEGER NOT NULL DEFAULT 1, "
    "CHECK (daily_limit IS NULL OR daily_limit >= 0))",
    # the SMS worker's count of today's marketing SMS (outbox._marketing_today): only
    # marketing rows are in it, so a purchase SMS's insert does not maintain it
    "CREATE INDEX sms_outbox_marketing_sent ON sms_outbox (club_id, finished_at) "
    f"WHERE kind IN {MARKETING_KINDS!r}",
)


def _hhmm(t: time) -> str:
    return f"{t.hour:02d}:{t.minute:02d}"


def parse_hhmm(text: str) -> time:
    """"21:00" -> time(21, 0); ValueError for anything else."""
    try:
        hour, minute = (int(part) for part in text.strip().split(":"))
        return time(hour, minute)
    except (ValueError, TypeError):
        raise ValueError(f"time must be HH:MM, not {text!r}") from None


class SettingsError(ValueError):
    """A marketing setting refused, with its field (`quiet`, `daily_limit`)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


def changed_settings(
    current: Settings, *, quiet: str | None = None, daily_limit: str | None = None
) -> Settings:
    """`current` with the owner's changes, as typed (`club marketing` and the panel use
    this): quiet hours `HH:MM-HH:MM` (`00:00-00:00`: none), the club's daily limit a
    number of SMS or `none`. Bad input: SettingsError, nothing changed."""
    changes: dict[str, object] = {}
    if quiet is not None:
        start, dash, end = ascii_digits(quiet.strip()).partition("-")
        try:
            if not dash:
                raise ValueError(f"quiet hours must be HH:MM-HH:MM, not {quiet!r}")
            changes["quiet_start"], changes["quiet_end"] = parse_hhmm(start), parse_hhmm(end)
        except ValueError as exc:
            raise SettingsError("quiet", str(exc)) from None
    if daily_limit is not None:
        text = ascii_digits(daily_limit.strip()).replace("٬", "").replace(",", "")
        if text == "none":
            changes["club_daily"] = None
        elif not (text.isascii() and text.isdigit()):
            raise SettingsError("daily_limit", f"the daily limit is a number of SMS or "
                                               f"'none', not {daily_limit!r}")
        else:
            changes["club_daily"] = int(text)
    return replace(current, **changes)  # type: ignore[arg-type]


def settings(conn: Connection, club_id: int | None) -> Settings:
    """The club's delivery settings; the defaults for a club without a row (or None)."""
    return settings_of(conn, [club_id]).get(club_id, Settings())


def settings_of(conn: Connection, club_ids: Iterable[int | None]) -> dict[int | None, Settings]:
    ids = sorted({c for c in club_ids if c is not None})
    out: dict[int | None, Settings] = {None: Settings()}
    if ids:
        marks = ", ".join("?" * len(ids))
        for club_id, start, end, limit in conn.execute(
            "SELECT club_id, quiet_start, quiet_end, daily_limit FROM club_marketing"
            f" WHERE club_id IN ({marks})", ids,
        ):
            out[club_id] = Settings(parse_hhmm(start), parse_hhmm(end), limit)
    for c in ids:
        out.setdefault(c, Settings())
    return out


def set_settings(conn: Connection, club_id: int, s: Settings) -> None:
    """Store the club's quiet hours and daily limit (in the caller's transaction)."""
    conn.execute(
        "INSERT INTO club_marketing (club_id, quiet_start, quiet_end, daily_limit)"
        " VALUES (?, ?, ?, ?) ON CONFLICT (club_id) DO UPDATE SET"
        " quiet_start = excluded.quiet_start, quiet_end = excluded.quiet_end,"
        " daily_limit = excluded.daily_limit",
        (club_id, _hhmm(s.quiet_start), _hhmm(s.quiet_end), s.club_daily),
    )


def consent_at_enrolment(conn: Connection, club_id: int) -> bool:
    """Whether a new member of the club gives marketing consent by enrolling (the default;
    store.insert_member reads the same column)."""
    row = conn.execute("SELECT consent_at_enrolment FROM club_marketing WHERE club_id = ?",
                       (club_id,)).fetchone()
    return True if row is None else bool(row[0])


def set_consent_at_enrolment(conn: Connection, club_id: int, given: bool) -> None:
    conn.execute(
        "INSERT INTO club_marketing (club_id, consent_at_enrolment) VALUES (?, ?)"
        " ON CONFLICT (club_id) DO UPDATE SET consent_at_enrolment = excluded.consent_at_enrolment",
        (club_id, int(given)),
    )


#: what the club pays its gateway for one SMS part, in rials (migration 20): the campaign
#: estimate's price when the owner gives none
SMS_PRICE_SCHEMA = ("ALTER TABLE club_marketing ADD COLUMN sms_price INTEGER NOT NULL DEFAULT 0",)
MAX_SMS_PRICE = 10**9


def sms_price(conn: Connection, club_id: int) -> int:
    row = conn.execute("SELECT sms_price FROM club_marketing WHERE club_id = ?",
                       (club_id,)).fetchone()
    return 0 if row is None else int(row[0])


def set_sms_price(conn: Connection, club_id: int, rials: int) -> None:
    if isinstance(rials, bool) or not isinstance(rials, int) or not 0 <= rials <= MAX_SMS_PRICE:
        raise SettingsError("sms_price", f"the price of an SMS part is 0..{MAX_SMS_PRICE} rials")
    conn.execute(
        "INSERT INTO club_marketing (club_id, sms_price) VALUES (?, ?)"
        " ON CONFLICT (club_id) DO UPDATE SET sms_price = excluded.sms_price",
        (club_id, rials),
    )


def consents(conn: Connection, member_ids: Iterable[int]) -> dict[int, bool]:
    """Each member's marketing consent now (a missing member: none)."""
    ids = sorted(set(member_ids))
    out: dict[int, bool] = {}
    for start in range(0, len(ids), 500):
        chunk = ids[start:start + 500]
        marks = ", ".join("?" * len(chunk))
        for member_id, given in conn.execute(
            f"SELECT id, marketing_consent FROM members WHERE id IN ({marks})", chunk
        ):
            out[member_id] = bool(given)
    return out


def set_consent_by_phone(
    conn: Connection, phone: str, consent: bool, now: datetime, club_id: int | None = None
) -> int:
    """Consent on or off for the member with this phone (in one club, or in every club the
    phone is a member of); how many members changed."""
    number = normalize_phone(phone)
    sql = ("UPDATE members SET marketing_consent = ?, consent_changed_at = ?"
           " WHERE phone = ? AND marketing_consent <> ?")
    args: list[object] = [int(consent), int(now.timestamp()), number, int(consent)]
    if club_id is not None:
        sql += " AND club_id = ?"
        args.append(club_id)
    return conn.execute(sql, args).rowcount


def incoming_sms(
    conn: Connection, phone: str, text: str, now: datetime, club_id: int | None = None
) -> bool:
    """An SMS a member sent to a club's line (where the gateway reports them): "لغو"
    turns marketing consent off in that club (a club's own line), or in every club of
    that phone (the provider's line, which every club without its own sends from: the
    member cannot say which shop). Whether it was a stop reply."""
    if not is_stop_reply(text):
        return False
    set_consent_by_phone(conn, phone, False, now, club_id)
    return True
