"""A chart on a page: its SVG, the table of its numbers beside it and its CSV download."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import jinja2
import pytest

from panel.app import TEMPLATES
from panel.charts import ChartData, ChartKind, Series, render
from panel.downloads import csv_response

DATA = ChartData("فروش روزانه", ChartKind.BARS, ("۱۴۰۵/۰۹/۰۱", "<b>x</b>"),
                 (Series("فروش", (1500, 250)),))


def test_the_figure_macro_puts_svg_table_and_csv_link_together() -> None:
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=True)
    macro = env.get_template("macros.html").module.figure
    html = str(macro(render(DATA), "فروش روزانه", "/dashboard/sales.csv"))
    root = ET.fromstring(html)  # the whole figure is well-formed markup
    ns = "{http://www.w3.org/2000/svg}"
    assert len([r for r in root.iter(f"{ns}rect") if r.get("class") == "bar"]) == 2
    cells = [td.text for td in root.iter("td")]
    assert cells == ["۱۴۰۵/۰۹/۰۱", "۱۵۰۰", "<b>x</b>", "۲۵۰"]  # text, not markup
    assert "&lt;b&gt;x&lt;/b&gt;" in html and "<b>x</b>" not in html
    assert root.find("a").get("href") == "/dashboard/sales.csv"


def test_csv_download() -> None:
    r = csv_response(render(DATA), "sales.csv")
    assert r.headers["content-type"] == "text/csv; charset=utf-8"
    assert r.headers["content-disposition"] == 'attachment; filename="sales.csv"'
    assert r.body.decode("utf-8") == "\ufeff,فروش\n۱۴۰۵/۰۹/۰۱,1500\n<b>x</b>,250\n"
    for bad in ("sales.txt", "../x.csv", 'a".csv', "فروش.csv"):
        with pytest.raises(ValueError):
            csv_response(render(DATA), bad)
