"""Charts as text: valid XML, one shape per number, Persian digits, table and CSV agree."""

from __future__ import annotations

import csv
import io
import xml.etree.ElementTree as ET
from datetime import UTC, datetime

import pytest

from panel.charts import (
    HOURS,
    WEEKDAYS_FA,
    ChartData,
    ChartKind,
    Series,
    histogram_bins,
    render,
    weekday_hour_grid,
)
from protocols.persian import ascii_digits

SVG = "{http://www.w3.org/2000/svg}"
DAYS = ("۱۴۰۵/۰۹/۰۱", "۱۴۰۵/۰۹/۰۲", "۱۴۰۵/۰۹/۰۳", "۱۴۰۵/۰۹/۰۴")


def parse(svg: str) -> ET.Element:
    root = ET.fromstring(svg)
    assert root.tag == f"{SVG}svg"
    return root


def shapes(root: ET.Element, tag: str, cls: str) -> list[ET.Element]:
    return [e for e in root.iter(f"{SVG}{tag}") if e.get("class") == cls]


def test_bars_per_day_two_series() -> None:
    data = ChartData("فروش و خرید", ChartKind.BARS, DAYS,
                     (Series("فروش", (1200, 0, 350, 90)), Series("خرید", (10, 20, 30, 40))))
    fig = render(data)
    root = parse(fig.svg)
    bars = shapes(root, "rect", "bar")
    assert len(bars) == 8
    # RTL: the first day's bar stands right of the last day's
    assert float(bars[0].get("x")) > float(bars[-1].get("x"))
    ticks = [e.text for e in root.iter(f"{SVG}text") if e.get("class") == "tick"]
    assert "۱۲۰۰" in ticks and not any(c.isascii() and c.isdigit() for t in ticks for c in t)
    assert fig.header == ("", "فروش", "خرید")
    assert fig.rows[0] == (DAYS[0], "۱۲۰۰", "۱۰")
    rows = list(csv.reader(io.StringIO(fig.csv)))
    assert rows[1] == [DAYS[0], "1200", "10"] and len(rows) == 5
    # labels given in ASCII digits (as jdatetime writes them): Persian in the table only
    ascii_days = tuple(ascii_digits(d) for d in DAYS)
    plain = render(ChartData(data.title, data.kind, ascii_days, data.series))
    assert plain.rows[0][0] == DAYS[0]
    assert list(csv.reader(io.StringIO(plain.csv)))[1][0] == "1405/09/01"


def test_line_chart_has_a_point_per_value() -> None:
    data = ChartData("اعضا", ChartKind.LINE, DAYS,
                     (Series("جدید", (1, 2, 3, 4)), Series("بازگشتی", (0, 5, 0, 5))))
    root = parse(render(data).svg)
    assert len(shapes(root, "polyline", "line")) == 2
    assert len(shapes(root, "circle", "point")) == 8


def test_stacked_bars_stack_to_the_total() -> None:
    data = ChartData("سطح", ChartKind.STACKED, DAYS[:2],
                     (Series("برنزی", (3, 1)), Series("نقره‌ای", (1, 1))))
    root = parse(render(data).svg)
    bars = shapes(root, "rect", "bar")
    assert len(bars) == 4
    first_day = bars[0:2]  # day-major: [d0s0, d0s1, d1s0, d1s1]
    top = min(float(b.get("y")) for b in first_day)
    total = sum(float(b.get("height")) for b in first_day)
    assert top + total == pytest.approx(260 - 40)  # the stack sits on the axis


def test_heat_map_weekday_by_hour() -> None:
    hours = tuple(str(h) for h in range(24))
    rows = tuple(Series(day, tuple((i * h) % 5 for h in range(24)))
                 for i, day in enumerate(WEEKDAYS_FA))
    fig = render(ChartData("خرید در هفته", ChartKind.HEAT_MAP, hours, rows))
    root = parse(fig.svg)
    assert len(shapes(root, "rect", "cell")) == 7 * 24
    labels = [e.text for e in root.iter(f"{SVG}text") if e.get("class") == "xlabel"]
    assert labels[:3] == ["۰", "۳", "۶"]
    rowlabels = [e.text for e in root.iter(f"{SVG}text") if e.get("class") == "rowlabel"]
    assert rowlabels == list(WEEKDAYS_FA)
    assert len(fig.rows) == 7 and len(fig.rows[0]) == 25


def test_histogram_of_visit_intervals() -> None:
    labels, counts = histogram_bins([0, 1, 1, 6, 7, 13, 40, 400], [0, 1, 7, 14, 30])
    assert counts == (1, 3, 2, 0, 2)
    assert labels == ("۰", "۱–۶", "۷–۱۳", "۱۴–۲۹", "۳۰+")
    root = parse(render(ChartData("فاصله", ChartKind.HISTOGRAM, labels,
                                  (Series("اعضا", counts),))).svg)
    assert len(shapes(root, "rect", "bar")) == 5
    with pytest.raises(ValueError):
        histogram_bins([-1], [0, 1])


def test_names_are_escaped_in_the_svg() -> None:
    fig = render(ChartData("<script>alert(1)</script>", ChartKind.BARS, ("<b>",),
                           (Series("</svg><script>", (1,)),)))
    root = parse(fig.svg)
    assert root.find(f"{SVG}title").text == "<script>alert(1)</script>"
    assert "<script>" not in fig.svg


@pytest.mark.parametrize("bad", [
    dict(x_labels=("a", "b"), series=(Series("s", (1,)),)),
    dict(x_labels=("a",), series=(Series("s", (1.5,)),)),
    dict(x_labels=("a",), series=()),
])
def test_bad_data_is_refused(bad) -> None:
    with pytest.raises(ValueError):
        ChartData("t", ChartKind.BARS, **bad)
    with pytest.raises(ValueError):
        ChartData("t", ChartKind.STACKED, ("a",), (Series("s", (-1,)),))


def test_weekday_hour_grid_counts_in_tehran_time_saturday_first() -> None:
    # 2026-11-27 is a Friday; 20:45 UTC is 00:15 Saturday in Tehran (+03:30)
    times = [datetime(2026, 11, 27, 20, 45, tzinfo=UTC), datetime(2026, 11, 27, 20, 50),
             datetime(2026, 11, 27, 10, 0, tzinfo=UTC)]
    rows = weekday_hour_grid(times)
    assert [r.name for r in rows] == list(WEEKDAYS_FA)
    assert rows[0].values[0] == 2  # Saturday, hour 0
    assert rows[6].values[13] == 1  # Friday 13:30 Tehran
    assert sum(sum(r.values) for r in rows) == 3
    fig = render(ChartData("خرید", ChartKind.HEAT_MAP, HOURS, rows))
    assert len(shapes(parse(fig.svg), "rect", "cell")) == 168
