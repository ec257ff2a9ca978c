"""Which automatic messages are due for a member on a Tehran local date, pure.

Birthdays and anniversaries are Jalali dates (what members remember); occasions come
from an editable Jalali list (backend/occasions.toml). Each due message carries an
idempotency key per member, message and occurrence date, so a second backend process,
a restart or a rerun of the same day never sends it twice (the outbox refuses the key).
A message is due from its occurrence date for `grace_days` more days, so a day the
backend was down is caught up the next day under the same key.
"""

from __future__ import annotations

import tomllib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path

import jdatetime

from protocols.persian import TEHRAN

DEFAULT_OCCASIONS = Path(__file__).with_name("occasions.toml")
KINDS = ("birthday", "anniversary", "winback", "expiring", "tier_up", "occasion")


class OccasionError(ValueError):
    """An occasion list or an automatic message that cannot be used; names what is wrong."""


def tehran_date(when: datetime) -> date:
    """The Tehran local date of an aware instant: the day every rule here counts in."""
    if when.tzinfo is None:
        raise ValueError("when must be timezone-aware")
    return when.astimezone(TEHRAN).date()


def parse_jalali(text: str) -> date:
    """`1405/01/01` as the Gregorian date of that Jalali day."""
    try:
        y, m, d = (int(p) for p in text.split("/"))
        return jdatetime.date(y, m, d).togregorian()
    except (ValueError, TypeError) as exc:
        raise OccasionError(f"not a Jalali date (YYYY/MM/DD): {text!r}") from exc


def jalali_month_day(year: int, month: int, day: int) -> date:
    """The Gregorian date of Jalali `year/month/day`; Esfand 30 falls on Esfand 29 in a
    common year (a member born on the leap day still gets a birthday)."""
    if month == 12 and day == 30 and not jdatetime.date(year, 1, 1).isleap():
        day = 29
    return jdatetime.date(year, month, day).togregorian()


@dataclass(frozen=True, slots=True)
class Occasion:
    key: str
    name: str
    month: int | None = None  # solar: every Jalali year
    day: int | None = None
    dates: tuple[date, ...] = ()  # lunar: one date per year
    estimated: frozenset[date] = frozenset()

    def on(self, year: int) -> list[date]:
        """The occasion's Gregorian dates falling in Jalali `year`."""
        if self.month is not None and self.day is not None:
            return [jalali_month_day(year, self.month, self.day)]
        return [d for d in self.dates if jdatetime.date.fromgregorian(date=d).year == year]


def load_occasions(path: Path = DEFAULT_OCCASIONS) -> dict[str, Occasion]:
    try:
        doc = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise OccasionError(f"{path}: {exc}") from None
    out: dict[str, Occasion] = {}
    for i, item in enumerate(doc.get("occasion", [])):
        where = f"{path}: occasion {i + 1}"
        key, name = item.get("key"), item.get("name")
        if not isinstance(key, str) or not key or not isinstance(name, str) or not name:
            raise OccasionError(f"{where}: needs a key and a name")
        if key in out:
            raise OccasionError(f"{where}: key {key!r} given twice")
        unknown = set(item) - {"key", "name", "month", "day", "dates"}
        if unknown:
            raise OccasionError(f"{where}: unknown field(s) {sorted(unknown)}")
        if ("month" in item) == ("dates" in item):
            raise OccasionError(f"{where} ({key}): give either month and day, or dates")
        if "month" in item:
            month, day = item.get("month"), item.get("day")
            if not isinstance(month, int) or not isinstance(day, int):
                raise OccasionError(f"{where} ({key}): month and day must be integers")
            try:
                jalali_month_day(1403, month, day)  # 1403 is a leap year: Esfand 30 exists
            except ValueError:
                raise OccasionError(f"{where} ({key}): no Jalali day {month}/{day}") from None
            out[key] = Occasion(key, name, month=month, day=day)
        else:
            entries = [e if isinstance(e, dict) else {"date": e} for e in item["dates"]]
            dates = tuple(sorted(parse_jalali(str(e.get("date"))) for e in entries))
            est = frozenset(parse_jalali(str(e["date"])) for e in entries if e.get("estimated"))
            out[key] = Occasion(key, name, dates=dates, estimated=est)
    return out


@dataclass(frozen=True, slots=True)
class AutoMessage:
    """One automatic message a club has switched on.

    `key` names it within the club (`birthday`, `winback`, `occasion:yalda`, ...);
    `days` is N for win-back (days without a visit) and expiring credit (days before);
    `offset_days` moves an occasion's or birthday's send date (-1: the day before).
    """

    key: str
    kind: str
    template: str
    days: int = 0
    offset_days: int = 0
    occasion: str | None = None
    segment: str | None = None
    gift_credit: int = 0
    gift_days: int = 0

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise OccasionError(f"{self.key}: unknown kind {self.kind!r} (one of {KINDS})")
        if self.kind == "occasion" and not self.occasion:
            raise OccasionError(f"{self.key}: an occasion message names its occasion")
        if self.kind in ("winback", "expiring") and self.days <= 0:
            raise OccasionError(f"{self.key}: {self.kind} needs days > 0")
        if self.gift_credit < 0 or (self.gift_credit and self.gift_days <= 0):
            raise OccasionError(f"{self.key}: a gift needs a positive amount and days")


@dataclass(frozen=True, slots=True)
class MemberFacts:
    """What the store knows of one member that the messages depend on (Tehran dates)."""

    member_id: int
    enrolled_on: date
    birthday_jalali: tuple[int, int] | None = None  # (month, day) as the member gave it
    birthday_gregorian: date | None = None  # converted when no Jalali one is known
    last_purchase_on: date | None = None
    segment: str | None = None
    #: (expiry date, amount) of credit lots still open
    expiring: tuple[tuple[date, int], ...] = ()
    #: (date, new tier, next tier's threshold or None)
    tier_ups: tuple[tuple[date, str, int | None], ...] = ()

    def birthday(self) -> tuple[int, int] | None:
        if self.birthday_jalali is not None:
            return self.birthday_jalali
        if self.birthday_gregorian is not None:
            j = jdatetime.date.fromgregorian(date=self.birthday_gregorian)
            return j.month, j.day
        return None


@dataclass(frozen=True, slots=True)
class Due:
    member_id: int
    message_key: str
    occurrence: date
    idempotency_key: str
    values: Mapping[str, object] = field(default_factory=dict)


def idempotency_key(member_id: int, message_key: str, occurrence: date) -> str:
    return f"auto:{message_key}:{member_id}:{occurrence.isoformat()}"


def _yearly(month: int, day: int, today: date) -> list[date]:
    """This Jalali year's and last year's date of month/day (a grace across Nowruz)."""
    y = jdatetime.date.fromgregorian(date=today).year
    return [jalali_month_day(yy, month, day) for yy in (y - 1, y)]


def _occurrences(
    msg: AutoMessage, m: MemberFacts, today: date, occasions: Mapping[str, Occasion]
) -> Iterable[tuple[date, dict[str, object]]]:
    """(occurrence date, template values) of every occurrence near `today`."""
    if msg.kind == "birthday":
        bd = m.birthday()
        if bd is not None:
            for d in _yearly(bd[0], bd[1], today):
                yield d + timedelta(days=msg.offset_days), {}
    elif msg.kind == "anniversary":
        j = jdatetime.date.fromgregorian(date=m.enrolled_on)
        for d in _yearly(j.month, j.day, today):
            years = jdatetime.date.fromgregorian(date=d).year - j.year
            if years >= 1:
                yield d + timedelta(days=msg.offset_days), {"years": years}
    elif msg.kind == "winback":
        last = m.last_purchase_on or m.enrolled_on
        yield last + timedelta(days=msg.days), {"days": msg.days}
    elif msg.kind == "expiring":
        per_day: dict[date, int] = {}
        for expiry, amount in m.expiring:
            per_day[expiry] = per_day.get(expiry, 0) + amount
        for expiry, amount in sorted(per_day.items()):
            if amount > 0:
                yield expiry - timedelta(days=msg.days), {"amount": amount, "expiry_date": expiry}
    elif msg.kind == "tier_up":
        for on, tier, threshold in m.tier_ups:
            yield on, {"tier": tier, "next_threshold": threshold}
    elif msg.kind == "occasion":
        occ = occasions.get(msg.occasion or "")
        if occ is None:
            raise OccasionError(f"{msg.key}: occasion {msg.occasion!r} is not in the list")
        y = jdatetime.date.fromgregorian(date=today).year
        for yy in (y - 1, y, y + 1):
            for d in occ.on(yy):
                yield d + timedelta(days=msg.offset_days), {"occasion": occ.name}


def due_messages(
    member: MemberFacts,
    messages: Sequence[AutoMessage],
    today: date,
    occasions: Mapping[str, Occasion] | None = None,
    grace_days: int = 2,
) -> list[Due]:
    """The club's switched-on messages due for `member` on Tehran date `today`.

    Due when occurrence <= today <= occurrence + grace_days; the caller (the nightly or
    hourly job) enqueues each under its idempotency key, and the delivery rules decide
    the hour. Win-back is keyed by the date it became due, so a member who comes back and
    lapses again gets it again, and one who stays away gets it once.
    """
    if grace_days < 0:
        raise ValueError("grace_days cannot be negative")
    occ = load_occasions() if occasions is None else occasions
    out: list[Due] = []
    for msg in messages:
        if msg.segment is not None and msg.segment != member.segment:
            continue
        seen: set[date] = set()
        for when, values in _occurrences(msg, member, today, occ):
            if when in seen or not (when <= today <= when + timedelta(days=grace_days)):
                continue
            if when < member.enrolled_on and msg.kind != "expiring":
                continue  # nothing from before the member joined
            seen.add(when)
            key = idempotency_key(member.member_id, msg.key, when)
            out.append(Due(member.member_id, msg.key, when, key, values))
    return out


@dataclass(frozen=True, slots=True)
class Gift:
    """The credit an automatic message gives: one ledger row (kind `gift`) under a key
    derived from the message's, so the gift is given once with its message."""

    key: str
    member_id: int
    amount: int
    expires_at: datetime


def gift_for(msg: AutoMessage, due: Due, now: datetime) -> Gift | None:
    """The gift of `msg` for this occurrence, expiring `gift_days` after `now` (when the
    message is enqueued), or None when the message gives none."""
    if msg.key != due.message_key:
        raise ValueError("the due message is not this message's")
    if not msg.gift_credit:
        return None
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    return Gift(f"{due.idempotency_key}:gift", due.member_id, msg.gift_credit,
                now + timedelta(days=msg.gift_days))
