"""The daily job of automatic messages: once per Tehran day per club, what is due
(occasions.due_messages) goes into the SMS outbox under its idempotency key, its gift
into the ledger, in one transaction; the SMS worker's marketing gate decides the hour.

Safe with N backend processes and restarts: an advisory lock (engine.try_exclusive) lets
one process run a club's day, `automsg_runs` records the day done, and the keys make a
rerun (or the catch-up of a missed day within occasions' grace days) enqueue nothing
twice and give no gift twice.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Mapping
from contextlib import AbstractContextManager
from datetime import date, datetime

from backend import engine, ledger, store, store_automsg, store_registry, texts
from backend.occasions import (
    KINDS,
    AutoMessage,
    Occasion,
    OccasionError,
    due_messages,
    gift_for,
    load_occasions,
)
from backend.occasions import tehran_date as _tehran_date
from backend.segments import SEGMENTS
from backend.sms import outbox
from backend.sms_templates import Template, TemplateError

log = logging.getLogger(__name__)

#: placeholders every automatic message may use, and those of each kind
COMMON = frozenset({"name", "shop", "gift"})
BY_KIND: dict[str, frozenset[str]] = {
    "birthday": frozenset(),
    "anniversary": frozenset({"years"}),
    "winback": frozenset({"days"}),
    "expiring": frozenset({"amount", "expiry_date"}),
    "tier_up": frozenset({"tier", "next_threshold"}),
    "occasion": frozenset({"occasion"}),
}
#: the ledger kind of a gift: a credit with an expiry, told apart by its ref ("gift: KEY")
GIFT_KIND = "adjustment"
GRACE_DAYS = 2
#: SMS (and gifts) written per transaction
CHUNK = 500


class MessageError(ValueError):
    """An automatic message refused, with the field at fault (`key`, `template`, `days`,
    `segment`, `gift`) so that a form shows the error beside it."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


def build(
    key: str,
    template: str,
    *,
    days: int = 0,
    offset_days: int = 0,
    segment: str | None = None,
    gift_credit: int = 0,
    gift_days: int = 0,
    occasions: Mapping[str, Occasion] | None = None,
) -> AutoMessage:
    """The message `key` (a kind, or `occasion:KEY` of the occasions list) as the owner
    wrote it, every check made (the CLI's `automsg set` and the panel use this): the
    template's placeholders for its kind, the days a kind needs, a known segment, a gift
    with its days. Bad input: MessageError, nothing saved."""
    kind, _, occasion = key.partition(":")
    if kind not in KINDS:
        raise MessageError("key", f"the kind must be one of {', '.join(KINDS)}")
    known = load_occasions() if occasions is None else occasions
    if kind == "occasion" and occasion not in known:
        raise MessageError("key", f"no such occasion (known: {', '.join(sorted(known))})")
    if kind != "occasion" and occasion:
        raise MessageError("key", f"only an occasion message names an occasion, not {kind}")
    if segment is not None and segment not in SEGMENTS:
        raise MessageError("segment", f"unknown segment {segment!r} "
                                      f"(one of {', '.join(SEGMENTS)})")
    if days < 0:
        raise MessageError("days", "days cannot be negative")
    if gift_credit < 0 or gift_days < 0:
        raise MessageError("gift", "a gift cannot be negative")
    try:
        msg = AutoMessage(key, kind, template, days=days, offset_days=offset_days,
                          occasion=occasion or None, segment=segment,
                          gift_credit=gift_credit, gift_days=gift_days)
    except OccasionError as exc:
        field = "days" if "days >" in str(exc) else "gift" if "gift" in str(exc) else "key"
        raise MessageError(field, str(exc).removeprefix(f"{key}: ")) from None
    try:
        check(msg)
    except TemplateError as exc:
        raise MessageError("template", str(exc)) from None
    return msg


def check(msg: AutoMessage) -> Template:
    """The message's template, checked for its kind: an unknown placeholder is refused
    (TemplateError) before anything is saved."""
    return Template.parse(msg.template, COMMON | BY_KIND[msg.kind])


def run_due(
    conn: engine.Connection,
    now: datetime,
    occasions: Mapping[str, Occasion] | None = None,
    write_lock: AbstractContextManager[object] | None = None,
) -> int:
    """Run every club's day that is not done yet; how many SMS were queued. `write_lock`
    (the service's) is held for each short write transaction only, not the computing."""
    queued = 0
    for club_id in store_automsg.clubs_with_messages(conn):
        try:
            queued += run_club(conn, club_id, now, occasions, write_lock)
        except (OccasionError, TemplateError) as exc:  # a club's bad setting: the others go
            log.error("automatic messages of club %d not sent: %s", club_id, exc)
    return queued


def _done(conn: engine.Connection, club_id: int, today: date) -> bool:
    done = store_automsg.last_run(conn, club_id)
    return done is not None and done >= today


def run_club(
    conn: engine.Connection,
    club_id: int,
    now: datetime,
    occasions: Mapping[str, Occasion] | None = None,
    write_lock: AbstractContextManager[object] | None = None,
) -> int:
    """The club's automatic messages of the Tehran day of `now`, unless done already or
    another process is at it; how many SMS were queued.

    What is due is computed outside any write transaction, then written `CHUNK` SMS per
    transaction (a purchase waits for one short transaction, never for the whole club);
    the keys make a chunk written twice (two processes, a crash between chunks) harmless,
    and a gift is given only with a newly queued SMS."""
    today = _tehran_date(now)
    lock = write_lock if write_lock is not None else contextlib.nullcontext()
    if _done(conn, club_id, today):
        return 0
    stored = [s.message for s in store_automsg.messages(conn, club_id) if s.enabled]
    if occasions is None:  # read once, not per member
        occasions = load_occasions()
    templates = {m.key: check(m) for m in stored}
    by_key = {m.key: m for m in stored}
    club = store_registry.club_by_id(conn, club_id)
    shop = club.name if club is not None else ""
    expiring = [m.days for m in stored if m.kind == "expiring"]
    work = []
    for r in store_automsg.recipients(conn, club_id, today, expiring):
        for due in due_messages(r.facts, stored, today, occasions, GRACE_DAYS):
            msg = by_key[due.message_key]
            values = {"name": r.name or texts.NO_NAME, "shop": shop, "gift": msg.gift_credit,
                      **due.values}
            if "tier" in values:  # the tier as the receipt names it
                values["tier"] = texts.tier_label(str(values["tier"]))
            try:
                text = templates[msg.key].render(values)
            except TemplateError as exc:  # e.g. a tier up with no next tier: that one only
                log.warning("automatic message %s of club %d for member %d: %s",
                            msg.key, club_id, r.facts.member_id, exc)
                continue
            work.append((msg, due, r.phone, text))
    queued = 0
    for start in range(0, max(len(work), 1), CHUNK):
        with lock, store.transaction(conn):
            if not engine.try_exclusive(conn, f"automsg:{club_id}") or _done(conn, club_id, today):
                return queued  # another process is at it, or finished it
            for msg, due, phone, text in work[start:start + CHUNK]:
                if not outbox.enqueue(
                    conn, key=due.idempotency_key, phone=phone, text=text, kind=msg.kind,
                    now=now, club_id=club_id, member_id=due.member_id,
                ):
                    continue  # queued on an earlier day (its grace) or by a rerun
                queued += 1
                gift = gift_for(msg, due, now)
                if gift is not None and not ledger.has_row(conn, gift.key):
                    ledger.credit(conn, gift.member_id, GIFT_KIND, gift.amount, gift.key,
                                  earned_at=now, expires_at=gift.expires_at,
                                  ref=f"gift: {msg.key}")
            if start + CHUNK >= len(work):
                store_automsg.mark_run(conn, club_id, today)
    if queued:
        log.info("automatic messages: club %d, %s: %d SMS queued", club_id, today, queued)
    return queued
