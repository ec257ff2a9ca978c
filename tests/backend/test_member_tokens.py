"""Member page and survey tokens; credit transfer arithmetic (backend.member_tokens)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from backend.ledger_rules import fifo_take
from backend.member_tokens import (
    PAGE,
    SURVEY,
    TokenError,
    TransferError,
    TransferLimits,
    check,
    hash_token,
    issue,
    link_path,
    new_token,
    plan_transfer,
    received_lots,
    revoke,
)

NOW = datetime(2026, 12, 1, 8, tzinfo=UTC)


def test_token_shape_entropy_and_hash() -> None:
    t = new_token()
    assert len(t) == 22 and len(link_path(PAGE, t)) == 25
    assert new_token(lambda n: b"\xff" * n) == "_____________________w"
    assert len({new_token() for _ in range(1000)}) == 1000
    assert hash_token(t) != t and len(hash_token(t)) == 64
    with pytest.raises(ValueError):
        new_token(lambda n: b"x")


def test_a_link_opens_only_its_member_club_and_purpose() -> None:
    token, rec = issue(PAGE, 7, 1, NOW)
    path = link_path(PAGE, token)
    assert check(rec, path, 1, NOW + timedelta(days=29)).member_id == 7
    cases = [
        (None, path, 1, NOW, "unknown"),
        (rec, link_path(PAGE, new_token()), 1, NOW, "unknown"),  # another token
        (rec, link_path(SURVEY, token), 1, NOW, "purpose"),
        (rec, path, 2, NOW, "another club"),
        (rec, path, 1, NOW + timedelta(days=30), "expired"),
        (revoke(rec, NOW), path, 1, NOW + timedelta(seconds=1), "revoked"),
        (rec, "/m/short", 1, NOW, "malformed"),
        (rec, path + "x", 1, NOW, "malformed"),
    ]
    for record, p, club, when, why in cases:
        with pytest.raises(TokenError, match=why):
            check(record, p, club, when)


def test_survey_token_bound_to_a_purchase() -> None:
    token, rec = issue(SURVEY, 7, 1, NOW, purchase_id=99)
    assert check(rec, link_path(SURVEY, token), 1, NOW).purchase_id == 99
    with pytest.raises(ValueError):
        issue(SURVEY, 7, 1, NOW)
    with pytest.raises(ValueError):
        issue(PAGE, 7, 1, NOW, purchase_id=3)
    with pytest.raises(ValueError):
        issue("x", 7, 1, NOW)


def test_transfer_limits() -> None:
    lim = TransferLimits(per_transfer=1_000_000, per_day=1_500_000, minimum=10_000)
    p = plan_transfer("abc", 1, 2, 600_000, 900_000, 0, 0, lim)
    assert (p.out_key, p.in_key) == ("transfer:abc:out", "transfer:abc:in")
    for args, why in (
        ((1, 1, 100_000, 10**9, 0, 0), "oneself"),
        ((1, 2, 5_000, 10**9, 0, 0), "at least"),
        ((1, 2, 1_000_001, 10**9, 0, 0), "per transfer"),
        ((1, 2, 600_000, 10**9, 0, 1_000_000), "a day"),
        ((1, 2, 600_000, 900_000, 400_000, 0), "free balance"),
    ):
        with pytest.raises(TransferError, match=why):
            plan_transfer("k", *args, limits=lim)
    with pytest.raises(TransferError, match="key"):
        plan_transfer("", 1, 2, 100_000, 10**9, 0, 0, lim)


@given(st.integers(0, 10**8), st.integers(0, 10**8), st.integers(0, 10**8),
       st.integers(0, 10**8))
def test_a_planned_transfer_never_exceeds_free_balance_or_limits(amount, balance, held,
                                                                 today) -> None:
    lim = TransferLimits()
    try:
        p = plan_transfer("k", 1, 2, amount, balance, held, today, lim)
    except TransferError:
        return
    assert p.amount <= balance - held and p.amount <= lim.per_transfer
    assert today + p.amount <= lim.per_day


def test_received_lots_keep_the_senders_expiry() -> None:
    e1, e2 = NOW + timedelta(days=10), NOW + timedelta(days=200)
    taken = fifo_take([(1, 30_000), (2, 100_000)], 50_000)
    assert received_lots(taken, {1: e1, 2: e2}) == [(30_000, e1), (20_000, e2)]
