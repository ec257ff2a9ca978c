"""Ledger arithmetic, pure: FIFO lot consumption, expiry under holds, take-back and debt.

The ledger (backend.ledger) keeps credit in lots, one per earning, each with an expiry;
these functions decide how much moves and from which lots, without touching the database.
"""

from __future__ import annotations

from collections.abc import Sequence

#: Kinds of ledger rows. Positive kinds add credit (and open a lot), the others take it.
KINDS = (
    "earn",
    "redeem",
    "hold",
    "release",
    "expiry",
    "referral",
    "welcome",
    "reversal",
    "adjustment",
    "recovery",  # a reversal's shortfall taken from a later earning
)


def fifo_take(lots: Sequence[tuple[int, int]], amount: int) -> list[tuple[int, int]]:
    """Take `amount` from `(lot_id, remaining)` pairs, oldest first; returns (lot_id, taken).

    The caller orders the lots oldest first and makes sure they hold enough.
    """
    if amount < 0:
        raise ValueError("cannot take a negative amount")
    taken: list[tuple[int, int]] = []
    left = amount
    for lot_id, remaining in lots:
        if left == 0:
            break
        part = min(left, remaining)
        if part > 0:
            taken.append((lot_id, part))
            left -= part
    if left:
        raise ValueError(f"lots hold {amount - left}, not {amount}")
    return taken


def expirable(expired_remaining: int, available: int) -> int:
    """How much of the expired credit may go now: never what an open hold still covers.

    The held part stays until the hold is settled (it then redeems the oldest credit, the
    expired lot first) or released (the next sweep expires it).
    """
    return max(0, min(expired_remaining, available))


def take_back(amount: int, available: int) -> tuple[int, int]:
    """(taken now, shortfall) when earned credit is taken back and the balance may not go
    below zero; the shortfall becomes a debt recovered from future earnings."""
    taken = max(0, min(amount, available))
    return taken, amount - taken

