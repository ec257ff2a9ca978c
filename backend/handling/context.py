"""What every request type needs: the connection, the program, the clock, and the steps
they share (finding and locking the member, upkeep on access, tiers, SMS)."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from backend import engine, ledger, store, store_daily, store_tiers
from backend.engine import Connection
from backend.program import Offer, Program, RuleError
from backend.registry import Registry
from backend.sms import outbox
from backend.store import Member, Quote
from protocols.identity import normalize_card, normalize_phone
from protocols.response_codes import ResponseCode

_NORMALISED = re.compile(r"09[0-9]{9}")
Clock = Callable[[], datetime]


@dataclass(frozen=True, slots=True)
class Outcome:
    """A request's answer before it is wrapped in a Response."""

    code: str
    body: dict[str, Any]
    message: str = ""


@dataclass
class Context:
    """Set for each request (`Handler._one`) from the terminal it came from."""

    conn: Connection
    program: Program
    shop_name: str
    clock: Clock
    #: the offers of the request's branch (the club's, and the config's if it uses that)
    offers: list[Offer] = field(default_factory=list)
    registry: Registry = field(default_factory=Registry)
    club_id: int = 0
    branch_id: int = 0
    #: the version of `program` (0 = the configuration's); recorded with quotes, purchases
    program_version: int = 0

    def use_version(self, version: int | None) -> None:
        """Compute with the club's program at `version` (a quote's, so that a program
        changed since never alters that purchase)."""
        if version is not None and version != self.program_version:
            self.program = self.registry.program(self.conn, self.club_id, version)
            self.program_version = version
    #: what the request being carried out had read ahead for it (its type's `look_ahead`)
    ahead: Callable[[], Any] | None = None


def find_member(ctx: Context, body: dict[str, Any]) -> Member:
    """The member a request names by phone or card, locked for this transaction; 14 if none."""
    member = None
    if body.get("phone"):
        typed = body["phone"]
        # The agent sends phones normalised; a look-up needs no full parse for those
        # (an invalid number in that shape is simply not a member: 14 either way).
        phone = typed if _NORMALISED.fullmatch(typed) else normalize_phone(typed)
        member = store.member_by_phone(ctx.conn, phone, club_id=ctx.club_id, lock=True)
    elif body.get("card"):
        card = normalize_card(body["card"])
        member = store.member_by_card(ctx.conn, card, club_id=ctx.club_id, lock=True)
    if member is None:
        raise RuleError(ResponseCode.UNKNOWN_MEMBER, "unknown member")
    return member


def locate(ctx: Context, body: dict[str, Any], now: datetime) -> tuple[Member, store.Upkeep]:
    """`find_member`, and the member's upkeep look for `maintain`, read after the lock
    (it goes out with the lock: one round trip)."""
    found = None
    if body.get("phone"):
        typed = body["phone"]
        phone = typed if _NORMALISED.fullmatch(typed) else normalize_phone(typed)
        found = store.locked_member_by_phone(ctx.conn, phone, now, club_id=ctx.club_id)
    elif body.get("card"):
        found = store.locked_member_by_card(
            ctx.conn, normalize_card(body["card"]), now, club_id=ctx.club_id
        )
    if found is None:
        raise RuleError(ResponseCode.UNKNOWN_MEMBER, "unknown member")
    return found


def end_hold(ctx: Context, q: Quote, status: str, now: datetime) -> None:
    ledger.release(ctx.conn, q.member_id, q.id, q.discount, now)
    store.set_quote_status(ctx.conn, q.id, status)


def release_lapsed(ctx: Context, member_id: int | None, now: datetime) -> int:
    """End the holds whose time is over (of one member, or everyone's); how many."""
    lapsed = store.lapsed_holds(ctx.conn, now, member_id)
    if member_id is not None:  # the caller holds the member's lock
        for q in lapsed:
            end_hold(ctx, q, store.EXPIRED, now)
        return len(lapsed)
    ended = 0
    for q in lapsed:  # the sweep: each member locked, the quote read again under the lock
        engine.savepoint(ctx.conn, "lapse")
        try:
            store.member_by_id(ctx.conn, q.member_id, lock=True)
            fresh = store.quote(ctx.conn, q.id)
            if fresh is not None and fresh.status == store.HELD and not fresh.holds_at(now):
                end_hold(ctx, fresh, store.EXPIRED, now)
                ended += 1
        except Exception as exc:
            engine.rollback_to(ctx.conn, "lapse")
            if not engine.is_busy(exc):
                raise  # a member another process holds: the next sweep
        engine.release(ctx.conn, "lapse")
    return ended


def maintain(
    ctx: Context, member: Member, now: datetime, due: store.Upkeep | None = None
) -> int:
    """On every access: the backend itself releases lapsed holds and expires old credit.
    Returns the member's balance after it. `due`: the upkeep look, read under the
    member's lock, when the caller has it."""
    if due is None:
        due = store.upkeep_due(ctx.conn, member.id, now)
    if not (due.holds or due.lots):
        return due.balance
    if due.holds:
        release_lapsed(ctx, member.id, now)
    if due.lots:
        ledger.expire(ctx.conn, member.id, now)
    return ledger.balance(ctx.conn, member.id)


def retier(
    ctx: Context, member: Member, when: datetime, settled: store_daily.Settled | None = None,
    *, now: datetime, cause: str,
) -> str:
    """The member's tier by spend in the window ending at `when`, stored if it changed,
    with a row of its history (at `now`, for `cause`: store_tiers.CAUSES) in the same
    transaction. `settled`: the member's settled purchases as the advice's insert left
    them (their running totals, or the purchases when it read them): the window's spend
    comes from them when they tell it (every purchase in the window), else it is read."""
    since = when - timedelta(days=ctx.program.tier_window_days)
    spend = None if settled is None else settled.spend(store.ts(since), store.ts(when))
    if spend is None:
        spend = store.spend(ctx.conn, member.id, since, when)
    tier = ctx.program.tier_for_spend(spend).name
    if tier != member.tier:
        store.set_tier(ctx.conn, member.id, tier)
        store_tiers.record(ctx.conn, store_tiers.change(
            ctx.program, member_id=member.id, club_id=member.club_id, from_tier=member.tier,
            to_tier=tier, at=now, cause=cause))
    return tier


def sms(ctx: Context, key: str, phone: str, text: str, kind: str, now: datetime) -> None:
    outbox.put(
        ctx.conn, key=key, phone=phone, text=text, kind=kind, now=now, club_id=ctx.club_id
    )
