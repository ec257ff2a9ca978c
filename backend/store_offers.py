"""The offer uses the advice records (which offer gave how much extra credit on which
purchase) and each offer's effect from them, for the panel's offers page. Offers themselves
are added and ended by backend.store (`add_offer`, `end_offer`), which also tell running
backends their cached offers are stale.

`offer_uses` is written by the advice in the purchase's transaction and left in place by a
reversal; the effect counts only purchases not reversed, so a reversed purchase's extra
credit (taken back with the earning) is not counted as given.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from backend.engine import Connection


@dataclass(frozen=True, slots=True)
class OfferEffect:
    purchases: int
    extra_credit: int


def record_uses(conn: Connection, purchase_key: str, uses: Iterable[tuple[int, int]]) -> None:
    """(offer id, extra credit) of each database offer a purchase matched (config offers
    have no id and are not recorded)."""
    conn.executemany(
        "INSERT INTO offer_uses(offer_id, purchase_key, extra) VALUES (?, ?, ?)",
        [(oid, purchase_key, extra) for oid, extra in uses])


def effects(conn: Connection, club_id: int) -> dict[int, OfferEffect]:
    """Per offer of the club: purchases it applied to and the extra credit it gave."""
    rows = conn.execute(
        "SELECT u.offer_id, COUNT(*), COALESCE(SUM(u.extra), 0) FROM offer_uses u "
        "JOIN offers o ON o.id = u.offer_id JOIN purchases p ON p.key = u.purchase_key "
        "WHERE o.club_id = ? AND p.reversed = 0 GROUP BY u.offer_id", (club_id,))
    return {int(o): OfferEffect(int(n), int(s)) for o, n, s in rows}
