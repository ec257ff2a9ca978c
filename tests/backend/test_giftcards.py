"""Gift card numbers, batches and the balance arithmetic (backend.giftcards)."""

from __future__ import annotations

import csv
import io
from datetime import UTC, date, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from backend.giftcards import (
    GIFT_PREFIX,
    SERIALS,
    GiftCardError,
    GiftProgram,
    balance,
    card_number,
    expire,
    hold,
    inquiry_fields,
    is_gift_card,
    issue_batch,
    issued,
    permute,
    printable_csv,
    quote,
    release,
    reverse,
    settle,
    unpermute,
)
from protocols.identity import luhn_valid, normalize_card

KEY = b"k" * 32
TODAY = date(2026, 12, 1)
NOW = datetime(2026, 12, 1, 8, tzinfo=UTC)


@given(st.integers(0, SERIALS - 1))
def test_permutation_is_a_bijection(serial: int) -> None:
    v = permute(KEY, serial)
    assert 0 <= v < SERIALS and unpermute(KEY, v) == serial


def test_numbers_are_luhn_valid_unique_and_their_own_range() -> None:
    cards = issue_batch(KEY, 1, 0, 20_000, 500_000, date(2027, 6, 1), TODAY)
    numbers = [c.number for c in cards]
    assert len(set(numbers)) == len(numbers)
    for n in numbers[:500]:
        assert len(n) == 16 and n.startswith(GIFT_PREFIX) and luhn_valid(n)
        assert normalize_card(n) == n and is_gift_card(n)
    assert not is_gift_card("6037991234567891")
    # consecutive serials do not give neighbouring numbers
    assert abs(int(numbers[1]) - int(numbers[0])) > 1000
    assert card_number(b"x" * 32, 0) != numbers[0]
    # a next batch continues the serials: no collision with the first
    more = issue_batch(KEY, 2, 20_000, 1_000, 100_000, date(2027, 6, 1), TODAY)
    assert not {c.number for c in more} & set(numbers)


def test_batch_refusals() -> None:
    for args in ((0, 0, 1000), (0, 1, 0), (SERIALS - 1, 2, 1000)):
        with pytest.raises(GiftCardError):
            issue_batch(KEY, 1, args[0], args[1], args[2], date(2027, 1, 1), TODAY)
    with pytest.raises(GiftCardError, match="after today"):
        issue_batch(KEY, 1, 0, 1, 1000, TODAY, TODAY)
    with pytest.raises(GiftCardError):
        permute(b"short", 1)


def test_printable_csv() -> None:
    cards = issue_batch(KEY, 1, 0, 3, 500_000, date(2027, 3, 21), TODAY)
    rows = list(csv.reader(io.StringIO(printable_csv(cards))))
    assert rows[0] == ["number", "value", "expiry"]
    assert rows[1] == [cards[0].number, "500000", "1406/01/01"] and len(rows) == 4


def test_partial_use_twice_reversal_and_expiry() -> None:
    [card] = issue_batch(KEY, 1, 7, 1, 1_000_000, date(2026, 12, 31), TODAY)
    led = issued(card)
    q1 = quote(card, led, 600_000, NOW)
    assert (q1.gift_part, q1.bank_part, q1.earn_base, q1.balance_after) == (600_000, 0, 0,
                                                                            400_000)
    led = settle(hold(led, q1, "p1"), "p1")
    assert balance(led) == 400_000
    assert settle(led, "p1") == led  # the same advice again changes nothing
    q2 = quote(card, led, 1_500_000, NOW)
    assert (q2.gift_part, q2.bank_part, q2.earn_base) == (400_000, 1_100_000, 1_100_000)
    led = hold(led, q2, "p2")
    assert quote(card, led, 100_000, NOW).gift_part == 0  # held: not usable twice
    led = settle(led, "p2")
    assert balance(led) == 0
    led = reverse(led, "p1")
    assert balance(led) == 600_000 and reverse(led, "p1") == led
    fields = inquiry_fields(quote(card, led, 100_000, NOW), card)
    assert fields["TR"] == "gift" and fields["DA"] == "100000" and fields["CB"] == "500000"
    assert len(fields["MG"].encode()) <= 64 and "۵۰۰٬۰۰۰" in fields["MG"]
    later = datetime(2027, 1, 1, 8, tzinfo=UTC)
    assert quote(card, led, 100_000, later).gift_part == 0
    led = expire(card, led, later)
    assert balance(led) == 0 and expire(card, led, later) == led


def test_declined_payment_releases_and_program_options() -> None:
    [card] = issue_batch(KEY, 1, 8, 1, 1_000_000, date(2026, 12, 31), TODAY)
    led = issued(card)
    q = quote(card, led, 300_000, NOW)
    led = release(hold(led, q, "p"), "p")
    assert balance(led) == 1_000_000
    with pytest.raises(GiftCardError, match="no open hold"):
        settle(led, "p")
    capped = quote(card, led, 300_000, NOW, GiftProgram(cap_percent=50, earn_on_gift_part=True))
    assert (capped.gift_part, capped.bank_part, capped.earn_base) == (150_000, 150_000, 300_000)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["buy", "decline", "reverse"]),
                          st.integers(1, 2_000_000)), max_size=30))
def test_balance_never_negative_nor_above_value(ops) -> None:
    [card] = issue_batch(KEY, 1, 9, 1, 1_000_000, date(2026, 12, 31), TODAY)
    led = issued(card)
    done: list[str] = []
    for i, (op, amount) in enumerate(ops):
        ref = f"p{i}"
        if op == "reverse" and done:
            led = reverse(led, done.pop(0))
        elif op in ("buy", "decline"):
            q = quote(card, led, amount, NOW + timedelta(minutes=i))
            led = hold(led, q, ref)
            led = settle(led, ref) if op == "buy" and q.gift_part else release(led, ref)
            if op == "buy" and q.gift_part:
                done.append(ref)
        assert 0 <= balance(led) <= card.value
        assert len({m.key for m in led}) == len(led)
