"""protocols.persian: digits both ways, rials, Jalali dates and the Tehran zone."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocols.persian import TEHRAN, ascii_digits, format_rials, jalali, persian_digits


def test_digits_both_ways() -> None:
    assert ascii_digits("۰۱۲۳۴۵۶۷۸۹") == "0123456789"
    assert ascii_digits("٠١٢٣٤٥٦٧٨٩") == "0123456789"  # Arabic-Indic
    assert ascii_digits("کد ۰۴۸A") == "کد 048A"
    assert persian_digits("0123456789") == "۰۱۲۳۴۵۶۷۸۹"
    assert persian_digits("کد A12") == "کد A۱۲"
    assert persian_digits(42) == "۴۲"


@given(st.text())
def test_digits_round_trip(text: str) -> None:
    assert ascii_digits(persian_digits(ascii_digits(text))) == ascii_digits(text)
    assert not any(c in "0123456789" for c in persian_digits(text))


def test_rials_use_persian_digits_and_separator() -> None:
    assert format_rials(0) == "۰"
    assert format_rials(999) == "۹۹۹"
    assert format_rials(1_800_000) == "۱٬۸۰۰٬۰۰۰"
    assert format_rials(-20_000) == "-۲۰٬۰۰۰"
    for bad in (1.5, "100", True, None):
        with pytest.raises(ValueError):
            format_rials(bad)  # type: ignore[arg-type]


def test_jalali_in_tehran_time() -> None:
    assert jalali(datetime(2026, 11, 23, 19, 40, tzinfo=UTC)) == "1405/09/02 23:10"
    assert jalali(datetime(2026, 11, 23, 19, 40)) == "1405/09/02 23:10"  # naive is UTC
    plus2 = timezone(timedelta(hours=2))
    assert jalali(datetime(2024, 3, 20, 8, 0, tzinfo=plus2)) == "1403/01/01 09:30"
    assert jalali(datetime(2026, 3, 21, 12, 0, tzinfo=UTC), "%Y-%m-%d") == "1405-01-01"
    with pytest.raises(ValueError):
        jalali("2026-03-21")  # type: ignore[arg-type]


def test_tehran_zone_knows_the_summer_time_iran_kept_until_2022() -> None:
    summer_2021 = datetime(2021, 7, 1, 12, 0, tzinfo=UTC).astimezone(TEHRAN)
    summer_2023 = datetime(2023, 7, 1, 12, 0, tzinfo=UTC).astimezone(TEHRAN)
    assert summer_2021.utcoffset() == timedelta(hours=4, minutes=30)
    assert summer_2023.utcoffset() == timedelta(hours=3, minutes=30)
    # and so the clock a receipt of that day shows
    assert jalali(datetime(2021, 7, 1, 12, 0, tzinfo=UTC)) == "1400/04/10 16:30"
    assert jalali(datetime(2023, 7, 1, 12, 0, tzinfo=UTC)) == "1402/04/10 15:30"
