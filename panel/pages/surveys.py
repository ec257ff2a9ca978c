"""The owner's surveys page: the average rating per week, branch and terminal, today's low
ratings at the top (shown the same day), the comments, and a CSV of every answer.

Owner only (MANAGE_OFFERS, as the other marketing pages): comments may name staff. Only
the viewer's club's answers are read.
"""

from __future__ import annotations

import csv
import io
from typing import TYPE_CHECKING

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from backend import store_surveys, surveys
from panel.pages import common
from panel.pages.common import database, viewer
from panel.periods import jalali_day
from panel.roles import Permission
from protocols.persian import TEHRAN

if TYPE_CHECKING:
    from panel.app import Panel

common.nav(37, "/surveys", "surveys", Permission.MANAGE_OFFERS)


def routes(panel: Panel) -> list[BaseRoute]:
    def rows_of(request: Request) -> tuple[common.Viewer, list[store_surveys.AnswerRow]]:
        view = viewer(panel, request, Permission.MANAGE_OFFERS)
        with database(panel).connection() as conn:
            return view, store_surveys.answers(conn, view.club_id)

    def page(request: Request) -> Response:
        view, rows = rows_of(request)
        today = panel.wall_clock().astimezone(TEHRAN).date()
        answers = [r.answer for r in rows]
        return panel.render(
            request, "surveys.html", view=view, rows=rows,
            low_today=[r for r in rows if r.answer.on == today and r.answer.low],
            weeks={jalali_day(k): v for k, v in surveys.averages(  # type: ignore[arg-type]
                answers, lambda a: surveys.week_of(a.on)).items()},
            branches=surveys.averages(answers, lambda a: a.branch),
            terminals=surveys.averages(answers, lambda a: a.terminal))

    def csv_file(request: Request) -> Response:
        _, rows = rows_of(request)
        out = io.StringIO()
        w = csv.writer(out)
        w.writerow(["answered_at", "branch", "terminal", "rating", "comment"])
        for r in rows:
            # a comment starting like a formula is quoted for spreadsheets
            c = r.answer.comment
            w.writerow([r.answered_at.astimezone(TEHRAN).isoformat(), r.branch_name,
                        r.answer.terminal, r.answer.rating,
                        "'" + c if c[:1] in ("=", "+", "-", "@") else c])
        return Response(out.getvalue(), media_type="text/csv; charset=utf-8", headers={
            "Content-Disposition": 'attachment; filename="surveys.csv"',
            "Cache-Control": "no-store"})

    return [Route("/surveys", page, methods=["GET"]),
            Route("/surveys.csv", csv_file, methods=["GET"])]
