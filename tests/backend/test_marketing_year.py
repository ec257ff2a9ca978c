"""A club through a year on a fake clock, the pure cores together: occasions and birthdays
due each night, a campaign with a hold-out sent at night under a daily limit, a restart in
the middle. The store and the SMS worker are wired later; here the outbox is a dict keyed
by idempotency key, as the outbox table's UNIQUE key will be."""

from __future__ import annotations

from collections import Counter
from datetime import date, datetime, time, timedelta

from backend.campaign_effect import split_holdout
from backend.marketing_rules import Delivery, Dropped, Message, Release, Settings
from backend.occasions import AutoMessage, MemberFacts, due_messages, load_occasions
from protocols.persian import TEHRAN

OCC = load_occasions()
SETTINGS = Settings(club_daily=12)
MESSAGES = [
    AutoMessage("birthday", "birthday", "t"),
    AutoMessage("occasion:nowruz", "occasion", "t", occasion="nowruz"),
    AutoMessage("occasion:yalda", "occasion", "t", occasion="yalda", offset_days=-1),
    AutoMessage("winback", "winback", "t", days=60),
    AutoMessage("expiring", "expiring", "t", days=7),
]
KIND = {"birthday": "birthday", "winback": "winback", "expiring": "expiring"}


def members() -> list[MemberFacts]:
    out = []
    for i in range(1, 41):
        out.append(MemberFacts(
            i, date(2025, 1, 1) + timedelta(days=i),
            birthday_jalali=(1 + i % 12, 1 + (i * 7) % 29),
            last_purchase_on=date(2026, 3, 1) + timedelta(days=3 * i),
            expiring=((date(2026, 9, 1) + timedelta(days=i), 10_000 * i),),
        ))
    return out


def consent_of(i: int) -> bool:
    return i % 5 != 0


def test_a_year_of_messages_each_once_in_daylight_with_consent() -> None:
    club = members()
    consents = {m.member_id: consent_of(m.member_id) for m in club}
    outbox: dict[str, Message] = {}  # idempotency key -> message (UNIQUE)
    released: list[Release] = []
    dropped: list[Dropped] = []
    d = Delivery(SETTINGS, consents)
    target = [m.member_id for m in club if consents[m.member_id]]
    send, held = split_holdout(target, b"campaign-seed-0001", 0.10)
    campaign_at = datetime(2026, 6, 10, 22, 0, tzinfo=TEHRAN)  # in quiet hours
    restart_on = date(2026, 9, 3)

    day = date(2026, 3, 1)
    while day < date(2027, 3, 1):
        if day == restart_on:  # a new process: today's sends and unsent rows from the outbox
            sent_today = [(r.message.member_id, r.at) for r in released
                          if r.at.astimezone(TEHRAN).date() == day]
            pending = d.pending
            d = Delivery(SETTINGS, consents, sent=sent_today)
            for msg in pending:
                d.submit(msg, datetime.combine(day, time(0, 1), TEHRAN))
        job = datetime.combine(day, time(0, 5), TEHRAN)
        for m in club:
            for due in due_messages(m, MESSAGES, day, OCC):
                if due.idempotency_key in outbox:
                    continue  # the outbox refuses a key twice
                kind = KIND.get(due.message_key, "occasion")
                msg = Message(due.idempotency_key, m.member_id, kind,
                              datetime.combine(day, time(10), TEHRAN))
                outbox[msg.id] = msg
                d.submit(msg, job)
        if day == campaign_at.date():
            for member in send:
                msg = Message(f"campaign:1:{member}", member, "campaign", campaign_at)
                outbox[msg.id] = msg
                d.submit(msg, campaign_at)
        end = datetime.combine(day + timedelta(days=1), time(0, 5), TEHRAN)
        now = job
        while True:
            for ev in d.poll(now):
                (released if isinstance(ev, Release) else dropped).append(ev)
            nxt = d.next_wakeup(now)
            if nxt is None or nxt >= end:
                break
            now = nxt
        day += timedelta(days=1)

    ids = [r.message.id for r in released]
    assert len(ids) == len(set(ids))  # each message sent once
    assert set(ids) | {e.message.id for e in dropped} == set(outbox) - {m.id for m in d.pending}
    for r in released:
        local = r.at.astimezone(TEHRAN)
        assert time(9) <= local.time() < time(21)
        assert consents[r.message.member_id]
        assert r.at >= r.message.due_at
    per = Counter((r.message.member_id, r.at.astimezone(TEHRAN).date()) for r in released)
    assert max(per.values()) == 1
    assert max(Counter(r.at.astimezone(TEHRAN).date() for r in released).values()) <= 12
    assert all(not consents[e.message.member_id] for e in dropped)
    # the hold-out got nothing of the campaign; the campaign began the next morning
    campaign = [r for r in released if r.message.id.startswith("campaign:")]
    assert {r.message.member_id for r in campaign} == set(send)
    assert not {r.message.member_id for r in campaign} & set(held) and held
    first = min(r.at for r in campaign).astimezone(TEHRAN)
    assert first == datetime(2026, 6, 11, 9, 0, tzinfo=TEHRAN)
    # every consenting member had a birthday, win-back, expiring, Nowruz and Yalda SMS
    kinds = Counter(r.message.id.split(":")[1] for r in released)
    n = len(target)
    assert kinds["birthday"] == n and kinds["winback"] == n and kinds["expiring"] == n
    yalda = [r for r in released if r.message.id.startswith("auto:occasion:yalda:")]
    assert len(yalda) == n and {r.message.id.rsplit(":", 1)[1] for r in yalda} == {
        "2026-12-20"}
    nowruz = [r for r in released if r.message.id.startswith("auto:occasion:nowruz:")]
    assert len(nowruz) == n and {r.message.id.rsplit(":", 1)[1] for r in nowruz} == {
        "2026-03-21"}  # Nowruz 1405; 1406's (2027-03-21) is after the year simulated
