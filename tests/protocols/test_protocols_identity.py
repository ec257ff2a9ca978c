"""Phone and card identifiers: the forms of PROTOCOL.md 3.3 and what must be refused."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocols import identity
from protocols.identity import IdentityError

PERSIAN = str.maketrans("0123456789", "۰۱۲۳۴۵۶۷۸۹")
ARABIC_INDIC = str.maketrans("0123456789", "٠١٢٣٤٥٦٧٨٩")
FORMS = ["09121234567", "+989121234567", "00989121234567", "9121234567"]


@pytest.mark.parametrize("typed", FORMS)
def test_known_answer_forms(typed: str) -> None:
    assert identity.normalize_phone(typed) == "09121234567"


@pytest.mark.parametrize("typed", FORMS)
def test_persian_and_arabic_indic_digits(typed: str) -> None:
    assert identity.normalize_phone(typed.translate(PERSIAN)) == "09121234567"
    assert identity.normalize_phone(typed.translate(ARABIC_INDIC)) == "09121234567"


@pytest.mark.parametrize(
    ("typed", "expected"),
    [
        ("0912 123 4567", "09121234567"),
        ("0912-123-4567", "09121234567"),
        ("(0912) 123 4567", "09121234567"),
        (" +98 935 123 4567 ", "09351234567"),
        ("0098 901 123 4567", "09011234567"),
        ("۰۹۱۲١٢٣4567", "09121234567"),  # mixed scripts
    ],
)
def test_spacing_and_other_operators(typed: str, expected: str) -> None:
    assert identity.normalize_phone(typed) == expected


@pytest.mark.parametrize(
    "typed",
    [
        "02112345678",  # Tehran landline
        "+982112345678",
        "03132345678",  # Isfahan landline
        "0912123456",  # short
        "912123456",
        "091212345678",  # long
        "+9891212345678",
        "+14155552671",  # not Iranian
        "0912123ABCD",  # keypad letters
        "x09121234567",
        "09121234567x",
        "tel:+98-912-123-4567",
        "09121234567\x00",
        "++989121234567",
        "",
        "   ",
        "0" * 40,
        "abc",
        12,
        None,
    ],
)
def test_refused(typed: object) -> None:
    with pytest.raises(IdentityError) as info:
        identity.normalize_phone(typed)  # type: ignore[arg-type]
    assert info.value.response_code == "14"


@settings(max_examples=150, deadline=None)
@given(st.text(max_size=20))
def test_anything_normalises_to_a_mobile_or_is_refused(typed: str) -> None:
    try:
        phone = identity.normalize_phone(typed)
    except IdentityError:
        return
    assert len(phone) == 11 and phone.startswith("09") and phone.isdigit()
    assert identity.normalize_phone(phone) == phone


@settings(max_examples=100, deadline=None)
@given(st.sampled_from(["912", "935", "901", "990"]), st.text("0123456789", min_size=7, max_size=7))
def test_every_form_of_a_mobile_gives_the_same_number(prefix: str, rest: str) -> None:
    national = f"0{prefix}{rest}"
    try:
        expected = identity.normalize_phone(national)
    except IdentityError:
        return  # an unassigned range
    for form in (f"+98{prefix}{rest}", f"0098{prefix}{rest}", f"{prefix}{rest}"):
        assert identity.normalize_phone(form) == expected
        assert identity.normalize_phone(form.translate(PERSIAN)) == expected


def test_cards() -> None:
    assert identity.normalize_card("6037990000000006") == "6037990000000006"
    assert identity.normalize_card("6037 9900 0000 0006") == "6037990000000006"
    assert identity.normalize_card("6037-9900-0000-0006") == "6037990000000006"
    assert identity.normalize_card("۶۰۳۷۹۹۰۰۰۰۰۰۰۰۰۶") == "6037990000000006"
    assert identity.normalize_card("٦٠٣٧٩٩٠٠٠٠٠٠٠٠٠٦") == "6037990000000006"


@pytest.mark.parametrize(
    "typed",
    [
        "6037990000000005",
        "603799000000000",
        "60379900000000061",
        "603799000000000x",
        "²037990000000006",
        "",
        6037990000000006,
    ],
)
def test_cards_refused(typed: object) -> None:
    with pytest.raises(IdentityError) as info:
        identity.normalize_card(typed)  # type: ignore[arg-type]
    assert info.value.response_code == "14"


@settings(max_examples=150, deadline=None)
@given(st.text("0123456789", min_size=15, max_size=15))
def test_luhn_check_digit_makes_a_valid_card(partial: str) -> None:
    card = partial + identity.luhn_check_digit(partial)
    assert identity.luhn_valid(card)
    assert identity.normalize_card(card) == card
    wrong = card[:-1] + str((int(card[-1]) + 1) % 10)
    assert not identity.luhn_valid(wrong)


def test_luhn_known_answers_and_junk() -> None:
    assert identity.luhn_valid("79927398713")
    assert not identity.luhn_valid("79927398710")
    assert not identity.luhn_valid("")
    assert not identity.luhn_valid("7992739871a")
    with pytest.raises(ValueError):
        identity.luhn_check_digit("12x")


def test_masks() -> None:
    assert identity.mask_phone("09121234567") == "0912*****67"
    assert identity.mask_card("6037990000000006") == "603799******0006"
    assert identity.mask_phone("123") == "***"
    assert identity.mask_card("1234") == "****"
