"""A campaign's hold-out group and its effect, pure.

The hold-out is a share of the target list chosen at random but reproducibly: members
are ranked by HMAC-SHA256(seed, member id) and the lowest `round(share * n)` are held
out. The choice depends only on the seed and the set of members (not on their order),
so the panel, the SMS worker and a later report agree on it without storing a flag,
and nobody can pick who is held out without changing the seed (stored with the campaign).

The effect compares members reached (sent and not failed) with the hold-out over the same
windows from the campaign's start: how many bought within 7 and 30 days, and their sales.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

DEFAULT_HOLDOUT = 0.10
WINDOWS = (7, 30)


def _rank(seed: bytes, member_id: int) -> bytes:
    return hmac.new(seed, str(member_id).encode("ascii"), hashlib.sha256).digest()


def split_holdout(
    members: Iterable[int], seed: bytes, share: float = DEFAULT_HOLDOUT
) -> tuple[list[int], list[int]]:
    """(to send, held out), each sorted by member id."""
    if not isinstance(seed, bytes) or len(seed) < 16:
        raise ValueError("the seed is at least 16 random bytes (secrets.token_bytes)")
    if not 0.0 <= share < 1.0:
        raise ValueError("the hold-out share is at least 0 and below 1")
    unique = sorted(set(members))
    n_hold = round(share * len(unique))
    ranked = sorted(unique, key=lambda m: _rank(seed, m))
    held = set(ranked[:n_hold])
    return [m for m in unique if m not in held], sorted(held)


@dataclass(frozen=True, slots=True)
class PurchaseRecord:
    member_id: int
    at: datetime
    amount: int  # net rials (after reversals)


@dataclass(frozen=True, slots=True)
class GroupEffect:
    members: int
    buyers: int
    sales: int

    @property
    def rate(self) -> float:
        return self.buyers / self.members if self.members else 0.0

    @property
    def sales_per_member(self) -> float:
        return self.sales / self.members if self.members else 0.0


@dataclass(frozen=True, slots=True)
class WindowEffect:
    days: int
    reached: GroupEffect
    holdout: GroupEffect

    @property
    def uplift(self) -> float:
        """Difference of buying rates, reached minus hold-out (0.05 = 5 points)."""
        return self.reached.rate - self.holdout.rate

    @property
    def incremental_sales(self) -> int:
        """Sales the campaign brought: the reached group's sales per member above the
        hold-out's, times the members reached; 0 when there is no hold-out to compare."""
        if not self.holdout.members:
            return 0
        extra = self.reached.sales_per_member - self.holdout.sales_per_member
        return round(extra * self.reached.members)


def _group(members: set[int], purchases: Sequence[PurchaseRecord], start: datetime,
           end: datetime) -> GroupEffect:
    buyers: set[int] = set()
    sales = 0
    for p in purchases:
        if p.member_id in members and start <= p.at < end:
            sales += p.amount
            if p.amount > 0:
                buyers.add(p.member_id)
    return GroupEffect(len(members), len(buyers), sales)


def effect(
    reached: Iterable[int],
    holdout: Iterable[int],
    purchases: Sequence[PurchaseRecord],
    start: datetime,
    windows: Sequence[int] = WINDOWS,
) -> list[WindowEffect]:
    """The effect per window (days from `start`, the campaign's send time)."""
    r, h = set(reached), set(holdout)
    if r & h:
        raise ValueError(f"members both reached and held out: {sorted(r & h)[:5]}")
    return [
        WindowEffect(days, _group(r, purchases, start, start + timedelta(days=days)),
                     _group(h, purchases, start, start + timedelta(days=days)))
        for days in windows
    ]
