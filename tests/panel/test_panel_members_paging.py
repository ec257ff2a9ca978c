"""The members list's pages through the routes, on both engines: "next" from the first page
and "previous" from the last reach every member once, in order, for each sort and filter;
the page numbers follow; a cursor edited by hand gives the first page."""

from __future__ import annotations

import html
import re
from datetime import timedelta

import pytest

from backend import store
from backend.store_members import MemberFilter, SortKey
from panel.pages.members import PAGE, parse_filter
from protocols.persian import persian_digits
from tests.panel.world import NOW, World, logged_in

ROW = re.compile(r'<a href="/members/(\d+)" dir="ltr">')
PAGER = re.compile(r'id="pager">\S+ ([۰-۹]+) / ([۰-۹]+)')
MEMBERS = 2 * PAGE + 17  # three pages: two whole, one of what is left


def _link(page: str, name: str) -> str | None:
    found = re.search(rf'id="{name}" href="\?([^"]*)"', page)
    return "/members?" + html.unescape(found.group(1)) if found else None


def _fill(world: World) -> None:
    """Club A's two members and MEMBERS more: ties on every sort column, some never
    visited (NULL last visit), some with no name; one more member in club B."""
    start = store.ts(NOW - timedelta(days=400))
    rows = []
    for i in range(MEMBERS):
        visited = i % 5 != 0
        rows.append((f"0916{i:07d}", f"P{i:07d}", start + (i % 40) * 86400,
                     ("bronze", "gold")[i % 3 == 0], world.club_a,
                     f"name {i % 7}" if i % 4 else None, i % 6,
                     (i % 9) * 100_000, start + (i % 23) * 86400 * 10 if visited else None))
    rows.append(("09170000000", "Q0000000", start, "gold", world.club_b, "other", 1, 5, start))
    with world.conn() as c, store.transaction(c):
        c.executemany(
            "INSERT INTO members(phone, code, enrolled_at, tier, club_id, name, visits, spend, "
            "last_visit) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)


def _expected(world: World, flt: MemberFilter) -> list[int]:
    """Club A's members as the list orders them, computed plainly."""
    with world.conn() as c:
        rows = c.execute("SELECT id, tier, enrolled_at, last_visit, spend, visits, name "
                         "FROM members WHERE club_id = ?", (world.club_a,)).fetchall()
    out = []
    for mid, tier, enrolled, last, spend, visits, name in rows:
        if flt.tier and tier != flt.tier:
            continue
        if flt.enrolled_from and enrolled < store.ts(flt.enrolled_from):
            continue
        if flt.enrolled_until and enrolled >= store.ts(flt.enrolled_until):
            continue
        if flt.visited_from and (last is None or last < store.ts(flt.visited_from)):
            continue
        if flt.min_spend is not None and spend < flt.min_spend:
            continue
        value = {SortKey.ENROLLED: enrolled, SortKey.LAST_VISIT: last, SortKey.SPEND: spend,
                 SortKey.VISITS: visits, SortKey.NAME: name}[flt.sort]
        out.append((value, mid))
    present = sorted((r for r in out if r[0] is not None), reverse=flt.descending)
    absent = sorted((r[1] for r in out if r[0] is None), reverse=flt.descending)
    return [r[1] for r in present] + absent


QUERIES = [{"sort": key.value, "dir": d} for key in SortKey for d in ("desc", "asc")] + [
    {"tier": "gold", "sort": "spend"},
    {"min_spend": "300000", "sort": "last_visit", "dir": "asc"},
    {"min_spend": "300000", "sort": "spend", "dir": "asc"},  # on the sort column, with ties
    {"visited_from": "1404/12/01", "sort": "name"},
    {"enrolled_from": "1404/09/01", "enrolled_to": "1404/09/20", "tier": "bronze"},
]


@pytest.mark.parametrize("query", QUERIES,
                         ids=lambda q: "&".join(f"{k}={v}" for k, v in q.items()))
def test_next_and_previous_reach_every_member_once_in_order(world: World, query: dict) -> None:
    _fill(world)
    flt, errors = parse_filter(query)
    assert not errors
    want = _expected(world, flt)
    pages = max(1, -(-len(want) // PAGE))
    with logged_in(world, "ali") as b:
        seen: list[int] = []
        path: str | None = "/members?" + "&".join(f"{k}={v}" for k, v in query.items())
        n = 0
        while path:
            page = b.get(path).text
            n += 1
            assert PAGER.search(page).groups() == (persian_digits(n), persian_digits(pages))
            assert f"({persian_digits(len(want))})" in page
            assert (_link(page, "previous-page") is None) == (n == 1)
            seen += [int(i) for i in ROW.findall(page)]
            path = _link(page, "next-page")
            assert (_link(page, "last-page") is None) == (path is None)
        assert seen == want and n == pages
        last = _link(b.get("/members?" + "&".join(f"{k}={v}" for k, v in query.items())).text,
                     "last-page")
        back: list[int] = []
        path, n = last, pages
        while path:
            page = b.get(path).text
            assert PAGER.search(page).groups() == (persian_digits(n), persian_digits(pages))
            back = [int(i) for i in ROW.findall(page)] + back
            path = _link(page, "previous-page")
            n -= 1
        if pages > 1:
            assert back == want and n == 0


def test_the_full_list_has_three_pages_and_other_clubs_stay_out(world: World) -> None:
    _fill(world)
    with logged_in(world, "ali") as b:
        first = b.get("/members").text
        assert PAGER.search(first).groups() == ("۱", "۳")
        second = b.get(_link(first, "next-page")).text
        assert PAGER.search(second).groups() == ("۲", "۳")
        assert len(ROW.findall(second)) == PAGE
        last = b.get(_link(first, "last-page")).text
        assert len(ROW.findall(last)) == MEMBERS + 2 - 2 * PAGE
    with world.conn() as c:
        other = c.execute("SELECT id FROM members WHERE club_id = ?",
                          (world.club_b,)).fetchall()
    shown = set(map(int, ROW.findall(first + second + last)))
    assert len(shown) == MEMBERS + 2 and not shown & {int(i) for (i,) in other}


@pytest.mark.parametrize("place", ["after=abc&key=1", "after=5", "before=5&key=x&sort=spend",
                                   "after=1&key=" + "9" * 30, "page=40",
                                   "tier=none&after=5&key=1&page=7",
                                   "after=1&key=99999999999&page=3"])
def test_a_cursor_edited_by_hand_gives_the_first_page(world: World, place: str) -> None:
    """Or a page that is first or last: nothing before it, so numbered 1."""
    _fill(world)
    with logged_in(world, "ali") as b:
        page = b.get("/members?" + place)
    assert page.status_code == 200
    assert PAGER.search(page.text).groups()[0] == "۱"
    assert 'id="previous-page"' not in page.text
