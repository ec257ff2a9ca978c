"""After-purchase surveys through real purchases (advice) on both engines."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest

from backend import member_tokens, store, store_registry, store_surveys, surveys
from backend.engine import Connection
from backend.handlers import Handler
from backend.program import Program
from tests.backend.core_helpers import FakeClock, advice, request

URL = "https://c.example.ir"
LINK = re.compile(re.escape(URL) + r"/s/([A-Za-z0-9_-]{22})")


def club_id(conn: Connection) -> int:
    return min(store_registry.list_clubs(conn), key=lambda c: c.id).id


def surveying(conn: Connection, clock: FakeClock, percent: float = 100) -> Handler:
    with store.transaction(conn):
        store_registry.set_public_url(conn, club_id(conn), URL)
    return Handler(conn, Program(survey_percent=percent), clock=clock)


def buy(h: Handler, conn: Connection, clock: FakeClock, phone: str) -> str:
    """A settled purchase; the text of its SMS."""
    req = advice(amount=1_000_000, occurred_at=clock.iso(), phone=phone)
    assert h.handle(req).code == "00"
    row = conn.execute("SELECT text FROM sms_outbox WHERE key = ?",
                       (f"purchase:{req.key}",)).fetchone()
    return row[0]


def test_purchase_sms_carries_a_link_bound_to_that_purchase_answered_once(
        conn: Connection, clock: FakeClock) -> None:
    h = surveying(conn, clock)
    assert h.handle(request("enroll", {"phone": "09120000001"})).code == "00"
    text = buy(h, conn, clock, "09120000001")
    m = LINK.search(text)
    assert m, text
    token = m.group(1)
    s = store_surveys.by_token(conn, token)
    assert s is not None and s.rating is None and s.club_id == club_id(conn)
    assert conn.execute("SELECT COUNT(*) FROM surveys WHERE token_hash = ?",
                        (token,)).fetchone()[0] == 0  # only the hash is stored
    rec = member_tokens.check(s.token_record(), f"/s/{token}", s.club_id, clock())
    assert rec.purchase_id == s.id
    with pytest.raises(member_tokens.TokenError):
        member_tokens.check(s.token_record(), f"/s/{token}", s.club_id + 1, clock())
    with pytest.raises(member_tokens.TokenError):
        member_tokens.check(s.token_record(), f"/s/{token}", s.club_id,
                            clock() + timedelta(days=8))
    with store.transaction(conn):
        assert store_surveys.answer(conn, s.id, 2, "<b>سرد</b>", clock())
    with store.transaction(conn):
        assert not store_surveys.answer(conn, s.id, 5, "", clock())
    got = store_surveys.by_token(conn, token)
    assert got is not None and (got.rating, got.comment) == (2, "<b>سرد</b>")
    # within 30 days the member is not asked again
    clock.jump(days=29)
    assert not LINK.search(buy(h, conn, clock, "09120000001"))
    clock.jump(days=2)
    assert LINK.search(buy(h, conn, clock, "09120000001"))


def test_off_by_default_and_without_a_public_address(conn: Connection, clock: FakeClock) -> None:
    h = Handler(conn, Program(survey_percent=100), clock=clock)  # no public address
    assert h.handle(request("enroll", {"phone": "09120000002"})).code == "00"
    assert "/s/" not in buy(h, conn, clock, "09120000002")
    h = surveying(conn, clock, percent=0)
    assert "/s/" not in buy(h, conn, clock, "09120000002")
    assert store_surveys.asked_count(conn, club_id(conn)) == 0


def test_share_of_purchases_asked(conn: Connection, clock: FakeClock) -> None:
    """About the share, one a member: 60 members, 30 % share."""
    h = surveying(conn, clock, percent=30)
    asked = 0
    for i in range(60):
        phone = f"0912{i:07d}"
        assert h.handle(request("enroll", {"phone": phone})).code == "00"
        asked += bool(LINK.search(buy(h, conn, clock, phone)))
    assert asked == store_surveys.asked_count(conn, club_id(conn))
    assert 6 <= asked <= 30


def test_figures_equal_a_plain_computation(conn: Connection, clock: FakeClock) -> None:
    h = surveying(conn, clock)
    ratings = [5, 1, 4, 3]
    for i, r in enumerate(ratings):
        phone = f"0913{i:07d}"
        assert h.handle(request("enroll", {"phone": phone})).code == "00"
        token = LINK.search(buy(h, conn, clock, phone)).group(1)
        s = store_surveys.by_token(conn, token)
        with store.transaction(conn):
            rating, comment = surveys.parse_answer(str(r), " خوب ")
            assert store_surveys.answer(conn, s.id, rating, comment, clock()) is True
    rows = store_surveys.answers(conn, club_id(conn))
    assert sorted(a.answer.rating for a in rows) == sorted(ratings)
    figs = surveys.averages([a.answer for a in rows], lambda a: a.terminal)
    assert figs == {"T0000001": (4, sum(ratings) / 4)}
    assert all(a.answer.comment == "خوب" for a in rows)
    with pytest.raises(surveys.SurveyError):
        store_surveys.answer(conn, rows[0].answer.purchase_id, 6, "", clock())
