"""Charts drawn on the server as SVG text: data in, text out, nothing else.

A page is complete without JavaScript and a test reads a chart as XML. Right to left: the
first day stands at the right edge, as a Persian reader's eye starts there; the labels are
Persian digits. Each chart comes with the table of its numbers and a CSV of them, all
three from one `ChartData` (`render()`), so the picture never says what the table does not.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from itertools import pairwise
from xml.sax.saxutils import escape

from protocols.persian import TEHRAN, persian_digits

WIDTH = 640
HEIGHT = 260
PAD_TOP = 16
PAD_BOTTOM = 40
PAD_SIDE = 56
#: One colour per series, chosen to stay apart for the common colour blindnesses.
PALETTE = ("#1f6f8b", "#e08a1e", "#5b8c3a", "#9b4f96", "#c0392b", "#7f8c8d")
WEEKDAYS_FA = ("شنبه", "یکشنبه", "دوشنبه", "سه‌شنبه", "چهارشنبه", "پنجشنبه", "جمعه")


class ChartKind(StrEnum):
    LINE = "line"
    BARS = "bars"
    STACKED = "stacked"
    HEAT_MAP = "heat_map"
    HISTOGRAM = "histogram"


@dataclass(frozen=True, slots=True)
class Series:
    name: str
    values: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class ChartData:
    """Labels along x (days, weekdays, bins) and one or more series of whole numbers.

    For a heat map the series are the rows (e.g. weekdays) and `x_labels` the columns.
    """

    title: str
    kind: ChartKind
    x_labels: tuple[str, ...]
    series: tuple[Series, ...]
    unit: str = ""

    def __post_init__(self) -> None:
        if not self.series:
            raise ValueError("a chart needs at least one series")
        for s in self.series:
            if len(s.values) != len(self.x_labels):
                raise ValueError(
                    f"series {s.name!r} has {len(s.values)} values for {len(self.x_labels)} labels")
            if any(not isinstance(v, int) or isinstance(v, bool) for v in s.values):
                raise ValueError(f"series {s.name!r} holds a value that is not a whole number")
        if self.kind in (ChartKind.STACKED, ChartKind.HEAT_MAP, ChartKind.HISTOGRAM) and any(
                v < 0 for s in self.series for v in s.values):
            raise ValueError(f"a {self.kind.value} chart counts things: no negative values")


@dataclass(frozen=True, slots=True)
class Figure:
    svg: str
    header: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]
    csv: str


def render(data: ChartData) -> Figure:
    """The chart, its table (Persian digits) and its CSV (ASCII digits, for spreadsheets)."""
    drawer = {
        ChartKind.LINE: line_chart, ChartKind.BARS: bar_chart, ChartKind.STACKED: stacked_bars,
        ChartKind.HEAT_MAP: heat_map, ChartKind.HISTOGRAM: histogram,
    }[data.kind]
    header: tuple[str, ...] = ("", *(s.name for s in data.series))
    plain_header = header
    if data.kind is ChartKind.HEAT_MAP:
        plain_header = ("", *data.x_labels)
        header = ("", *(persian_digits(x) for x in data.x_labels))
        rows = tuple((s.name, *(persian_digits(v) for v in s.values)) for s in data.series)
        plain = [[s.name, *s.values] for s in data.series]
    else:
        rows = tuple((persian_digits(label), *(persian_digits(s.values[i]) for s in data.series))
                     for i, label in enumerate(data.x_labels))
        plain = [[label, *(s.values[i] for s in data.series)]
                 for i, label in enumerate(data.x_labels)]
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(plain_header)
    writer.writerows(plain)
    return Figure(svg=drawer(data), header=header, rows=rows, csv=out.getvalue())


def weekday_hour_grid(times: Iterable[datetime]) -> tuple[Series, ...]:
    """Counts per Tehran weekday (Saturday first) and hour, as the heat map's seven rows."""
    grid = [[0] * 24 for _ in range(7)]
    for when in times:
        aware = when if when.tzinfo is not None else when.replace(tzinfo=UTC)
        local = aware.astimezone(TEHRAN)
        grid[(local.weekday() + 2) % 7][local.hour] += 1
    return tuple(Series(name, tuple(row)) for name, row in zip(WEEKDAYS_FA, grid, strict=True))


HOURS = tuple(str(h) for h in range(24))


def histogram_bins(values: Sequence[int], edges: Sequence[int]) -> tuple[tuple[str, ...],
                                                                         tuple[int, ...]]:
    """Counts of `values` in [edges[i], edges[i+1]); the last bin is open ("n+")."""
    if list(edges) != sorted(set(edges)) or not edges:
        raise ValueError("bin edges must be increasing")
    counts = [0] * len(edges)
    for v in values:
        if v < edges[0]:
            raise ValueError(f"value {v} is below the first bin")
        i = max(i for i, e in enumerate(edges) if v >= e)
        counts[i] += 1
    labels = [f"{persian_digits(a)}–{persian_digits(b - 1)}" if b - 1 > a else persian_digits(a)
              for a, b in pairwise(edges)]
    labels.append(f"{persian_digits(edges[-1])}+")
    return tuple(labels), tuple(counts)


# -- drawing ---------------------------------------------------------------------------

def _open(data: ChartData, height: int = HEIGHT) -> list[str]:
    return [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {height}" '
        f'width="100%" role="img" direction="rtl" font-family="Vazirmatn, sans-serif" '
        f'font-size="11" class="chart chart-{data.kind.value}">',
        f"<title>{escape(data.title)}</title>",
    ]


def _slot_x(i: int, n: int) -> tuple[float, float]:
    """Left edge and width of the i-th slot of n, counted from the right (RTL)."""
    width = (WIDTH - 2 * PAD_SIDE) / n
    return WIDTH - PAD_SIDE - (i + 1) * width, width


def _scale(top: int) -> float:
    return (HEIGHT - PAD_TOP - PAD_BOTTOM) / top if top > 0 else 0.0


def _axes(parts: list[str], data: ChartData, low: int, high: int) -> None:
    """The value axis on the right (where RTL text starts) and the x labels below."""
    base = HEIGHT - PAD_BOTTOM
    parts.append(f'<line class="axis" x1="{PAD_SIDE}" y1="{base}" x2="{WIDTH - PAD_SIDE}" '
                 f'y2="{base}" stroke="#555"/>')
    span = high - low
    for k in range(5):
        value = low + span * k // 4
        y = base - (value - low) * _scale(span) if span else base
        parts.append(f'<text class="tick" x="{WIDTH - PAD_SIDE + 6}" y="{y:.1f}" '
                     f'text-anchor="start" dominant-baseline="middle">'
                     f'{escape(persian_digits(value))}</text>')
    n = len(data.x_labels)
    step = max(1, n // 12)  # at most about a dozen labels, so they never overlap
    for i, label in enumerate(data.x_labels):
        if i % step:
            continue
        x, w = _slot_x(i, n)
        parts.append(f'<text class="xlabel" x="{x + w / 2:.1f}" y="{base + 16}" '
                     f'text-anchor="middle">{escape(persian_digits(label))}</text>')


def _tip(label: str, series: str, value: int) -> str:
    """A data point's tooltip: where, which series, how much (escaped)."""
    return f"{escape(label)} · {escape(series)}: {escape(persian_digits(value))}"


def _close(parts: list[str], data: ChartData, low: int, high: int) -> str:
    """Axes and legend over the marks, then the finished SVG text."""
    _axes(parts, data, low, high)
    _legend(parts, data)
    parts.append("</svg>")
    return "".join(parts)


def _legend(parts: list[str], data: ChartData) -> None:
    for k, s in enumerate(data.series):
        x = WIDTH - PAD_SIDE - k * 120
        colour = PALETTE[k % len(PALETTE)]
        parts.append(f'<rect class="legend" x="{x - 10}" y="{HEIGHT - 14}" width="10" '
                     f'height="10" fill="{colour}"/>')
        parts.append(f'<text x="{x - 14}" y="{HEIGHT - 5}" text-anchor="end">'
                     f'{escape(s.name)}</text>')


def _bounds(data: ChartData) -> tuple[int, int]:
    values = [v for s in data.series for v in s.values]
    return min(0, *values), max(1, *values)


def bar_chart(data: ChartData) -> str:
    """Grouped bars: one bar per series per label; one `rect.bar` per value."""
    parts = _open(data)
    low, high = _bounds(data)
    scale = _scale(high - low)
    zero = HEIGHT - PAD_BOTTOM - (0 - low) * scale
    n, m = len(data.x_labels), len(data.series)
    for i, label in enumerate(data.x_labels):
        x, w = _slot_x(i, n)
        bar_w = w * 0.8 / m
        for k, s in enumerate(data.series):
            v = s.values[i]
            top = zero - max(v, 0) * scale
            h = abs(v) * scale
            bx = x + w * 0.9 - (k + 1) * bar_w  # first series rightmost within the slot
            parts.append(
                f'<rect class="bar" x="{bx:.1f}" y="{top:.1f}" width="{bar_w:.1f}" '
                f'height="{h:.1f}" fill="{PALETTE[k % len(PALETTE)]}">'
                f"<title>{_tip(label, s.name, v)}</title></rect>")
    return _close(parts, data, low, high)


def histogram(data: ChartData) -> str:
    """A histogram is bars of counts per bin, bins touching; labels come from `histogram_bins`."""
    if len(data.series) != 1:
        raise ValueError("a histogram has one series of counts")
    parts = _open(data)
    _, high = _bounds(data)
    scale = _scale(high)
    base = HEIGHT - PAD_BOTTOM
    n = len(data.x_labels)
    for i, label in enumerate(data.x_labels):
        x, w = _slot_x(i, n)
        v = data.series[0].values[i]
        parts.append(f'<rect class="bar" x="{x:.1f}" y="{base - v * scale:.1f}" '
                     f'width="{w:.1f}" height="{v * scale:.1f}" fill="{PALETTE[0]}" '
                     f'stroke="#fff"><title>{escape(label)}: {escape(persian_digits(v))}'
                     f"</title></rect>")
    _axes(parts, data, 0, high)
    parts.append("</svg>")
    return "".join(parts)


def stacked_bars(data: ChartData) -> str:
    """One column per label, the series stacked bottom-up in order."""
    parts = _open(data)
    totals = [sum(s.values[i] for s in data.series) for i in range(len(data.x_labels))]
    high = max(1, *totals)
    scale = _scale(high)
    base = HEIGHT - PAD_BOTTOM
    n = len(data.x_labels)
    for i, label in enumerate(data.x_labels):
        x, w = _slot_x(i, n)
        y = float(base)
        for k, s in enumerate(data.series):
            h = s.values[i] * scale
            y -= h
            parts.append(
                f'<rect class="bar" x="{x + w * 0.1:.1f}" y="{y:.1f}" width="{w * 0.8:.1f}" '
                f'height="{h:.1f}" fill="{PALETTE[k % len(PALETTE)]}">'
                f"<title>{_tip(label, s.name, s.values[i])}</title></rect>")
    return _close(parts, data, 0, high)


def line_chart(data: ChartData) -> str:
    """One polyline per series and a dot per value (`circle.point`), first day at the right."""
    parts = _open(data)
    low, high = _bounds(data)
    scale = _scale(high - low)
    base = HEIGHT - PAD_BOTTOM
    n = len(data.x_labels)
    for k, s in enumerate(data.series):
        colour = PALETTE[k % len(PALETTE)]
        points = []
        for i, v in enumerate(s.values):
            x, w = _slot_x(i, n)
            points.append((x + w / 2, base - (v - low) * scale))
        path = " ".join(f"{x:.1f},{y:.1f}" for x, y in points)
        parts.append(f'<polyline class="line" fill="none" stroke="{colour}" stroke-width="2" '
                     f'points="{path}"/>')
        for (x, y), v, label in zip(points, s.values, data.x_labels, strict=True):
            parts.append(f'<circle class="point" cx="{x:.1f}" cy="{y:.1f}" r="3" '
                         f'fill="{colour}"><title>{_tip(label, s.name, v)}</title></circle>')
    return _close(parts, data, low, high)


def heat_map(data: ChartData) -> str:
    """Rows (weekdays, Saturday on top) by columns (hours, 0 at the right); darker = more."""
    rows, cols = len(data.series), len(data.x_labels)
    label_w, cell_h = 70, 22
    height = PAD_TOP + rows * cell_h + 30
    cell_w = (WIDTH - label_w - 10) / cols
    top = max(1, *(v for s in data.series for v in s.values))
    parts = _open(data, height)
    for r, s in enumerate(data.series):
        y = PAD_TOP + r * cell_h
        parts.append(f'<text class="rowlabel" x="{WIDTH - 4}" y="{y + cell_h / 2:.1f}" '
                     f'text-anchor="start" dominant-baseline="middle">{escape(s.name)}</text>')
        for c, v in enumerate(s.values):
            x = WIDTH - label_w - (c + 1) * cell_w
            shade = v / top
            parts.append(
                f'<rect class="cell" x="{x:.1f}" y="{y}" width="{cell_w - 1:.1f}" '
                f'height="{cell_h - 1}" fill="#1f6f8b" fill-opacity="{0.06 + 0.94 * shade:.3f}">'
                f"<title>{escape(s.name)} {escape(persian_digits(data.x_labels[c]))}: "
                f"{escape(persian_digits(v))}</title></rect>")
    for c, label in enumerate(data.x_labels):
        if c % 3:
            continue
        x = WIDTH - label_w - (c + 0.5) * cell_w
        parts.append(f'<text class="xlabel" x="{x:.1f}" y="{height - 10}" text-anchor="middle">'
                     f"{escape(persian_digits(label))}</text>")
    parts.append("</svg>")
    return "".join(parts)

