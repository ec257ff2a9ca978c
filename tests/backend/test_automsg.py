"""Automatic messages end to end on both engines, on a fake clock: the daily job queues
what occasions.due_messages says under its idempotency key with its gift in the ledger;
the SMS worker's marketing gate sends each once, in daylight, within the limits, never to
a member without consent; two job runners and a restart in the middle change nothing."""

from __future__ import annotations

import threading
from collections import Counter
from datetime import UTC, date, datetime, time, timedelta

import jdatetime
import pytest

from backend import automsg, cli, ledger, store, store_automsg, store_marketing, store_tiers
from backend.marketing_rules import Settings
from backend.occasions import AutoMessage
from backend.program import Program
from backend.sms import SmsWorker
from backend.store import transaction
from protocols.persian import TEHRAN
from tests.backend.core_helpers import Recorder


def tehran(d: date, h: int = 0, m: int = 0) -> datetime:
    return datetime.combine(d, time(h, m), TEHRAN)


def club_id(db: str) -> int:
    conn = store.connect(db)
    try:
        return conn.execute("SELECT MIN(id) FROM clubs").fetchone()[0]
    finally:
        conn.close()


MESSAGES = [
    AutoMessage("birthday", "birthday", "{name} عزیز، تولدت مبارک! هدیه {gift}", gift_credit=50_000,
                gift_days=30),
    AutoMessage("occasion:nowruz", "occasion", "{occasion} مبارک از {shop}", occasion="nowruz"),
    AutoMessage("occasion:yalda", "occasion", "شب {occasion} خوش", occasion="yalda",
                offset_days=-1),
    AutoMessage("winback", "winback", "{days} روز است ندیدیمتان", days=60),
    AutoMessage("expiring", "expiring", "{amount} اعتبار شما {expiry_date} تمام می‌شود", days=7),
    AutoMessage("tier_up", "tier_up", "سطح شما {tier} شد؛ سطح بعد از {next_threshold}"),
]
#: a Tehran night three members rise to silver (a purchase's retier records it)
TIER_DAY = date(2026, 6, 10)
TIER_RISERS = (0, 1, 3)  # the 4th member (index 3) has no consent


def test_cli_set_list_off_and_unknown_placeholder(
    db: str, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["--db", db]
    assert cli.main(["automsg", "set", "birthday", "--template", "تولدت مبارک {name}",
                     "--gift", "50000", "--gift-days", "30", *args]) == 0
    capsys.readouterr()
    for bad, why in (("سلام {foo}", "unknown placeholder {foo}"),
                     ("{days} روز", "unknown placeholder {days}")):  # not a birthday's
        assert cli.main(["automsg", "set", "birthday", "--template", bad, *args]) == 2
        assert why in capsys.readouterr().err
    assert cli.main(["automsg", "set", "occasion:nope", "--template", "x", *args]) == 2
    assert "no such occasion" in capsys.readouterr().err
    assert cli.main(["automsg", "set", "winback", "--template", "x", *args]) == 2  # no --days
    capsys.readouterr()
    assert cli.main(["automsg", "list", *args]) == 0
    out = capsys.readouterr().out
    assert "birthday" in out and "on" in out and "تولدت مبارک {name}" in out
    assert "gift=50,000 rials for 30 days" in out and "winback" not in out
    assert cli.main(["automsg", "off", "birthday", *args]) == 0
    assert cli.main(["automsg", "off", "nothing", *args]) == 2
    capsys.readouterr()
    assert cli.main(["automsg", "list", *args]) == 0
    assert "birthday             off" in capsys.readouterr().out


def _members(db: str, club: int) -> dict[int, tuple[str, bool]]:
    """12 members: birthdays through the year (Gregorian, as stored), every 4th without
    consent, some with credit expiring in the year; enrolled in Bahman 1404."""
    conn = store.connect(db)
    enrolled = tehran(date(2026, 2, 1), 12)
    out = {}
    with transaction(conn):
        for i in range(12):
            m = store.insert_member(conn, phone=f"0912100{i:04d}", referrer_id=None,
                                    tier="bronze", now=enrolled, club_id=club)
            consent = i % 4 != 3
            store_marketing.set_consent_by_phone(conn, m.phone, consent, enrolled)
            store.set_birthday(conn, m.id, (date(1990, 3, 25) + timedelta(days=30 * i)).isoformat())
            if i % 3 == 0:
                ledger.credit(conn, m.id, "adjustment", 20_000 + i, f"seed:{i}", earned_at=enrolled,
                              expires_at=tehran(date(2026, 5, 1) + timedelta(days=20 * i), 12))
            out[m.id] = (m.phone, consent)
        for msg in MESSAGES:
            store_automsg.save(conn, club, msg)
        store_marketing.set_settings(conn, club, Settings(club_daily=5))
    conn.close()
    return out


def _rise(db: str, member_ids: list[int], now: datetime) -> None:
    """Bronze to silver for `member_ids`, as handling.context.retier records it."""
    conn = store.connect(db)
    try:
        with transaction(conn):
            for mid in member_ids:
                store.set_tier(conn, mid, "silver")
                store_tiers.record(conn, store_tiers.change(
                    Program(), member_id=mid, club_id=store.member_by_id(conn, mid).club_id,
                    from_tier="bronze", to_tier="silver", at=now, cause="purchase"))
    finally:
        conn.close()


def test_a_year_two_runners_and_a_restart(db: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(automsg, "CHUNK", 2)  # a day's SMS in several transactions
    club = club_id(db)
    members = _members(db, club)
    rec = Recorder()
    conns = [store.connect(db), store.connect(db)]
    workers = [SmsWorker(db, rec, batch=3), SmsWorker(db, rec, batch=3)]
    day = date(2026, 3, 1)
    down = {date(2026, 3, 20)}  # Nowruz eve and the backend is down: caught up next day
    hours = [(0, 5), (3, 0), (8, 59), (9, 0), (9, 1), (13, 0), (20, 59), (21, 0), (23, 30)]
    queued = 0
    while day < date(2027, 3, 1):
        if day == date(2026, 9, 3):  # a restart: new connections, new workers
            for c in conns:
                c.close()
            for w in workers:
                w.stop()
            conns = [store.connect(db), store.connect(db)]
            workers = [SmsWorker(db, rec, batch=3), SmsWorker(db, rec, batch=3)]
        if day not in down:
            for h, m in hours:
                now = tehran(day, h, m)
                if (h, m) == (0, 5):
                    # both runners at once: one runs the day, the other finds it done
                    results: list[int] = []

                    def job(c: object, at: datetime = now, out: list[int] = results) -> None:
                        out.append(automsg.run_due(c, at))  # type: ignore[arg-type]

                    threads = [threading.Thread(target=job, args=(c,)) for c in conns]
                    for t in threads:
                        t.start()
                    for t in threads:
                        t.join()
                    # both ran to the end (in chunks each may queue a part: the keys
                    # make the other's part a no-op; the count below checks no SMS twice)
                    assert len(results) == 2, results
                    queued += sum(results)
                    assert automsg.run_due(conns[0], now + timedelta(hours=1)) == 0
                ts = [threading.Thread(target=w.run_once, args=(now,)) for w in workers]
                for t in ts:
                    t.start()
                for t in ts:
                    t.join()
        if day == TIER_DAY:  # after the day's last worker run
            _rise(db, [list(members)[i] for i in TIER_RISERS], tehran(day, 23, 45))
        day += timedelta(days=1)
    for c in conns:
        c.close()
    for w in workers:
        w.stop()

    conn = store.connect(db)
    rows = conn.execute("SELECT key, member_id, status, finished_at, kind, last_error"
                        " FROM sms_outbox").fetchall()
    gifts = conn.execute("SELECT member_id, amount, at FROM ledger WHERE key LIKE 'auto:%'"
                         ).fetchall()
    lots = conn.execute("SELECT COUNT(*) FROM lots l JOIN ledger g ON g.member_id = l.member_id"
                        " AND g.key LIKE 'auto:%' AND l.amount = g.amount"
                        " AND l.expires_at - g.at = 30 * 86400").fetchone()[0]
    conn.close()
    assert len(rows) == queued
    sent = [r for r in rows if r[2] == "sent"]
    assert {r[2] for r in rows} <= {"sent", "pending"}  # nothing dropped: consent was checked
    assert all(members[r[1]][1] for r in rows)  # none queued for a member without consent
    # each sent exactly once
    assert len(rec.sent) == len(sent) and len(set(rec.sent)) == len(rec.sent)
    consenting = {p for p, c in members.values() if c}
    assert {p for p, _, _ in rec.sent} <= consenting
    # in daylight, Tehran; at most one a member a day and 5 a club a day
    local = [datetime.fromtimestamp(r[3], UTC).astimezone(TEHRAN) for r in sent]
    assert all(time(9) <= t.time() < time(21) for t in local)
    per_member_day = Counter((r[1], t.date()) for r, t in zip(sent, local, strict=True))
    assert max(per_member_day.values()) == 1
    assert max(Counter(t.date() for t in local).values()) <= 5
    kinds = Counter(r[4] for r in sent)
    n_consent = sum(1 for _, c in members.values() if c)
    assert kinds["birthday"] == n_consent  # each consenting member's birthday, once
    assert kinds["occasion"] == 2 * n_consent  # Nowruz (caught up after the day down), Yalda
    assert kinds["winback"] == n_consent  # no visit since enrolment: once, not every day
    # the tier rise: once for each consenting riser, from the next day, with the threshold
    risers = [list(members)[i] for i in TIER_RISERS if members[list(members)[i]][1]]
    ups = [(r, t) for r, t in zip(sent, local, strict=True) if r[4] == "tier_up"]
    assert sorted(r[1] for r, _ in ups) == sorted(risers)
    assert all(TIER_DAY < t.date() <= TIER_DAY + timedelta(days=3) for _, t in ups)
    assert all(r[0].endswith(TIER_DAY.isoformat()) for r, _ in ups)
    up_texts = [text for _, text, kind in rec.sent if kind == "tier_up"]
    assert len(up_texts) == len(risers)
    assert all("نقره‌ای" in x and "۱۰۰٬۰۰۰٬۰۰۰ ریال" in x for x in up_texts)
    # the seeded lots of consenting members, and the birthday gifts (lots too) whose
    # 7-days-before fell within the year
    seeded = sum(1 for i, (_, c) in enumerate(members.values()) if c and i % 3 == 0)
    gift_ends = sum(1 for _, _, at in gifts if datetime.fromtimestamp(at, UTC).astimezone(
        TEHRAN).date() + timedelta(days=30 - 7) < date(2027, 3, 1))
    assert kinds["expiring"] == seeded + gift_ends
    # Nowruz on Farvardin 1 1405 (2026-03-21) although the backend was down the day before;
    # Yalda on the eve (offset -1): 1405/09/29 = 2026-12-20
    occasion_days = {t.date() for r, t in zip(sent, local, strict=True) if r[4] == "occasion"}
    assert date(2026, 3, 21) in occasion_days and date(2026, 12, 20) in occasion_days
    # birthdays on the member's Jalali month/day (stored Gregorian, converted), sent that day
    # or, behind the daily limit, within two days
    conn = store.connect(db)
    born = dict(conn.execute("SELECT id, birthday FROM members").fetchall())
    conn.close()
    for r, t in zip(sent, local, strict=True):
        if r[4] == "birthday":
            occurrence = date.fromisoformat(r[0].rsplit(":", 1)[1])
            j_birth = jdatetime.date.fromgregorian(date=date.fromisoformat(born[r[1]]))
            j_occ = jdatetime.date.fromgregorian(date=occurrence)
            assert (j_occ.month, j_occ.day) == (j_birth.month, j_birth.day)
            assert occurrence <= t.date() <= occurrence + timedelta(days=2)
    # gifts: one per birthday sent, in the ledger, expiring 30 days on
    assert len(gifts) == kinds["birthday"] and all(a == 50_000 for _, a, _ in gifts)
    assert lots >= len(gifts)


# --- two real processes in lockstep on one database, then a restart (two new ones) -------

STEPS = [(d, h) for d in (date(2026, 3, 19) + timedelta(days=i) for i in range(8))
         for h in (0, 9, 12, 22)]


def _runner(db: str, out: str, steps: list[tuple[date, int]], barrier: object) -> None:
    """One backend process: the nightly job and the SMS worker at each fake instant, in
    step with the other process (a multiprocessing barrier)."""
    from backend.sms import FileSender

    conn = store.connect(db)
    worker = SmsWorker(db, FileSender(out), batch=2)
    try:
        for d, h in steps:
            barrier.wait(60)  # type: ignore[attr-defined]
            now = tehran(d, h, 5)
            automsg.run_due(conn, now)
            worker.run_once(now)
    finally:
        worker.stop()
        conn.close()


def test_two_processes_and_a_restart_send_each_once(db: str, tmp_path: object) -> None:
    import json
    import multiprocessing
    from pathlib import Path

    club = club_id(db)
    members = _members(db, club)
    ctx = multiprocessing.get_context("spawn")
    files = [Path(str(tmp_path)) / f"sms{i}.jsonl" for i in range(4)]
    half = len(STEPS) // 2
    for part, steps in enumerate((STEPS[:half], STEPS[half:])):
        barrier = ctx.Barrier(2)
        procs = [ctx.Process(target=_runner, args=(db, str(files[2 * part + i]), steps,
                                                   barrier)) for i in range(2)]
        for p in procs:
            p.start()
        for p in procs:
            p.join(300)
            assert p.exitcode == 0
    lines = [json.loads(x) for f in files if f.exists() for x in f.read_text().splitlines()]
    marketing = [x for x in lines if x["kind"] != "purchase"]
    assert len({(x["phone"], x["text"]) for x in marketing}) == len(marketing)
    consenting = {p for p, c in members.values() if c}
    # Nowruz for every consenting member (the job ran in one process a day)
    nowruz = [x for x in marketing if x["kind"] == "occasion"]
    assert sorted(x["phone"] for x in nowruz) == sorted(consenting)
    assert all(x["phone"] in consenting for x in marketing)
    conn = store.connect(db)
    sent = conn.execute("SELECT member_id, finished_at FROM sms_outbox WHERE status = 'sent'"
                        ).fetchall()
    runs = conn.execute("SELECT last_day FROM automsg_runs").fetchall()
    conn.close()
    assert len(sent) == len(marketing)
    local = [datetime.fromtimestamp(t, UTC).astimezone(TEHRAN) for _, t in sent]
    assert all(time(9) <= t.time() < time(21) for t in local)
    assert max(Counter((m, t.date()) for (m, _), t in zip(sent, local, strict=True)).values()) == 1
    assert max(Counter(t.date() for t in local).values()) <= 5
    assert runs == [(STEPS[-1][0].isoformat(),)]


def test_a_message_for_a_segment_reaches_only_that_segment(db: str) -> None:
    """An automatic message with a segment goes to the members the nightly run put in it
    (store_segments), and to nobody else; members not yet scored get none."""
    from backend import store_segments
    from backend.segments import MemberSegment, Scores

    club = club_id(db)
    nowruz = date(2026, 3, 21)  # 1 Farvardin 1405
    conn = store.connect(db)
    enrolled = tehran(date(2026, 2, 1), 12)
    with transaction(conn):
        ids = [store.insert_member(conn, phone=f"0912200{i:04d}", referrer_id=None,
                                   tier="bronze", now=enrolled, club_id=club).id
               for i in range(3)]
        for mid in ids:
            conn.execute("UPDATE members SET marketing_consent = 1 WHERE id = ?", (mid,))
        store_segments.write(conn, club, nowruz - timedelta(days=1), [
            MemberSegment(ids[0], Scores(2, 1, 1, 1), "at_risk"),
            MemberSegment(ids[1], Scores(5, 5, 5, 5), "champion"),
        ])  # ids[2] has no segment yet
        store_automsg.save(conn, club, AutoMessage(
            "occasion:nowruz", "occasion", "{occasion} مبارک", occasion="nowruz",
            segment="at_risk"))
    try:
        assert automsg.run_due(conn, tehran(nowruz, 0, 5)) == 1
        rows = conn.execute("SELECT member_id, kind FROM sms_outbox WHERE kind = 'occasion'"
                            ).fetchall()
        assert [tuple(r) for r in rows] == [(ids[0], "occasion")]
    finally:
        conn.close()
