"""protocols.backoff: the one exponential backoff rule."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocols.backoff import Backoff


def test_doubles_to_the_cap_and_resets() -> None:
    b = Backoff(0.5, 3.0)
    assert [b.failure() for _ in range(5)] == [0.5, 1.0, 2.0, 3.0, 3.0]
    assert b.failures == 5
    b.reset()
    assert b.failures == 0 and b.failure() == 0.5


def test_delay_for_a_count_kept_elsewhere() -> None:
    b = Backoff(10.0, 300.0)
    assert [b.delay(n) for n in range(0, 9)] == [10, 10, 20, 40, 80, 160, 300, 300, 300]
    assert b.delay(100_000) == 300.0  # no overflow after very many failures
    assert Backoff(1.0, 5.0, factor=3.0).delay(3) == 5.0
    assert Backoff(1.0, 5.0, factor=1.0).delay(50) == 1.0


@pytest.mark.parametrize(("initial", "maximum", "factor"), [(0, 1, 2), (-1, 1, 2), (2, 1, 2),
                                                           (1, 2, 0.5)])
def test_refuses_a_rule_that_cannot_back_off(initial: float, maximum: float,
                                             factor: float) -> None:
    with pytest.raises(ValueError, match="backoff"):
        Backoff(initial, maximum, factor)


@given(st.floats(0.001, 100), st.floats(1, 1000), st.integers(0, 5000))
def test_never_below_initial_nor_above_maximum(initial: float, extra: float, n: int) -> None:
    b = Backoff(initial, initial + extra)
    assert initial <= b.delay(n) <= initial + extra
    assert b.delay(n) <= b.delay(n + 1)
