"""Prize draws anyone can re-run: commit-reveal seed, exported entries, SHA-256 draws.

1. Before the draw the owner publishes `commitment(secret)` (SHA-256 of a value only they
   know). Once the period is closed and the entries exported, the owner reveals the
   secret; it is the seed. The owner cannot change the seed after seeing the entries,
   and nobody else can know it before.
2. The entries list is a CSV `entry,tickets` (entry = the member's code, never a phone),
   in the order of the file, exported and shown before the reveal.
3. Winners (docs/campaigns.md, "Prize draws"): for prize k = 0, 1, ... over the entries not
   yet drawn, in file order with cumulative ticket ranges [0, T), take
   x = SHA-256(seed || 0x00 || k as 4 bytes || j as 4 bytes) as a 256-bit big-endian
   number for j = 0, 1, ... until x < floor(2^256 / T) * T (rejection: no modulo bias),
   then r = x mod T; the winner is the entry whose range holds r. A winner is removed
   before the next prize. `verify(seed, entries_csv, prizes)` is that and nothing else.
"""

from __future__ import annotations

import csv
import hashlib
import io
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

_SPACE = 1 << 256
HEADER = ("entry", "tickets")


class DrawError(ValueError):
    """A draw that cannot be made or verified as given; says what is wrong."""


def commitment(secret: str) -> str:
    """What the owner publishes before the draw: SHA-256 of the secret, hex."""
    if len(secret) < 16:
        raise DrawError("the secret needs at least 16 characters (e.g. 32 random letters)")
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def check_reveal(commitment_hex: str, secret: str) -> None:
    if hashlib.sha256(secret.encode("utf-8")).hexdigest() != commitment_hex.lower():
        raise DrawError("the revealed seed does not match the published commitment")


@dataclass(frozen=True, slots=True)
class Entry:
    entry: str
    tickets: int


def tickets_for(amounts: Sequence[int], per_purchase: int | None = None,
                per_rials: int | None = None) -> int:
    """A member's tickets from their purchases in the period: `per_purchase` tickets for
    each purchase, or one ticket per whole `per_rials` of the period's total spend."""
    if (per_purchase is None) == (per_rials is None):
        raise DrawError("tickets are per purchase or per N rials, one of the two")
    if per_purchase is not None:
        if per_purchase < 1:
            raise DrawError("tickets per purchase must be at least 1")
        return per_purchase * sum(1 for a in amounts if a > 0)
    if per_rials is None or per_rials < 1:
        raise DrawError("rials per ticket must be at least 1")
    return max(0, sum(amounts)) // per_rials


def entries_csv(entries: Iterable[Entry]) -> str:
    """The exported list; entries without tickets are left out, the order is by entry."""
    rows = sorted((e for e in entries if e.tickets > 0), key=lambda e: e.entry)
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\n")
    w.writerow(HEADER)
    for e in rows:
        w.writerow([e.entry, e.tickets])
    return out.getvalue()


def parse_entries(text: str) -> list[Entry]:
    rows = list(csv.reader(io.StringIO(text)))
    if not rows or tuple(rows[0]) != HEADER:
        raise DrawError("the entries CSV starts with the header 'entry,tickets'")
    out: list[Entry] = []
    seen: set[str] = set()
    for n, row in enumerate(rows[1:], start=2):
        if len(row) != 2 or not row[0] or not row[1].isascii() or not row[1].isdigit():
            raise DrawError(f"line {n}: expected 'entry,tickets' with tickets a number")
        if row[0] in seen:
            raise DrawError(f"line {n}: entry {row[0]!r} listed twice")
        seen.add(row[0])
        if int(row[1]) < 1:
            raise DrawError(f"line {n}: an entry has at least one ticket")
        out.append(Entry(row[0], int(row[1])))
    return out


def _stream(seed: bytes, prize: int) -> Iterator[int]:
    j = 0
    while True:
        block = seed + b"\x00" + prize.to_bytes(4, "big") + j.to_bytes(4, "big")
        yield int.from_bytes(hashlib.sha256(block).digest(), "big")
        j += 1


def uniform_below(stream: Iterator[int], total: int) -> int:
    """A uniform number in [0, total) from 256-bit values, rejecting the biased tail."""
    if total < 1:
        raise DrawError("no tickets to draw from")
    limit = (_SPACE // total) * total
    for x in stream:
        if x < limit:
            return x % total
    raise AssertionError("unreachable: the stream is endless")


def draw(seed: bytes, entries: Sequence[Entry], prizes: int) -> list[str]:
    """The winners, in prize order; fewer than `prizes` when entries run out."""
    if prizes < 1:
        raise DrawError("a draw has at least one prize")
    if len(seed) < 16:
        raise DrawError("the seed is at least 16 bytes")
    left = list(entries)
    winners: list[str] = []
    for k in range(min(prizes, len(left))):
        r = uniform_below(_stream(seed, k), sum(e.tickets for e in left))
        for i, e in enumerate(left):
            if r < e.tickets:
                winners.append(e.entry)
                del left[i]
                break
            r -= e.tickets
    return winners


def verify(seed: str, entries_text: str, prizes: int = 1, commitment_hex: str | None = None
           ) -> list[str]:
    """Re-run a draw from its revealed seed and exported entries (`loyalty-backend draw
    verify`): anyone gets the same winners. The first n winners of a draw of more prizes
    are the winners of a draw of n, so a verifier who asks for fewer prizes still checks
    the ones asked for."""
    if commitment_hex is not None:
        check_reveal(commitment_hex, seed)
    return draw(seed.encode("utf-8"), parse_entries(entries_text), prizes)
