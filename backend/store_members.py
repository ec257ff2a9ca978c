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
#: (backend.store_member_stats), each with an index (club_id, column, id) (its SCHEMA
#: and LIST_SCHEMA)
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

@dataclass(frozen=True, slots=True)
class Cursor:
    """A row's place in the list's order: its sort value (None: NULL, those rows come
    last) and its id, which breaks ties. A page starts strictly after or before one."""

    value: int | str | None
    id: int


@dataclass(frozen=True, slots=True)
class MemberPage:
    """A page of the list in its order, how many match in all, and whether rows come
    before its first row or after its last."""

    rows: list[MemberSummary]
    total: int
    more_before: bool
    more_after: bool


def cursor_of(row: MemberSummary, sort: SortKey) -> Cursor:
    """The place of `row` in the order by `sort` (what the next and previous links carry)."""
    value: int | str | None = {
        SortKey.ENROLLED: ts(row.enrolled_at),
        SortKey.LAST_VISIT: ts(row.last_visit) if row.last_visit is not None else None,
        SortKey.SPEND: row.spend,
        SortKey.VISITS: row.visits,
        SortKey.NAME: row.name,
    }[sort]
    return Cursor(value, row.id)


def count_members(conn: Connection, club_id: int, flt: MemberFilter) -> int:
    """How many of the club's members match: one index-only count (members_club_filter,
    or the order's index), whatever the filter."""
    where, args = _member_where(club_id, flt)
    return int(conn.execute(f"SELECT COUNT(*) FROM members WHERE {where}",
                            args).fetchone()[0])


def list_members(conn: Connection, club_id: int, flt: MemberFilter, *, limit: int = 50,
                 after: Cursor | None = None, before: Cursor | None = None,
                 last: bool = False) -> MemberPage:
    """A page of the club's members as filtered and sorted: the first, the one right
    after `after`, the one right before `before`, or the last (`last`: its size is what
    is left after whole pages, so page numbers counted from either end agree).

    Totals count approved purchases not reversed, as the tier does. A page is read from
    its place on the order's index (keyset: a row value compared with (column, id)), so
    page 2,000 costs what page 1 does; a nullable order has its non-NULL rows first, then
    the NULL ones by id."""
    total = count_members(conn, club_id, flt)
    if before is not None or last:
        size = limit if before is not None else (total - 1) % limit + 1 if total else limit
        back = _walk(conn, club_id, flt, before, forward=False, limit=size + 1)
        rows = [_summary(r) for r in back[:size][::-1]]
        return MemberPage(rows, total, len(back) > size,
                          before is not None and _beyond(conn, club_id, flt, rows, True))
    ahead = _walk(conn, club_id, flt, after, forward=True, limit=limit + 1)
    rows = [_summary(r) for r in ahead[:limit]]
    return MemberPage(rows, total,
                      after is not None and _beyond(conn, club_id, flt, rows, False),
                      len(ahead) > limit)


def _beyond(conn: Connection, club_id: int, flt: MemberFilter, rows: list[MemberSummary],
            forward: bool) -> bool:
    """Whether a row comes after the last of `rows` (forward) or before the first: one
    probe of the index, so a page after or before a cursor never claims a neighbour it
    does not have (the cursor's row may be gone, or the link edited)."""
    if not rows:
        return False
    edge = rows[-1] if forward else rows[0]
    return bool(_walk(conn, club_id, flt, cursor_of(edge, flt.sort), forward=forward,
                      limit=1))


def each_member(conn: Connection, club_id: int, flt: MemberFilter, *, batch: int = 2000
                ) -> Iterator[MemberSummary]:
    """Every member matching `flt`, in the list's order, read in batches of `batch` rows
    (keyset: each batch starts after the last row of the one before, as the list's next
    page does), so an export of 100,000 members holds one batch in memory and its first
    rows come at once. Batches are separate statements: a member changed while the export
    runs may show its old or new figures, none is skipped or repeated (the order is total:
    the column, then the id)."""
    start: Cursor | None = None
    while True:
        rows = [_summary(r) for r in _walk(conn, club_id, flt, start, forward=True,
                                           limit=batch)]
        yield from rows
        if len(rows) < batch:
            return
        start = cursor_of(rows[-1], flt.sort)


def _walk(conn: Connection, club_id: int, flt: MemberFilter, start: Cursor | None, *,
          forward: bool, limit: int) -> list[tuple]:
    """Up to `limit` rows strictly past `start` (None: from the end it walks from), in the
    list's order (forward) or against it. The order is two runs, the rows with a value by
    (column, id) and, for a nullable order, the NULL ones by id; the walk goes through the
    runs from `start`'s one. Past a cursor (v, id) it reads v's other rows by id first,
    then the values past v: each an exact range of the order's index (SQLite bounds a row
    value's comparison by its first column only, and the visits order has thousands of
    ties). The filter's terms on the sort column are folded into v's bound (checked on v
    for the ties, the tighter bound kept past v): SQLite bounds an index by the first of
    two terms on a column, which may be the filter's, and would walk from there to v."""
    column = _SORT_COLUMN[flt.sort]
    where, args = _member_where(club_id, flt)
    desc = flt.descending == forward  # the direction this walk reads in
    direction, past = ("DESC", "<") if desc else ("ASC", ">")
    runs: list[tuple[str | None, str | None]] = [  # (key column or None: by id, condition)
        (column, f"{column} IS NOT NULL" if flt.sort in _NULLABLE else None)]
    if flt.sort in _NULLABLE:
        runs.append((None, f"{column} IS NULL"))
    if not forward:
        runs.reverse()
    if start is not None:  # from the cursor's run on (its value tells which)
        at = [n for n, r in enumerate(runs) if (r[0] is None) == (start.value is None)]
        runs = runs[at[0]:] if at else []
    reads: list[tuple[str, list[object], str]] = []  # (condition, its arguments, order)
    for n, (key, extra) in enumerate(runs):
        cond = f"{where} AND {extra}" if extra else where
        by_id = f"id {direction}"
        if key is None and start is not None and n == 0:
            reads.append((f"{cond} AND id {past} ?", [*args, start.id], by_id))
        elif key is None:
            reads.append((cond, args, by_id))
        elif start is not None and n == 0:
            terms = _member_terms(club_id, flt)
            if all(_holds(start.value, op, v) for c, op, v in terms if c == key):
                # the ties by id through the order's index: "tier || ''" keeps SQLite
                # (no statistics) off (club_id, tier), whose rows also come by id
                tie_where, tie_args = _joined([("tier || ''" if c == "tier" else c, op, v)
                                               for c, op, v in terms if c != key])
                reads.append((f"{tie_where} AND {key} = ? AND id {past} ?",
                              [*tie_args, start.value, start.id], by_id))
            past_where, past_args = _joined(
                [t for t in terms if t[0] != key]
                + _tightest([t for t in terms if t[0] == key] + [(key, past, start.value)]))
            reads.append((f"{past_where} AND {extra}" if extra else past_where, past_args,
                          f"{key} {direction}, {by_id}"))
        else:
            reads.append((cond, args, f"{key} {direction}, {by_id}"))
    out: list[tuple] = []
    for cond, given, order in reads:
        out += conn.execute(f"SELECT {_SUMMARY} FROM members WHERE {cond} ORDER BY {order} "
                            "LIMIT ?", (*given, limit - len(out))).fetchall()
        if len(out) >= limit:
            break
    return out


def _summary(row: tuple) -> MemberSummary:
    i, ph, code, name, tier, enr, last, v, sp = row
    return MemberSummary(int(i), ph, code, name, tier, from_ts(enr),
                         from_ts(last) if last is not None else None, int(v), int(sp))


def _member_terms(club_id: int, flt: MemberFilter) -> list[tuple[str, str, object]]:
    """The filter as (column, operator, value) terms, the club's first."""
    terms: list[tuple[str, str, object]] = [("club_id", "=", club_id)]
    if flt.tier:
        terms.append(("tier", "=", flt.tier))
    if flt.enrolled_from is not None:
        terms.append(("enrolled_at", ">=", ts(flt.enrolled_from)))
    if flt.enrolled_until is not None:
        terms.append(("enrolled_at", "<", ts(flt.enrolled_until)))
    if flt.visited_from is not None:
        terms.append(("last_visit", ">=", ts(flt.visited_from)))
    if flt.visited_until is not None:
        terms.append(("last_visit", "<", ts(flt.visited_until)))
    if flt.min_spend is not None:
        terms.append(("spend", ">=", flt.min_spend))
    return terms


def _joined(terms: list[tuple[str, str, object]]) -> tuple[str, list[object]]:
    return " AND ".join(f"{c} {op} ?" for c, op, _ in terms), [v for _, _, v in terms]


def _member_where(club_id: int, flt: MemberFilter) -> tuple[str, list[object]]:
    return _joined(_member_terms(club_id, flt))


def _tightest(terms: list[tuple[str, str, object]]) -> list[tuple[str, str, object]]:
    """Terms on one column reduced to its tightest lower and upper bound."""
    lower = [t for t in terms if t[1] in (">", ">=")]
    upper = [t for t in terms if t[1] in ("<", "<=")]
    out = []
    if lower:  # the larger value; at a tie the strict one
        out.append(max(lower, key=lambda t: (t[2], t[1] == ">")))
    if upper:
        out.append(min(upper, key=lambda t: (t[2], t[1] == "<=")))
    return out


def _holds(value: object, op: str, bound: object) -> bool:
    """`value op bound` as SQL has it for a term of the filter (NULL never holds)."""
    if value is None:
        return False
    if op == "=":
        return value == bound
    return value >= bound if op == ">=" else value < bound  # type: ignore[operator]


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
