"""Passwords, sessions, CSRF tokens, roles: the sans-I/O pieces of the panel's security."""

from __future__ import annotations

import pytest

from panel.passwords import hash_password, needs_rehash, verify_password
from panel.roles import PERMISSIONS, Permission, Role, allowed, shown_phone
from panel.sessions import SessionStore, csrf_valid
from panel.texts import TEXTS
from panel.users import InMemoryUserDirectory, UserDirectory

SECRET = b"k" * 32


def test_argon2id_hash_verifies_only_the_right_password() -> None:
    encoded = hash_password("رمز-خوب-۱۴۰۵")
    assert encoded.startswith("$argon2id$") and "m=19456,t=2,p=1" in encoded
    assert verify_password(encoded, "رمز-خوب-۱۴۰۵")
    assert not verify_password(encoded, "رمز-خوب-1405")
    assert not verify_password(None, "anything")
    assert not verify_password("not a hash", "x")
    assert not needs_rehash(encoded)
    assert hash_password("same") != hash_password("same")  # salted
    with pytest.raises(ValueError):
        hash_password("")


def test_session_expires_after_idle_time_and_each_request_restarts_the_clock() -> None:
    store = SessionStore(SECRET, idle_timeout=60)
    s = store.create(0.0, user="ali")
    cookie = store.cookie_value(s)
    assert store.from_cookie(cookie, 59.0) is s
    assert store.from_cookie(cookie, 118.0) is s  # 59 s after the last use
    assert store.from_cookie(cookie, 178.0) is None
    assert len(store) == 0


def test_a_forged_or_altered_cookie_finds_nothing() -> None:
    store = SessionStore(SECRET)
    s = store.create(0.0)
    sid, sig = store.cookie_value(s).split(".")
    assert store.from_cookie(f"{sid}.{'0' * len(sig)}", 1.0) is None
    other = SessionStore(b"x" * 32)
    assert store.from_cookie(other.cookie_value(other.create(0.0)), 1.0) is None
    for bad in (None, "", "no-dot", "a.b.c"):
        assert store.from_cookie(bad, 1.0) is None
    with pytest.raises(ValueError):
        SessionStore(b"short")


def test_the_store_is_bounded_and_drops_the_least_recently_used() -> None:
    store = SessionStore(SECRET, max_sessions=3)
    a, b, c = (store.create(float(i)) for i in range(3))
    assert store.get(a.id, 3.0) is a  # a is now the most recent
    store.create(4.0)
    assert len(store) == 3 and store.get(b.id, 5.0) is None and store.get(c.id, 5.0) is c


def test_a_flood_of_anonymous_sessions_logs_nobody_out() -> None:
    store = SessionStore(SECRET, max_sessions=3)
    ali = store.create(0.0, user="ali")
    for i in range(10):
        store.create(float(i))
    assert store.get(ali.id, 11.0) is ali and len(store) == 4


def test_csrf_token_belongs_to_its_session() -> None:
    store = SessionStore(SECRET)
    a, b = store.create(0.0), store.create(0.0)
    assert csrf_valid(a, a.csrf_token)
    assert not csrf_valid(a, b.csrf_token)
    assert not csrf_valid(a, "")
    assert not csrf_valid(None, a.csrf_token)


def test_permission_table() -> None:
    staff_may = {Permission.VIEW_DASHBOARD, Permission.LOOK_UP_MEMBERS,
                 Permission.ENROL_MEMBERS, Permission.LINK_CARDS}
    assert PERMISSIONS[Role.STAFF] == staff_may
    for p in (Permission.ADJUST_CREDIT, Permission.MANAGE_OFFERS, Permission.EDIT_PROGRAM,
              Permission.SEE_FULL_PHONES):
        assert not allowed(Role.STAFF, p) and allowed(Role.OWNER, p)
    assert not allowed(Role.OWNER, Permission.ALL_CLUBS)
    assert PERMISSIONS[Role.PROVIDER] == frozenset(Permission)
    assert PERMISSIONS[Role.STAFF] < PERMISSIONS[Role.OWNER] < PERMISSIONS[Role.PROVIDER]


def test_staff_see_masked_phones() -> None:
    assert shown_phone(Role.STAFF, "09121234567") == "0912*****67"
    assert shown_phone(Role.OWNER, "09121234567") == "09121234567"


def test_in_memory_directory_is_a_user_directory() -> None:
    users: UserDirectory = InMemoryUserDirectory()
    assert isinstance(users, InMemoryUserDirectory)
    users.add("ali", "pw", Role.OWNER, club="نان")
    with pytest.raises(ValueError):
        users.add("ali", "pw", Role.OWNER, club="نان")
    with pytest.raises(ValueError):
        users.add("p", "pw", Role.PROVIDER, club="نان")
    found = users.find_user("ali")
    assert found is not None and found.role is Role.OWNER and verify_password(
        found.password_hash, "pw")
    assert users.find_user("ALI") is None


def test_both_languages_have_every_text() -> None:
    assert set(TEXTS["fa"]) == set(TEXTS["en"])
