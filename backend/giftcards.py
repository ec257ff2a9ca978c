"""Gift cards, pure: numbers from a range of their own, batches, the printable CSV, and the
arithmetic of using, holding and reversing a card's balance.

Numbers: 16 digits = GIFT_PREFIX (5) + 10 digits + a Luhn check digit. The 10 digits are
a keyed permutation (a Feistel network over two halves of 5 decimal digits, HMAC-SHA256
rounds) of a serial number 0, 1, 2, ... that the store hands out per club from a counter.
A permutation is a bijection, so two serials never give the same number and no uniqueness
retry is needed; without the club's key the numbers do not reveal the serials or each
other, so knowing one card does not let anyone guess the next. The store still keeps the
number UNIQUE, as a guard. The prefix starts with 9 (ISO/IEC 7812 "national use"), which
no Shetab bank card carries (they start with 5 or 6); a loyalty card number with the gift
prefix is refused when linked (`is_gift_card`), so the two are never confused.
"""

from __future__ import annotations

import csv
import hashlib
import hmac
import io
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime

import jdatetime

from protocols.identity import CARD_LENGTH, luhn_check_digit, luhn_valid
from protocols.persian import TEHRAN, format_rials, persian_digits
from protocols.tlv import LIMITS, fit

GIFT_PREFIX = "99810"
_HALF = 10**5
_ROUNDS = 8
SERIALS = _HALF * _HALF  # 10^10 numbers per club key
#: What the 0110 of a gift card inquiry carries in TR (the tier field).
GIFT_TIER = "gift"
#: Ledger kinds of a gift card's movements (a ledger of its own, keyed like the members').
KINDS = ("gc_issue", "gc_hold", "gc_release", "gc_redeem", "gc_reversal", "gc_expiry")


class GiftCardError(ValueError):
    """A gift card operation the rules refuse; nothing was changed."""


def _round(key: bytes, i: int, half: int) -> int:
    mac = hmac.new(key, f"{i}:{half}".encode("ascii"), hashlib.sha256).digest()
    return int.from_bytes(mac[:8], "big") % _HALF


def permute(key: bytes, serial: int) -> int:
    """The keyed bijection of [0, 10^10) that turns a serial into the card's digits."""
    if len(key) < 16:
        raise GiftCardError("the gift card key is at least 16 bytes")
    if not 0 <= serial < SERIALS:
        raise GiftCardError(f"serial out of range 0..{SERIALS - 1}")
    left, right = divmod(serial, _HALF)
    for i in range(_ROUNDS):
        left, right = right, (left + _round(key, i, right)) % _HALF
    return left * _HALF + right


def unpermute(key: bytes, value: int) -> int:
    """The inverse of `permute` (the tests prove the bijection with it)."""
    left, right = divmod(value, _HALF)
    for i in reversed(range(_ROUNDS)):
        left, right = (right - _round(key, i, left)) % _HALF, left
    return left * _HALF + right


def card_number(key: bytes, serial: int) -> str:
    body = GIFT_PREFIX + f"{permute(key, serial):010d}"
    return body + luhn_check_digit(body)


def is_gift_card(number: str) -> bool:
    """A well-formed gift card number (the till's CN is tried as a gift card first)."""
    return len(number) == CARD_LENGTH and number.startswith(GIFT_PREFIX) and luhn_valid(number)


@dataclass(frozen=True, slots=True)
class GiftCard:
    number: str
    batch_id: int
    value: int
    expires_on: date  # Tehran date: usable through the end of this day

    def expired(self, now: datetime) -> bool:
        return now.astimezone(TEHRAN).date() > self.expires_on


def issue_batch(key: bytes, batch_id: int, first_serial: int, count: int, value: int,
                expires_on: date, today: date) -> list[GiftCard]:
    """`count` cards from serial `first_serial` on (the store reserves the serials)."""
    if not 1 <= count <= 100_000:
        raise GiftCardError("a batch holds 1 to 100,000 cards")
    if not isinstance(value, int) or value <= 0:
        raise GiftCardError("a card's value is a positive number of rials")
    if expires_on <= today:
        raise GiftCardError("the expiry date must be after today")
    if first_serial < 0 or first_serial + count > SERIALS:
        raise GiftCardError("the serials of this batch are out of range")
    return [GiftCard(card_number(key, s), batch_id, value, expires_on)
            for s in range(first_serial, first_serial + count)]


def printable_csv(cards: Iterable[GiftCard]) -> str:
    """number,value,expiry for the card printer: ASCII digits (printers' fonts), the
    value in rials, the expiry as a Jalali date."""
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\n")
    w.writerow(["number", "value", "expiry"])
    for c in cards:
        w.writerow([c.number, c.value,
                    jdatetime.date.fromgregorian(date=c.expires_on).strftime("%Y/%m/%d")])
    return out.getvalue()


@dataclass(frozen=True, slots=True)
class GiftProgram:
    """The program's gift card options; the defaults are the issue's."""

    cap_percent: float | None = None  # None: the whole purchase may be paid by the card
    earn_on_gift_part: bool = False  # cash-back on the part paid by the card


@dataclass(frozen=True, slots=True)
class Movement:
    key: str  # idempotency key, unique in the card's ledger
    kind: str
    amount: int  # signed: + restores or issues, - takes
    ref: str = ""  # the quote / purchase it belongs to


@dataclass(frozen=True, slots=True)
class GiftQuote:
    gross: int
    gift_part: int  # DA: paid by the card
    bank_part: int  # NA: charged by the bank
    earn_base: int  # what cash-back is computed on
    balance_after: int  # CB


def balance(movements: Sequence[Movement]) -> int:
    """What the card holds, holds subtracted."""
    return sum(m.amount for m in movements)


def quote(card: GiftCard, movements: Sequence[Movement], gross: int, now: datetime,
          program: GiftProgram = GiftProgram(), min_bank: int = 0) -> GiftQuote:
    """`min_bank`: what the bank card must still be charged (the till passes 1: an
    approved 0220 of amount 0 is refused, PROTOCOL.md reading 9, so a purchase the card
    paid in full could never be advised and its hold would lapse unpaid)."""
    if not isinstance(gross, int) or gross <= 0:
        raise GiftCardError("the purchase amount is a positive number of rials")
    free = 0 if card.expired(now) else max(0, balance(movements))
    cap = gross if program.cap_percent is None else int(gross * program.cap_percent // 100)
    gift = max(0, min(free, cap, gross - min_bank))
    earn_base = gross if program.earn_on_gift_part else gross - gift
    return GiftQuote(gross, gift, gross - gift, earn_base, free - gift)


def _check_new(movements: Sequence[Movement], key: str) -> bool:
    """True when `key` is already in the ledger (the same request again: no change)."""
    return any(m.key == key for m in movements)


def hold(movements: Sequence[Movement], q: GiftQuote, ref: str) -> list[Movement]:
    if _check_new(movements, f"{ref}:hold"):
        return list(movements)
    if q.gift_part > balance(movements):
        raise GiftCardError("the card no longer holds the quoted amount")
    return [*movements, Movement(f"{ref}:hold", "gc_hold", -q.gift_part, ref)]


def _held(movements: Sequence[Movement], ref: str) -> int:
    return -sum(m.amount for m in movements if m.ref == ref and m.kind in ("gc_hold",
                                                                           "gc_release"))


def settle(movements: Sequence[Movement], ref: str) -> list[Movement]:
    """The purchase went through: the hold becomes a redemption (net zero on balance)."""
    if _check_new(movements, f"{ref}:redeem"):
        return list(movements)
    held = _held(movements, ref)
    if held <= 0:
        raise GiftCardError(f"no open hold for {ref}")
    return [*movements, Movement(f"{ref}:release", "gc_release", held, ref),
            Movement(f"{ref}:redeem", "gc_redeem", -held, ref)]


def release(movements: Sequence[Movement], ref: str) -> list[Movement]:
    """The payment was declined or the hold expired: the amount is the card's again."""
    if _check_new(movements, f"{ref}:release"):
        return list(movements)
    held = _held(movements, ref)
    if held <= 0:
        return list(movements)
    return [*movements, Movement(f"{ref}:release", "gc_release", held, ref)]


def reverse(movements: Sequence[Movement], ref: str) -> list[Movement]:
    """A reversal restores what the purchase took; an expired card's restored part
    expires at the next sweep like the rest."""
    if _check_new(movements, f"{ref}:reversal"):
        return list(movements)
    redeemed = -sum(m.amount for m in movements if m.ref == ref and m.kind == "gc_redeem")
    if redeemed <= 0:
        return release(movements, ref)
    return [*movements, Movement(f"{ref}:reversal", "gc_reversal", redeemed, ref)]


def expire(card: GiftCard, movements: Sequence[Movement], now: datetime) -> list[Movement]:
    """After the expiry date the free rest goes (never a held part: it waits)."""
    left = balance(movements)
    if not card.expired(now) or left <= 0:
        return list(movements)
    key = f"{card.number}:expiry:{len([m for m in movements if m.kind == 'gc_expiry'])}"
    return [*movements, Movement(key, "gc_expiry", -left)]


def inquiry_fields(q: GiftQuote, card: GiftCard) -> dict[str, str]:
    """Field 48 of the 0110 for a gift card: the same tags as a member's quote, TR `gift`
    and the rest of the card in MG (docs/campaigns.md)."""
    expiry = persian_digits(jdatetime.date.fromgregorian(date=card.expires_on)
                            .strftime("%Y/%m/%d"))
    rest = format_rials(q.balance_after)
    # MG is 64 UTF-8 bytes (a Persian letter is 2): the richest wording that fits
    candidates = (f"کارت هدیه، مانده {rest} تا {expiry}", f"کارت هدیه {rest} تا {expiry}",
                  f"هدیه {rest} تا {expiry}", f"هدیه {rest}")
    mg = next((c for c in candidates if len(c.encode("utf-8")) <= LIMITS["MG"]),
              fit(candidates[-1], LIMITS["MG"]))
    return {"GA": str(q.gross), "DA": str(q.gift_part), "NA": str(q.bank_part),
            "CB": str(q.balance_after), "TR": GIFT_TIER, "MG": mg}


def issued(card: GiftCard) -> list[Movement]:
    """The card's first ledger row: its value, under a key no second issue can repeat."""
    return [Movement(f"{card.number}:issue", "gc_issue", card.value)]
