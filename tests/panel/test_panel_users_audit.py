"""The users and audit pages, and logins against the database's users, on both engines."""

from __future__ import annotations

from starlette.testclient import TestClient

from backend import store, store_audit, store_users
from tests.panel.world import NOW, PASSWORD, SCRIPT, World, app_for, csrf, logged_in


def login(client: TestClient, name: str, password: str) -> int:
    page = client.get("/login").text
    r = client.post("/login", data={"name": name, "password": password,
                                    "csrf_token": csrf(page)}, follow_redirects=False)
    return r.status_code


def test_login_uses_the_database_and_records_it(world: World) -> None:
    with TestClient(app_for(world), base_url="http://127.0.0.1") as c:
        assert login(c, "ali", "wrong password") == 400
        assert login(c, "nobody", PASSWORD) == 400
        assert login(c, "ali", PASSWORD) == 303
    with world.conn() as conn:
        account = store_users.find_user(conn, "ali")
    assert account.last_login is not None and account.last_address == "testclient"


def test_owner_adds_staff_who_then_logs_in(world: World) -> None:
    with logged_in(world, "ali") as b:
        form = {"name": "نگار", "role": "staff", "password": "staff password",
                "again": "staff password"}
        assert b.post("/users", form).status_code == 303
        page = b.get("/users").text
        dup = b.post("/users", form)
        owner = b.post("/users", {**form, "name": "other", "role": "owner"})
        short = b.post("/users", {**form, "name": "x2", "password": "short", "again": "short"})
        differ = b.post("/users", {**form, "name": "x3", "again": "another one"})
        spaced = b.post("/users", {**form, "name": "a b"})
    assert "نگار" in page and "کارمند" in page
    assert dup.status_code == 400 and 'id="e-name"' in dup.text
    assert owner.status_code == 400 and 'id="e-role"' in owner.text
    assert short.status_code == 400 and 'id="e-password"' in short.text
    assert differ.status_code == 400 and 'id="e-again"' in differ.text
    assert spaced.status_code == 400 and 'id="e-name"' in spaced.text
    assert "staff password" not in page
    with TestClient(app_for(world), base_url="http://127.0.0.1") as c:
        assert login(c, "نگار", "staff password") == 303
    with world.conn() as conn:
        [entry] = store_audit.entries(conn, world.club_a)
        added = store_users.find_user(conn, "نگار")
    assert entry.action == "user.add" and entry.after == {"role": "staff"}
    assert added.club_id == world.club_a and added.role == "staff"


def test_disabling_staff_ends_their_session_at_once(world: World) -> None:
    with logged_in(world, "sara") as staff:
        assert staff.get("/members").status_code == 200
        with logged_in(world, "ali") as owner:
            assert owner.post("/users/sara/disable").status_code == 303
            assert owner.post("/users/ali/disable").status_code == 403  # not oneself
            assert owner.post("/users/bita/disable").status_code == 404  # another club's
            r = owner.post("/users/reza/password", {"password": "new password 1",
                                                    "again": "new password 1"})
            assert r.status_code == 303
            bad = owner.post("/users/reza/password", {"password": "new password 1",
                                                      "again": "other"})
            assert bad.status_code == 400 and 'id="e-again"' in bad.text
        r = staff.get("/members", follow_redirects=False)
        assert r.status_code == 303 and r.headers["location"] == "/login"
    with TestClient(app_for(world), base_url="http://127.0.0.1") as c:
        assert login(c, "sara", PASSWORD) == 400
        assert login(c, "reza", "new password 1") == 303
    with world.conn() as conn:
        actions = [e.action for e in store_audit.entries(conn, world.club_a)]
    assert actions == ["user.passwd", "user.disable"]


def test_staff_may_not_manage_users_or_read_the_audit_log(world: World) -> None:
    with logged_in(world, "sara") as b:
        assert b.get("/users").status_code == 403
        assert b.get("/audit").status_code == 403
        assert b.post("/users", {"name": "x", "role": "staff", "password": "p" * 9,
                                 "again": "p" * 9}).status_code == 403
        assert b.post("/users/reza/disable").status_code == 403
        nav = b.get("/members").text
    assert 'href="/users"' not in nav and 'href="/audit"' not in nav


def test_a_provider_adds_an_owner(world: World) -> None:
    with logged_in(world, "boss") as b:
        b.post("/club", {"club": str(world.club_b)})
        r = b.post("/users", {"name": "owner2", "role": "owner", "password": "p" * 9,
                              "again": "p" * 9})
        assert r.status_code == 303
        assert b.post("/users/bita/disable").status_code == 303  # a provider may
    with world.conn() as conn:
        assert store_users.find_user(conn, "owner2").club_id == world.club_b
        assert store_users.find_user(conn, "bita").disabled


def test_the_audit_log_shows_one_clubs_changes_escaped(world: World) -> None:
    with world.conn() as conn, store.transaction(conn):
        for club, what in ((world.club_a, SCRIPT), (world.club_b, "secret of B")):
            store_audit.record(conn, user="ali", club_id=club, action="member.profile",
                               target="member:X", before={"name": None},
                               after={"name": what}, now=NOW)
    with logged_in(world, "ali") as b:
        page = b.get("/audit").text
    assert "&lt;script&gt;" in page and SCRIPT not in page and "secret of B" not in page
    assert "ویرایش مشخصات" in page
