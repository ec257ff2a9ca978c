"""Prize draws: the club's draws, the form that defines one (with the commitment the owner
publishes), and each draw's page: its commitment, entries and their CSV, "close" after
the period, "run" with the revealed secret, the winners.

Every change goes through backend.draw_job, the functions `loyalty-backend draw` uses,
and is audited in its transaction. A secret typed into the add form only makes the
commitment (it is not stored); the one typed into the run form is checked against the
commitment and kept with the result, as the CLI does. Owner only, as the other marketing
pages (gift cards, campaigns): staff do not see it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from backend import draw_job, draws, store, store_draws
from backend.draw_job import Definition, DefinitionError
from backend.draws import DrawError
from backend.segments import SEGMENTS
from panel import forms
from panel.pages import common
from panel.pages.common import Viewer, database, not_found, post_form, redirect, viewer
from panel.periods import jalali_day
from panel.roles import Permission
from panel.texts import TEXTS
from protocols.identity import mask_phone

if TYPE_CHECKING:
    from panel.app import Panel

common.nav(37, "/draws", "draws", Permission.MANAGE_OFFERS)

RULES = ("purchase", "rials")


def _choice(options: tuple[str, ...]) -> Callable[[str], str]:
    def parse(value: str) -> str:
        if value not in options:
            raise forms.FieldError("یکی از گزینه‌ها را برگزینید.")
        return value
    return parse


DRAW_FORM = (
    forms.Field("name", "draw_name", forms.text, max_length=draw_job.NAME_MAX),
    forms.Field("starts", "draw_starts", forms.jalali_date, max_length=20),
    forms.Field("ends", "draw_ends", forms.jalali_date, max_length=20),
    forms.Field("segment", "draw_segment", _choice(SEGMENTS), required=False, max_length=20),
    forms.Field("rule", "draw_rule", _choice(RULES), max_length=10),
    forms.Field("tickets", "draw_tickets_n", forms.integer(1, draw_job.PER_RIALS_MAX),
                max_length=20),
    forms.Field("prizes", "draw_prizes", forms.integer(1, draw_job.PRIZES_MAX), max_length=6),
    forms.Field("commitment", "draw_commitment", forms.text, required=False, max_length=80),
    forms.Field("secret", "draw_secret", forms.secret, required=False, max_length=200,
                input_type="password"),
)
RUN_FORM = (forms.Field("secret", "draw_secret", forms.secret, max_length=200,
                        input_type="password"),)

#: DefinitionError.field -> (the form's field, what it says)
_ERRORS = {
    "name": ("name", "این نام خالی است یا قرعه‌کشی دیگری با همین نام هست."),
    "ends": ("ends", "روز پایان باید امروز یا پس از آن و پس از روز شروع باشد."),
    "segment": ("segment", "این دسته نیست."),
    "tickets": ("tickets", "تعداد بلیت هر خرید از ۱ تا ۱۰۰۰ است."),
    "prizes": ("prizes", "تعداد جایزه از ۱ تا ۱۰۰۰ است."),
    "commitment": ("commitment", "تعهد ۶۴ نویسهٔ ۰ تا ۹ و a تا f است."),
}


def routes(panel: Panel) -> list[BaseRoute]:
    def page(request: Request, view: Viewer, form: forms.BoundForm | None = None,
             status_code: int = 200) -> Response:
        with database(panel).connection() as conn:
            rows = store_draws.list_draws(conn, view.club_id)
        return panel.render(
            request, "draws.html", status_code, view=view, rows=rows, jday=jalali_day,
            form=form or forms.empty_form(DRAW_FORM),
            segments_options=[(s, TEXTS[panel.language(request)][f"seg_{s}"]) for s in SEGMENTS],
            notice=request.query_params.get("done", ""))

    def list_page(request: Request) -> Response:
        return page(request, viewer(panel, request, Permission.MANAGE_OFFERS))

    def add(request: Request, data: dict[str, str]) -> Response:
        view = viewer(panel, request, Permission.MANAGE_OFFERS)
        form = forms.bind(DRAW_FORM, data)
        if not form.ok:
            return page(request, view, form, 400)
        v = form.values
        commitment, secret = v["commitment"], v["secret"]
        if (commitment is None) == (secret is None):
            form.errors["commitment"] = "تعهد یا رمز را بنویسید، یکی از این دو."
            return page(request, view, form, 400)
        now = panel.wall_clock()
        try:
            if secret is not None:
                commitment = draws.commitment(str(secret))
            per = int(v["tickets"])  # type: ignore[call-overload]
            d = Definition(
                name=str(v["name"]), starts_on=v["starts"], ends_on=v["ends"],  # type: ignore[arg-type]
                segment=v["segment"], per_purchase=per if v["rule"] == "purchase" else None,  # type: ignore[arg-type]
                per_rials=per if v["rule"] == "rials" else None, prizes=int(v["prizes"]),  # type: ignore[call-overload]
                commitment=str(commitment))
            with database(panel).connection() as conn, store.transaction(conn):
                draw = draw_job.add(conn, view.club_id, d, now)
                common.audit(conn, view, "draw.add", f"draw:{draw.id}", None, {
                    "name": draw.name, "starts_on": draw.starts_on.isoformat(),
                    "ends_on": draw.ends_on.isoformat(), "segment": draw.segment,
                    "per_purchase": draw.per_purchase, "per_rials": draw.per_rials,
                    "prizes": draw.prizes, "commitment": draw.commitment}, now)
        except DefinitionError as exc:
            name, message = _ERRORS[exc.field]
            if exc.field == "tickets" and v["rule"] == "rials":
                message = "ریال هر بلیت از ۱ تا ۱۰۰۰ میلیارد است."
            form.errors[name] = message
            return page(request, view, form, 400)
        except DrawError:  # the secret is too short to be one
            form.errors["secret"] = "رمز دست‌کم ۱۶ نویسه است."
            return page(request, view, form, 400)
        return redirect(f"/draws/{draw.id}?done=added")

    def _draw(conn: store.Connection, view: Viewer, draw_id: int) -> store_draws.Draw:
        draw = store_draws.get(conn, view.club_id, draw_id)
        if draw is None:
            not_found()
        return draw

    def show(request: Request, view: Viewer | None = None, run_form: forms.BoundForm | None
             = None, status_code: int = 200) -> Response:
        view = view or viewer(panel, request, Permission.MANAGE_OFFERS)
        with database(panel).connection() as conn:
            draw = _draw(conn, view, request.path_params["draw_id"])
            frozen = store_draws.entries(conn, draw.id)
            won = store_draws.winners(conn, draw.id)
        return panel.render(
            request, "draw.html", status_code, view=view, draw=draw, entries=frozen,
            tickets=sum(e.tickets for e in frozen), winners=won, mask=mask_phone,
            jday=jalali_day, can_close=panel.wall_clock() >= draw_job.period_end(draw.ends_on),
            run_form=run_form or forms.empty_form(RUN_FORM),
            notice=request.query_params.get("done", ""))

    def close(request: Request, data: dict[str, str]) -> Response:
        view = viewer(panel, request, Permission.MANAGE_OFFERS)
        now = panel.wall_clock()
        with database(panel).connection() as conn:
            draw = _draw(conn, view, request.path_params["draw_id"])
            try:
                with store.transaction(conn):
                    frozen = draw_job.close(conn, view.club_id, draw.name, now)
                    if draw.state == "open":
                        common.audit(conn, view, "draw.close", f"draw:{draw.id}", None, {
                            "entries": len(frozen),
                            "tickets": sum(e.tickets for e in frozen)}, now)
            except DrawError:  # the period is not over: the button is not shown then
                return show(request, view, status_code=409)
        return redirect(f"/draws/{draw.id}?done=closed")

    def run(request: Request, data: dict[str, str]) -> Response:
        view = viewer(panel, request, Permission.MANAGE_OFFERS)
        form = forms.bind(RUN_FORM, data)
        if not form.ok:
            return show(request, view, form, 400)
        now = panel.wall_clock()
        with database(panel).connection() as conn:
            draw = _draw(conn, view, request.path_params["draw_id"])
            try:
                with store.transaction(conn):
                    won = draw_job.run(conn, view.club_id, draw.name, str(form.values["secret"]),
                                       now, view.club_name)
                    if draw.state == "closed":
                        common.audit(conn, view, "draw.run", f"draw:{draw.id}", None, {
                            "winners": [w.code for w in won]}, now)
            except DrawError as exc:
                form.errors["secret"] = (
                    "پیش از قرعه‌کشی فهرست را ببندید." if draw.state == "open"
                    else "این رمز با تعهد منتشرشده نمی‌خواند." if "match" in str(exc)
                    else "رمز دست‌کم ۱۶ نویسه است.")
                return show(request, view, form, 400)
        return redirect(f"/draws/{draw.id}?done=drawn")

    def csv_file(request: Request) -> Response:
        view = viewer(panel, request, Permission.MANAGE_OFFERS)
        with database(panel).connection() as conn:
            draw = _draw(conn, view, request.path_params["draw_id"])
            if draw.state == "open":
                not_found()
            text = draw_job.entries_csv(store_draws.entries(conn, draw.id))
        return Response(text, media_type="text/csv; charset=utf-8", headers={
            "Content-Disposition": f'attachment; filename="draw-{draw.id}-entries.csv"',
            "Cache-Control": "no-store"})

    return [
        Route("/draws", list_page, methods=["GET"]),
        Route("/draws", post_form(add), methods=["POST"]),
        Route("/draws/{draw_id:int}", show, methods=["GET"]),
        Route("/draws/{draw_id:int}/close", post_form(close), methods=["POST"]),
        Route("/draws/{draw_id:int}/run", post_form(run), methods=["POST"]),
        Route("/draws/{draw_id:int}.csv", csv_file, methods=["GET"]),
    ]
