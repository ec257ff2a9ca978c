"""Customer identifiers: Iranian mobile numbers and loyalty card numbers.

Phone numbers go through `phonenumbers` (Google's libphonenumber metadata) rather than
hand-written prefix rules: it reads every form a customer types, Persian and
Arabic-Indic digits included, and knows which ranges are mobile.
"""

from __future__ import annotations

import re

import phonenumbers
from phonenumbers import PhoneNumberFormat, PhoneNumberType

from protocols.persian import ascii_digits
from protocols.response_codes import CodedError, ResponseCode

CARD_LENGTH = 16
_MAX_TYPED = 32
# What a customer may type around the digits. phonenumbers itself would also read
# letters (as a keypad: "0912123ABCD" -> 09121232223) and skip leading/trailing junk.
_TYPED_PHONE = re.compile(r"\+?[\d\s().-]+")


class IdentityError(CodedError):
    """An identifier that cannot belong to a member; maps to response code 14."""

    response_code = ResponseCode.UNKNOWN_MEMBER


def normalize_phone(typed: str) -> str:
    """An Iranian mobile number in any typed form, as `09XXXXXXXXX`."""
    if not isinstance(typed, str) or not typed.strip() or len(typed) > _MAX_TYPED:
        raise IdentityError("phone number is empty or too long")
    text = typed.strip()
    if not _TYPED_PHONE.fullmatch(text):
        raise IdentityError(
            "a phone number holds only digits, spaces, '-', '.', '()' and a leading '+'"
        )
    try:
        number = phonenumbers.parse(text, "IR")
    except phonenumbers.NumberParseException as exc:
        raise IdentityError(f"not a phone number: {exc}") from None
    # parse() alone accepts short and invalid numbers: check validity, country and type.
    if number.country_code != 98 or not phonenumbers.is_valid_number(number):
        raise IdentityError("not a valid Iranian phone number")
    if phonenumbers.number_type(number) != PhoneNumberType.MOBILE:
        raise IdentityError("not a mobile number")
    national = phonenumbers.format_number(number, PhoneNumberFormat.NATIONAL)
    digits = "".join(c for c in national if c.isdigit())
    if len(digits) != 11 or not digits.startswith("09"):
        raise IdentityError("not a mobile number")
    return digits


def mask_phone(phone: str) -> str:
    """A phone for logs: first four and last two digits only."""
    return phone[:4] + "*" * max(len(phone) - 6, 0) + phone[-2:] if len(phone) > 6 else "***"


def luhn_valid(digits: str) -> bool:
    if not digits or not digits.isascii() or not digits.isdigit():
        return False
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


def luhn_check_digit(partial: str) -> str:
    """The digit that makes `partial + digit` Luhn-valid."""
    if partial and not (partial.isascii() and partial.isdigit()):
        raise ValueError("partial card number must be ASCII digits")
    for d in "0123456789":
        if luhn_valid(partial + d):
            return d
    raise AssertionError("unreachable")


def normalize_card(typed: str) -> str:
    """A loyalty card number: 16 digits (Persian digits, spaces and dashes accepted), Luhn-valid."""
    if not isinstance(typed, str):
        raise IdentityError("card number must be text")
    digits = ascii_digits(typed).replace(" ", "").replace("-", "")
    if len(digits) != CARD_LENGTH or not digits.isascii() or not digits.isdigit():
        raise IdentityError(f"card number must be {CARD_LENGTH} digits")
    if not luhn_valid(digits):
        raise IdentityError("card number fails the Luhn check")
    return digits


def mask_card(card: str) -> str:
    """A card number for logs and receipts, as banks print PANs: `603799******1234`."""
    return card[:6] + "*" * max(len(card) - 10, 0) + card[-4:] if len(card) > 10 else "****"
