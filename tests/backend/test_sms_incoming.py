"""A member's "لغو" reply, as the gateway reports it, on both engines: the file gateway's
inbox (what tests and the demo write) read by the SMS worker turns the phone's marketing
consent off; a campaign queued before the reply does not reach that member when it goes,
and the next campaign does not target them. Kavenegar's `sms/receive` answer is read the
same way."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

from backend import store, store_campaigns, store_marketing
from backend.sms import SmsWorker
from backend.sms.senders import FileSender, Incoming, KavenegarSender
from backend.store import transaction
from backend.store_campaigns import Filter
from protocols.persian import TEHRAN

NOON = datetime(2026, 6, 1, 12, tzinfo=TEHRAN)


def _members(db: str) -> tuple[int, list[str]]:
    conn = store.connect(db)
    with transaction(conn):
        club = conn.execute("SELECT MIN(id) FROM clubs").fetchone()[0]
        phones = [store.insert_member(conn, phone=f"0912111000{i}", referrer_id=None,
                                      tier="bronze", now=NOON, club_id=club).phone
                  for i in range(3)]
    conn.close()
    return club, phones


def _campaign(db: str, club: int, text: str, at: datetime) -> tuple[int, int]:
    conn = store.connect(db)
    try:
        with transaction(conn):
            c, _ = store_campaigns.add(conn, club, text, Filter(), at=at, now=NOON,
                                       holdout=0.0)
            queued, _ = store_campaigns.enqueue(conn, c.id, NOON)
        return c.id, queued
    finally:
        conn.close()


def _reply(inbox: Path, phone: str, text: str) -> None:
    with inbox.open("a", encoding="utf-8") as f:
        f.write(json.dumps({"phone": phone, "text": text}, ensure_ascii=False) + "\n")


def test_a_stop_reply_turns_consent_off_and_campaigns_skip_the_member(
        db: str, tmp_path: Path) -> None:
    club, phones = _members(db)
    sender = FileSender(tmp_path / "sms-outbox.jsonl")
    assert sender.inbox == tmp_path / "sms-inbox.jsonl"
    first, queued = _campaign(db, club, "{shop}: حراج بهار", NOON.replace(hour=14))
    assert queued == 3
    _reply(sender.inbox, "+98" + phones[1][1:], "لغو ۱۱")  # as the gateway writes it
    _reply(sender.inbox, phones[2], "سلام")  # not a stop reply: nothing changes
    w = SmsWorker(db, sender)
    try:
        assert w.receive_once(NOON) == 1
        assert not sender.inbox.exists()
        assert w.receive_once(NOON) == 0  # each reply is taken once
        conn = store.connect(db)
        try:
            ids = [conn.execute("SELECT id FROM members WHERE phone = ?", (p,)).fetchone()[0]
                   for p in phones]
            consent = store_marketing.consents(conn, ids)
        finally:
            conn.close()
        assert [consent[i] for i in ids] == [True, False, True]
        # the campaign queued before the reply goes at 14:00 without that member
        assert w.run_once(NOON.replace(hour=14)) == 2
        second, queued = _campaign(db, club, "{shop}: حراج تابستان", NOON.replace(hour=15))
        assert queued == 2
        # one marketing SMS a member a day: the second campaign goes the next morning
        assert w.run_once(NOON.replace(day=2, hour=10)) == 2
    finally:
        w.stop()
    sent = [json.loads(line) for line in
            (tmp_path / "sms-outbox.jsonl").read_text(encoding="utf-8").splitlines()]
    assert phones[1] not in {s["phone"] for s in sent}
    assert sorted(s["phone"] for s in sent) == sorted([phones[0], phones[2]] * 2)
    conn = store.connect(db)
    try:
        assert store_campaigns.counts(conn, first) == {"sent": 2, "pending": 0, "failed": 1}
        assert store_campaigns.counts(conn, second) == {"sent": 2, "pending": 0, "failed": 0}
    finally:
        conn.close()


def test_kavenegar_receive_reads_the_unread_messages_of_the_line() -> None:
    calls: list[tuple[str, dict[str, str]]] = []

    class Fake(KavenegarSender):
        def _call(self, method: str, params):  # type: ignore[no-untyped-def, override]
            calls.append((method, dict(params)))
            return {"return": {"status": 200, "message": "تایید شد"}, "entries": [
                {"messageid": 1, "message": "لغو", "sender": "989121110001",
                 "receptor": "10004346", "date": 1780000000},
                {"messageid": 2, "message": None, "sender": "989121110002"},
            ]}

    got = Fake("key", "10004346").receive()
    assert got == [Incoming("989121110001", "لغو")]
    assert calls == [("sms/receive", {"linenumber": "10004346", "isread": "0"})]


def test_kavenegar_receive_reads_on_while_an_answer_is_full() -> None:
    """An answer of RECEIVE_PAGE messages means more may be waiting: read again at once,
    until a shorter answer (or RECEIVE_PAGES answers)."""
    from backend.sms import senders

    pages = [senders.RECEIVE_PAGE, 1]

    class Fake(KavenegarSender):
        def _call(self, method: str, params):  # type: ignore[no-untyped-def, override]
            n = pages.pop(0) if pages else senders.RECEIVE_PAGE
            return {"return": {"status": 200, "message": ""}, "entries": [
                {"messageid": i, "message": "لغو", "sender": f"98912{i:07d}"}
                for i in range(n)]}

    assert len(Fake("key", "10004346").receive()) == senders.RECEIVE_PAGE + 1
    assert pages == []
    # a line that always answers a full page is read RECEIVE_PAGES times, then next poll
    assert len(Fake("key", "10004346").receive()) == (
        senders.RECEIVE_PAGE * senders.RECEIVE_PAGES)
