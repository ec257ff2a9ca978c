"""Campaign hold-out and effect (backend.campaign_effect)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from backend.campaign_effect import PurchaseRecord, effect, split_holdout

SEED = b"0123456789abcdef"
START = datetime(2026, 12, 1, 9, tzinfo=UTC)


@settings(deadline=None)
@given(st.sets(st.integers(1, 10**6), max_size=300), st.floats(0, 0.9), st.randoms())
def test_holdout_is_reproducible_disjoint_and_sized(members, share, rnd) -> None:
    shuffled = list(members)
    rnd.shuffle(shuffled)
    send, held = split_holdout(members, SEED, share)
    assert (send, held) == split_holdout(shuffled, SEED, share)
    assert not set(send) & set(held) and set(send) | set(held) == members
    assert len(held) == round(share * len(members))


def test_holdout_depends_on_the_seed_and_is_spread() -> None:
    members = range(10_000)
    _, a = split_holdout(members, SEED)
    _, b = split_holdout(members, b"another seed 123")
    assert len(a) == 1000 and a != b
    # spread over the list, not a block: about 100 in each tenth
    per_tenth = [sum(1 for m in a if k * 1000 <= m < (k + 1) * 1000) for k in range(10)]
    assert all(60 < n < 140 for n in per_tenth)
    with pytest.raises(ValueError):
        split_holdout(members, b"short")
    with pytest.raises(ValueError):
        split_holdout(members, SEED, 1.0)


def test_effect_windows_and_uplift() -> None:
    reached, held = [1, 2, 3, 4], [5, 6]
    day = timedelta(days=1)
    purchases = [
        PurchaseRecord(1, START + 2 * day, 100_000),
        PurchaseRecord(1, START + 3 * day, 50_000),
        PurchaseRecord(2, START + 20 * day, 200_000),
        PurchaseRecord(3, START - day, 999_999),  # before the campaign
        PurchaseRecord(5, START + 10 * day, 40_000),
        PurchaseRecord(9, START + day, 10_000),  # not in the target
    ]
    w7, w30 = effect(reached, held, purchases, START)
    assert (w7.reached.buyers, w7.reached.sales, w7.holdout.buyers) == (1, 150_000, 0)
    assert (w30.reached.buyers, w30.reached.sales) == (2, 350_000)
    assert (w30.holdout.buyers, w30.holdout.sales) == (1, 40_000)
    assert w30.uplift == pytest.approx(0.5 - 0.5)
    assert w30.incremental_sales == round((350_000 / 4 - 40_000 / 2) * 4)
    with pytest.raises(ValueError, match="both"):
        effect([1], [1], purchases, START)
    assert effect([1], [], purchases, START)[0].incremental_sales == 0
