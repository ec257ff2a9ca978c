"""Members as the panel reads and edits them, always within one club.

Every function takes the club's id and never returns or changes another club's member: a
member id from a URL is looked up together with its club, so another club's id is simply
not found. Money is not moved here (backend.ledger does that).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from backend import giftcards, store
from backend.engine import Connection
from backend.store import CODE_ALPHABET, CODE_LENGTH, PurchaseRecord, from_ts, ts
from protocols.identity import IdentityError, normalize_card, normalize_phone
from protocols.persian import ascii_digits


@dataclass(frozen=True, slots=True)
class MemberProfile:
    id: int
    club_id: int
    phone: str
    code: str
    name: str | None
    birthday: str | None
    enrolled_at: datetime
    tier: str
    debt: int
    referrer_id: int | None
    marketing_consent: bool


@dataclass(frozen=True, slots=True)
class MemberSummary:
    """A row of the members list: the profile's essentials and the purchase totals."""

    id: int
    phone: str
    code: str
    name: str | None
    tier: str
    enrolled_at: datetime
    last_visit: datetime | None
    visits: int
    spend: int


@dataclass(frozen=True, slots=True)
class LedgerEntry:
    id: int
    kind: str
    amount: int
    at: datetime
    key: str
    #: why: the adjustment's reason, the purchase's key, the quote's id
    ref: str | None


class SortKey(StrEnum):
    ENROLLED = "enrolled"
    LAST_VISIT = "last_visit"
    SPEND = "spend"
    VISITS = "visits"
    NAME = "name"


@dataclass(frozen=True, slots=True)
class MemberFilter:
    tier: str | None = None
    enrolled_from: datetime | None = None
    enrolled_until: datetime | None = None  # exclusive
    visited_from: datetime | None = None
    visited_until: datetime | None = None  # exclusive
    min_spend: int | None = None
    sort: SortKey = SortKey.ENROLLED
    descending: bool = True


_PROFILE = ("id, club_id, phone, code, name, birthday, enrolled_at, tier, debt, referrer_id, "
            "marketing_consent")


def _profile(row: tuple) -> MemberProfile:
    r = list(row)
    r[6] = from_ts(r[6])
    r[10] = bool(r[10])
    return MemberProfile(*r)


def member(conn: Connection, club_id: int, member_id: int) -> MemberProfile | None:
    row = conn.execute(f"SELECT {_PROFILE} FROM members WHERE id = ? AND club_id = ?",
                       (member_id, club_id)).fetchone()
    return _profile(row) if row else None


def search(conn: Connection, club_id: int, query: str) -> list[MemberProfile]:
    """The members a phone (any form the agent accepts, Persian digits too), a member
    code or a card number names; usually one, none when nothing matches."""
    text = ascii_digits(query.strip())
    found: dict[int, MemberProfile] = {}

    def add(sql: str, value: str) -> None:
        for row in conn.execute(sql, (club_id, value)):
            p = _profile(row)
            found.setdefault(p.id, p)

    try:
        add(f"SELECT {_PROFILE} FROM members WHERE club_id = ? AND phone = ?",
            normalize_phone(text))
    except IdentityError:
        pass
    code = text.upper()
    if len(code) == CODE_LENGTH and all(c in CODE_ALPHABET for c in code):
        add(f"SELECT {_PROFILE} FROM members WHERE club_id = ? AND code = ?", code)
    try:
        card = normalize_card(text)
    except IdentityError:
        card = None
    if card is not None:
        cols = ", ".join("m." + c.strip() for c in _PROFILE.split(","))
        add(f"SELECT {cols} FROM cards c JOIN members m ON m.id = c.member_id "
            "WHERE m.club_id = ? AND c.number = ?", card)
    return list(found.values())


#: the column each order reads; the totals are the members' running ones
#: (backend.store_member_stats), each with an index (club_id, column, id)
_SORT_COLUMN = {
    SortKey.ENROLLED: "enrolled_at",
    SortKey.LAST_VISIT: "last_visit",
    SortKey.SPEND: "spend",
    SortKey.VISITS: "visits",
    SortKey.NAME: "name",
}
#: orders whose column may be NULL (never visited, no name): those rows come last either way
_NULLABLE = (SortKey.LAST_VISIT, SortKey.NAME)
_SUMMARY = "id, phone, code, name, tier, enrolled_at, last_visit, visits, spend"


def list_members(conn: Connection, club_id: int, flt: MemberFilter, *, limit: int = 50,
                 offset: int = 0) -> tuple[list[MemberSummary], int]:
    """A page of the club's members as filtered and sorted, and how many match in all.

    Totals count approved purchases not reversed, as the tier does. The page is read in
    the order of an index on (club_id, column, id), so it costs about `limit` rows; a
    nullable order reads its non-NULL rows first, then the NULL ones by id."""
    where, args = _member_where(club_id, flt)
    total = int(conn.execute(f"SELECT COUNT(*) FROM members WHERE {where}",
                             args).fetchone()[0])
    column = _SORT_COLUMN[flt.sort]
    direction = "DESC" if flt.descending else "ASC"
    if flt.sort not in _NULLABLE:
        rows = conn.execute(
            f"SELECT {_SUMMARY} FROM members WHERE {where} "
            f"ORDER BY {column} {direction}, id {direction} LIMIT ? OFFSET ?",
            (*args, limit, offset)).fetchall()
    else:
        present = int(conn.execute(
            f"SELECT COUNT(*) FROM members WHERE {where} AND {column} IS NOT NULL",
            args).fetchone()[0])
        rows = []
        if offset < present:
            rows = conn.execute(
                f"SELECT {_SUMMARY} FROM members WHERE {where} AND {column} IS NOT NULL "
                f"ORDER BY {column} {direction}, id {direction} LIMIT ? OFFSET ?",
                (*args, limit, offset)).fetchall()
        if len(rows) < limit:
            rows += conn.execute(
                f"SELECT {_SUMMARY} FROM members WHERE {where} AND {column} IS NULL "
                f"ORDER BY id {direction} LIMIT ? OFFSET ?",
                (*args, limit - len(rows), max(0, offset - present))).fetchall()
    return [_summary(r) for r in rows], total


def each_member(conn: Connection, club_id: int, flt: MemberFilter, *, batch: int = 2000
                ) -> Iterator[MemberSummary]:
    """Every member matching `flt`, in the list's order, read in batches of `batch` rows
    (keyset: each batch starts after the last row of the one before, through the same
    index as the list), so an export of 100,000 members holds one batch in memory and its
    first rows come at once. Batches are separate statements: a member changed while the
    export runs may show its old or new figures, none is skipped or repeated (the order
    is total: the column, then the id)."""
    where, args = _member_where(club_id, flt)
    column = _SORT_COLUMN[flt.sort]
    desc = flt.descending
    direction, after = ("DESC", "<") if desc else ("ASC", ">")
    # (column, id) pairs past the last one; for a nullable order first its non-NULL rows,
    # then the NULL ones by id, as list_members
    phases = [(column, f"{column} IS NOT NULL" if flt.sort in _NULLABLE else None)]
    if flt.sort in _NULLABLE:
        phases.append((None, f"{column} IS NULL"))
    for key, extra in phases:
        base = f"{where} AND {extra}" if extra else where
        order = f"{key} {direction}, id {direction}" if key else f"id {direction}"
        last: tuple | None = None
        while True:
            if last is None:
                cond, more = base, []
            elif key:
                cond = f"{base} AND ({key} {after} ? OR ({key} = ? AND id {after} ?))"
                more = [last[0], last[0], last[1]]
            else:
                cond, more = f"{base} AND id {after} ?", [last[1]]
            rows = conn.execute(f"SELECT {_SUMMARY} FROM members WHERE {cond} "
                                f"ORDER BY {order} LIMIT ?", (*args, *more, batch)).fetchall()
            for r in rows:
                yield _summary(r)
            if len(rows) < batch:
                break
            r = rows[-1]
            last = (r[_SUMMARY_INDEX[key]] if key else None, r[0])


_SUMMARY_INDEX = {name: i for i, name in enumerate(_SUMMARY.split(", "))}


def _summary(row: tuple) -> MemberSummary:
    i, ph, code, name, tier, enr, last, v, sp = row
    return MemberSummary(int(i), ph, code, name, tier, from_ts(enr),
                         from_ts(last) if last is not None else None, int(v), int(sp))


def _member_where(club_id: int, flt: MemberFilter) -> tuple[str, list[object]]:
    where = ["club_id = ?"]
    args: list[object] = [club_id]
    if flt.tier:
        where.append("tier = ?")
        args.append(flt.tier)
    if flt.enrolled_from is not None:
        where.append("enrolled_at >= ?")
        args.append(ts(flt.enrolled_from))
    if flt.enrolled_until is not None:
        where.append("enrolled_at < ?")
        args.append(ts(flt.enrolled_until))
    if flt.visited_from is not None:
        where.append("last_visit >= ?")
        args.append(ts(flt.visited_from))
    if flt.visited_until is not None:
        where.append("last_visit < ?")
        args.append(ts(flt.visited_until))
    if flt.min_spend is not None:
        where.append("spend >= ?")
        args.append(flt.min_spend)
    return " AND ".join(where), args


def purchases(conn: Connection, member_id: int, *, limit: int = 100) -> list[PurchaseRecord]:
    """The member's purchases, newest first (the caller has checked the club)."""
    rows = conn.execute(
        "SELECT key, member_id, terminal_id, quote_id, amount, gross, approved, redeemed, "
        "earned, recovered, earn_lot, occurred_at, reversed FROM purchases WHERE member_id = ? "
        "ORDER BY occurred_at DESC, key DESC LIMIT ?", (member_id, limit))
    out = []
    for r in rows:
        r = list(r)
        r[6], r[12] = bool(r[6]), bool(r[12])
        out.append(PurchaseRecord(*r))
    return out


def ledger(conn: Connection, member_id: int, *, limit: int = 500,
           before_id: int | None = None) -> list[LedgerEntry]:
    """The member's ledger, newest first, with each row's reason; `before_id` pages on."""
    rows = conn.execute(
        "SELECT id, kind, amount, at, key, ref FROM ledger WHERE member_id = ? AND id < ? "
        "ORDER BY id DESC LIMIT ?", (member_id, before_id if before_id is not None else 2**62,
                                     limit))
    return [LedgerEntry(int(i), k, int(a), from_ts(at), key, ref) for i, k, a, at, key, ref in rows]


class CardError(ValueError):
    """A card that cannot be linked or replaced as asked (the message says why)."""


def link_card(conn: Connection, member_id: int, card: str, now: datetime) -> bool:
    """Link `card` to the member, as `loyalty-backend card add` does; False if it was
    linked to them already (asked twice). Card numbers are unique across clubs."""
    if giftcards.is_gift_card(card):
        raise CardError("a gift card number is never a loyalty card")
    owner = store.card_owner(conn, card)
    if owner == (member_id, True):
        return False
    if owner is not None and owner[0] != member_id:
        raise CardError("card is linked to another member")
    if owner is not None:
        raise CardError("card was replaced and no longer works")
    store.link_card(conn, member_id, card, now)
    return True


def replace_card(conn: Connection, member_id: int, old: str, new: str, now: datetime) -> None:
    """The member's active card `old` replaced by `new`; the credit stays with the member."""
    if store.card_owner(conn, old) != (member_id, True):
        raise CardError("old card is not an active card of this member")
    if store.card_owner(conn, new) is not None:
        raise CardError("new card is already issued")
    if giftcards.is_gift_card(new):
        raise CardError("a gift card number is never a loyalty card")
    store.link_card(conn, member_id, new, now)
    store.retire_card(conn, old, new)


def set_name(conn: Connection, member_id: int, name: str | None) -> None:
    conn.execute("UPDATE members SET name = ? WHERE id = ?", (name, member_id))


def set_consent(conn: Connection, member_id: int, consent: bool, now: datetime) -> None:
    conn.execute("UPDATE members SET marketing_consent = ?, consent_changed_at = ? WHERE id = ?",
                 (int(consent), ts(now), member_id))
