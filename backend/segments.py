"""LRFM scores and named segments, pure: from per-member aggregates to a segment name.

Input is one row per member, the shape of one SQL aggregate query
(`GROUP BY member_id` over purchases: count, sum, max(at)) joined to the member's
enrolment date; nothing here reads the store or the clock (`today` is passed in).
The scores are quintiles within the club; the segment table is data (`SEGMENT_RULES`),
first match wins. docs/segments.md has the definitions and the staleness rules.
"""

from __future__ import annotations

import math
from bisect import bisect_left
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date
from functools import lru_cache

SEGMENTS = ("new", "active", "loyal", "champion", "at_risk", "sleeping", "lost")


@dataclass(frozen=True, slots=True)
class MemberAggregate:
    """What one SQL aggregate row holds for a member (dates are Tehran local dates)."""

    member_id: int
    enrolled_on: date
    last_purchase_on: date | None
    purchases: int
    spend: int

    def __post_init__(self) -> None:
        if self.purchases < 0 or self.spend < 0:
            raise ValueError("purchases and spend cannot be negative")
        if (self.purchases == 0) != (self.last_purchase_on is None):
            raise ValueError("a member with purchases has a last purchase date, and only then")


@dataclass(frozen=True, slots=True)
class Scores:
    length: int
    recency: int
    frequency: int
    monetary: int


@dataclass(frozen=True, slots=True)
class Cuts:
    """Quintile cut points of one dimension: score = 1 + number of cuts the value exceeds.

    Kept from the nightly run, they score one member again after a purchase without
    re-sorting the club (the incremental update of docs/segments.md).
    """

    values: tuple[float, ...]

    def score(self, value: float) -> int:
        return 1 + bisect_left(self.values, value)  # cuts are sorted: those below value


def quintile_cuts(values: Sequence[float]) -> Cuts:
    """Cuts such that a value's score is 1 + floor(5 * (members strictly below it) / n).

    Ties: equal values always get the same score (the lowest their block reaches), so
    the result does not depend on member ids or input order; a block of ties larger
    than a fifth leaves some scores empty rather than splitting equal members.
    """
    ordered = sorted(values)
    n = len(ordered)
    cuts: list[float] = []
    for k in range(1, 5):
        # score > k  <=>  below(v) >= ceil(n*k/5)  <=>  v > ordered[ceil(n*k/5) - 1]
        m = math.ceil(n * k / 5)
        if m > 0:
            cuts.append(ordered[m - 1])
    return Cuts(tuple(cuts))


def _below_score(value: float, ordered: Sequence[float]) -> int:
    """Reference definition used by the tests: 1 + floor(5 * below / n)."""
    return 1 + (5 * bisect_left(ordered, value)) // len(ordered)


@dataclass(frozen=True, slots=True)
class SegmentRule:
    """One row of the segment table: every bound that is not None must hold."""

    name: str
    max_membership_days: int | None = None
    min_days_since: int | None = None
    max_days_since: int | None = None
    min_recency: int | None = None
    max_recency: int | None = None
    min_frequency: int | None = None
    max_frequency: int | None = None
    min_monetary: int | None = None

    def matches(self, membership_days: int, days_since: int, s: Scores) -> bool:
        values = (membership_days, days_since, s.recency, s.frequency, s.monetary)
        return _holds(self._bounds(), values)

    def _bounds(self) -> tuple[tuple[int, int, bool], ...]:
        """(index into matches' values, bound, is a minimum) for the bounds that are set."""
        spec = (
            (0, self.max_membership_days, False),
            (1, self.min_days_since, True),
            (1, self.max_days_since, False),
            (2, self.min_recency, True),
            (2, self.max_recency, False),
            (3, self.min_frequency, True),
            (3, self.max_frequency, False),
            (4, self.min_monetary, True),
        )
        return tuple((i, b, m) for i, b, m in spec if b is not None)


def _holds(bounds: tuple[tuple[int, int, bool], ...], values: tuple[int, ...]) -> bool:
    for i, bound, is_min in bounds:
        if values[i] < bound if is_min else values[i] > bound:
            return False
    return True


@lru_cache(maxsize=32)
def _compiled(rules: tuple[SegmentRule, ...]) -> tuple[tuple[str, tuple], ...]:
    return tuple((r.name, r._bounds()) for r in rules)


#: The segment table of docs/segments.md, first match wins; the last row catches all.
SEGMENT_RULES: tuple[SegmentRule, ...] = (
    SegmentRule("new", max_membership_days=30),
    SegmentRule("lost", min_days_since=180),
    SegmentRule("champion", min_recency=4, min_frequency=4, min_monetary=4),
    SegmentRule("loyal", min_recency=3, min_frequency=4),
    SegmentRule("at_risk", max_recency=2, min_frequency=3),
    SegmentRule("sleeping", max_recency=2),
    SegmentRule("active"),
)


@dataclass(frozen=True, slots=True)
class MemberSegment:
    member_id: int
    scores: Scores
    segment: str


@dataclass(frozen=True, slots=True)
class ClubCuts:
    length: Cuts
    recency: Cuts
    frequency: Cuts
    monetary: Cuts


def _dims(a: MemberAggregate, today: date) -> tuple[int, int, int, int, int]:
    membership = (today - a.enrolled_on).days
    # A member who never bought counts from the enrolment: joining is the last visit.
    last = a.enrolled_on if a.last_purchase_on is None else a.last_purchase_on
    since = (today - last).days
    if membership < 0 or since < 0:
        raise ValueError(f"member {a.member_id}: dates after today ({today})")
    # Recency is scored on -days_since so that "more recent" is "higher", like the others.
    return membership, since, -since, a.purchases, a.spend


def club_cuts(members: Sequence[MemberAggregate], today: date) -> ClubCuts:
    dims = [_dims(a, today) for a in members]
    return ClubCuts(
        length=quintile_cuts([d[0] for d in dims]),
        recency=quintile_cuts([d[2] for d in dims]),
        frequency=quintile_cuts([d[3] for d in dims]),
        monetary=quintile_cuts([d[4] for d in dims]),
    )


def classify(
    a: MemberAggregate,
    cuts: ClubCuts,
    today: date,
    rules: Sequence[SegmentRule] = SEGMENT_RULES,
) -> MemberSegment:
    """One member against the club's cuts (tonight's, or last night's for an update)."""
    membership, since, neg_since, freq, spend = _dims(a, today)
    scores = Scores(
        length=cuts.length.score(membership),
        recency=cuts.recency.score(neg_since),
        frequency=cuts.frequency.score(freq),
        monetary=cuts.monetary.score(spend),
    )
    values = (membership, since, scores.recency, scores.frequency, scores.monetary)
    for name, bounds in _compiled(tuple(rules)):
        if _holds(bounds, values):
            return MemberSegment(a.member_id, scores, name)
    raise ValueError("the segment table has no catch-all row")


def segment_club(
    members: Sequence[MemberAggregate],
    today: date,
    rules: Sequence[SegmentRule] = SEGMENT_RULES,
) -> list[MemberSegment]:
    """Every member of one club, scored within the club."""
    if not members:
        return []
    cuts = club_cuts(members, today)
    return [classify(a, cuts, today, rules) for a in members]


def counts(segments: Iterable[MemberSegment]) -> dict[str, int]:
    """Members per segment, every segment present (for the dashboard chart)."""
    out = dict.fromkeys(SEGMENTS, 0)
    for s in segments:
        out[s.segment] += 1
    return out


def changes(now: dict[str, int], month_ago: dict[str, int]) -> dict[str, int]:
    """Members per segment now minus a month ago (the dashboard's arrows)."""
    return {s: now.get(s, 0) - month_ago.get(s, 0) for s in SEGMENTS}
