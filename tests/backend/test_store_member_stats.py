"""The members' running purchase totals (backend.store_member_stats) equal the raw rows
after random purchases, declines, reversals (also before their advice) and upkeep, on
both engines; the members list sorted and filtered on them matches a plain computation."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis.stateful import invariant, run_state_machine_as_test

from backend import ledger, store, store_member_stats, store_members
from backend.handlers import Handler
from backend.store_members import MemberFilter, SortKey
from tests.backend.core_helpers import FakeClock, advice, phone, request, reversal
from tests.backend.engines import ENGINES
from tests.backend.test_backend_ledger_stateful import SETTINGS, LedgerMachine, new_db_for


class MemberStatsMachine(LedgerMachine):
    @invariant()
    def totals_equal_raw_rows(self) -> None:
        assert store_member_stats.kept(self.conn) == store_member_stats.from_raw(self.conn)


@pytest.mark.parametrize("engine", ENGINES)
def test_member_stats_machine(engine: str, request: pytest.FixtureRequest) -> None:
    new_db = new_db_for(engine, request)
    run_state_machine_as_test(lambda: MemberStatsMachine(new_db), settings=SETTINGS)


def _shop(db: str) -> tuple[store.Connection, FakeClock]:
    """Twelve members: some never visit, some buy a few times, some purchases reversed."""
    conn = store.connect(db)
    clock = FakeClock()
    handler = Handler(conn, clock=clock)
    rnd = random.Random(9)
    for n in range(12):
        assert handler.handle(request("enroll", {"phone": phone(n)})).code == "00"
        clock.jump(hours=5)
    for _ in range(40):
        n = rnd.randrange(8)  # members 8..11 never buy
        req = advice(amount=rnd.randrange(10, 900) * 1000, phone=phone(n),
                     occurred_at=clock.iso(), bank_code=rnd.choice(("00", "00", "00", "51")))
        handler.handle(req)
        if rnd.random() < 0.2:
            handler.handle(reversal(req, occurred_at=clock.iso()))
        clock.jump(hours=rnd.randrange(1, 40))
    return conn, clock


def test_member_stats_fill_matches_kept(db: str) -> None:
    """The migration's fill (from the raw rows) gives what the money path kept."""
    conn, _ = _shop(db)
    kept = store_member_stats.kept(conn)
    assert kept == store_member_stats.from_raw(conn)
    assert any(v[0] == 0 for v in kept.values()) and any(v[0] > 1 for v in kept.values())
    with store.transaction(conn):
        conn.execute("UPDATE members SET visits = 7, spend = 1, last_visit = NULL")
        store_member_stats.fill(conn)
    assert store_member_stats.kept(conn) == kept
    conn.close()


def _expected(conn: store.Connection, flt: MemberFilter) -> list[int]:
    raw = store_member_stats.from_raw(conn)
    rows = conn.execute("SELECT id, tier, enrolled_at, name FROM members").fetchall()
    out = []
    for mid, tier, enrolled, name in rows:
        n, spend, _first, last = raw[mid]
        if flt.tier and tier != flt.tier:
            continue
        if flt.enrolled_from and enrolled < store.ts(flt.enrolled_from):
            continue
        if flt.enrolled_until and enrolled >= store.ts(flt.enrolled_until):
            continue
        if flt.visited_from and (last is None or last < store.ts(flt.visited_from)):
            continue
        if flt.visited_until and (last is None or last >= store.ts(flt.visited_until)):
            continue
        if flt.min_spend is not None and spend < flt.min_spend:
            continue
        value = {SortKey.ENROLLED: enrolled, SortKey.LAST_VISIT: last, SortKey.SPEND: spend,
                 SortKey.VISITS: n, SortKey.NAME: name}[flt.sort]
        out.append((value is None, value, mid))
    sign = -1 if flt.descending else 1
    present = sorted((r for r in out if not r[0]), key=lambda r: (r[1], r[2]),
                     reverse=sign < 0)
    absent = sorted((r for r in out if r[0]), key=lambda r: r[2], reverse=sign < 0)
    return [r[2] for r in present + absent]


def _paged_forward(conn: store.Connection, flt: MemberFilter, size: int) -> list[int]:
    """Every row, by "next" links from the first page: each after the last row's cursor."""
    page = store_members.list_members(conn, 1, flt, limit=size)
    ids = [m.id for m in page.rows]
    while page.more_after:
        cursor = store_members.cursor_of(page.rows[-1], flt.sort)
        page = store_members.list_members(conn, 1, flt, limit=size, after=cursor)
        assert page.more_before and 0 < len(page.rows) <= size
        ids += [m.id for m in page.rows]
    return ids


def _paged_back(conn: store.Connection, flt: MemberFilter, size: int) -> list[int]:
    """Every row, by "previous" links from the last page (which holds what whole pages
    leave, so its pages are the forward ones)."""
    page = store_members.list_members(conn, 1, flt, limit=size, last=True)
    assert not page.more_after
    assert len(page.rows) == ((page.total - 1) % size + 1 if page.total else 0)
    ids = [m.id for m in page.rows]
    while page.more_before:
        cursor = store_members.cursor_of(page.rows[0], flt.sort)
        page = store_members.list_members(conn, 1, flt, limit=size, before=cursor)
        assert page.more_after and len(page.rows) == size
        ids = [m.id for m in page.rows] + ids
    return ids


def test_members_list_sorts_filters_and_pages_on_the_totals(db: str) -> None:
    conn, clock = _shop(db)
    for mid in (2, 5, 9):
        store_members.set_name(conn, mid, f"name {mid % 4}")
    store.set_tier(conn, 3, "gold")
    store.set_tier(conn, 10, "gold")
    middle = datetime.fromtimestamp(
        sorted(v[3] for v in store_member_stats.from_raw(conn).values() if v[3])[3], UTC)
    filters = [MemberFilter(sort=key, descending=d) for key in SortKey for d in (True, False)]
    filters += [
        MemberFilter(tier="gold", sort=SortKey.SPEND),
        MemberFilter(min_spend=500_000, sort=SortKey.LAST_VISIT, descending=False),
        MemberFilter(visited_from=middle, sort=SortKey.VISITS),
        MemberFilter(min_spend=200_000, sort=SortKey.SPEND),  # a filter on the sort column
        MemberFilter(visited_from=middle, sort=SortKey.LAST_VISIT, descending=False),
        MemberFilter(visited_until=middle, sort=SortKey.LAST_VISIT),
        MemberFilter(enrolled_until=middle, sort=SortKey.ENROLLED),
        MemberFilter(visited_until=middle, sort=SortKey.ENROLLED, descending=False),
        MemberFilter(enrolled_from=clock() - timedelta(days=3000),
                     enrolled_until=middle, sort=SortKey.NAME),
    ]
    for flt in filters:
        want = _expected(conn, flt)
        page = store_members.list_members(conn, 1, flt, limit=100)
        assert [m.id for m in page.rows] == want, flt
        assert page.total == len(want) and not page.more_before and not page.more_after
        assert _paged_forward(conn, flt, 5) == want, flt  # pages across the NULL boundary
        assert _paged_back(conn, flt, 5) == want, flt
        assert store_members.count_members(conn, 1, flt) == len(want)
        for batch in (1, 3, 100):  # the export's keyset batches: same rows, same order
            assert [m.id for m in store_members.each_member(conn, 1, flt, batch=batch)] \
                == want, (flt, batch)
    assert list(store_members.each_member(conn, 2, MemberFilter())) == []  # another club
    raw = store_member_stats.from_raw(conn)
    for m in store_members.list_members(conn, 1, MemberFilter(), limit=100).rows:
        n, spend, _f, last = raw[m.id]
        assert (m.visits, m.spend) == (n, spend)
        assert m.last_visit == (datetime.fromtimestamp(last, UTC) if last else None)
    assert store_members.list_members(conn, 2, MemberFilter()).rows == []  # another club
    conn.close()


@pytest.mark.parametrize("pipeline", [False, True])
def test_locked_reads_carry_the_totals_and_the_upkeep_look(db: str, pipeline: bool) -> None:
    """A member read under its lock (by phone, or with its quote) carries the running
    totals as `totals_of` reads them, the visits as the COUNT of settled purchases, and
    the upkeep look as `upkeep_due` (one statement on SQLite, in a pipeline on PostgreSQL)."""
    conn, clock = _shop(db)
    handler = Handler(conn, clock=clock)
    quotes = []
    for n in (0, 1, 2):  # holds: members 0 and 1 see theirs lapse, member 2 not
        if n == 2:
            clock.jump(seconds=400)
        answer = handler.handle(request("inquiry", {"phone": phone(n), "gross": 200_000,
                                                    "redeem": None, "otp": None}))
        assert answer.code == "00"
        quotes.append(answer.body["quote_id"])
    clock.jump(seconds=100)
    now = clock()
    looks = set()
    read_ahead = 0
    with store.transaction(conn, pipeline=pipeline):
        for n in range(12):
            found = store.locked_member_by_phone(conn, phone(n), now, club_id=1)
            assert found is not None
            m, due = found
            assert m.totals == store_member_stats.totals_of(conn, m.id)
            assert m.visits == store.visits(conn, m.id)
            assert due == store.upkeep_due(conn, m.id, now)
            assert store.member_by_id(conn, m.id) == m
            looks.add(due.holds)
        for qid in quotes:
            with_quote = store.locked_quote_and_member(conn, qid, now)
            assert with_quote is not None
            q, m, due = with_quote
            assert (q, m) == store.quote_and_member(conn, qid)
            assert m.totals == store_member_stats.totals_of(conn, m.id)
            plain = store.upkeep_due(conn, m.id, now)
            assert (due.holds, due.lots, due.balance) == (plain.holds, plain.lots, plain.balance)
            if due.open_lots is not None:  # read ahead for the redemption: the FIFO lots
                assert q.discount > 0 and due.open_lots == ledger._open_lots(conn, m.id)
                read_ahead += 1
        assert store.locked_member_by_phone(conn, phone(40), now, club_id=1) is None
        assert store.locked_quote_and_member(conn, "Q-none", now) is None
    assert looks == {True, False}
    # the open lots come with the lock only in PostgreSQL's pipeline
    assert read_ahead == (len(quotes) if pipeline and str(db).startswith("postgresql") else 0)
    conn.close()


def test_an_advice_reads_its_answer_and_state_in_one_statement(db: str) -> None:
    """`answer_and_advice_state` gives what `stored_response` and `advice_state` give: for
    an answered advice, for one whose reversal came first, and for an unknown key."""
    conn = store.connect(db)
    clock = FakeClock()
    handler = Handler(conn, clock=clock)
    assert handler.handle(request("enroll", {"phone": phone(0)})).code == "00"
    done = advice(amount=120_000, phone=phone(0), occurred_at=clock.iso())
    assert handler.handle(done).code == "00"
    late = advice(amount=80_000, phone=phone(0), occurred_at=clock.iso())
    assert handler.handle(reversal(late, occurred_at=clock.iso())).code == "00"
    for key in (done.key, late.key, "T0000001:0220:999999:1123120000"):
        with store.transaction(conn):
            assert store.answer_and_advice_state(conn, key) == (
                store.stored_response(conn, key), store.advice_state(conn, key))
    with store.transaction(conn):
        assert store.answer_and_advice_state(conn, late.key)[1][1]  # its reversal waits
        assert store.answer_and_advice_state(conn, done.key)[0] is not None
    assert handler.handle(late).code == "00"  # carried out, then undone by the reversal
    conn.close()
