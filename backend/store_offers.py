"""A club's offers for the panel: list with their effect, add, end; and the offer uses
the advice records (which offer gave how much extra credit on which purchase).

`offer_uses` is written by the advice in the purchase's transaction and left in place by a
reversal; the effect counts only purchases not reversed, so a reversed purchase's extra
credit (taken back with the earning) is not counted as given.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime

from backend.engine import Connection
from backend.program import WEEKDAYS, Offer, parse_hours, parse_weekdays
from backend.store import from_ts, ts


@dataclass(frozen=True, slots=True)
class ClubOffer:
    offer: Offer
    created_at: datetime
    ended_at: datetime | None
    #: branch ids the offer is limited to; empty = every branch
    branches: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class OfferEffect:
    purchases: int
    extra_credit: int


_COLS = ("id, name, percent, amount, start, until, weekdays, hours, min_purchase, target, "
         "created_at, ended_at, branches")


def _club_offer(row: tuple) -> ClubOffer:
    (oid, name, percent, amount, start, until, weekdays, hours, min_purchase, target,
     created, ended, branches) = row
    offer = Offer(id=int(oid), name=name, percent=percent, amount=amount,
                  start=date.fromisoformat(start) if start else None,
                  until=date.fromisoformat(until),
                  weekdays=parse_weekdays(weekdays) if weekdays else frozenset(),
                  hours=parse_hours(hours) if hours else None, min_purchase=min_purchase,
                  target=target, ended=ended is not None)
    ids = tuple(int(b) for b in branches.split(",") if b) if branches else ()
    return ClubOffer(offer, from_ts(created), from_ts(ended) if ended is not None else None, ids)


def club_offers(conn: Connection, club_id: int) -> list[ClubOffer]:
    """Every offer of the club, ended ones too, newest first."""
    rows = conn.execute(f"SELECT {_COLS} FROM offers WHERE club_id = ? ORDER BY id DESC",
                        (club_id,))
    return [_club_offer(r) for r in rows]


def club_offer(conn: Connection, club_id: int, offer_id: int) -> ClubOffer | None:
    row = conn.execute(f"SELECT {_COLS} FROM offers WHERE id = ? AND club_id = ?",
                       (offer_id, club_id)).fetchone()
    return _club_offer(row) if row else None


def add_club_offer(conn: Connection, club_id: int, offer: Offer, now: datetime,
                   branches: Iterable[int] = ()) -> int:
    cur = conn.execute(
        "INSERT INTO offers(club_id, branches, name, percent, amount, start, until, weekdays, "
        "hours, min_purchase, target, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (club_id, ",".join(str(b) for b in sorted(set(branches))), offer.name, offer.percent,
         offer.amount, offer.start.isoformat() if offer.start else None,
         offer.until.isoformat(), ",".join(WEEKDAYS[d] for d in sorted(offer.weekdays)),
         f"{offer.hours[0]}-{offer.hours[1]}" if offer.hours else None, offer.min_purchase,
         offer.target, ts(now)))
    return int(cur.lastrowid or 0)


def end_club_offer(conn: Connection, club_id: int, offer_id: int, now: datetime) -> bool:
    cur = conn.execute("UPDATE offers SET ended_at = ? WHERE id = ? AND club_id = ? "
                       "AND ended_at IS NULL", (ts(now), offer_id, club_id))
    return cur.rowcount == 1


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
