"""Tier history on both engines: a tier change writes one `tier_changes` row in its own
transaction (purchase, reversal), and the daily automatic-messages job announces each
rise once (`tier_up`, with the next tier's threshold), never a fall or a rise undone."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta

from backend import automsg, store, store_automsg, store_tiers
from backend.handlers import Handler
from backend.occasions import AutoMessage
from backend.program import Program
from backend.sms import SmsWorker
from backend.store import transaction
from protocols.persian import TEHRAN, persian_digits
from tests.backend.core_helpers import FakeClock, Recorder, advice, phone, reversal
from tests.backend.test_backend_rules import buy, enrol

TIER_UP = AutoMessage("tier_up", "tier_up", "{name}، به سطح {tier} رسیدید؛ سطح بعد از "
                                            "{next_threshold} خرید")


def at(d: date, h: int, m: int = 0) -> datetime:
    return datetime.combine(d, time(h, m), TEHRAN)


def _member(h: Handler, p: str) -> store.Member:
    m = store.member_by_phone(h.conn, p, club_id=1)
    assert m is not None
    return m


def _tier_ups(h: Handler) -> list[tuple[int, str]]:
    return [tuple(r) for r in h.conn.execute(
        "SELECT member_id, text FROM sms_outbox WHERE kind = 'tier_up' ORDER BY id")]


def test_program_tier_after_names_the_next_threshold() -> None:
    """The next tier of each tier by threshold; none above the top; an unknown name
    counts as the base tier."""
    p = Program()
    assert [None if (t := p.tier_after(n)) is None else t.name
            for n in ("bronze", "silver", "gold", "retired")] == ["silver", "gold", None, "silver"]
    up = store_tiers.change(p, member_id=1, club_id=1, from_tier="bronze", to_tier="silver",
                            at=at(date(2026, 11, 23), 12), cause="purchase")
    down = store_tiers.change(p, member_id=1, club_id=1, from_tier="gold", to_tier="silver",
                              at=at(date(2026, 11, 23), 12), cause="reversal")
    assert (up.upward, up.next_threshold) == (True, 100_000_000)
    assert (down.upward, down.next_threshold) == (False, 100_000_000)


def test_a_rise_is_recorded_and_announced_once_a_fall_never(
    db: str, handler: Handler, clock: FakeClock
) -> None:
    """A purchase lifting a member writes one row and the next day's job queues one
    tier_up SMS (Persian tier name, next threshold), a rerun or the next day nothing; a
    reversal's fall writes a row and sends nothing; a rise reversed the same day is not
    announced."""
    h, conn = handler, handler.conn
    a, b = phone(1), phone(2)
    enrol(h, a)
    enrol(h, b)
    club = _member(h, a).club_id
    with transaction(conn):
        store_automsg.save(conn, club, TIER_UP)
    day = clock.now.astimezone(TEHRAN).date()

    lift = advice(amount=20_000_000, occurred_at=clock.iso(), phone=a)
    assert h.handle(lift).code == "00" and _member(h, a).tier == "silver"
    buy(h, clock, a, 1_000_000)  # still silver: no row
    (change,) = store_tiers.history(conn, _member(h, a).id)
    assert (change.from_tier, change.to_tier, change.cause) == ("bronze", "silver", "purchase")
    assert change.upward and change.next_threshold == 100_000_000
    assert change.tehran_date == day
    # b rises and the purchase is reversed the same day: two rows, nothing to announce
    clock.jump(minutes=5)
    b_buy = advice(amount=20_000_000, occurred_at=clock.iso(), phone=b)
    assert h.handle(b_buy).code == "00"
    assert h.handle(reversal(b_buy, occurred_at=clock.iso())).code == "00"
    b_rows = store_tiers.history(conn, _member(h, b).id)
    assert [(c.to_tier, c.cause, c.upward) for c in b_rows] == [
        ("bronze", "reversal", False), ("silver", "purchase", True)]  # newest first

    next_day = day + timedelta(days=1)
    assert automsg.run_due(conn, at(next_day, 0, 5)) == 1
    ((member_id, text),) = _tier_ups(h)
    assert member_id == _member(h, a).id
    assert "نقره‌ای" in text and persian_digits("100,000,000").replace(",", "٬") in text
    assert automsg.run_due(conn, at(next_day, 1)) == 0  # the day is done
    assert automsg.run_due(conn, at(next_day + timedelta(days=1), 0, 5)) == 0  # the key
    assert len(_tier_ups(h)) == 1

    # the worker sends it in daylight
    rec = Recorder()
    worker = SmsWorker(db, rec)
    try:
        worker.run_once(at(next_day, 10))
    finally:
        worker.stop()
    assert [(p, k) for p, t, k in rec.sent if t == text] == [(a, "tier_up")]

    # a reversal takes a back to bronze: a row, no tier_up
    clock.now = at(next_day + timedelta(days=1), 12)
    assert h.handle(reversal(lift, occurred_at=clock.iso())).code == "00"
    assert _member(h, a).tier == "bronze"
    fall = store_tiers.history(conn, _member(h, a).id)[0]
    assert (fall.from_tier, fall.to_tier, fall.cause, fall.upward) == (
        "silver", "bronze", "reversal", False)
    assert automsg.run_due(conn, at(next_day + timedelta(days=2), 0, 5)) == 0
    assert len(_tier_ups(h)) == 1
