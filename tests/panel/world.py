"""A small two-club world in a real database (either engine) for the pages' tests: clubs A
and B, the same phone a member of both, users of every role, a logged-in TestClient."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cache

from starlette.testclient import TestClient

from backend import ledger, store, store_members, store_registry, store_users
from backend.passwords import hash_password
from backend.program import Program
from panel.app import PanelSettings, create_app
from panel.database import Database

NOW = datetime(2026, 12, 1, 8, 30, tzinfo=UTC)  # 1405/09/10 12:00 in Tehran
PHONE = "09121234567"
CARD = "6037990000000006"  # Luhn-valid
OTHER_CARD = "6037990000000014"
PASSWORD = "a long password"
SCRIPT = "<script>alert(1)</script>"
CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
TOKEN = re.compile(r'name="token" value="([^"]+)"')


@cache
def password_hash() -> str:
    """Hashed once per test process: Argon2id is meant to be slow."""
    return hash_password(PASSWORD)


@dataclass
class World:
    db: str
    club_a: int
    club_b: int
    #: member of club A (name "<script>...", a card, 100,000 rials of credit)
    member_a: int
    #: the same phone, in club B
    member_b: int
    code_a: str

    @contextmanager
    def conn(self) -> Iterator[store.Connection]:
        c = store.connect(self.db)
        try:
            yield c
        finally:
            c.close()

    def balance(self, member_id: int) -> int:
        with self.conn() as c:
            return ledger.balance(c, member_id)

    def ledger_rows(self, member_id: int) -> int:
        with self.conn() as c:
            return len(store_members.ledger(c, member_id))

    def audit_rows(self) -> int:
        with self.conn() as c:
            return int(c.execute("SELECT COUNT(*) FROM audit_log").fetchone()[0])


def make_world(db: str) -> World:
    conn = store.connect(db)
    try:
        with store.transaction(conn):
            a = store_registry.list_clubs(conn)[0]
            b = store_registry.add_club(conn, "کافه دوم", NOW - timedelta(days=30))
            enrolled = NOW - timedelta(days=20)
            ma = store.insert_member(conn, phone=PHONE, referrer_id=None, tier="bronze",
                                     now=enrolled, club_id=a.id)
            mb = store.insert_member(conn, phone=PHONE, referrer_id=None, tier="bronze",
                                     now=enrolled, club_id=b.id)
            store.insert_member(conn, phone="09130000000", referrer_id=ma.id, tier="bronze",
                                now=enrolled + timedelta(days=1), club_id=a.id)
            store_members.set_name(conn, ma.id, SCRIPT)
            store.link_card(conn, ma.id, CARD, enrolled)
            for m in (ma, mb):
                ledger.credit(conn, m.id, "earn", 100_000, f"earn:seed:{m.id}",
                              earned_at=enrolled, expires_at=enrolled + timedelta(days=365),
                              ref="seed")
            for name, role, club in (("ali", "owner", a.id), ("sara", "staff", a.id),
                                     ("reza", "staff", a.id), ("bita", "owner", b.id),
                                     ("boss", "provider", None)):
                store_users.add_user(conn, name=name, role=role, club_id=club,
                                     password_hash=password_hash(), now=NOW)
    finally:
        conn.close()
    return World(db, a.id, b.id, ma.id, mb.id, ma.code)


def app_for(world: World, program: Program | None = None):  # type: ignore[no-untyped-def]
    settings = PanelSettings(idle_timeout=3600, program=program or Program())
    return create_app(settings, database=Database(world.db), wall_clock=lambda: NOW)


def csrf(page: str) -> str:
    found = CSRF.search(page)
    assert found, "no CSRF token on the page"
    return found.group(1)


class Browser:
    """A TestClient logged in as one user, that sends each form with the page's token."""

    def __init__(self, client: TestClient, user: str) -> None:
        self.client = client
        self.user = user
        page = client.get("/login").text
        r = client.post("/login", data={"name": user, "password": PASSWORD,
                                        "csrf_token": csrf(page)}, follow_redirects=False)
        assert r.status_code == 303, r.text
        self.token = csrf(client.get("/").text)

    def get(self, path: str, **kw):  # type: ignore[no-untyped-def]
        return self.client.get(path, **kw)

    def post(self, path: str, data: dict[str, str] | None = None, *, token: bool = True):  # type: ignore[no-untyped-def]
        data = dict(data or {})
        if token:
            data["csrf_token"] = self.token
        return self.client.post(path, data=data, follow_redirects=False)


@contextmanager
def logged_in(world: World, user: str, program: Program | None = None) -> Iterator[Browser]:
    with TestClient(app_for(world, program), base_url="http://127.0.0.1") as client:
        yield Browser(client, user)
