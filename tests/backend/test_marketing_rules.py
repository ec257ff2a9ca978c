"""Delivery rules for SMS: consent, quiet hours, daily limits (backend.marketing_rules)."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, time, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from backend.marketing_rules import (
    Delivery,
    Dropped,
    Message,
    Release,
    Settings,
    is_stop_reply,
)
from protocols.persian import TEHRAN

T0 = datetime(2026, 12, 1, 6, 0, tzinfo=UTC)  # 09:30 Tehran


def tehran(h: int, m: int = 0, day: int = 1) -> datetime:
    return datetime(2026, 12, day, h, m, tzinfo=TEHRAN)


def test_transactional_goes_at_once_even_at_night_and_without_consent() -> None:
    d = Delivery()
    night = tehran(23, 30)
    for kind in ("purchase", "reversal", "otp"):
        r = d.submit(Message(kind, 1, kind, night), night)
        assert r == Release(Message(kind, 1, kind, night), night)
    assert d.pending == ()


def test_quiet_hours_wait_for_nine() -> None:
    d = Delivery(consents={1: True})
    late = tehran(22, 15)
    assert d.submit(Message("c1", 1, "campaign", late), late) is None
    assert d.poll(late) == []
    assert d.next_wakeup(late) == tehran(9, 0, day=2)
    assert d.poll(tehran(8, 59, day=2)) == []
    [r] = d.poll(tehran(9, 0, day=2))
    assert isinstance(r, Release) and r.at == tehran(9, 0, day=2)


def test_one_marketing_sms_per_member_per_day_and_club_limit() -> None:
    d = Delivery(Settings(club_daily=2), consents={1: True, 2: True, 3: True})
    now = tehran(10)
    for mid, member in (("a", 1), ("b", 1), ("c", 2), ("d", 3)):
        d.submit(Message(mid, member, "campaign", now), now)
    assert [e.message.id for e in d.poll(now)] == ["a", "c"]
    plan = d.schedule(now)
    assert plan == {"b": tehran(9, day=2), "d": tehran(9, day=2)}


def test_no_consent_is_dropped_and_la_ghv_revokes() -> None:
    d = Delivery(consents={1: True})
    now = tehran(10)
    d.submit(Message("x", 1, "occasion", now + timedelta(hours=1)), now)
    d.submit(Message("y", 2, "winback", now), now)
    assert d.reply(1, " لغو ۱۱") and not d.reply(1, "سلام")
    events = d.poll(now + timedelta(hours=2))
    assert all(isinstance(e, Dropped) for e in events) and len(events) == 2
    assert d.schedule(now) == {}


def test_every_outbox_kind_is_classified() -> None:
    from backend.marketing_rules import KIND_CLASS, MARKETING
    from backend.occasions import KINDS as AUTO_KINDS
    from backend.sms.outbox import KINDS as OUTBOX_KINDS

    assert set(OUTBOX_KINDS) <= set(KIND_CLASS)
    assert all(KIND_CLASS[k] == MARKETING for k in AUTO_KINDS)


def test_stop_reply_forms() -> None:
    assert is_stop_reply("لغو") and is_stop_reply("لغو11") and is_stop_reply("\u200cلغو.")
    assert not is_stop_reply("لغو کنید") and not is_stop_reply("") and not is_stop_reply("no")


def test_refusals_and_restart_seed() -> None:
    with pytest.raises(ValueError):
        Message("m", 1, "spam", T0)
    with pytest.raises(ValueError):
        Message("m", 1, "campaign", datetime(2026, 1, 1))
    d = Delivery(consents={1: True}, sent=[(1, tehran(9, 30))])
    d.submit(Message("m", 1, "campaign", tehran(10)), tehran(10))
    with pytest.raises(ValueError, match="already"):
        d.submit(Message("m", 1, "campaign", tehran(10)), tehran(10))
    assert d.poll(tehran(10)) == []  # the SMS sent before the restart counts
    assert d.cancel("m") and not d.cancel("m")


KINDS = ["campaign", "occasion", "winback", "purchase", "otp", "reversal"]
event = st.tuples(
    st.integers(0, 4 * 24 * 60),  # minute of submission
    st.integers(0, 3 * 24 * 60),  # due delay in minutes
    st.integers(0, 4),  # member
    st.sampled_from(KINDS),
)
revoke = st.tuples(st.integers(0, 4 * 24 * 60), st.integers(0, 4))


@settings(max_examples=150, deadline=None)
@given(
    st.lists(event, max_size=40),
    st.lists(revoke, max_size=3),
    st.dictionaries(st.integers(0, 4), st.booleans()),
    st.one_of(st.none(), st.integers(1, 5)),
    st.sampled_from([(time(21), time(9)), (time(12), time(14)), (time(0), time(0))]),
)
def test_invariants_under_a_fake_clock(events, revokes, consents, limit, quiet) -> None:
    s = Settings(quiet_start=quiet[0], quiet_end=quiet[1], club_daily=limit)
    d = Delivery(s, consents=dict(consents))
    consent = dict(consents)
    inputs = sorted(
        [(T0 + timedelta(minutes=m), 0, ("msg", i, delay, member, kind))
         for i, (m, delay, member, kind) in enumerate(events)]
        + [(T0 + timedelta(minutes=m), 1, ("stop", member)) for m, member in revokes]
    )
    released: list[Release] = []
    dropped: list[Dropped] = []

    def take(evs, now):
        for e in evs:
            # consent is checked against what the member said before `now`
            if isinstance(e, Release):
                assert consent.get(e.message.member_id, False)
                released.append(e)
            else:
                dropped.append(e)

    now = T0
    i = 0
    for _ in range(10_000):
        wake = d.next_wakeup(now)
        nxt = inputs[i][0] if i < len(inputs) else None
        if nxt is None and wake is None:
            break
        now = min(t for t in (wake, nxt) if t is not None)
        while i < len(inputs) and inputs[i][0] == now:
            item = inputs[i][2]
            if item[0] == "msg":
                _, n, delay, member, kind = item
                msg = Message(f"m{n}", member, kind, now + timedelta(minutes=delay))
                r = d.submit(msg, now)
                if not msg.marketing:
                    assert r is not None and r.at == now  # transactional: immediate
                    released.append(r)
                else:
                    assert r is None
            else:
                d.reply(item[1], "لغو")
                consent[item[1]] = False
            i += 1
        take(d.poll(now), now)
    assert d.pending == () or limit == 0

    marketing = [r for r in released if r.message.marketing]
    per_member_day = Counter((r.message.member_id, r.at.astimezone(TEHRAN).date())
                             for r in marketing)
    assert all(n == 1 for n in per_member_day.values())
    if limit is not None:
        per_day = Counter(r.at.astimezone(TEHRAN).date() for r in marketing)
        assert all(n <= limit for n in per_day.values())
    for r in marketing:
        assert not s.quiet(r.at)
        assert r.at >= r.message.due_at
    ids = [e.message.id for e in released + dropped]
    assert len(ids) == len(set(ids)) == len(events)
    for e in dropped:
        assert not consent.get(e.message.member_id, False)
