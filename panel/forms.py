"""Form checking: every field parsed, every error kept beside its field, in Persian.

A page binds the posted data to its fields; when `ok` is false it renders the same form
again with `raw` (what the user typed, escaped by Jinja2) and `errors`, and changes nothing.
Parsers take what a shop's keyboard types: Persian and Arabic-Indic digits included.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import date

import jdatetime

from protocols.identity import IdentityError, normalize_card, normalize_phone
from protocols.persian import ascii_digits, persian_digits


class FieldError(ValueError):
    """A value a field refuses; the message is shown to the user, in Persian."""


@dataclass(frozen=True, slots=True)
class Field:
    name: str
    label: str
    parse: Callable[[str], object]
    required: bool = True
    max_length: int = 200
    input_type: str = "text"


@dataclass(slots=True)
class BoundForm:
    fields: tuple[Field, ...]
    raw: dict[str, str]
    errors: dict[str, str] = field(default_factory=dict)
    values: dict[str, object] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.errors


def empty_form(fields: tuple[Field, ...]) -> BoundForm:
    return BoundForm(fields=fields, raw={f.name: "" for f in fields})


def bind(fields: tuple[Field, ...], data: Mapping[str, object]) -> BoundForm:
    raw: dict[str, str] = {}
    form = BoundForm(fields=fields, raw=raw)
    for f in fields:
        value = data.get(f.name, "")
        text = value if isinstance(value, str) else ""
        raw[f.name] = text
        if not isinstance(value, str):
            form.errors[f.name] = "این خانه باید متن باشد."
        elif len(text) > f.max_length:
            form.errors[f.name] = (
                f"بیش از {persian_digits(f.max_length)} نویسه نوشته شده است.")
        elif not text.strip():
            if f.required:
                form.errors[f.name] = "این خانه را پر کنید."
            else:
                form.values[f.name] = None
        else:
            try:
                form.values[f.name] = f.parse(text)
            except FieldError as exc:
                form.errors[f.name] = str(exc)
    if form.errors:
        form.values.clear()
    return form


# -- parsers ---------------------------------------------------------------------------

def text(value: str) -> str:
    if any(ord(c) < 32 and c not in "\t" for c in value):
        raise FieldError("نویسه‌های کنترلی پذیرفته نیست.")
    return value.strip()


def secret(value: str) -> str:
    """A password: kept exactly as typed (no stripping)."""
    return value


def integer(low: int, high: int) -> Callable[[str], int]:
    def parse(value: str) -> int:
        digits = ascii_digits(value.strip()).replace("٬", "").replace(",", "")
        if not (digits.isascii() and digits.lstrip("-").isdigit()):
            raise FieldError("یک عدد بنویسید.")
        n = int(digits)
        if not low <= n <= high:
            raise FieldError(
                f"عدد باید از {persian_digits(low)} تا {persian_digits(high)} باشد.")
        return n
    return parse


def phone(value: str) -> str:
    try:
        return normalize_phone(value)
    except IdentityError:
        raise FieldError("شماره همراه درست نیست (مثل ۰۹۱۲۱۲۳۴۵۶۷).") from None


def card(value: str) -> str:
    """A card's 16 digits (spaces, dashes, Persian digits allowed), Luhn-checked."""
    try:
        return normalize_card(value)
    except IdentityError:
        raise FieldError("شماره کارت ۱۶ رقم است و باید درست باشد.") from None


def jalali_date(value: str) -> date:
    """`1405/09/10` (Persian digits or ASCII, `/` or `-`) as the Gregorian date it is."""
    parts = ascii_digits(value.strip()).replace("-", "/").split("/")
    if len(parts) != 3 or not all(p.isascii() and p.isdigit() for p in parts):
        raise FieldError("تاریخ را به شکل ۱۴۰۵/۰۹/۱۰ بنویسید.")
    y, m, d = (int(p) for p in parts)
    try:
        return jdatetime.date(y, m, d).togregorian()
    except ValueError:
        raise FieldError("چنین روزی در تقویم نیست.") from None
