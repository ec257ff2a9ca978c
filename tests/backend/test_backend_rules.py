"""Program and ledger rules, through the handler on a real SQLite file with a fake clock."""

from __future__ import annotations

import re
from datetime import date
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from backend import ledger, ledger_rules, store
from backend.handlers import Handler
from backend.program import Offer, Program, Purchase, RuleError, earnings
from tests.backend.core_helpers import FakeClock, advice, card, phone, request, reversal
from tests.backend.engines import register_test_terminals

_FA = str.maketrans("۰۱۲۳۴۵۶۷۸۹", "0123456789")


def enrol(h: Handler, p: str, referrer: str | None = None) -> str:
    resp = h.handle(request("enroll", {"phone": p, "referrer": referrer}))
    assert resp.code == "00"
    return resp.body["member_code"]


def buy(h: Handler, clock: FakeClock, p: str, amount: int, **kw: object) -> dict:
    resp = h.handle(advice(amount=amount, occurred_at=clock.iso(), phone=p, **kw))
    assert resp.code == "00", resp
    return resp.body


def balance(h: Handler, p: str) -> int:
    m = store.member_by_phone(h.conn, p, club_id=1)
    assert m is not None
    return ledger.balance(h.conn, m.id)


# --- pure rules ------------------------------------------------------------------------


def test_backend_tiers_and_cap() -> None:
    p = Program()
    assert [p.tier_for_spend(s).name for s in (0, 19_999_999, 20_000_000, 100_000_000)] == [
        "bronze", "bronze", "silver", "gold",
    ]  # fmt: skip
    assert p.discount(1000, 10_000, None) == 500
    assert p.discount(1000, 200, None) == 200
    assert p.discount(1000, 10_000, 300) == 300
    assert p.discount(1000, 10_000, 900) == 500
    with pytest.raises(RuleError) as e:
        p.discount(1000, 100, 101)
    assert e.value.code == "51"
    with pytest.raises(RuleError) as e:
        p.discount(0, 100, None)
    assert e.value.code == "13"
    assert not p.needs_otp(10_000_000) and p.needs_otp(10_000_001)


@settings(max_examples=150, deadline=None)
@given(
    lots=st.lists(st.integers(0, 1000), max_size=8),
    data=st.data(),
)
def test_backend_fifo_take_is_oldest_first(lots: list[int], data: st.DataObject) -> None:
    pairs = list(enumerate(lots))
    amount = data.draw(st.integers(0, sum(lots)))
    taken = ledger_rules.fifo_take(pairs, amount)
    assert sum(t for _, t in taken) == amount
    ids = [i for i, _ in taken]
    assert ids == sorted(ids)
    # every lot before the last one touched is emptied
    for lot_id, part in taken[:-1]:
        assert part == lots[lot_id]
    with pytest.raises(ValueError):
        ledger_rules.fifo_take(pairs, sum(lots) + 1)


def test_backend_offer_matching() -> None:
    from datetime import UTC, datetime

    friday_noon = datetime(2026, 11, 27, 8, 30, tzinfo=UTC)  # 12:00 in Tehran, a Friday
    base = dict(name="x", until=date(2026, 12, 31))
    p = Purchase(friday_noon, 1_000_000, "silver", 3, "1990-11-27")
    assert Offer(percent=2, **base).matches(p)
    assert Offer(percent=2, weekdays=frozenset({4}), hours=(10, 14), **base).matches(p)
    assert not Offer(percent=2, weekdays=frozenset({5}), **base).matches(p)
    assert not Offer(percent=2, hours=(13, 20), **base).matches(p)
    assert not Offer(percent=2, min_purchase=2_000_000, **base).matches(p)
    assert Offer(amount=5000, target="tier:silver", **base).matches(p)
    assert not Offer(amount=5000, target="tier:gold", **base).matches(p)
    assert Offer(amount=5000, target="visits:3", **base).matches(p)
    assert not Offer(amount=5000, target="visits:4", **base).matches(p)
    assert Offer(amount=5000, target="birthday", **base).matches(p)
    assert not Offer(percent=2, name="old", until=date(2026, 11, 26)).matches(p)
    assert not Offer(percent=2, start=date(2026, 11, 28), **base).matches(p)
    earned, matched = earnings(
        Program(), 1_000_000, p, [Offer(percent=2, **base), Offer(amount=7000, **base)]
    )
    assert earned == 50_000 + 20_000 + 7_000 and len(matched) == 2
    with pytest.raises(ValueError):
        Offer(percent=2, amount=3, **base)
    with pytest.raises(ValueError):
        Offer(percent=2, target="vip", **base)


# --- members and cards -----------------------------------------------------------------


def test_backend_enrol_is_idempotent_and_normalises(handler: Handler) -> None:
    code = enrol(handler, "09121234567")
    again = handler.handle(request("enroll", {"phone": "+989121234567"}))
    assert again.body["new"] is False and again.body["member_code"] == code
    assert re.fullmatch(r"[2-9A-HJKMNP-Z]{7}", code)
    bad = handler.handle(request("enroll", {"phone": "12345"}))
    assert bad.code == "14" and bad.body == {}
    assert handler.conn.execute("SELECT COUNT(*) FROM members").fetchone()[0] == 1
    sms = handler.conn.execute("SELECT kind, text FROM sms_outbox").fetchall()
    assert len(sms) == 1 and sms[0][0] == "welcome" and code in sms[0][1]


def test_backend_card_lookup_and_replacement(handler: Handler, clock: FakeClock) -> None:
    p = phone(1)
    enrol(handler, p)
    buy(handler, clock, p, 1_000_000)
    m = store.member_by_phone(handler.conn, p, club_id=1)
    assert m is not None
    with store.transaction(handler.conn):
        store.link_card(handler.conn, m.id, card(1), clock())
    q = handler.handle(request("inquiry", {"card": card(1), "gross": 10_000}))
    assert q.code == "00" and q.body["discount"] == 5_000
    with store.transaction(handler.conn):
        store.link_card(handler.conn, m.id, card(2), clock())
        store.retire_card(handler.conn, card(1), card(2))
    old = handler.handle(request("inquiry", {"card": card(1), "gross": 10_000}))
    assert old.code == "14"
    new = handler.handle(request("inquiry", {"card": card(2), "gross": 10_000}))
    # the earlier quote still holds its 5,000: only its advice, reversal or expiry ends it
    assert new.code == "00" and new.body["balance"] == 30_000 - 5_000 - 5_000


# --- quotes, holds, OTP ----------------------------------------------------------------


def test_backend_hold_expires_and_is_released(handler: Handler, clock: FakeClock) -> None:
    p = phone(1)
    enrol(handler, p)
    buy(handler, clock, p, 1_000_000)  # 30,000 credit
    q = handler.handle(request("inquiry", {"phone": p, "gross": 40_000}, tid="T0000002"))
    assert q.body["discount"] == 20_000 and balance(handler, p) == 10_000
    clock.jump(seconds=299)
    assert handler.sweep() == (0, 0) and balance(handler, p) == 10_000
    clock.jump(seconds=2)
    assert handler.sweep() == (1, 0) and balance(handler, p) == 30_000
    # the lapsed quote's advice still redeems what the customer was given
    late = handler.handle(
        advice(
            amount=20_000,
            gross=40_000,
            occurred_at=clock.iso(),
            quote_id=q.body["quote_id"],
            tid="T0000002",
        )
    )
    assert late.code == "00" and late.body["balance"] == 30_000 - 20_000 + 600


def test_backend_declined_advice_releases_hold(handler: Handler, clock: FakeClock) -> None:
    p = phone(1)
    enrol(handler, p)
    buy(handler, clock, p, 1_000_000)
    q = handler.handle(request("inquiry", {"phone": p, "gross": 40_000}))
    resp = handler.handle(
        advice(
            amount=20_000,
            gross=40_000,
            occurred_at=clock.iso(),
            quote_id=q.body["quote_id"],
            bank_code="51",
        )
    )
    assert resp.body["earned"] == 0 and resp.body["balance"] == 30_000


def test_backend_otp_flow(handler: Handler, clock: FakeClock) -> None:
    p = phone(1)
    enrol(handler, p)
    buy(handler, clock, p, 700_000_000)  # 21,000,000 credit
    need = handler.handle(request("inquiry", {"phone": p, "gross": 30_000_000}))
    assert need.code == "00" and need.body["otp_required"] is True and "quote_id" not in need.body
    text = handler.conn.execute("SELECT text FROM sms_outbox WHERE kind = 'otp'").fetchone()[0]
    code = re.findall(r"\d{6}", text.translate(_FA))[0]
    wrong = f"{(int(code) + 1) % 1_000_000:06d}"
    for _ in range(3):
        r = handler.handle(request("inquiry", {"phone": p, "gross": 30_000_000, "otp": wrong}))
        assert r.code == "55"
    # three wrong tries: even the right code is void now
    r = handler.handle(request("inquiry", {"phone": p, "gross": 30_000_000, "otp": code}))
    assert r.code == "55"
    handler.handle(request("inquiry", {"phone": p, "gross": 30_000_000}))
    texts = handler.conn.execute("SELECT text FROM sms_outbox WHERE kind = 'otp' ORDER BY id")
    code = re.findall(r"\d{6}", list(texts)[-1][0].translate(_FA))[0]
    clock.jump(seconds=121)
    r = handler.handle(request("inquiry", {"phone": p, "gross": 30_000_000, "otp": code}))
    assert r.code == "55"  # expired
    handler.handle(request("inquiry", {"phone": p, "gross": 30_000_000}))
    texts = handler.conn.execute("SELECT text FROM sms_outbox WHERE kind = 'otp' ORDER BY id")
    code = re.findall(r"\d{6}", list(texts)[-1][0].translate(_FA))[0]
    ok = handler.handle(request("inquiry", {"phone": p, "gross": 30_000_000, "otp": code}))
    assert ok.code == "00" and ok.body["discount"] == 15_000_000 and ok.body["quote_id"]
    # a small discount needs no code
    small = handler.handle(request("inquiry", {"phone": p, "gross": 30_000_000, "redeem": 10_000}))
    assert small.code == "00" and small.body["discount"] == 10_000


# --- earning, tiers, referral, expiry, reversal ----------------------------------------


def test_backend_tier_rises_with_90_day_spend(handler: Handler, clock: FakeClock) -> None:
    p = phone(1)
    enrol(handler, p)
    assert buy(handler, clock, p, 20_000_000)["earned"] == 600_000  # bronze 3 %
    assert buy(handler, clock, p, 1_000_000)["earned"] == 50_000  # now silver 5 %
    clock.jump(days=91)
    buy(handler, clock, p, 1_000)  # the old spend left the window: back to bronze
    m = store.member_by_phone(handler.conn, p, club_id=1)
    assert m is not None and m.tier == "bronze"


def test_backend_referral_bonus_once(handler: Handler, clock: FakeClock) -> None:
    a, b = phone(1), phone(2)
    enrol(handler, a)
    enrol(handler, b, referrer=a)
    assert balance(handler, a) == 0
    buy(handler, clock, b, 100_000)
    assert balance(handler, a) == 50_000
    buy(handler, clock, b, 100_000)
    assert balance(handler, a) == 50_000


def test_backend_credit_expires_fifo_after_365_days(handler: Handler, clock: FakeClock) -> None:
    p = phone(1)
    enrol(handler, p)
    buy(handler, clock, p, 1_000_000)  # 30,000, expires first
    clock.jump(days=200)
    buy(handler, clock, p, 100_000)  # 3,000
    # spend 20,000: taken from the oldest lot
    q = handler.handle(request("inquiry", {"phone": p, "gross": 40_000, "redeem": 20_000}))
    handler.handle(
        advice(amount=20_000, gross=40_000, occurred_at=clock.iso(), quote_id=q.body["quote_id"])
    )
    assert balance(handler, p) == 30_000 - 20_000 + 3_000 + 600
    clock.jump(days=166)  # the first lot is now 366 days old
    handler.sweep()
    assert balance(handler, p) == 3_000 + 600
    expired = handler.conn.execute("SELECT SUM(amount) FROM ledger WHERE kind = 'expiry'")
    assert expired.fetchone()[0] == -10_000


def test_backend_hold_protects_credit_from_expiry(handler: Handler, clock: FakeClock) -> None:
    p = phone(1)
    enrol(handler, p)
    buy(handler, clock, p, 1_000_000)  # 30,000
    clock.jump(days=365, seconds=-100)
    q = handler.handle(request("inquiry", {"phone": p, "gross": 40_000}))
    assert q.body["discount"] == 20_000
    clock.jump(seconds=200)  # the lot expires while 20,000 of it is held
    handler.sweep()
    assert balance(handler, p) == 0  # the free 10,000 expired
    resp = handler.handle(
        advice(amount=20_000, gross=40_000, occurred_at=clock.iso(), quote_id=q.body["quote_id"])
    )
    assert resp.code == "00" and resp.body["balance"] == 600


def test_backend_reversal_shortfall_becomes_debt(handler: Handler, clock: FakeClock) -> None:
    p = phone(1)
    enrol(handler, p)
    first = advice(amount=1_000_000, occurred_at=clock.iso(), phone=p)
    assert handler.handle(first).body["earned"] == 30_000
    q = handler.handle(request("inquiry", {"phone": p, "gross": 60_000}))
    assert q.body["discount"] == 30_000
    handler.handle(
        advice(amount=30_000, gross=60_000, occurred_at=clock.iso(), quote_id=q.body["quote_id"])
    )
    assert balance(handler, p) == 900
    rev = handler.handle(reversal(first, occurred_at=clock.iso()))
    assert rev.body == {"balance": 0, "restored": 0, "taken_back": 900}
    m = store.member_by_phone(handler.conn, p, club_id=1)
    assert m is not None and m.debt == 29_100
    assert buy(handler, clock, p, 1_000_000)["balance"] == 900  # 30,000 earned, 29,100 repaid
    m = store.member_by_phone(handler.conn, p, club_id=1)
    assert m is not None and m.debt == 0
    ledger.check(handler.conn, m.id)


def test_backend_reversal_before_advice(handler: Handler, clock: FakeClock) -> None:
    p = phone(1)
    enrol(handler, p)
    buy(handler, clock, p, 1_000_000)
    q = handler.handle(request("inquiry", {"phone": p, "gross": 40_000}))
    adv = advice(amount=20_000, gross=40_000, occurred_at=clock.iso(), quote_id=q.body["quote_id"])
    rev = handler.handle(reversal(adv, occurred_at=clock.iso()))
    assert rev.code == "00" and rev.body["restored"] == 0
    late = handler.handle(adv)
    assert late.code == "00" and late.body["earned"] == 0
    assert balance(handler, p) == 30_000  # settled and undone at once
    again = handler.handle(reversal(adv, occurred_at=clock.iso()))  # a second reversal message
    assert again.code == "00" and balance(handler, p) == 30_000
    foreign = handler.handle(reversal(adv, occurred_at=clock.iso(), tid="T0000009"))
    assert foreign.code == "12"


def test_backend_repeated_request_same_answer_one_effect(
    handler: Handler, clock: FakeClock
) -> None:
    p = phone(1)
    enrol(handler, p)
    req = advice(amount=1_000_000, occurred_at=clock.iso(), phone=p)
    first = handler.handle(req)
    rows = handler.conn.execute("SELECT COUNT(*) FROM ledger").fetchone()[0]
    second = handler.handle(req)
    assert second == first
    assert handler.conn.execute("SELECT COUNT(*) FROM ledger").fetchone()[0] == rows
    # the key belongs to one terminal: another terminal cannot replay it
    from dataclasses import replace

    assert handler.handle(replace(req, terminal_id="T0000002")).code == "30"


def test_backend_offers_from_config_and_database(tmp_path: Path, clock: FakeClock) -> None:
    register_test_terminals(tmp_path / "offers.db")
    conn = store.connect(tmp_path / "offers.db")
    cfg_offer = Offer(name="config", amount=7_000, until=date(2099, 1, 1))
    h = Handler(conn, Program(), offers=[cfg_offer], clock=clock)
    with store.transaction(conn):
        db_offer = Offer(name="db", percent=2, until=date(2099, 1, 1), club_id=1)
        store.add_offer(conn, db_offer, clock())
        ended = store.add_offer(
            conn, Offer(name="gone", percent=9, until=date(2099, 1, 1), club_id=1), clock()
        )
        store.end_offer(conn, ended, clock())
    p = phone(1)
    enrol(h, p)
    assert buy(h, clock, p, 1_000_000)["earned"] == 30_000 + 7_000 + 20_000
    q = h.handle(request("inquiry", {"phone": p, "gross": 10_000}))
    assert "config" in q.body["receipt"] and "db" in q.body["receipt"]
    assert "gone" not in q.body["receipt"]
    conn.close()
