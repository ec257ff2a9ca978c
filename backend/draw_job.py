"""A prize draw's life: define it (commitment published), close it after its period
(entries frozen and exported), run it with the revealed secret (winners kept, told by SMS).

Every step is in the caller's transaction and changes nothing when it refuses (a
DrawError saying why). `close` and `run` lock the draw's row and are idempotent: a second
close returns the frozen entries, a second run with the same secret the stored winners,
and the SMS are outbox rows keyed `draw:{id}:{prize}`, queued once whatever the number of
runs. The winners are `draws.verify(secret, entries_csv, prizes)` of the exported CSV, so
`loyalty-backend draw verify` on that file gives the same list by construction.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta

from backend import draws, store_draws, texts
from backend.draws import DrawError, Entry
from backend.engine import Connection
from backend.segments import SEGMENTS
from backend.store_draws import Draw, StoredEntry, Winner
from protocols.persian import TEHRAN

_HEX = re.compile(r"[0-9a-f]{64}")
NAME_MAX = 60
PRIZES_MAX = 1000
PER_PURCHASE_MAX = 1000
PER_RIALS_MAX = 10**12
SMS_KIND = "draw"


class DefinitionError(DrawError):
    """A definition refused; `field` names the culprit (the panel shows it there)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


@dataclass(frozen=True, slots=True)
class Definition:
    """What the owner defines; `check` is the whole validation, before any row."""

    name: str
    starts_on: date
    ends_on: date
    segment: str | None
    per_purchase: int | None
    per_rials: int | None
    prizes: int
    commitment: str

    def check(self, now: datetime) -> Definition:
        """The definition with its commitment in lower case, or DrawError."""
        name = self.name.strip()
        if not name or len(name) > NAME_MAX or any(ord(c) < 32 for c in name):
            raise DefinitionError("name", f"a draw's name is 1 to {NAME_MAX} characters, one line")
        if self.ends_on < self.starts_on:
            raise DefinitionError("ends", "the period ends before it starts")
        if period_end(self.ends_on) <= now:
            raise DefinitionError("ends", "the period has ended already: a draw is defined "
                                  "(and its commitment published) before its period ends")
        if self.segment is not None and self.segment not in SEGMENTS:
            raise DefinitionError("segment", f"no segment {self.segment!r} "
                                  f"(one of {', '.join(SEGMENTS)})")
        if (self.per_purchase is None) == (self.per_rials is None):
            raise DefinitionError("tickets",
                                  "tickets are per purchase or per N rials, one of the two")
        if self.per_purchase is not None and not 1 <= self.per_purchase <= PER_PURCHASE_MAX:
            raise DefinitionError("tickets", f"tickets per purchase are 1 to {PER_PURCHASE_MAX}")
        if self.per_rials is not None and not 1 <= self.per_rials <= PER_RIALS_MAX:
            raise DefinitionError("tickets", f"rials per ticket are 1 to {PER_RIALS_MAX}")
        if not 1 <= self.prizes <= PRIZES_MAX:
            raise DefinitionError("prizes", f"a draw has 1 to {PRIZES_MAX} prizes")
        commitment = self.commitment.strip().lower()
        if not _HEX.fullmatch(commitment):
            raise DefinitionError("commitment",
                                  "the commitment is a SHA-256 in hex: 64 characters 0-9 a-f")
        return Definition(name, self.starts_on, self.ends_on, self.segment,
                          self.per_purchase, self.per_rials, self.prizes, commitment)


def period_start(day: date) -> datetime:
    return datetime.combine(day, time(0), TEHRAN)


def period_end(day: date) -> datetime:
    """The instant the period's last Tehran day is over."""
    return datetime.combine(day + timedelta(days=1), time(0), TEHRAN)


def add(conn: Connection, club_id: int, definition: Definition, now: datetime) -> Draw:
    d = definition.check(now)
    draw = store_draws.insert(conn, club_id, d.name, d.starts_on, d.ends_on, d.segment,
                              d.per_purchase, d.per_rials, d.prizes, d.commitment, now)
    if draw is None:
        raise DefinitionError("name", f"the club has a draw named {d.name!r} already")
    return draw


def find(conn: Connection, club_id: int, name: str, *, lock: bool = False) -> Draw:
    draw = store_draws.find(conn, club_id, name, lock=lock)
    if draw is None:
        raise DrawError(f"no draw named {name!r} in this club")
    return draw


def compute_entries(draw: Draw, bought: list[store_draws.Bought]) -> list[StoredEntry]:
    """Each member's tickets from their settled purchases of the period, in the exported
    CSV's order (by member code), those with no ticket left out."""
    amounts: dict[int, list[int]] = {}
    codes: dict[int, str] = {}
    for b in bought:
        amounts.setdefault(b.member_id, []).append(b.amount)
        codes[b.member_id] = b.code
    counted = [(codes[m], m, draws.tickets_for(a, draw.per_purchase, draw.per_rials))
               for m, a in amounts.items()]
    counted = sorted(c for c in counted if c[2] > 0)
    return [StoredEntry(i, m, code, n) for i, (code, m, n) in enumerate(counted)]


def close(conn: Connection, club_id: int, name: str, now: datetime) -> list[StoredEntry]:
    """Freeze the entries once the period is over; a closed draw keeps its list."""
    draw = find(conn, club_id, name, lock=True)
    if draw.state != "open":
        return store_draws.entries(conn, draw.id)
    if now < period_end(draw.ends_on):
        raise DrawError("the draw's period has not ended yet; it is closed after its "
                        "last day")
    frozen = compute_entries(draw, store_draws.bought(
        conn, club_id, period_start(draw.starts_on), period_end(draw.ends_on), draw.segment))
    store_draws.freeze(conn, draw.id, frozen, now)
    return frozen


def entries_csv(entries: list[StoredEntry]) -> str:
    """The exported list, `entry,tickets` (member codes, never phones)."""
    return draws.entries_csv(Entry(e.code, e.tickets) for e in entries)


def export(conn: Connection, draw: Draw) -> str:
    if draw.state == "open":
        raise DrawError("the draw is still open: its entries are known once it is closed")
    return entries_csv(store_draws.entries(conn, draw.id))


def run(conn: Connection, club_id: int, name: str, secret: str, now: datetime,
        shop_name: str) -> list[Winner]:
    """Draw with the revealed `secret` (checked against the commitment), keep the winners
    and queue their SMS; a drawn draw returns its winners (the same secret asked again)."""
    from backend.sms import outbox

    draw = find(conn, club_id, name, lock=True)
    if draw.state == "open":
        raise DrawError("close the draw first: its entries are frozen and published "
                        "before the secret is revealed")
    draws.check_reveal(draw.commitment, secret)
    if draw.state == "closed":
        frozen = store_draws.entries(conn, draw.id)
        codes = draws.verify(secret, entries_csv(frozen), draw.prizes, draw.commitment)
        member_of = {e.code: e.member_id for e in frozen}
        store_draws.record_winners(conn, draw.id, secret, [member_of[c] for c in codes], now)
    won = store_draws.winners(conn, draw.id)
    for w in won:
        outbox.enqueue(conn, key=f"draw:{draw.id}:{w.prize}", phone=w.phone,
                       text=texts.draw_winner_sms(shop_name=shop_name, draw_name=draw.name,
                                                  prize=w.prize, member_code=w.code),
                       kind=SMS_KIND, now=now, club_id=club_id, member_id=w.member_id)
    return won
