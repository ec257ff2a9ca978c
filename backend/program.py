"""The loyalty program's rules, pure: tiers, cash-back, the redeem cap, offers, one-time codes.

No database, no clock reads: every function takes the values it decides on, so the rules
are testable on their own and a shop owner changes them in the TOML file, not in code.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

from backend.member_tokens import TransferLimits
from backend.segments import SEGMENTS
from protocols.persian import TEHRAN
from protocols.response_codes import CodedError, ResponseCode

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


class RuleError(CodedError):
    """A request the program refuses; `response_code` is the code to answer with."""

    def __init__(self, response_code: ResponseCode | str, message: str) -> None:
        super().__init__(message, response_code=ResponseCode(response_code))
        self.message = message

    @property
    def code(self) -> ResponseCode:
        """Read-only alias of `response_code` until backend/handlers.py uses that name."""
        return self.response_code


@dataclass(frozen=True, slots=True)
class Tier:
    name: str
    min_spend: int
    percent: float


@dataclass(frozen=True, slots=True)
class Program:
    """Every number of the program, with the issue's defaults."""

    tiers: tuple[Tier, ...] = (
        Tier("bronze", 0, 3.0),
        Tier("silver", 20_000_000, 5.0),
        Tier("gold", 100_000_000, 7.0),
    )
    tier_window_days: int = 90
    max_redeem_percent: float = 50.0
    hold_seconds: int = 300
    credit_days: int = 365
    welcome_credit: int = 0
    referral_bonus: int = 50_000
    otp_threshold: int = 10_000_000
    otp_digits: int = 6
    otp_seconds: int = 120
    otp_tries: int = 3
    #: a gift card pays at most this share of a purchase (100: all of it, issue 16)
    gift_max_percent: float = 100.0
    #: cash-back is earned on the part a gift card paid too
    gift_earn: bool = False
    #: days a link to the member's own page opens it (issue 16; docs/member-page.md)
    link_days: int = 30
    #: members may give credit to another phone from their page (issue 16)
    transfer_enabled: bool = True
    #: rials: the most one transfer moves, the most a member sends in a Tehran day, the least
    transfer_max: int = 5_000_000
    transfer_day_max: int = 10_000_000
    transfer_min: int = 10_000
    #: percent of settled purchases whose SMS asks for a rating (a member at most once in
    #: 30 days; backend.surveys); 0: no surveys, the owner turns them on
    survey_percent: float = 0.0

    def __post_init__(self) -> None:
        if not self.tiers:
            raise ValueError("program.tiers: at least one tier is needed")
        ordered = sorted(self.tiers, key=lambda t: t.min_spend)
        if ordered[0].min_spend != 0:
            raise ValueError("program.tiers: the lowest tier must start at min_spend 0")
        names = [t.name for t in ordered]
        if len(set(names)) != len(names):
            raise ValueError("program.tiers: tier names must be unique")
        if len({t.min_spend for t in ordered}) != len(ordered):
            raise ValueError("program.tiers: two tiers share one min_spend")
        object.__setattr__(self, "tiers", tuple(ordered))
        if not 1 <= self.link_days <= 365:
            raise ValueError("program.link_days: a member's link opens for 1..365 days")
        if not 1 <= self.transfer_min <= self.transfer_max <= self.transfer_day_max:
            raise ValueError("program.transfer: need 1 <= transfer_min <= transfer_max "
                             "<= transfer_day_max")

    @property
    def transfer_limits(self) -> TransferLimits:
        return TransferLimits(self.transfer_max, self.transfer_day_max, self.transfer_min)

    def check_target(self, target: str) -> None:
        """An offer's target must be reachable: `tier:NAME` names one of this program's tiers.

        Checked where an offer enters (the TOML, `offer add`): a misspelt tier would
        otherwise be an offer that silently never matches.
        """
        kind, arg = parse_target(target)
        names = [t.name for t in self.tiers]
        if kind == "tier" and arg not in names:
            raise ValueError(
                f"offer: target {target!r} names no tier of the program "
                f"(known tiers: {', '.join(names)})"
            )

    def tier(self, name: str) -> Tier:
        for t in self.tiers:
            if t.name == name:
                return t
        return self.tiers[0]

    def tier_after(self, name: str) -> Tier | None:
        """The tier above `name` (what a member of `name` aims at next); None at the top."""
        current = self.tier(name)
        return next((t for t in self.tiers if t.min_spend > current.min_spend), None)

    @property
    def base_tier(self) -> Tier:
        return self.tiers[0]

    def tier_for_spend(self, spend: int) -> Tier:
        """The highest tier whose threshold the net spend of the window reaches."""
        chosen = self.tiers[0]
        for t in self.tiers:
            if spend >= t.min_spend:
                chosen = t
        return chosen

    def redeem_cap(self, gross: int) -> int:
        return int(gross * self.max_redeem_percent // 100)

    def discount(self, gross: int, available: int, requested: int | None) -> int:
        """The credit applied to a purchase: what was asked for, or the most allowed."""
        if gross <= 0:
            raise RuleError(ResponseCode.INVALID_AMOUNT, "amount must be positive")
        if requested is not None:
            if requested > available:
                raise RuleError(
                    ResponseCode.NOT_ENOUGH_CREDIT, "requested credit exceeds the balance"
                )
            return min(requested, self.redeem_cap(gross))
        return max(0, min(available, self.redeem_cap(gross)))

    def needs_otp(self, discount: int) -> bool:
        return discount > self.otp_threshold

    def credit_expiry(self, earned_at: datetime) -> datetime:
        return earned_at + timedelta(days=self.credit_days)


@dataclass(frozen=True, slots=True)
class Purchase:
    """What an offer looks at: when (UTC), how much, and who."""

    when: datetime
    gross: int
    tier: str
    visits: int  # settled purchases before this one
    birthday: str | None = None  # "MM-DD" or "YYYY-MM-DD"
    segment: str | None = None  # last night's segment (store_segments); None: not scored


@dataclass(frozen=True, slots=True)
class Offer:
    """Extra cash-back in a time window for a minimum purchase, for a target group."""

    name: str
    until: date  # the last day the offer runs (Tehran time), its expiry date
    percent: float = 0.0
    amount: int = 0
    start: date | None = None
    weekdays: frozenset[int] = field(default_factory=frozenset)  # 0 = Monday; empty = all
    hours: tuple[int, int] | None = None  # [from, to) in Tehran local hours
    min_purchase: int = 0
    target: str = "everyone"  # everyone | tier:NAME | visits:N | birthday | segment:NAME
    id: int | None = None
    ended: bool = False
    #: the club it belongs to (None: the configuration's, for the clubs that use it)
    club_id: int | None = None
    #: the club's branches it runs in; empty = every branch
    branches: frozenset[int] = field(default_factory=frozenset)

    def __post_init__(self) -> None:
        if not self.name:
            raise ValueError("offer: name is empty")
        if (self.percent > 0) == (self.amount > 0):
            raise ValueError("offer: give exactly one of percent and amount, above 0")
        if self.percent < 0 or self.percent > 100 or self.amount < 0:
            raise ValueError("offer: percent must be 0..100 and amount not negative")
        if self.start is not None and self.start > self.until:
            raise ValueError("offer: start is after until")
        if any(d < 0 or d > 6 for d in self.weekdays):
            raise ValueError("offer: weekdays are 0..6")
        if self.hours is not None:
            lo, hi = self.hours
            if not (0 <= lo < hi <= 24):
                raise ValueError("offer: hours must be FROM-TO with 0 <= FROM < TO <= 24")
        if self.min_purchase < 0:
            raise ValueError("offer: min_purchase must not be negative")
        parse_target(self.target)

    def runs_in(self, branch_id: int) -> bool:
        return not self.branches or branch_id in self.branches

    def matches(self, p: Purchase) -> bool:
        if self.ended:
            return False
        local = p.when.astimezone(TEHRAN)
        day = local.date()
        if day > self.until or (self.start is not None and day < self.start):
            return False
        if self.weekdays and local.weekday() not in self.weekdays:
            return False
        if self.hours is not None and not (self.hours[0] <= local.hour < self.hours[1]):
            return False
        if p.gross < self.min_purchase:
            return False
        kind, arg = parse_target(self.target)
        if kind == "tier":
            return p.tier == arg
        if kind == "visits":
            return p.visits >= int(arg)
        if kind == "birthday":
            return p.birthday is not None and p.birthday[-5:] == local.strftime("%m-%d")
        if kind == "segment":
            return p.segment == arg
        return True

    def extra(self, amount: int) -> int:
        return self.amount if self.amount else int(amount * self.percent // 100)


def parse_target(target: str) -> tuple[str, str]:
    kind, _, arg = target.partition(":")
    if kind in ("everyone", "birthday") and not arg:
        return kind, ""
    if kind == "tier" and arg:
        return kind, arg
    if kind == "visits" and arg.isdigit():
        return kind, arg
    if kind == "segment" and arg in SEGMENTS:
        return kind, arg
    raise ValueError(
        f"offer: target {target!r} is not everyone, birthday, tier:NAME, visits:N or "
        f"segment:NAME (NAME one of {', '.join(SEGMENTS)})"
    )


def parse_weekdays(text: str | Iterable[str]) -> frozenset[int]:
    items = text.split(",") if isinstance(text, str) else list(text)
    days = set()
    for item in items:
        name = item.strip().lower()[:3]
        if not name:
            continue
        if name not in WEEKDAYS:
            raise ValueError(f"offer: weekday {item!r} is not one of {', '.join(WEEKDAYS)}")
        days.add(WEEKDAYS.index(name))
    return frozenset(days)


def parse_hours(text: str) -> tuple[int, int]:
    lo, sep, hi = text.partition("-")
    if not sep or not lo.strip().isdigit() or not hi.strip().isdigit():
        raise ValueError(f"offer: hours {text!r} must look like 10-14")
    return int(lo), int(hi)


def earnings(
    program: Program, amount: int, purchase: Purchase, offers: Sequence[Offer]
) -> tuple[int, list[Offer]]:
    """Cash-back on the amount charged: the tier's percent plus every matching offer."""
    base = int(amount * program.tier(purchase.tier).percent // 100)
    matched = [o for o in offers if o.matches(purchase)]
    return base + sum(o.extra(amount) for o in matched), matched
