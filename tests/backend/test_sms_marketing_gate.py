"""The SMS worker applies the marketing rules at send time, on both engines: consent when
the SMS goes, quiet hours (Tehran), the club's daily limit, one a member a day; two
workers on one database never send one member two in a day."""

from __future__ import annotations

import threading
from datetime import datetime, time

import pytest

from backend import cli, store, store_marketing
from backend.marketing_rules import Settings
from backend.sms import SmsWorker, enqueue
from backend.store import transaction
from protocols.persian import TEHRAN
from tests.backend.core_helpers import Recorder


def tehran(*args: int) -> datetime:
    return datetime(*args, tzinfo=TEHRAN)


def setup(db: str, n: int, *, consent: bool = True, daily: int | None = None) -> list[int]:
    conn = store.connect(db)
    now = tehran(2026, 6, 1, 8)
    ids = []
    with transaction(conn):
        club = conn.execute("SELECT MIN(id) FROM clubs").fetchone()[0]
        for i in range(n):
            m = store.insert_member(conn, phone=f"0912000{i:04d}", referrer_id=None,
                                    tier="bronze", now=now, club_id=club)
            store_marketing.set_consent_by_phone(conn, m.phone, consent, now)
            ids.append(m.id)
        store_marketing.set_settings(conn, club, Settings(club_daily=daily))
    conn.close()
    return ids


def queue(db: str, members: list[int], kind: str, tag: str, at: datetime) -> None:
    conn = store.connect(db)
    with transaction(conn):
        club = conn.execute("SELECT MIN(id) FROM clubs").fetchone()[0]
        for mid in members:
            phone = conn.execute("SELECT phone FROM members WHERE id = ?", (mid,)).fetchone()[0]
            enqueue(conn, key=f"{tag}:{mid}", phone=phone, text=f"{tag} {mid}", kind=kind,
                    now=at, club_id=club, member_id=mid)
    conn.close()


def status(db: str) -> dict[str, tuple[str, float, str | None]]:
    conn = store.connect(db)
    try:
        return {k: (s, t, e) for k, s, t, e in conn.execute(
            "SELECT key, status, next_attempt_at, last_error FROM sms_outbox")}
    finally:
        conn.close()


def test_quiet_hours_push_to_morning_transactional_goes_at_once(db: str) -> None:
    members = setup(db, 2)
    night = tehran(2026, 6, 1, 22, 30)
    queue(db, members, "occasion", "yalda", night)
    queue(db, members, "purchase", "buy", night)
    rec = Recorder()
    w = SmsWorker(db, rec)
    assert w.run_once(night) == 2
    assert sorted(k for _, _, k in rec.sent) == ["purchase", "purchase"]
    st = status(db)
    for mid in members:
        s, due, err = st[f"yalda:{mid}"]
        assert s == "pending" and err is None
        assert datetime.fromtimestamp(due, TEHRAN) == tehran(2026, 6, 2, 9)
    assert w.run_once(tehran(2026, 6, 2, 8, 59)) == 0
    assert w.run_once(tehran(2026, 6, 2, 9)) == 2
    w.stop()


def test_consent_withdrawn_after_queueing_drops_the_sms(db: str) -> None:
    members = setup(db, 2)
    at = tehran(2026, 6, 1, 10)
    queue(db, members, "campaign", "c1", at)
    conn = store.connect(db)
    with transaction(conn):
        phone = conn.execute("SELECT phone FROM members WHERE id = ?",
                             (members[0],)).fetchone()[0]
        assert store_marketing.incoming_sms(conn, phone, "لغو ۱۱", at)
        assert not store_marketing.incoming_sms(conn, phone, "سلام", at)
    conn.close()
    rec = Recorder()
    w = SmsWorker(db, rec)
    assert w.run_once(at) == 1
    st = status(db)
    assert st[f"c1:{members[0]}"][0] == "failed"
    assert "consent" in st[f"c1:{members[0]}"][2]
    assert st[f"c1:{members[1]}"][0] == "sent"
    w.stop()


def test_one_per_member_per_day_and_club_limit(db: str) -> None:
    members = setup(db, 5, daily=3)
    at = tehran(2026, 6, 1, 10)
    queue(db, members, "birthday", "b", at)
    queue(db, members[:1], "winback", "w", at)
    rec = Recorder()
    w = SmsWorker(db, rec)
    assert w.run_once(at) == 3
    assert w.run_once(tehran(2026, 6, 1, 20)) == 0
    st = status(db)
    waiting = [k for k, (s, _, _) in st.items() if s == "pending"]
    assert len(waiting) == 3
    for k in waiting:
        assert datetime.fromtimestamp(st[k][1], TEHRAN) >= tehran(2026, 6, 2, 9)
    assert w.run_once(tehran(2026, 6, 2, 9)) == 3
    assert w.run_once(tehran(2026, 6, 3, 9)) == 0
    total = [k for k, (s, _, _) in status(db).items() if s == "sent"]
    assert len(total) == 6
    # never two on one Tehran day for the member who had two
    conn = store.connect(db)
    days = [datetime.fromtimestamp(t, TEHRAN).date() for (t,) in conn.execute(
        "SELECT finished_at FROM sms_outbox WHERE member_id = ? AND status = 'sent'",
        (members[0],))]
    conn.close()
    assert len(days) == 2 and len(set(days)) == 2
    w.stop()


def test_two_workers_never_exceed_one_a_member_a_day(db: str) -> None:
    members = setup(db, 20)
    at = tehran(2026, 6, 1, 10)
    for tag in ("a", "b", "c"):
        queue(db, members, "campaign", tag, at)
    rec = Recorder()
    workers = [SmsWorker(db, rec, batch=4) for _ in range(2)]
    threads = [threading.Thread(target=w.run_once, args=(at,)) for w in workers]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    phones = [p for p, _, _ in rec.sent]
    assert len(phones) == 20 and len(set(phones)) == 20
    for w in workers:
        w.stop()


def test_settings_defaults_and_round_trip(db: str) -> None:
    conn = store.connect(db)
    assert store_marketing.settings(conn, None) == Settings()
    with transaction(conn):
        club = conn.execute("SELECT MIN(id) FROM clubs").fetchone()[0]
        assert store_marketing.settings(conn, club) == Settings()
        store_marketing.set_settings(conn, club, Settings(time(22), time(8), 50))
    assert store_marketing.settings(conn, club) == Settings(time(22), time(8), 50)
    conn.close()


def test_cli_club_marketing_settings(db: str, capsys: pytest.CaptureFixture[str]) -> None:
    conn = store.connect(db)
    name = conn.execute("SELECT name FROM clubs ORDER BY id").fetchone()[0]
    conn.close()
    assert cli.main(["club", "marketing", name, "--quiet", "22:00-08:30", "--daily-limit", "40",
                     "--db", db]) == 0
    assert "quiet 22:00-08:30 Tehran, at most 40 a day" in capsys.readouterr().out
    before = status(db)
    for bad in (["--quiet", "25:00-08:00"], ["--daily-limit", "-1"], ["--daily-limit", "x"]):
        assert cli.main(["club", "marketing", name, *bad, "--db", db]) == 2
        assert "marketing settings" in capsys.readouterr().err
    assert status(db) == before
    assert cli.main(["club", "show", name, "--db", db]) == 0
    assert "marketing quiet 22:00-08:30" in capsys.readouterr().out
    conn = store.connect(db)
    club = conn.execute("SELECT id FROM clubs WHERE name = ?", (name,)).fetchone()[0]
    assert store_marketing.settings(conn, club) == Settings(time(22), time(8, 30), 40)
    conn.close()


def test_consent_comes_with_enrolment_unless_the_club_says_no(
    db: str, capsys: pytest.CaptureFixture[str]
) -> None:
    conn = store.connect(db)
    club, name = conn.execute("SELECT id, name FROM clubs ORDER BY id").fetchone()
    now = tehran(2026, 6, 1, 10)
    with transaction(conn):
        a = store.insert_member(conn, phone="09121110001", referrer_id=None, tier="bronze",
                                now=now, club_id=club)
    assert cli.main(["club", "marketing", name, "--consent-at-enrolment", "no",
                     "--db", db]) == 0
    assert "consent at enrolment no" in capsys.readouterr().out
    with transaction(conn):
        b = store.insert_member(conn, phone="09121110002", referrer_id=None, tier="bronze",
                                now=now, club_id=club)
    assert store_marketing.consents(conn, [a.id, b.id]) == {a.id: True, b.id: False}
    # the quiet hours set before are kept by a change of this setting alone
    assert store_marketing.settings(conn, club) == Settings()
    conn.close()
