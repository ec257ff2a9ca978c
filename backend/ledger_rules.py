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
    "transfer_out",  # credit given to another member (its lots and expiries go along)
    "transfer_in",  # credit received from another member, in lots of the giver's expiries
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


def recovery(debt: int, earned: int) -> int:
    """The part of a new earning that pays off an outstanding debt."""
    return max(0, min(debt, earned))


def settle(discount: int, available: int) -> tuple[int, int]:
    """(redeemed, new debt) when an approved advice settles a quote: the customer had the
    discount at the terminal, so it is redeemed even if the hold lapsed meanwhile (store
    and forward); what the balance no longer covers becomes a debt."""
    if discount < 0:
        raise ValueError("a discount is never negative")
    redeemed = max(0, min(discount, available))
    return redeemed, discount - redeemed


def undo_debt(debt: int, recovered: int, unpaid: int) -> tuple[int, int]:
    """(debt after, refund) when a purchase is reversed: the debt its earning paid off
    (`recovered`) comes back, the debt its settlement created (`unpaid`) is void; what
    later earnings have already repaid of that void debt is given back as credit."""
    left = debt + recovered - unpaid
    return (0, -left) if left < 0 else (left, 0)
