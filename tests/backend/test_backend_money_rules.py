"""The money arithmetic of settlement and reversal, pure: no database."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from backend import ledger_rules

RIALS = st.integers(0, 10**12)


def test_backend_settle_examples() -> None:
    assert ledger_rules.settle(50_000, 80_000) == (50_000, 0)  # the hold covered it
    assert ledger_rules.settle(50_000, 20_000) == (20_000, 30_000)  # spent meanwhile: debt
    assert ledger_rules.settle(50_000, 0) == (0, 50_000)
    assert ledger_rules.settle(0, 5) == (0, 0)
    with pytest.raises(ValueError):
        ledger_rules.settle(-1, 5)


@given(discount=RIALS, available=RIALS)
def test_backend_settle_redeems_the_discount_exactly(discount: int, available: int) -> None:
    redeemed, debt = ledger_rules.settle(discount, available)
    assert redeemed + debt == discount  # the customer had the whole discount
    assert 0 <= redeemed <= available and debt >= 0
    assert debt == 0 or redeemed == available  # a debt only when the credit is all used


def test_backend_undo_debt_examples() -> None:
    # the purchase paid 3,000 of an old debt: it comes back
    assert ledger_rules.undo_debt(debt=0, recovered=3_000, unpaid=0) == (3_000, 0)
    # its settlement left a debt of 5,000 still owed: void
    assert ledger_rules.undo_debt(debt=5_000, recovered=0, unpaid=5_000) == (0, 0)
    # later earnings repaid 2,000 of that void debt: refunded as credit
    assert ledger_rules.undo_debt(debt=3_000, recovered=0, unpaid=5_000) == (0, 2_000)


@given(debt=RIALS, recovered=RIALS, unpaid=RIALS)
def test_backend_undo_debt_balances(debt: int, recovered: int, unpaid: int) -> None:
    left, refund = ledger_rules.undo_debt(debt, recovered, unpaid)
    assert left >= 0 and refund >= 0 and (left == 0 or refund == 0)
    # what the member owes less what is given back moves by exactly recovered - unpaid
    assert (left - refund) - debt == recovered - unpaid


@given(debt=RIALS, earned=RIALS)
def test_backend_recovery_never_exceeds_debt_or_earning(debt: int, earned: int) -> None:
    r = ledger_rules.recovery(debt, earned)
    assert 0 <= r <= min(debt, earned) and r in (debt, earned)


@given(amount=RIALS, available=RIALS)
def test_backend_take_back_splits_into_credit_and_debt(amount: int, available: int) -> None:
    taken, shortfall = ledger_rules.take_back(amount, available)
    assert taken + shortfall == amount and 0 <= taken <= available and shortfall >= 0
