"""Persian digits both ways, rials as Iranians write them, Jalali dates, the Tehran zone.

Written once here so that every layer shows a customer the same figures and dates. The zone
is `Asia/Tehran` from the tz database, not a fixed +03:30: Iran kept summer time (+04:30)
until 2022, and a receipt or report of an older day must show that day's clock.
"""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import jdatetime

from protocols.numbers import is_int

TEHRAN = ZoneInfo("Asia/Tehran")
PERSIAN_DIGITS = "۰۱۲۳۴۵۶۷۸۹"
ARABIC_DIGITS = "٠١٢٣٤٥٦٧٨٩"  # Arabic-Indic: what some phones' keyboards type
THOUSANDS_SEPARATOR = "٬"  # U+066C ARABIC THOUSANDS SEPARATOR, the Persian one
#: The Jalali date and time as receipts, SMS and the operator's screens print it.
DATE_TIME = "%Y/%m/%d %H:%M"

_TO_ASCII = str.maketrans(PERSIAN_DIGITS + ARABIC_DIGITS, "0123456789" * 2)
_TO_PERSIAN = str.maketrans("0123456789", PERSIAN_DIGITS)
_TO_PERSIAN_RIALS = str.maketrans({",": THOUSANDS_SEPARATOR, **{
    d: p for d, p in zip("0123456789", PERSIAN_DIGITS, strict=True)}})  # fmt: skip


def ascii_digits(text: str) -> str:
    """Persian and Arabic-Indic digits as ASCII: what a customer types or reads off an SMS."""
    return text.translate(_TO_ASCII)


def persian_digits(text: object) -> str:
    """`text` with ASCII digits as Persian ones; letters and other characters unchanged."""
    return str(text).translate(_TO_PERSIAN)


def format_rials(n: int) -> str:
    """An amount of rials with Persian digits and the Persian thousands separator."""
    if type(n) is not int and not is_int(n):  # a receipt has several: the plain int first
        raise ValueError(f"amount must be an integer number of rials, not {type(n).__name__}")
    return f"{int(n):,}".translate(_TO_PERSIAN_RIALS)


def jalali(when: datetime, fmt: str = DATE_TIME) -> str:
    """`when` in Tehran time as a Jalali date (ASCII digits): `1405/09/02 23:10`.

    A naive datetime is taken as UTC: every clock in the system keeps UTC.
    """
    if not isinstance(when, datetime):
        raise ValueError("when must be a datetime")
    aware = when if when.tzinfo is not None else when.replace(tzinfo=UTC)
    local = aware.astimezone(TEHRAN)
    return jdatetime.datetime.fromgregorian(datetime=local.replace(tzinfo=None)).strftime(fmt)
