"""Prize draws on both engines (backend.draw_job, store_draws, `loyalty-backend draw`): the
entries are the period's settled purchases net of reversals, of the segment when one is
named; a wrong reveal is refused; a run is idempotent and each winner's SMS is sent once;
`draw verify` on the exported CSV gives the stored winners; bad input changes nothing."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path

import pytest

from backend import cli, draw_job, draws, store, store_draws, store_registry, store_segments
from backend.draw_job import Definition
from backend.draws import DrawError
from backend.segments import MemberSegment, Scores
from backend.sms import SmsWorker
from backend.store import PurchaseRecord, transaction
from protocols.persian import TEHRAN
from tests.backend.core_helpers import Recorder
from tests.backend.engines import TEST_TERMINALS

SECRET = "the owner's secret: 7f3a9c2e51b04d86"
COMMITMENT = draws.commitment(SECRET)
DEFINED = datetime(2026, 10, 25, 9, tzinfo=UTC)
STARTS, ENDS = date(2026, 11, 1), date(2026, 11, 30)
AFTER = datetime(2026, 12, 1, 9, tzinfo=UTC)


def tehran(d: date, h: int = 12, m: int = 0) -> datetime:
    return datetime.combine(d, time(h, m), TEHRAN)


def _club(conn: store.Connection) -> int:
    return int(conn.execute("SELECT MIN(id) FROM clubs").fetchone()[0])


def _member(conn: store.Connection, club: int, n: int) -> store.Member:
    return store.insert_member(conn, phone=f"0912500{n:04d}", referrer_id=None, tier="bronze",
                               now=DEFINED - timedelta(days=30), club_id=club)


def _buy(conn: store.Connection, member_id: int, at: datetime, amount: int, key: str,
         *, approved: bool = True) -> None:
    terminal = store_registry.terminal(conn, TEST_TERMINALS[0])
    assert terminal is not None
    store.insert_purchase(conn, PurchaseRecord(
        key=key, member_id=member_id, terminal_id=TEST_TERMINALS[0], quote_id=None,
        amount=amount, gross=amount, approved=approved, redeemed=0, earned=0, recovered=0,
        earn_lot=None, occurred_at=int(at.timestamp()), branch_id=terminal.branch_id))


def _define(conn: store.Connection, club: int, name: str = "yalda", **kw: object
            ) -> store_draws.Draw:
    fields: dict = {"name": name, "starts_on": STARTS, "ends_on": ENDS, "segment": None,
                    "per_purchase": None, "per_rials": 100_000, "prizes": 2,
                    "commitment": COMMITMENT, **kw}
    with transaction(conn):
        return draw_job.add(conn, club, Definition(**fields), DEFINED)


def _world(conn: store.Connection) -> tuple[int, list[store.Member]]:
    """Six members of the club and one of another club, with purchases in and around
    the period (see each line)."""
    with transaction(conn):
        club = _club(conn)
        other = store_registry.add_club(conn, "باشگاه دیگر", DEFINED - timedelta(days=60))
        ms = [_member(conn, club, i) for i in range(6)]
        _buy(conn, ms[0].id, tehran(STARTS, 0, 1), 150_000, "a1")  # first minute of day 1
        _buy(conn, ms[0].id, tehran(ENDS, 23, 59), 100_000, "a2")  # last minute
        _buy(conn, ms[1].id, tehran(date(2026, 11, 10)), 900_000, "b1")
        store.mark_reversed(conn, "b1")  # reversed: no tickets
        _buy(conn, ms[1].id, tehran(date(2026, 11, 11)), 120_000, "b2")
        _buy(conn, ms[2].id, tehran(date(2026, 10, 31), 23, 59), 500_000, "c1")  # before
        _buy(conn, ms[2].id, tehran(date(2026, 12, 1), 0, 0), 500_000, "c2")  # after
        _buy(conn, ms[3].id, tehran(date(2026, 11, 5)), 700_000, "d1", approved=False)
        _buy(conn, ms[4].id, tehran(date(2026, 11, 6)), 99_999, "e1")  # under one ticket
        _buy(conn, ms[5].id, tehran(date(2026, 11, 7)), 300_000, "f1")
        _buy(conn, ms[5].id, tehran(date(2026, 11, 8)), 30_000, "f2")
        stranger = store.insert_member(conn, phone="09125009999", referrer_id=None,
                                       tier="bronze", now=DEFINED, club_id=other.id)
        _buy(conn, stranger.id, tehran(date(2026, 11, 9)), 900_000, "s1")
    return club, ms


def _outbox(conn: store.Connection, draw_id: int) -> list[tuple[str, str, str]]:
    return [(r[0], r[1], r[2]) for r in conn.execute(
        "SELECT key, phone, kind FROM sms_outbox WHERE key LIKE ? ORDER BY key",
        (f"draw:{draw_id}:%",))]


def test_entries_per_rials_are_the_periods_settled_purchases_net_of_reversals(
        conn: store.Connection) -> None:
    """Tehran day bounds, reversed and declined purchases out, another club out, rials
    summed over the period before dividing, no-ticket members left out."""
    club, ms = _world(conn)
    draw = _define(conn, club)
    with transaction(conn):
        frozen = draw_job.close(conn, club, "yalda", AFTER)
    got = {e.member_id: e.tickets for e in frozen}
    assert got == {ms[0].id: 2, ms[1].id: 1, ms[5].id: 3}
    assert [e.code for e in frozen] == sorted(e.code for e in frozen)
    assert [e.position for e in frozen] == [0, 1, 2]
    with transaction(conn):
        text = draw_job.export(conn, store_draws.get(conn, club, draw.id))  # type: ignore[arg-type]
    assert text.splitlines()[0] == "entry,tickets" and "0912" not in text
    assert [(e.entry, e.tickets) for e in draws.parse_entries(text)] == [
        (e.code, e.tickets) for e in frozen]
    # frozen: a reversal after the close changes nothing
    with transaction(conn):
        store.mark_reversed(conn, "f1")
        assert draw_job.close(conn, club, "yalda", AFTER + timedelta(days=1)) == frozen
        assert store_draws.get(conn, club, draw.id).state == "closed"  # type: ignore[union-attr]


def test_entries_per_purchase_of_a_segment(conn: store.Connection) -> None:
    club, ms = _world(conn)
    with transaction(conn):
        store_segments.write(conn, club, date(2026, 11, 30), [
            MemberSegment(ms[0].id, Scores(5, 5, 5, 5), "loyal"),
            MemberSegment(ms[4].id, Scores(5, 5, 5, 5), "loyal"),
            MemberSegment(ms[5].id, Scores(1, 1, 1, 1), "at_risk")])
    _define(conn, club, segment="loyal", per_purchase=3, per_rials=None)
    with transaction(conn):
        frozen = draw_job.close(conn, club, "yalda", AFTER)
    assert {e.member_id: e.tickets for e in frozen} == {ms[0].id: 6, ms[4].id: 3}


def test_a_draw_is_refused_as_given_and_nothing_is_written(conn: store.Connection) -> None:
    club = _club(conn)
    bad = {
        "ends before it starts": {"ends_on": STARTS - timedelta(days=1)},
        "has ended": {"ends_on": date(2026, 10, 20), "starts_on": date(2026, 10, 1)},
        "no segment": {"segment": "vip"},
        "one of the two": {"per_purchase": 1},
        "1 to 1000 prizes": {"prizes": 0},
        "SHA-256": {"commitment": "abc"},
        "rials per ticket": {"per_rials": 0},
        "name": {"name": " "},
    }
    for why, kw in bad.items():
        with pytest.raises(DrawError, match=why):
            _define(conn, club, **kw)
    _define(conn, club, commitment=COMMITMENT.upper())
    with pytest.raises(DrawError, match="named 'yalda' already"):
        _define(conn, club)
    [d] = store_draws.list_draws(conn, club)
    assert d.commitment == COMMITMENT and d.state == "open"
    with pytest.raises(DrawError, match="has not ended"), transaction(conn):
        draw_job.close(conn, club, "yalda", tehran(ENDS, 23, 59))
    with pytest.raises(DrawError, match="close the draw first"), transaction(conn):
        draw_job.run(conn, club, "yalda", SECRET, AFTER, "shop")
    with pytest.raises(DrawError, match="still open"):
        draw_job.export(conn, d)
    with pytest.raises(DrawError, match="no draw named"):
        draw_job.find(conn, club, "nowruz")
    assert store_draws.entries(conn, d.id) == [] and store_draws.list_draws(conn, club) == [d]


def test_a_wrong_reveal_is_refused_and_changes_nothing(conn: store.Connection) -> None:
    club, _ = _world(conn)
    draw = _define(conn, club)
    with transaction(conn):
        draw_job.close(conn, club, "yalda", AFTER)
    with pytest.raises(DrawError, match="does not match"), transaction(conn):
        draw_job.run(conn, club, "yalda", SECRET + "x", AFTER, "shop")
    d = store_draws.get(conn, club, draw.id)
    assert d is not None and d.state == "closed" and d.secret is None
    assert store_draws.winners(conn, draw.id) == [] and _outbox(conn, draw.id) == []


def test_run_is_idempotent_and_each_winner_gets_one_sms(db: str, conn: store.Connection
                                                       ) -> None:
    club, _ = _world(conn)
    draw = _define(conn, club, prizes=5)  # more prizes than entries: every entry wins once
    with transaction(conn):
        frozen = draw_job.close(conn, club, "yalda", AFTER)
        first = draw_job.run(conn, club, "yalda", SECRET, AFTER, "کافه")
    with transaction(conn):
        again = draw_job.run(conn, club, "yalda", SECRET, AFTER + timedelta(hours=1), "کافه")
    assert again == first and [w.prize for w in first] == [1, 2, 3]
    assert sorted(w.member_id for w in first) == sorted(e.member_id for e in frozen)
    expected = draws.verify(SECRET, draw_job.entries_csv(frozen), 5, COMMITMENT)
    assert [w.code for w in first] == expected
    d = store_draws.get(conn, club, draw.id)
    assert d is not None and d.state == "drawn" and d.secret == SECRET
    assert d.drawn_at == AFTER
    rows = _outbox(conn, draw.id)
    assert [(k, p, kind) for k, p, kind in rows] == [
        (f"draw:{draw.id}:{w.prize}", w.phone, "draw") for w in first]
    with pytest.raises(DrawError, match="does not match"), transaction(conn):
        draw_job.run(conn, club, "yalda", "another secret of 16+ chars", AFTER, "کافه")
    rec = Recorder()
    worker = SmsWorker(db, rec, batch=50)
    try:
        worker.run_once(AFTER + timedelta(hours=2))
        worker.run_once(AFTER + timedelta(hours=3))
    finally:
        worker.stop()
    sent = sorted((p, kind) for p, _, kind in rec.sent)
    assert sent == sorted((w.phone, "draw") for w in first)
    assert all("قرعه‌کشی «yalda»" in text for _, text, _ in rec.sent)


def _cli(*args: str) -> int:
    return cli.main(["draw", *args])


def test_cli_close_export_run_show_and_verify_give_the_same_winners(
        db: str, conn: store.Connection, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    club, _ = _world(conn)
    name = conn.execute("SELECT name FROM clubs WHERE id = ?", (club,)).fetchone()[0]
    _define(conn, club, prizes=2)  # defined in the past; its period is over now
    secret_file = tmp_path / "secret.txt"
    secret_file.write_text(SECRET + "\n", encoding="utf-8")
    out = tmp_path / "entries.csv"
    assert _cli("close", "yalda", "--db", db, "--club", name, "--out", str(out)) == 0
    assert "3 entries, 6 tickets" in capsys.readouterr().out
    assert _cli("entries", "yalda", "--db", db, "--club", name) == 0
    assert capsys.readouterr().out == out.read_text(encoding="utf-8")
    assert _cli("run", "yalda", "--db", db, "--club", name, "--secret-file",
                str(tmp_path / "missing")) == 2
    assert _cli("run", "yalda", "--db", db, "--club", name, "--secret-file",
                str(secret_file)) == 0
    ran = capsys.readouterr().out.splitlines()
    stored = store_draws.winners(conn, store_draws.find(conn, club, "yalda").id)  # type: ignore[union-attr]
    assert [line.split("\t")[1] for line in ran] == [w.code for w in stored]
    assert all(w.phone not in "\n".join(ran) for w in stored)
    assert _cli("show", "yalda", "--db", db, "--club", name) == 0
    shown = capsys.readouterr().out
    assert COMMITMENT in shown and "drawn" in shown and "entries: 3, tickets: 6" in shown
    assert all(w.code in shown and w.phone not in shown for w in stored)
    verified = subprocess.run(
        [sys.executable, "-m", "backend", "draw", "verify", "--seed", str(secret_file),
         "--entries", str(out), "--prizes", "2", "--commitment", COMMITMENT],
        capture_output=True, text=True, check=True, timeout=60)
    assert verified.stdout.splitlines() == [f"{w.prize}\t{w.code}" for w in stored]
    # the seed typed in, not a file: the same
    assert _cli("verify", "--seed", SECRET, "--entries", str(out), "--prizes", "2") == 0
    assert capsys.readouterr().out.splitlines() == [f"{w.prize}\t{w.code}" for w in stored]
    assert _cli("verify", "--seed", "x" * 20, "--entries", str(out), "--prizes", "2",
                "--commitment", COMMITMENT) == 2
    assert "does not match" in capsys.readouterr().err


def test_cli_add_prints_the_commitment_and_refuses_with_exit_2(
        db: str, conn: store.Connection, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    secret_file = tmp_path / "secret.txt"
    secret_file.write_text(SECRET, encoding="utf-8")
    today = datetime.now(TEHRAN).date()
    base = ["add", "nowruz", "--db", db, "--from", today.isoformat(),
            "--to", (today + timedelta(days=30)).isoformat(), "--prizes", "3"]
    assert _cli(*base, "--per-rials", "500000", "--secret-file", str(secret_file)) == 0
    out = capsys.readouterr().out
    assert COMMITMENT in out and SECRET not in out
    [d] = store_draws.list_draws(conn, _club(conn))
    assert d.commitment == COMMITMENT and d.secret is None and d.per_rials == 500_000
    short = tmp_path / "short.txt"
    short.write_text("too short", encoding="utf-8")
    for bad in ([*base[:1], "other", *base[2:], "--per-purchase", "1", "--secret-file",
                 str(short)],
                [*base, "--per-purchase", "1", "--commitment", COMMITMENT],  # name taken
                [*base[:1], "other", *base[2:], "--per-purchase", "0", "--commitment",
                 COMMITMENT],
                [*base[:1], "other", "--db", db, "--from", "1405/13/01", "--to", "1405/12/01",
                 "--prizes", "1", "--per-purchase", "1", "--commitment", COMMITMENT]):
        assert _cli(*bad) == 2, bad
        assert capsys.readouterr().err.startswith("loyalty-backend: error: ")
    assert store_draws.list_draws(conn, _club(conn)) == [d]
    assert _cli("list", "--db", db) == 0
    assert "nowruz\topen" in capsys.readouterr().out
    assert _cli("show", "yalda", "--db", db) == 2
    assert _cli("entries", "nowruz", "--db", db) == 2
    assert "still open" in capsys.readouterr().err


def test_winner_sms_names_the_draw_the_prize_and_the_code() -> None:
    from backend import texts

    text = texts.draw_winner_sms(shop_name="کافه", draw_name="یلدا\nویژه", prize=2,
                                 member_code="123456")
    assert text.splitlines() == ["کافه", "تبریک! برندهٔ جایزهٔ ۲ قرعه‌کشی «یلدا ویژه» شدید.",
                                 "برای دریافت، کد عضویت را بگویید: ۱۲۳۴۵۶"]
    with pytest.raises(ValueError, match="prize"):
        texts.draw_winner_sms(shop_name="کافه", draw_name="یلدا", prize=0, member_code="1")


def test_copy_moves_a_drawn_draw_to_postgresql(tmp_path: Path, empty_pg_url: str) -> None:
    """draws, draw_entries and draw_winners are in transfer.TABLES, and a new draw after
    the copy gets a fresh id (the draws id sequence moved past the copied ones)."""
    from backend import transfer
    from tests.backend.engines import register_test_terminals

    register_test_terminals(tmp_path / "shop.db")
    src = store.connect(tmp_path / "shop.db")
    dst = store.connect(empty_pg_url)
    try:
        club, _ = _world(src)
        draw = _define(src, club)
        with transaction(src):
            draw_job.close(src, club, "yalda", AFTER)
            won = draw_job.run(src, club, "yalda", SECRET, AFTER, "کافه")
        checks = transfer.copy(src, dst)
        assert all(c.ok for c in checks)
        assert {c.what for c in checks} >= {"rows in draws", "rows in draw_winners"}
        assert store_draws.winners(dst, draw.id) == won
        assert store_draws.entries(dst, draw.id) == store_draws.entries(src, draw.id)
        later = _define(dst, club, name="nowruz")
        assert later.id > draw.id
    finally:
        src.close()
        dst.close()
