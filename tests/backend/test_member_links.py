"""The member page's links in the welcome and purchase SMS, the token store, and the one
one-time-code rule shared by the till and the fresh link, on both engines."""

from __future__ import annotations

from datetime import timedelta

from backend import member_tokens, otp, store, store_member_tokens, store_registry
from backend.engine import Connection
from backend.handlers import Handler
from backend.member_tokens import TokenError
from backend.program import Program
from backend.sms_templates import sms_parts
from tests.backend.core_helpers import FakeClock, advice, phone, request

URL = "https://bashgah.ir"


def outbox(conn: Connection, kind: str) -> list[str]:
    return [t for (t,) in conn.execute(
        "SELECT text FROM sms_outbox WHERE kind = ? ORDER BY id", (kind,))]


def opens(conn: Connection, link: str, club_id: int, clock: FakeClock
          ) -> member_tokens.TokenRecord:
    assert link.startswith(URL + "/m/")
    path = link[len(URL):]
    _, token = member_tokens.parse_path(path)
    found = store_member_tokens.find(conn, member_tokens.hash_token(token))
    return member_tokens.check(found, path, club_id, clock())


def test_welcome_and_purchase_sms_carry_a_link_that_opens_that_member(
        handler: Handler, clock: FakeClock) -> None:
    conn = handler.conn
    with store.transaction(conn):
        store_registry.set_public_url(conn, 1, URL)
    assert handler.handle(request("enroll", {"phone": phone(1)})).code == "00"
    assert handler.handle(request("enroll", {"phone": phone(2)})).code == "00"
    resp = handler.handle(advice(amount=1_250_000, occurred_at=clock.iso(), phone=phone(1)))
    assert resp.code == "00"
    welcome, purchase = outbox(conn, "welcome"), outbox(conn, "purchase")
    assert len(welcome) == 2 and len(purchase) == 1
    links = [text.rsplit("\n", 1)[1] for text in [*welcome, *purchase]]
    m1 = store.member_by_phone(conn, phone(1), club_id=1)
    m2 = store.member_by_phone(conn, phone(2), club_id=1)
    assert m1 is not None and m2 is not None
    owners = [opens(conn, link, 1, clock).member_id for link in links]
    assert owners == [m1.id, m2.id, m1.id]
    assert len(set(links)) == 3  # a new token per SMS (docs/member-page.md)
    assert all(len(link) == len(URL) + 25 for link in links)
    assert sms_parts(purchase[0]).parts == 2 and sms_parts(welcome[0]).parts == 2
    # 30 days by default: open on the 29th day, not on the 31st
    clock.jump(days=29)
    opens(conn, links[2], 1, clock)
    clock.jump(days=2)
    try:
        opens(conn, links[2], 1, clock)
        raise AssertionError("an expired link opened")
    except TokenError as exc:
        assert exc.reason == "token expired"


def test_no_public_address_no_link_the_sms_as_before(handler: Handler, clock: FakeClock
                                                      ) -> None:
    conn = handler.conn
    assert handler.handle(request("enroll", {"phone": phone(3)})).code == "00"
    assert handler.handle(advice(amount=500_000, occurred_at=clock.iso(),
                                 phone=phone(3))).code == "00"
    texts = outbox(conn, "welcome") + outbox(conn, "purchase")
    assert texts and not any("/m/" in t for t in texts)
    assert "۱۴۰۵/" in outbox(conn, "purchase")[0]  # the date line stays without a link
    assert conn.execute("SELECT COUNT(*) FROM member_tokens").fetchone()[0] == 0


def test_tokens_hashed_revoked_all_at_once_and_validity_from_the_program(
        conn: Connection) -> None:
    clock = FakeClock()
    now = clock()
    with store.transaction(conn):
        m = store.insert_member(conn, phone=phone(4), referrer_id=None, tier="bronze",
                                now=now, club_id=1)
        raw = [store_member_tokens.issue(conn, m.id, 1, now, days=d) for d in (1, 30)]
    stored = [h for (h,) in conn.execute("SELECT token_hash FROM member_tokens")]
    assert not set(raw) & set(stored)
    assert sorted(stored) == sorted(member_tokens.hash_token(t) for t in raw)
    assert store_member_tokens.live_count(conn, m.id, now) == 2
    rec = store_member_tokens.find(conn, member_tokens.hash_token(raw[0]))
    assert rec is not None and rec.expires_at == now + timedelta(days=1)
    with store.transaction(conn):
        assert store_member_tokens.revoke_all(conn, m.id, now) == 2
        assert store_member_tokens.revoke_all(conn, m.id, now) == 0
    assert store_member_tokens.live_count(conn, m.id, now) == 0
    for t in raw:
        path = member_tokens.link_path("m", t)
        found = store_member_tokens.find(conn, member_tokens.hash_token(t))
        try:
            member_tokens.check(found, path, 1, now + timedelta(seconds=1))
            raise AssertionError("a revoked token opened")
        except TokenError as exc:
            assert exc.reason == "token revoked"
    assert Program().link_days == 30


def test_one_time_codes_120_s_3_tries_and_per_purpose(conn: Connection) -> None:
    clock = FakeClock()
    program = Program()
    with store.transaction(conn):
        m = store.insert_member(conn, phone=phone(5), referrer_id=None, tier="bronze",
                                now=clock(), club_id=1)
        _, till = otp.issue(conn, m.id, program, clock())
        _, link = otp.issue(conn, m.id, program, clock(), store.OTP_LINK)
        # the till's code is not the link's, and asking for one never voids the other
        wrong = str((int(link) + 1) % 10**6).zfill(6)
        assert otp.check(conn, m.id, wrong, clock(), store.OTP_LINK) == otp.WRONG
        assert otp.check(conn, m.id, till if till != link else wrong, clock(),
                         store.OTP_LINK) == otp.WRONG
        assert otp.check(conn, m.id, link, clock(), store.OTP_LINK) is None
        assert otp.check(conn, m.id, link, clock(), store.OTP_LINK) == otp.NONE_OPEN
        assert otp.check(conn, m.id, till, clock()) is None
        _, link = otp.issue(conn, m.id, program, clock(), store.OTP_LINK)
        for _ in range(3):
            assert otp.check(conn, m.id, wrong if wrong != link else "000000", clock(),
                             store.OTP_LINK) == otp.WRONG
        assert otp.check(conn, m.id, link, clock(), store.OTP_LINK) == otp.NONE_OPEN
        _, link = otp.issue(conn, m.id, program, clock(), store.OTP_LINK)
        later = clock() + timedelta(seconds=program.otp_seconds)
        assert otp.check(conn, m.id, link, later, store.OTP_LINK) == otp.EXPIRED
