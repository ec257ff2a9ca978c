"""Members as the panel reads and edits them, always within one club.

Every function takes the club's id and never returns or changes another club's member: a
member id from a URL is looked up together with its club, so another club's id is simply
not found. Money is not moved here (backend.ledger does that).
"""

from __future__ import annotations

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


#: member ids per statement when totals are read for a page (or an export) of members
_CHUNK = 500

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


#: ORDER BY terms; the totals as their aggregates (PostgreSQL reads an output alias only
#: alone in ORDER BY, never inside an expression such as `x IS NULL`)
_SORT_SQL = {
    SortKey.ENROLLED: "m.enrolled_at",
    SortKey.LAST_VISIT: "MAX(p.occurred_at)",
    SortKey.SPEND: "COALESCE(SUM(p.amount), 0)",
    SortKey.VISITS: "COUNT(p.key)",
    SortKey.NAME: "m.name",
}


def list_members(conn: Connection, club_id: int, flt: MemberFilter, *, limit: int = 50,
                 offset: int = 0) -> tuple[list[MemberSummary], int]:
    """A page of the club's members as filtered and sorted, and how many match in all.

    Totals count approved purchases not reversed, as the tier does."""
    if flt.sort in (SortKey.ENROLLED, SortKey.NAME) and (
            flt.visited_from is None and flt.visited_until is None and flt.min_spend is None):
        return _list_by_member(conn, club_id, flt, limit, offset)
    where_sql, args = _member_where(club_id, flt)
    having: list[str] = []
    hargs: list[object] = []
    if flt.visited_from is not None:
        having.append("MAX(p.occurred_at) >= ?")
        hargs.append(ts(flt.visited_from))
    if flt.visited_until is not None:
        having.append("MAX(p.occurred_at) < ?")
        hargs.append(ts(flt.visited_until))
    if flt.min_spend is not None:
        having.append("COALESCE(SUM(p.amount), 0) >= ?")
        hargs.append(flt.min_spend)
    base = (
        "SELECT m.id, m.phone, m.code, m.name, m.tier, m.enrolled_at, "
        "MAX(p.occurred_at) AS last_visit, COUNT(p.key) AS visits, "
        "COALESCE(SUM(p.amount), 0) AS spend FROM members m "
        "LEFT JOIN purchases p ON p.member_id = m.id AND p.approved = 1 AND p.reversed = 0 "
        f"WHERE {where_sql} GROUP BY m.id, m.phone, m.code, m.name, m.tier, "
        "m.enrolled_at"
        + (f" HAVING {' AND '.join(having)}" if having else "")
    )
    total = int(conn.execute(f"SELECT COUNT(*) FROM ({base}) AS t",
                             (*args, *hargs)).fetchone()[0])
    order = _SORT_SQL[flt.sort]
    direction = "DESC" if flt.descending else "ASC"
    # NULLs (never visited, no name) last either way; the id breaks ties, so pages are stable
    sql = (f"{base} ORDER BY ({order}) IS NULL, {order} {direction}, m.id {direction} "
           "LIMIT ? OFFSET ?")
    rows = conn.execute(sql, (*args, *hargs, limit, offset))
    out = [MemberSummary(int(i), ph, code, name, tier, from_ts(enr),
                         from_ts(last) if last is not None else None, int(v), int(s))
           for i, ph, code, name, tier, enr, last, v, s in rows]
    return out, total


def _member_where(club_id: int, flt: MemberFilter) -> tuple[str, list[object]]:
    where = ["m.club_id = ?"]
    args: list[object] = [club_id]
    if flt.tier:
        where.append("m.tier = ?")
        args.append(flt.tier)
    if flt.enrolled_from is not None:
        where.append("m.enrolled_at >= ?")
        args.append(ts(flt.enrolled_from))
    if flt.enrolled_until is not None:
        where.append("m.enrolled_at < ?")
        args.append(ts(flt.enrolled_until))
    return " AND ".join(where), args


def _list_by_member(conn: Connection, club_id: int, flt: MemberFilter, limit: int,
                    offset: int) -> tuple[list[MemberSummary], int]:
    """The list when neither its order nor its filter needs the purchase totals: the page
    of members first, then the totals of those members only (each through the purchases'
    member index), instead of totalling every purchase of the club for 50 rows."""
    where, args = _member_where(club_id, flt)
    total = int(conn.execute(f"SELECT COUNT(*) FROM members m WHERE {where}",
                             args).fetchone()[0])
    order = _SORT_SQL[flt.sort]
    direction = "DESC" if flt.descending else "ASC"
    nulls = "" if flt.sort is SortKey.ENROLLED else f"({order}) IS NULL, "  # NOT NULL column
    rows = conn.execute(
        f"SELECT m.id, m.phone, m.code, m.name, m.tier, m.enrolled_at FROM members m "
        f"WHERE {where} ORDER BY {nulls}{order} {direction}, m.id {direction} "
        "LIMIT ? OFFSET ?", (*args, limit, offset)).fetchall()
    totals: dict[int, tuple[int | None, int, int]] = {}
    ids = [r[0] for r in rows]
    for start in range(0, len(ids), _CHUNK):  # an export's many ids: bounded statements
        chunk = ids[start:start + _CHUNK]
        marks = ", ".join("?" for _ in chunk)
        for mid, last, n, spent in conn.execute(
                "SELECT member_id, MAX(occurred_at), COUNT(*), COALESCE(SUM(amount), 0) "
                f"FROM purchases WHERE member_id IN ({marks}) AND approved = 1 "
                "AND reversed = 0 GROUP BY member_id", chunk):
            totals[int(mid)] = (last, int(n), int(spent))
    out = []
    for i, ph, code, name, tier, enr in rows:
        last, n, spent = totals.get(int(i), (None, 0, 0))
        out.append(MemberSummary(int(i), ph, code, name, tier, from_ts(enr),
                                 from_ts(last) if last is not None else None, n, spent))
    return out, total


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
