"""backend.report_render: the report's figures as text (Persian, English), CSV and JSON."""

from __future__ import annotations

import csv
import json
from dataclasses import replace
from datetime import UTC, datetime

import pytest

from backend.report import Figures
from backend.report_render import LABELS, render
from protocols.persian import TEHRAN

FIGURES = Figures(
    since=datetime(2026, 11, 22, 20, 30, tzinfo=UTC),  # 1405/09/02 00:00 Tehran
    until=datetime(2026, 11, 23, 20, 30, tzinfo=UTC),  # 1405/09/03 00:00 Tehran
    purchases=12,
    sales=34_500_000,
    declined=1,
    reversed=2,
    new_members=3,
    returning_members=4,
    credit_issued=1_035_000,
    credit_redeemed=250_000,
    credit_expired=0,
    credit_reversed=-60_000,
    credit_adjusted=5_000,
    sms_sent=7,
    sms_pending=1,
    sms_failed=0,
)


def test_persian_text_labels_jalali_days_and_persian_digits() -> None:
    text = render(FIGURES)
    lines = text.splitlines()
    assert lines[:2] == ["گزارش باشگاه مشتریان", "از ۱۴۰۵/۰۹/۰۲ تا پایان ۱۴۰۵/۰۹/۰۲ (به وقت تهران)"]
    assert lines[3].split() == ["فروش", "(ریال)", "۳۴٬۵۰۰٬۰۰۰"]
    assert lines[2].split() == ["خرید", "۱۲"]
    assert "-۶۰٬۰۰۰" in text  # reversals took back more than they gave
    assert len(lines) == 2 + 14
    assert all(label in text for label in LABELS["fa"].values() if label not in ("از", "تا"))


def test_text_columns_line_up_by_printer_cells() -> None:
    """A zero-width non-joiner in a label takes no column: the values end in one column."""
    from backend.texts import columns

    rows = render(FIGURES).splitlines()[2:]
    assert len({columns(row) for row in rows}) == 1


def test_english_text_and_bounds_that_are_not_whole_days() -> None:
    f = replace(FIGURES, since=datetime(2026, 11, 23, 9, 30, tzinfo=UTC), until=None)
    text = render(f, lang="en")
    assert text.splitlines()[1] == "from 2026-11-23 13:00 to now (Tehran time)"
    assert "  sales (rials charged)" in text and "34,500,000" in text and "-60,000" in text
    fa = render(f).splitlines()[1]
    assert fa == "از ۱۴۰۵/۰۹/۰۲ ۱۳:۰۰ تا اکنون (به وقت تهران)"


def test_jalali_bounds_use_the_tehran_zone_with_its_old_summer_time() -> None:
    """Before 2022 Tehran kept summer time (+04:30): midnight was 19:30 UTC, not 20:30."""
    start = datetime(2020, 6, 1, 0, 0, tzinfo=TEHRAN)  # 1399/03/12
    f = replace(FIGURES, since=start.astimezone(UTC), until=None)
    assert render(f).splitlines()[1].startswith("از ۱۳۹۹/۰۳/۱۲ تا")
    assert json.loads(render(f, fmt="json"))["from"] == "2020-06-01T00:00:00+04:30"


def test_csv_has_plain_numbers_and_labels_in_the_language() -> None:
    rows = list(csv.reader(render(FIGURES, fmt="csv").splitlines()))
    assert rows[0] == ["figure", "label", "value"]
    assert rows[1] == ["from", "از", "1405/09/02 00:00"]
    assert rows[2] == ["to", "تا", "1405/09/03 00:00"]
    assert ["sales", "فروش (ریال)", "34500000"] in rows
    assert ["credit_reversed", LABELS["fa"]["credit_reversed"], "-60000"] in rows
    en = list(csv.reader(render(FIGURES, lang="en", fmt="csv").splitlines()))
    assert en[1] == ["from", "from", "2026-11-23T00:00:00+03:30"]
    assert [name for name, *_ in en[3:]] == [name for name, _ in FIGURES.items()]


def test_json_for_scripts() -> None:
    doc = json.loads(render(FIGURES, lang="en", fmt="json"))
    assert doc["from"] == "2026-11-23T00:00:00+03:30" and doc["to_jalali"] == "1405/09/03 00:00"
    assert doc["figures"] == dict(FIGURES.items())
    assert doc["labels"]["credit_reversed"] == "credit moved by reversals"
    unbounded = json.loads(render(replace(FIGURES, since=None, until=None), fmt="json"))
    assert unbounded["from"] is None and unbounded["to_jalali"] is None


@pytest.mark.parametrize("kwargs", [{"lang": "de"}, {"fmt": "xlsx"}])
def test_unknown_language_or_format(kwargs: dict[str, str]) -> None:
    with pytest.raises(ValueError, match="is not one of"):
        render(FIGURES, **kwargs)
