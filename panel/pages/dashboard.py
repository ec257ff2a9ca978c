"""Page 1, the dashboard: one club's figures for a period against the period before, and
its charts, each with its table and CSV (`/dashboard/NAME.csv`: that chart alone, from the
same reads as on the page)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from panel import dashboard_data, periods
from panel.downloads import csv_response
from panel.forms import FieldError
from panel.pages import common
from panel.roles import Permission

if TYPE_CHECKING:
    from panel.app import Panel

common.nav(10, "/dashboard", "dashboard", Permission.VIEW_DASHBOARD)
SIMPLE_PERIODS = ("today", "week", "month", "last30")


def routes(panel: Panel) -> list[BaseRoute]:
    def chosen(request: Request) -> tuple[periods.Period | None, str]:
        today = periods.tehran_day(panel.wall_clock())
        try:
            return periods.from_query(request.query_params, today), ""
        except FieldError as exc:
            return None, str(exc)

    def page(request: Request) -> Response:
        view = common.viewer(panel, request, Permission.VIEW_DASHBOARD)
        period, error = chosen(request)
        lang = panel.language(request)
        board = None
        if period is not None:
            with common.database(panel).connection() as conn:
                board = dashboard_data.build(conn, view.club_id, period, lang)
        params = request.query_params
        return panel.render(
            request, "dashboard.html", 400 if error else 200, view=view, board=board,
            error=error, kind=params.get("period", "today"), simple=SIMPLE_PERIODS,
            raw_from=params.get("from", ""), raw_to=params.get("to", ""),
            query=request.url.query)

    def download(request: Request) -> Response:
        view = common.viewer(panel, request, Permission.VIEW_DASHBOARD)
        period, _ = chosen(request)
        if period is None:
            common.not_found()
        with common.database(panel).connection() as conn:
            chart = dashboard_data.chart(conn, view.club_id, period,
                                         request.path_params["name"], panel.language(request))
        if chart is None:
            common.not_found()
        return csv_response(chart.figure, f"{chart.name}-{period.first}-{period.last}.csv")

    return [Route("/dashboard", page), Route("/dashboard/{name:str}.csv", download)]
