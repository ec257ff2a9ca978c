"""SMS campaigns on both engines: the reach is the filter's, the hold-out is never queued
nor sent, a second add or enqueue queues nothing twice, cancel stops what is pending and
keeps what is sent, the effect counts buyers within 7/30 days against the hold-out, and
bad input is refused changing nothing."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, time, timedelta

import pytest

from backend import cli, store, store_campaigns, store_registry, store_segments
from backend.segments import MemberSegment, Scores
from backend.sms import SmsWorker
from backend.store import PurchaseRecord, transaction
from backend.store_campaigns import CampaignError, Filter
from protocols.persian import TEHRAN
from tests.backend.core_helpers import Recorder
from tests.backend.engines import TEST_TERMINALS


def tehran(d: date, h: int = 0, m: int = 0) -> datetime:
    return datetime.combine(d, time(h, m), TEHRAN)


ENROLLED = tehran(date(2026, 1, 10), 12)
START = tehran(date(2026, 3, 1), 10)


def _buy(conn: store.Connection, member_id: int, at: datetime, amount: int, key: str) -> None:
    terminal = store_registry.terminal(conn, TEST_TERMINALS[0])
    assert terminal is not None
    p = PurchaseRecord(key=key, member_id=member_id, terminal_id=TEST_TERMINALS[0],
                       quote_id=None, amount=amount, gross=amount, approved=True, redeemed=0,
                       earned=0, recovered=0, earn_lot=None, occurred_at=int(at.timestamp()),
                       branch_id=terminal.branch_id)
    store.insert_purchase(conn, p)


def _club(conn: store.Connection) -> int:
    return int(conn.execute("SELECT MIN(id) FROM clubs").fetchone()[0])


def _members(conn: store.Connection, club: int, n: int = 40) -> list[int]:
    """n members: every 5th without consent, odd ones silver, each 3rd bought in February
    (100,000 rials times its index), the first 10 at_risk."""
    ids = []
    with transaction(conn):
        for i in range(n):
            m = store.insert_member(conn, phone=f"0912300{i:04d}", referrer_id=None,
                                    tier="silver" if i % 2 else "bronze", now=ENROLLED,
                                    club_id=club)
            conn.execute("UPDATE members SET marketing_consent = ?, name = ? WHERE id = ?",
                         (int(i % 5 != 4), f"م{i}", m.id))
            if i % 3 == 0:
                _buy(conn, m.id, tehran(date(2026, 2, 1 + i % 20), 12), 100_000 * (i + 1),
                     f"feb:{i}")
            ids.append(m.id)
        store_segments.write(conn, club, date(2026, 2, 28), [
            MemberSegment(mid, Scores(2, 1, 1, 1), "at_risk") for mid in ids[:10]])
    return ids


def _add(conn: store.Connection, club: int, f: Filter, at: datetime = START,
         holdout: float = 0.1) -> store_campaigns.Campaign:
    with transaction(conn):
        c, _ = store_campaigns.add(conn, club, "{name} عزیز، تخفیف ویژه {shop}", f, at=at,
                                   now=ENROLLED + timedelta(days=40), holdout=holdout)
        store_campaigns.enqueue(conn, c.id, ENROLLED + timedelta(days=40))
    return c


def _outbox(conn: store.Connection, c: int) -> dict[int, str]:
    return {int(m): s for m, s in conn.execute(
        "SELECT member_id, status FROM sms_outbox WHERE key LIKE ?", (f"campaign:{c}:%",))}


def test_reach_is_the_filter_and_the_holdout_is_never_queued(conn: store.Connection) -> None:
    club = _club(conn)
    ids = _members(conn, club)
    consent = {mid for i, mid in enumerate(ids) if i % 5 != 4}
    cases = {
        Filter(): consent,
        Filter(tier="silver"): {m for i, m in enumerate(ids) if i % 2 and m in consent},
        Filter(segment="at_risk"): set(ids[:10]) & consent,
        Filter(min_spend=1_000_000): {m for i, m in enumerate(ids)
                                      if i % 3 == 0 and 100_000 * (i + 1) >= 1_000_000
                                      and m in consent},
        Filter(visited_after=date(2026, 2, 1)): {m for i, m in enumerate(ids)
                                                 if i % 3 == 0 and m in consent},
        Filter(visited_before=date(2026, 2, 1)): {m for i, m in enumerate(ids)
                                                  if i % 3 and m in consent},
        Filter(branch="main"): {m for i, m in enumerate(ids) if i % 3 == 0 and m in consent},
    }
    for f, want in cases.items():
        assert {t.member_id for t in store_campaigns.targets(conn, club, f)} == want, f
    c = _add(conn, club, Filter())
    queued = _outbox(conn, c.id)
    held = store_campaigns.holdout_members(conn, c.id)
    assert len(held) == round(0.1 * len(consent)) == 3
    assert set(queued) | held == consent and not set(queued) & held
    text = conn.execute("SELECT text, kind FROM sms_outbox WHERE member_id = ?",
                        (min(queued),)).fetchone()
    assert tuple(text) == (f"م{ids.index(min(queued))} عزیز، تخفیف ویژه "
                           + conn.execute("SELECT name FROM clubs WHERE id = ?",
                                          (club,)).fetchone()[0], "campaign")


def test_add_and_enqueue_again_are_idempotent(conn: store.Connection) -> None:
    club = _club(conn)
    _members(conn, club)
    c = _add(conn, club, Filter(tier="silver"))
    before = _outbox(conn, c.id)
    c2 = _add(conn, club, Filter(tier="silver"))  # the same add: the same campaign
    assert c2.id == c.id
    with transaction(conn):
        assert store_campaigns.enqueue(conn, c.id, START)[0] == 0
    assert _outbox(conn, c.id) == before
    assert conn.execute("SELECT COUNT(*) FROM campaigns").fetchone()[0] == 1


def _send(db: str, at: datetime) -> Recorder:
    rec = Recorder()
    worker = SmsWorker(db, rec, batch=50)
    try:
        for hour in range(0, 48):
            worker.run_once(at + timedelta(hours=hour))
    finally:
        worker.stop()
    return rec


def test_sent_never_to_the_holdout_and_cancel_keeps_sent(db: str) -> None:
    conn = store.connect(db)
    try:
        club = _club(conn)
        ids = _members(conn, club)
        now_c = _add(conn, club, Filter(), at=START)
        later = _add(conn, club, Filter(tier="silver"), at=START + timedelta(days=5))
        # no per-member daily limit clash: the second is 5 days later, sent below only once
        rec = _send(db, START - timedelta(hours=1))
        phones = {mid: conn.execute("SELECT phone FROM members WHERE id = ?", (mid,)
                                    ).fetchone()[0] for mid in ids}
        held = store_campaigns.holdout_members(conn, now_c.id)
        sent_phones = {p for p, _, _ in rec.sent}
        assert sent_phones and not sent_phones & {phones[m] for m in held}
        n = store_campaigns.counts(conn, now_c.id)
        assert n["sent"] == len(rec.sent) == len(_outbox(conn, now_c.id)) and n["pending"] == 0
        assert store_campaigns.counts(conn, later.id)["pending"] == len(_outbox(conn, later.id))
        with transaction(conn):
            assert store_campaigns.cancel(conn, later.id, START) == len(_outbox(conn, later.id))
        with transaction(conn):  # all sent: done, and a done campaign is not cancelled
            assert store_campaigns.status(conn, now_c.id, START + timedelta(days=1)) == "done"
        with pytest.raises(CampaignError, match="done already"), transaction(conn):
            store_campaigns.cancel(conn, now_c.id, START)
        assert store_campaigns.counts(conn, now_c.id)["sent"] == n["sent"]
        got = store_campaigns.counts(conn, later.id)
        assert got["pending"] == 0 and got["failed"] == len(_outbox(conn, later.id))
        assert _send(db, START + timedelta(days=5)).sent == []
    finally:
        conn.close()


def test_effect_counts_buyers_in_7_and_30_days_against_the_holdout(db: str) -> None:
    conn = store.connect(db)
    try:
        club = _club(conn)
        _members(conn, club)
        c = _add(conn, club, Filter(segment="at_risk"), holdout=0.25)
        _send(db, START - timedelta(hours=1))
        reached = sorted(store_campaigns.counts(conn, c.id) and
                         set(_outbox(conn, c.id)))
        held = sorted(store_campaigns.holdout_members(conn, c.id))
        assert len(reached) == 6 and len(held) == 2  # 8 consenting at_risk members
        with transaction(conn):
            _buy(conn, reached[0], START + timedelta(days=2), 50_000, "a")
            _buy(conn, reached[1], START + timedelta(days=20), 70_000, "b")
            _buy(conn, reached[2], START + timedelta(days=31), 90_000, "c")  # outside
            _buy(conn, reached[3], START - timedelta(hours=1), 10_000, "d")  # before
            _buy(conn, held[0], START + timedelta(days=10), 30_000, "e")
        w7, w30 = store_campaigns.effect(conn, c.id)
        assert (w7.days, w7.reached.members, w7.reached.buyers, w7.reached.sales) == (7, 6, 1,
                                                                                      50_000)
        assert (w7.holdout.members, w7.holdout.buyers) == (2, 0)
        assert (w30.reached.buyers, w30.reached.sales) == (2, 120_000)
        assert (w30.holdout.buyers, w30.holdout.sales) == (1, 30_000)
    finally:
        conn.close()


def test_bad_input_is_refused_changing_nothing(
    db: str, capsys: pytest.CaptureFixture[str]
) -> None:
    conn = store.connect(db)
    try:
        club = _club(conn)
        _members(conn, club, 5)
        for kwargs, why in (({"f": Filter(segment="vip")}, "unknown segment"),
                            ({"f": Filter(branch="nowhere")}, "no branch"),
                            ({"f": Filter(tier="platinum")}, "unknown tier"),
                            ({"f": Filter(), "text": "سلام {foo}"}, "unknown placeholder"),
                            ({"f": Filter(), "text": "سلام {name"}, "brace"),
                            ({"f": Filter(), "holdout": 1.0}, "hold-out")):
            text = kwargs.pop("text", "سلام {name}")
            with pytest.raises(CampaignError, match=why), transaction(conn):
                store_campaigns.add(conn, club, text, at=START, now=START, **kwargs)
        assert conn.execute("SELECT COUNT(*) FROM campaigns").fetchone()[0] == 0
    finally:
        conn.close()
    args = ["--db", db]
    assert cli.main(["campaign", "add", "--text", "سلام", "--segment", "vip", *args]) == 2
    assert "unknown segment" in capsys.readouterr().err
    assert cli.main(["campaign", "add", "--text", "{x}", *args]) == 2
    assert "unknown placeholder {x}" in capsys.readouterr().err
    assert cli.main(["campaign", "add", "--text", "x", "--at", "1405/13/40", *args]) == 2
    assert "not a time" in capsys.readouterr().err
    conn = store.connect(db)
    try:
        assert conn.execute("SELECT COUNT(*) FROM campaigns").fetchone()[0] == 0
        assert conn.execute("SELECT COUNT(*) FROM sms_outbox").fetchone()[0] == 0
    finally:
        conn.close()


def test_cli_add_dry_run_list_show_cancel(db: str, capsys: pytest.CaptureFixture[str]) -> None:
    conn = store.connect(db)
    try:
        _members(conn, _club(conn), 20)
    finally:
        conn.close()
    args = ["--db", db]
    text = "س" * 80  # Persian: UCS-2, 80 characters are 2 parts
    assert cli.main(["campaign", "add", "--text", text, "--price-per-part", "300",
                     "--dry-run", *args]) == 0
    out = capsys.readouterr().out
    # 16 consenting, 2 held out, 14 SMS of 2 parts at 300 rials
    assert "reach: 16 members (2 held out, 14 to send)" in out
    assert "parts: 28" in out and "cost: 8400 rials" in out and "nothing queued" in out
    # no price given: the club's own, set once with `club marketing --sms-price`
    conn = store.connect(db)
    (name,) = conn.execute("SELECT name FROM clubs").fetchone()
    conn.close()
    for bad in ("-5", "x", str(10**10)):
        assert cli.main(["club", "marketing", name, "--sms-price", bad, *args]) == 2
        assert "SMS" in capsys.readouterr().err
    assert cli.main(["club", "marketing", name, "--sms-price", "۲۵۰", *args]) == 0
    assert "250 rials an SMS part" in capsys.readouterr().out
    assert cli.main(["campaign", "add", "--text", text, "--dry-run", *args]) == 0
    assert "cost: 7000 rials" in capsys.readouterr().out
    conn = store.connect(db)
    assert conn.execute("SELECT COUNT(*) FROM sms_outbox").fetchone()[0] == 0
    conn.close()
    add = ["campaign", "add", "--text", text, "--at", "2099-01-01T10:00", *args]
    assert cli.main(add) == 0
    assert "campaign 1 added: 14 SMS queued now, 2 held out" in capsys.readouterr().out
    assert cli.main(add) == 0
    assert "campaign 1 exists already: 0 SMS queued now" in capsys.readouterr().out
    assert cli.main(["campaign", "list", *args]) == 0
    assert "scheduled" in capsys.readouterr().out
    assert cli.main(["campaign", "show", "1", *args]) == 0
    out = capsys.readouterr().out
    assert "sent 0, pending 14, failed 0" in out and "7 days: reached 0/0" in out
    assert cli.main(["campaign", "cancel", "1", *args]) == 0
    assert "14 SMS not sent stopped" in capsys.readouterr().out
    assert cli.main(["campaign", "cancel", "1", *args]) == 2
    assert cli.main(["campaign", "show", "9", *args]) == 2
    assert "no campaign 9" in capsys.readouterr().err
    now = ["campaign", "add", "--text", text, "--tier", "silver", *args]  # send now
    assert cli.main(now) == 0
    [second] = re.findall(r"campaign (\d+) added: 7 SMS queued now", capsys.readouterr().out)
    assert second != "1"
    assert cli.main(now) == 0  # the same script again the same day: not sent twice
    assert f"campaign {second} exists already: 0 SMS queued now" in capsys.readouterr().out


def test_parse_when_iso_and_jalali() -> None:
    from backend.cli_campaigns import parse_when

    assert parse_when("1405/01/05 09:30") == tehran(date(2026, 3, 25), 9, 30)
    assert parse_when("1405/01/05") == tehran(date(2026, 3, 25), 10)
    assert parse_when("2026-03-25T10:00") == tehran(date(2026, 3, 25), 10)
    assert parse_when("2026-03-25T10:00+00:00") == datetime(2026, 3, 25, 10, tzinfo=UTC)


def test_a_campaign_at_night_waits_for_morning_within_the_daily_limit(db: str) -> None:
    """Scheduled at 22:00 Tehran with a club limit of 10 a day: nothing goes before 09:00,
    10 a day, each member once, the hold-out never, over hourly worker runs."""
    from backend import store_marketing
    from backend.marketing_rules import Settings

    conn = store.connect(db)
    try:
        club = _club(conn)
        ids = _members(conn, club)
        with transaction(conn):
            store_marketing.set_settings(conn, club, Settings(club_daily=10))
        night = tehran(date(2026, 3, 1), 22)
        c = _add(conn, club, Filter(), at=night)
        held = store_campaigns.holdout_members(conn, c.id)
        phones = {conn.execute("SELECT phone FROM members WHERE id = ?", (m,)).fetchone()[0]: m
                  for m in ids}
        rec = Recorder()
        worker = SmsWorker(db, rec, batch=50)
        sent_at: dict[str, datetime] = {}
        try:
            for hour in range(0, 24 * 4):
                at = night + timedelta(hours=hour)
                before = len(rec.sent)
                worker.run_once(at)
                for phone, _, _ in rec.sent[before:]:
                    sent_at[phone] = at
        finally:
            worker.stop()
        assert len(rec.sent) == len(sent_at) == len(ids) - len(ids) // 5 - len(held) == 29
        assert not {phones[p] for p in sent_at} & held
        local = [t.astimezone(TEHRAN) for t in sent_at.values()]
        assert all(time(9) <= t.time() < time(21) for t in local)
        per_day: dict[date, int] = {}
        for t in local:
            per_day[t.date()] = per_day.get(t.date(), 0) + 1
        assert sorted(per_day.values()) == [9, 10, 10] and min(per_day) == date(2026, 3, 2)
        assert store_campaigns.counts(conn, c.id) == {"sent": 29, "pending": 0, "failed": 0}
    finally:
        conn.close()
