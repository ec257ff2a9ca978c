"""LRFM quintiles and the segment table (backend.segments)."""

from __future__ import annotations

from datetime import date, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from backend.segments import (
    SEGMENTS,
    MemberAggregate,
    _below_score,
    counts,
    quintile_cuts,
    segment_club,
)

TODAY = date(2026, 12, 1)


@settings(deadline=None)
@given(st.lists(st.integers(-50, 50), min_size=1, max_size=200))
def test_cuts_score_is_the_quintile_of_members_below(values: list[int]) -> None:
    cuts = quintile_cuts(values)
    ordered = sorted(values)
    for v in values:
        assert cuts.score(v) == _below_score(v, ordered)
        assert 1 <= cuts.score(v) <= 5


@settings(deadline=None)
@given(st.lists(st.integers(0, 10), min_size=1, max_size=100), st.randoms())
def test_scores_do_not_depend_on_order_and_ties_share_a_score(values, rnd) -> None:
    shuffled = list(values)
    rnd.shuffle(shuffled)
    a, b = quintile_cuts(values), quintile_cuts(shuffled)
    for v in values:
        assert a.score(v) == b.score(v)
    # monotone: a larger value never scores lower
    for x in values:
        for y in values:
            if x <= y:
                assert a.score(x) <= a.score(y)


def test_distinct_values_fill_each_quintile_equally() -> None:
    cuts = quintile_cuts(list(range(100)))
    got = counts_of = [cuts.score(v) for v in range(100)]
    assert [got.count(k) for k in range(1, 6)] == [20] * 5
    assert counts_of[0] == 1 and counts_of[99] == 5


def _member(i: int, enrolled_days: int, since: int | None, n: int, spend: int):
    last = None if since is None else TODAY - timedelta(days=since)
    return MemberAggregate(i, TODAY - timedelta(days=enrolled_days), last, n, spend)


def test_named_segments() -> None:
    club = [_member(i, 400, 100 + i, 1, 1000) for i in range(20)]  # the ordinary crowd
    club += [
        _member(100, 10, 2, 1, 500),            # joined 10 days ago
        _member(101, 400, 200, 30, 10**9),      # 200 days away, whatever the past
        _member(102, 400, 1, 40, 10**9),        # recent, often, much
        _member(103, 400, 3, 40, 10),           # recent, often, little
        _member(104, 400, 150, 40, 10**8),      # used to come often, not lately
        _member(105, 400, 170, 1, 10),          # rarely and not lately
        _member(106, 400, 5, 1, 10),            # recent, rare
    ]
    seg = {s.member_id: s.segment for s in segment_club(club, TODAY)}
    assert seg[100] == "new"
    assert seg[101] == "lost"
    assert seg[102] == "champion"
    assert seg[103] == "loyal"
    assert seg[104] == "at_risk"
    assert seg[105] == "sleeping"
    assert seg[106] == "active"
    assert set(counts(segment_club(club, TODAY))) == set(SEGMENTS)


def test_never_bought_counts_from_enrolment() -> None:
    club = [_member(1, 40, None, 0, 0), _member(2, 400, None, 0, 0), _member(3, 400, 1, 5, 9)]
    seg = {s.member_id: s.segment for s in segment_club(club, TODAY)}
    assert seg[1] == "sleeping" and seg[2] == "lost"


def test_bad_aggregates_are_refused() -> None:
    with pytest.raises(ValueError):
        MemberAggregate(1, TODAY, None, 3, 10)
    with pytest.raises(ValueError):
        MemberAggregate(1, TODAY, TODAY, 1, -1)
    with pytest.raises(ValueError, match="after today"):
        segment_club([_member(1, -2, None, 0, 0)], TODAY)
    assert segment_club([], TODAY) == []


def test_changes_since_last_month() -> None:
    from backend.segments import changes

    got = changes({"new": 5, "lost": 2}, {"new": 3, "champion": 1})
    assert got["new"] == 2 and got["lost"] == 2 and got["champion"] == -1
    assert set(got) == set(SEGMENTS)
