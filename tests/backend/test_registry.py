"""Many clubs on one backend (issue 13): each request resolved terminal -> branch -> club;
the same phone a member of two clubs with everything apart; unknown and disabled
terminals answered 96, counted, and carried out once registered; program versions."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from pathlib import Path

import pytest

from backend import cli, ledger, report, store, store_registry
from backend.engine import Connection
from backend.handlers import NOT_REGISTERED, Handler
from backend.program import Offer, Program
from backend.sms import outbox
from protocols.mqtt import Request
from tests.backend.core_helpers import FakeClock, advice, phone, request, reversal

A_TID, B_TID, B2_TID = "T0000001", "B0000001", "B0000002"  # A: the test terminals' club
B_MID = "M00000000000002"


def _club_b(conn: Connection, now: datetime) -> tuple[int, int, int]:
    """Club B with branches main and north, a terminal in each: (club, main, north)."""
    with store.transaction(conn):
        club = store_registry.add_club(conn, "نان بربری", now)
        main = store_registry.find_branch(conn, club.id, "main")
        assert main is not None
        north = store_registry.add_branch(conn, club.id, "north", now)
        store_registry.add_terminal(conn, B_TID, B_MID, main.id, now)
        store_registry.add_terminal(conn, B2_TID, B_MID, north.id, now)
    return club.id, main.id, north.id


def _b(type: str, body: dict, tid: str = B_TID, **kw: object) -> Request:
    r = request(type, body, tid=tid, **kw)  # type: ignore[arg-type]
    return Request(r.type, r.id, r.key, r.terminal_id, B_MID, r.body)


def _b_advice(tid: str = B_TID, **kw: object) -> Request:
    r = advice(tid=tid, **kw)  # type: ignore[arg-type]
    return Request(r.type, r.id, r.key, r.terminal_id, B_MID, r.body)


def ok(h: Handler, req: Request) -> dict:
    resp = h.handle(req)
    assert resp.code == "00", resp
    return resp.body


def test_registry_same_phone_in_two_clubs_stays_apart(
    handler: Handler, clock: FakeClock, conn: Connection
) -> None:
    b, _b_main, b_north = _club_b(conn, clock())
    a_id = next(c.id for c in store_registry.list_clubs(conn) if c.id != b)
    a = store_registry.club_by_id(conn, a_id)
    p = phone(1)
    # club B has its own program (10 % for everyone) and an offer only in branch north
    with store.transaction(conn):
        store_registry.add_program(
            conn, b, '[[program.tiers]]\nname = "base"\nmin_spend = 0\ncashback_percent = 10\n'
            '[[program.tiers]]\nname = "vip"\nmin_spend = 1000000\ncashback_percent = 12\n',
            "test", clock(),
        )  # fmt: skip
        store.add_offer(conn, Offer(name="north", amount=5_000, until=date(2099, 1, 1),
                                    club_id=b, branches=frozenset({b_north})), clock())  # fmt: skip
    ea = ok(handler, request("enroll", {"phone": p}))
    eb = ok(handler, _b("enroll", {"phone": p}))
    assert ea["new"] and eb["new"] and ea["member_code"] != eb["member_code"]
    ma = store.member_by_phone(conn, p, club_id=a_id)
    mb = store.member_by_phone(conn, p, club_id=b)
    assert ma is not None and mb is not None and ma.id != mb.id and mb.tier == "base"
    # a purchase in A: 3 % in A, nothing in B
    assert ok(handler, advice(amount=1_000_000, occurred_at=clock.iso(), phone=p))[
        "earned"] == 30_000  # fmt: skip
    # in B's main branch: 10 %, then vip; in B's north: 12 % + the north offer
    assert ok(handler, _b_advice(amount=1_000_000, occurred_at=clock.iso(), phone=p))[
        "earned"] == 100_000  # fmt: skip
    north = ok(handler, _b_advice(tid=B2_TID, amount=100_000, occurred_at=clock.iso(), phone=p))
    assert north["earned"] == 12_000 + 5_000
    assert ledger.balance(conn, ma.id) == 30_000
    assert ledger.balance(conn, mb.id) == 117_000
    assert store.member_by_id(conn, ma.id).tier == "bronze"
    assert store.member_by_id(conn, mb.id).tier == "vip"
    # credit of B usable in every branch of B, never in A
    qb = ok(handler, _b("inquiry", {"phone": p, "gross": 200_000}, tid=B2_TID))
    assert qb["discount"] == 100_000 and qb["balance"] == 17_000
    qa = ok(handler, request("inquiry", {"phone": p, "gross": 200_000}))
    assert qa["discount"] == 30_000  # only A's credit (the cap would allow 100,000)
    # B's quote is not A's terminal's to settle
    stolen = handler.handle(advice(amount=100_000, gross=200_000, occurred_at=clock.iso(),
                                   quote_id=qb["quote_id"]))  # fmt: skip
    assert stolen.code == "12"
    assert ledger.balance(conn, mb.id) == 17_000  # still held for B, nothing moved
    # SMS went out in each club's name
    rows = conn.execute("SELECT club_id, text FROM sms_outbox WHERE kind = 'welcome' "
                        "ORDER BY id").fetchall()  # fmt: skip
    assert [r[0] for r in rows] == [a_id, b]
    assert "نان بربری" in rows[1][1] and "نان بربری" not in rows[0][1]
    assert a is not None and a.name in rows[0][1]
    # reports per club, per branch, per terminal
    ra = report.summary(conn, since=None, until=None, club_id=a_id)
    rb = report.summary(conn, since=None, until=None, club_id=b)
    assert (ra.purchases, ra.sales, ra.new_members) == (1, 1_000_000, 1)
    assert (rb.purchases, rb.sales, rb.new_members) == (2, 1_100_000, 1)
    rn = report.summary(conn, since=None, until=None, club_id=b, branch_id=b_north)
    assert (rn.purchases, rn.sales, rn.credit_issued) == (1, 100_000, 17_000)
    rt = report.summary(conn, since=None, until=None, club_id=b, terminal_id=B_TID)
    assert (rt.purchases, rt.sales) == (1, 1_000_000)
    # welcome and purchase SMS: A's one purchase, B's two
    assert outbox.counts(conn, club_id=a_id)["pending"] == 2
    assert outbox.counts(conn, club_id=b)["pending"] == 3
    assert (ra.sms_pending, rb.sms_pending) == (2, 3)


def test_registry_unknown_and_disabled_terminals_answered_96_counted_then_served(
    handler: Handler, clock: FakeClock, conn: Connection
) -> None:
    req = request("enroll", {"phone": phone(2)}, tid="X0000001")
    resp = handler.handle(req)
    assert (resp.code, resp.message) == ("96", NOT_REGISTERED)
    again = handler.handle(req)  # the agent's repeat: still refused, counted twice
    assert again.code == "96"
    assert store.stored_response(conn, req.key) is None  # not stored: no effect at all
    assert conn.execute("SELECT COUNT(*) FROM members").fetchone()[0] == 0
    (seen,) = store_registry.list_unknown_terminals(conn)
    assert (seen.terminal_id, seen.merchant_id, seen.count) == (
        "X0000001", "M00000000000001", 2)  # fmt: skip
    # a registered terminal with another merchant id is not that terminal
    forged = Request(req.type, "x", "T0000003:0100:000001:1123120000", "T0000003",
                     "M00000000000009", req.body)  # fmt: skip
    assert handler.handle(forged).code == "96"
    # registered: the very same request (same key) is carried out, once
    (club,) = store_registry.list_clubs(conn)
    main = store_registry.find_branch(conn, club.id, "main")
    assert main is not None
    with store.transaction(conn):
        store_registry.add_terminal(conn, "X0000001", "M00000000000001", main.id, clock())
    assert [u.terminal_id for u in store_registry.list_unknown_terminals(conn)] == ["T0000003"]
    done = handler.handle(req)
    assert done.code == "00" and done.body["new"] is True
    assert handler.handle(req).body == done.body  # stored now: answered word for word
    # disabled: refused again, no effect, counted; enabled: served
    with store.transaction(conn):
        assert store_registry.set_terminal_enabled(conn, "X0000001", False)
    buy = advice(amount=1_000_000, occurred_at=clock.iso(), phone=phone(2), tid="X0000001")
    assert handler.handle(buy).code == "96"
    m = store.member_by_phone(conn, phone(2), club_id=club.id)
    assert m is not None and ledger.balance(conn, m.id) == 0
    with store.transaction(conn):
        store_registry.set_terminal_enabled(conn, "X0000001", True)
    assert handler.handle(buy).code == "00"
    assert ledger.balance(conn, m.id) == 30_000


def test_registry_a_quote_keeps_its_program_version(
    handler: Handler, clock: FakeClock, conn: Connection
) -> None:
    (club,) = store_registry.list_clubs(conn)
    p = phone(3)
    ok(handler, request("enroll", {"phone": p}))
    ok(handler, advice(amount=1_000_000, occurred_at=clock.iso(), phone=p))  # 3 % (config's)
    q = ok(handler, request("inquiry", {"phone": p, "gross": 100_000}))
    body = "[[program.tiers]]\nname = \"bronze\"\nmin_spend = 0\ncashback_percent = 20\n"
    with store.transaction(conn):
        v1 = store_registry.add_program(conn, club.id, body, "owner", clock())
    assert v1.version == 1
    # the quote was computed with the configuration's program: its purchase earns by it
    settled = ok(handler, advice(amount=70_000, gross=100_000, occurred_at=clock.iso(),
                                 quote_id=q["quote_id"], phone=p))  # fmt: skip
    assert settled["earned"] == 2_100  # 3 % of 70,000, not 20 %
    assert ok(handler, advice(amount=100_000, occurred_at=clock.iso(), phone=p))[
        "earned"] == 20_000  # fmt: skip
    versions = conn.execute("SELECT program_version FROM purchases ORDER BY occurred_at, key")
    assert sorted(v for (v,) in versions) == [0, 0, 1]
    quote = store.quote(conn, q["quote_id"])
    assert quote is not None and quote.program_version == 0


def test_registry_reversal_from_another_clubs_terminal_touches_nothing(
    handler: Handler, clock: FakeClock, conn: Connection
) -> None:
    b, _, _ = _club_b(conn, clock())
    p = phone(4)
    ok(handler, _b("enroll", {"phone": p}))
    bought = _b_advice(amount=1_000_000, occurred_at=clock.iso(), phone=p)
    ok(handler, bought)
    mb = store.member_by_phone(conn, p, club_id=b)
    assert mb is not None and ledger.balance(conn, mb.id) == 30_000
    # A's terminal names B's purchase: not an advice of this terminal
    foreign = reversal(bought, occurred_at=clock.iso())
    assert handler.handle(foreign).code == "12"
    # A's terminal with the phone of B's member: no member in A
    assert handler.handle(request("inquiry", {"phone": p, "gross": 10_000})).code == "14"
    assert ledger.balance(conn, mb.id) == 30_000


def test_registry_migration_v4_on_postgresql(empty_pg_url: str) -> None:
    """A PostgreSQL database at version 4 with a shop's rows becomes one club, its
    terminals registered, its phone uniqueness per club."""
    from backend import migrations

    conn = store.connect(empty_pg_url, check_schema=False, create=False)
    try:
        for step in migrations.MIGRATIONS[:3]:  # versions 2..4
            with store.transaction(conn):
                migrations._apply(conn, step, migrations.Setup(datetime.now(UTC)))
        assert migrations.current_version(conn) == 4
        with store.transaction(conn):
            conn.execute("INSERT INTO members(phone, code, enrolled_at, tier) "
                         "VALUES ('09120000001', 'AAAAAAA', 1, 'bronze')")  # fmt: skip
            conn.execute("INSERT INTO purchases(key, member_id, terminal_id, amount, gross, "
                         "approved, occurred_at) VALUES ('T0000042:0220:1', 1, 'T0000042', "
                         "5, 5, 1, 1)")  # fmt: skip
        migrations.migrate(conn, datetime.now(UTC), shop_name="Shop")
        (club,) = store_registry.list_clubs(conn)
        assert club.name == "Shop"
        assert [t.id for t in store_registry.list_terminals(conn)] == ["T0000042"]
        assert store_registry.resolve_terminal(conn, "T0000042", "ANY MERCHANT ID") is not None
        m = store.member_by_phone(conn, "09120000001", club_id=club.id)
        assert m is not None and m.club_id == club.id
        with store.transaction(conn):
            other = store_registry.add_club(conn, "Other", datetime.now(UTC))
            # the same phone in another club: allowed now
            store.insert_member(conn, phone="09120000001", referrer_id=None, tier="bronze",
                                now=datetime.now(UTC), club_id=other.id)  # fmt: skip
    finally:
        conn.close()


# --- the CLI ------------------------------------------------------------------------------


def _cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_registry_cli_clubs_branches_terminals(
    db: str, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    run = lambda *a: _cli(capsys, *a, "--db", db)  # noqa: E731
    code, out, _ = run("club", "list")
    assert code == 0 and "فروشگاه" in out and "version 0" in out
    prog = tmp_path / "p.toml"
    prog.write_text('[program]\nwelcome_credit = 5000\n[otp]\ndigits = 5\n')
    assert run("club", "add", "Bakery", "--program", str(prog))[0] == 0
    code, _, err = run("club", "add", "Bakery")
    assert code == 2 and "already exists" in err
    assert run("branch", "add", "north", "--club", "Bakery")[0] == 0
    code, _, err = run("branch", "add", "north", "--club", "Bakery")
    assert code == 2 and "already has a branch" in err
    code, _, err = run("branch", "add", "south")  # two clubs now: which?
    assert code == 2 and "2 clubs" in err and "--club" in err
    code, _, err = run("terminal", "add", "B0000001", "--merchant-id", B_MID, "--club", "Bakery",
                       "--branch", "north")  # fmt: skip
    assert code == 0, err
    for bad, why in ((["B0000001"], "already registered"), (["SHORT"], "must be 8"),
                     (["B0000009", "--branch", "east"], "no branch 'east'"),
                     (["B0000009", "--club", "Nope"], "no club 'Nope'")):  # fmt: skip
        argv = ["terminal", "add", *bad[:1], "--merchant-id", B_MID, *bad[1:]]
        if "--club" not in argv:
            argv += ["--club", "Bakery"]
        code, _, err = run(*argv)
        assert code == 2 and why in err, (bad, err)
    code, _, err = run("terminal", "add", "B0000009", "--merchant-id", "short", "--club", "Bakery")
    assert code == 2 and "15 printable" in err
    code, _, err = run("terminal", "add", "B0000009", "--merchant-id", B_MID, "--club",
                       "Bakery", "--agent-config", str(tmp_path / "a.toml"))  # fmt: skip
    assert code == 2 and "administrator" in err and not (tmp_path / "a.toml").exists()
    code, out, _ = run("club", "show", "Bakery")
    assert code == 0 and "version 1" in out and "north: 1 terminal" in out
    code, out, _ = run("branch", "list", "--club", "Bakery")
    assert code == 0 and "north" in out and "main" in out
    # an unknown terminal's request, then the list shows it
    conn = store.connect(db)
    try:
        h = Handler(conn, Program(), clock=FakeClock())
        assert h.handle(request("enroll", {"phone": phone(1)}, tid="Z0000001")).code == "96"
    finally:
        conn.close()
    code, out, _ = run("terminal", "list")
    assert code == 0 and "B0000001" in out and "Bakery" in out and "Z0000001" in out
    assert "1 request(s)" in out
    code, out, _ = run("terminal", "list", "--club", "Bakery")
    assert "B0000001" in out and "T0000001" not in out
    assert run("terminal", "disable", "B0000001")[0] == 0
    code, out, _ = run("terminal", "list", "--club", "Bakery")
    assert "DISABLED" in out
    assert run("terminal", "enable", "B0000001")[0] == 0
    code, _, err = run("terminal", "disable", "Q0000001")
    assert code == 2 and "not registered" in err
    # operator commands need --club once there are two clubs
    code, _, err = run("member", phone(1))
    assert code == 2 and "--club" in err
    code, _, err = run("offer", "add", "x", "--percent", "2", "--until", "2099-01-01")
    assert code == 2 and "--club" in err
    code, out, _ = run("offer", "add", "x", "--percent", "2", "--until", "2099-01-01",
                       "--club", "Bakery", "--branches", "north")  # fmt: skip
    assert code == 0, out
    code, out, _ = run("offer", "list", "--club", "Bakery")
    assert "'x'" in out
    code, out, _ = run("offer", "list", "--club", "فروشگاه")
    assert "'x'" not in out
    code, out, _ = run("report", "--club", "Bakery", "--format", "json")
    assert code == 0 and json.loads(out)


def test_registry_cli_program_import_export_versions(
    db: str, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    run = lambda *a: _cli(capsys, *a, "--db", db)  # noqa: E731
    club = "فروشگاه"
    out_file = tmp_path / "now.toml"
    assert run("program", "export", club, str(out_file))[0] == 0
    exported = out_file.read_text()
    assert "[program]" in exported and 'name = "gold"' in exported
    code, _, err = run("program", "export", club, str(out_file))
    assert code == 2 and "already exists" in err
    new = tmp_path / "new.toml"
    new.write_text(exported.replace("cashback_percent = 3", "cashback_percent = 4"))
    code, out, _ = run("program", "import", club, str(new), "--author", "maryam")
    assert code == 0 and "version 1 by maryam" in out
    # every error refused before anything changes
    bad = tmp_path / "bad.toml"
    for text, why in (
        ("[program]\nhold_seconds = -1\n", "must not be negative"),
        ("[program]\nholds = 3\n", "unknown setting 'holds'"),
        ("[sms]\nsender = 'file'\n", "unknown table [sms]"),
        ("[program\n", "not valid TOML"),
        ("[[program.tiers]]\nname = 'x'\nmin_spend = 5\ncashback_percent = 1\n", "min_spend 0"),
    ):
        bad.write_text(text)
        code, _, err = run("program", "import", club, str(bad))
        assert code == 2 and why in err, (text, err)
    # an offer aimed at a tier the new program lacks
    assert run("offer", "add", "g", "--percent", "1", "--until", "2099-01-01",
               "--target", "tier:gold")[0] == 0  # fmt: skip
    bad.write_text("[[program.tiers]]\nname = 'base'\nmin_spend = 0\ncashback_percent = 1\n")
    code, _, err = run("program", "import", club, str(bad))
    assert code == 2 and "tier:gold" in err and "nothing changed" in err
    code, out, _ = run("program", "show", club)
    assert code == 0 and "version 1" in out and "by maryam" in out and "version 2" not in out
    assert "cashback_percent = 4" in out
    code, out, _ = run("program", "export", club, "-")
    assert out == new.read_text()
    code, _, err = run("program", "show", "Nope")
    assert code == 2 and "no club" in err


def test_registry_each_club_sends_through_its_own_gateway(
    db: str, clock: FakeClock, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from backend.sms import FileSender, SmsWorker

    conn = store.connect(db)
    try:
        b, _, _ = _club_b(conn, clock())
        with store.transaction(conn):
            c = store_registry.add_club(conn, "Gateless", clock())
        assert _cli(capsys, "club", "sms", "نان بربری", "--file", str(tmp_path / "b.jsonl"),
                    "--db", db)[0] == 0  # fmt: skip
        code, _, err = _cli(capsys, "club", "sms", "Gateless", "--kavenegar-line", "1000",
                            "--api-key-env", "NO_SUCH_VARIABLE_SET", "--db", db)  # fmt: skip
        assert code == 0, err
        code, _, err = _cli(capsys, "club", "sms", "Gateless", "--kavenegar-line", "x",
                            "--api-key-env", "K", "--db", db)  # fmt: skip
        assert code == 2 and "number" in err
        code, out, _ = _cli(capsys, "club", "show", "Gateless", "--db", db)
        assert "Kavenegar, line 1000, key in $NO_SUCH_VARIABLE_SET" in out
        with store.transaction(conn):
            for club_id, n in ((1, 1), (b, 2), (c.id, 3)):
                outbox.enqueue(conn, key=f"k{n}", phone=phone(n), text=f"text {n}",
                               kind="other", now=clock(), club_id=club_id)  # fmt: skip
    finally:
        conn.close()
    worker = SmsWorker(db, FileSender(tmp_path / "provider.jsonl"), per_club=True,
                       base_dir=tmp_path)  # fmt: skip
    try:
        assert worker.run_once(clock()) == 2
    finally:
        worker.stop()
    assert "text 1" in (tmp_path / "provider.jsonl").read_text()
    assert "text 2" in (tmp_path / "b.jsonl").read_text()
    assert "text 3" not in (tmp_path / "provider.jsonl").read_text()
    conn = store.connect(db)
    try:
        # the club whose key is not in this process's environment: kept, to be retried
        row = conn.execute("SELECT status, last_error FROM sms_outbox WHERE key = 'k3'").fetchone()
        assert row[0] == "pending" and "NO_SUCH_VARIABLE_SET" in row[1]
    finally:
        conn.close()


def test_registry_a_new_database_has_one_club_and_no_terminal(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = tmp_path / "backend.toml"
    cfg.write_text('[shop]\nname = "قنادی نمونه"\n')
    path = tmp_path / "new.db"
    code, _, err = _cli(capsys, "migrate", "--db", str(path), "--config", str(cfg))
    assert code == 0, err
    conn = store.connect(path)
    try:
        (club,) = store_registry.list_clubs(conn)
        assert club.name == "قنادی نمونه"
        assert [b.name for b in store_registry.list_branches(conn)] == ["main"]
        assert store_registry.list_terminals(conn) == []
    finally:
        conn.close()
    code, _, err = _cli(capsys, "migrate", "--db", str(tmp_path / "no" / "x.db"))
    assert code == 2 and "no such folder" in err


def test_registry_cli_public_url_checked_kept_and_cleared(
    db: str, capsys: pytest.CaptureFixture[str]
) -> None:
    run = lambda *a: _cli(capsys, *a, "--db", db)  # noqa: E731
    assert run("club", "add", "Bakery")[0] == 0
    code, out, _ = run("club", "public-url", "Bakery", "https://bakery.example.ir/")
    assert code == 0 and "https://bakery.example.ir" in out
    for bad, why in (("ftp://x.ir", "not a public address"), ("https://a b.ir", "not a public"),
                     ("https://" + "x" * 40 + ".ir", "at most 40")):  # fmt: skip
        code, _, err = run("club", "public-url", "Bakery", bad)
        assert code == 2 and why in err, (bad, err)
    conn = store.connect(db)
    try:
        assert store_registry.find_club(conn, "Bakery").public_url == (
            "https://bakery.example.ir")
    finally:
        conn.close()
    assert "pages     https://bakery.example.ir" in run("club", "show", "Bakery")[1]
    assert run("club", "public-url", "Bakery", "none")[0] == 0
    assert "no links in SMS" in run("club", "show", "Bakery")[1]
