"""The member's credit transfer form (/m/<token>/transfer) through Starlette's TestClient,
on both engines: ask, the code from the SMS outbox, done; another member's link cannot
confirm; bad input gives the form back with nothing changed; CSRF."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from starlette.testclient import TestClient

from backend import ledger, store, store_member_tokens
from backend.sms.senders import otp_token
from tests.panel.world import NOW, World, app_for

CSRF = re.compile(r'name="csrf" value="([^"]+)"')
CODE_ACTION = re.compile(r'action="(/m/[^"]+/transfer/(\d+))"')
RECEIVER = "09350000077"


def issue(world: World, member_id: int, club_id: int) -> str:
    with world.conn() as c, store.transaction(c):
        return store_member_tokens.issue(c, member_id, club_id, NOW)


@contextmanager
def client(world: World) -> Iterator[TestClient]:
    with TestClient(app_for(world), base_url="http://127.0.0.1") as c:
        yield c


def csrf_of(page: str) -> str:
    found = CSRF.search(page)
    assert found, "no member-side CSRF token"
    return found.group(1)


def last_code(world: World, phone: str) -> str:
    with world.conn() as c:
        text = c.execute("SELECT text FROM sms_outbox WHERE phone = ? AND kind = 'otp' "
                         "ORDER BY id DESC LIMIT 1", (phone,)).fetchone()[0]
    return otp_token(text)


def counts(world: World) -> tuple[int, int, int]:
    with world.conn() as c:
        return tuple(int(c.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0])
                     for t in ("ledger", "transfers", "sms_outbox"))  # type: ignore[return-value]


def ask(c: TestClient, token: str, phone: str, amount: str) -> tuple[str, int]:
    page = c.get(f"/m/{token}")
    r = c.post(f"/m/{token}/transfer",
               data={"csrf": csrf_of(page.text), "to_phone": phone, "amount": amount})
    return r.text, r.status_code


def test_transfer_from_the_page_with_the_code_from_the_sms(world: World) -> None:
    token = issue(world, world.member_a, world.club_a)
    with client(world) as c:
        page = c.get(f"/m/{token}")
        assert 'id="transfer-form"' in page.text
        text, status = ask(c, token, "۰۹۳۵۰۰۰۰۰۷۷", "۴۰٬۰۰۰")
        assert status == 200 and 'id="code-sent"' in text and "۴۰٬۰۰۰" in text
        assert world.balance(world.member_a) == 100_000  # nothing moves before the code
        action = CODE_ACTION.search(text)
        assert action
        code = last_code(world, "09121234567")
        done = c.post(action.group(1), data={"csrf": csrf_of(text), "code": code})
    assert done.status_code == 200 and 'id="transfer-done"' in done.text
    assert world.balance(world.member_a) == 60_000
    assert world.balance(world.member_b) == 100_000  # the same phone in club B: untouched
    with world.conn() as c:
        receiver = store.member_by_phone(c, RECEIVER, club_id=world.club_a)
        assert receiver is not None and ledger.balance(c, receiver.id) == 40_000


def test_another_members_link_cannot_confirm_my_transfer(world: World) -> None:
    mine = issue(world, world.member_a, world.club_a)
    with world.conn() as c:
        other = store.member_by_phone(c, "09130000000", club_id=world.club_a)
    assert other is not None
    theirs = issue(world, other.id, world.club_a)
    with client(world) as c:
        text, _ = ask(c, mine, RECEIVER, "40000")
        tid = CODE_ACTION.search(text).group(2)  # type: ignore[union-attr]
        code = last_code(world, "09121234567")
        before = counts(world)
        their_page = c.get(f"/m/{theirs}")
        r = c.post(f"/m/{theirs}/transfer/{tid}",
                   data={"csrf": csrf_of(their_page.text), "code": code})
        assert r.status_code == 400 and 'id="transfer-form"' in r.text
        assert counts(world) == before and world.balance(world.member_a) == 100_000
        # my own link still confirms it
        ok = c.post(f"/m/{mine}/transfer/{tid}", data={"csrf": csrf_of(text), "code": code})
    assert 'id="transfer-done"' in ok.text and world.balance(world.member_a) == 60_000


@pytest.mark.parametrize(("phone", "amount", "field", "words"), [
    ("12345", "40000", "to_phone", "شماره همراه درست نیست"),
    (RECEIVER, "abc", "amount", "یک عدد بنویسید"),
    (RECEIVER, "100001", "amount", "اعتبار آزاد"),
    (RECEIVER, "500", "amount", "کمترین مبلغ"),
    ("09121234567", "40000", "to_phone", "شماره خودتان"),
])
def test_bad_input_gives_the_form_back_and_changes_nothing(world: World, phone: str,
                                                          amount: str, field: str,
                                                          words: str) -> None:
    token = issue(world, world.member_a, world.club_a)
    before = counts(world)
    with client(world) as c:
        text, status = ask(c, token, phone, amount)
    assert status == 400 and f'id="e-{field}"' in text and words in text
    assert counts(world) == before


def test_a_wrong_code_asks_again_and_a_form_without_csrf_is_refused(world: World) -> None:
    token = issue(world, world.member_a, world.club_a)
    with client(world) as c:
        text, _ = ask(c, token, RECEIVER, "40000")
        action = CODE_ACTION.search(text).group(1)  # type: ignore[union-attr]
        code = last_code(world, "09121234567")
        bad = str((int(code) + 1) % 10 ** len(code)).zfill(len(code))
        r = c.post(action, data={"csrf": csrf_of(text), "code": bad})
        assert r.status_code == 400 and 'id="e-code"' in r.text
        before = counts(world)
        assert c.post(action, data={"code": code}).status_code == 403
        assert c.post(f"/m/{token}/transfer",
                      data={"to_phone": RECEIVER, "amount": "40000"}).status_code == 403
        assert counts(world) == before
        ok = c.post(action, data={"csrf": csrf_of(text), "code": code})
    assert 'id="transfer-done"' in ok.text and world.balance(world.member_a) == 60_000
