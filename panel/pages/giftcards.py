"""Gift cards: the club's batches with their report (issued, sold, used, expired,
outstanding), the form that issues a batch, and each batch's printable CSV.

A batch is issued through `store_giftcards.issue`, the very function `loyalty-backend
giftcard issue` uses; the numbers are shown only in the CSV (the page masks nothing
because it lists none).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from backend import giftcards, store, store_giftcards
from panel import forms
from panel.pages import common
from panel.pages.common import Viewer, database, not_found, post_form, redirect, viewer
from panel.periods import jalali_day
from panel.roles import Permission

if TYPE_CHECKING:
    from panel.app import Panel

common.nav(35, "/giftcards", "giftcards", Permission.MANAGE_OFFERS)

GIFT_FORM = (
    forms.Field("value", "gift_value", forms.integer(1, 10**12), max_length=20),
    forms.Field("expires", "gift_expires", forms.jalali_date, max_length=20),
    forms.Field("count", "gift_count", forms.integer(1, 100_000), max_length=8),
)
SELL_FORM = (forms.Field("number", "gift_number", forms.card, max_length=40),)


def routes(panel: Panel) -> list[BaseRoute]:
    def page(request: Request, view: Viewer, form: forms.BoundForm | None = None,
             status_code: int = 200, sell: forms.BoundForm | None = None) -> Response:
        with database(panel).connection() as conn:
            rows = store_giftcards.report(conn, view.club_id, panel.wall_clock())
        return panel.render(
            request, "giftcards.html", status_code, view=view,
            rows=sorted(rows, key=lambda r: -r.batch.id), jday=jalali_day,
            form=form or forms.empty_form(GIFT_FORM), sell=sell or forms.empty_form(SELL_FORM),
            notice=request.query_params.get("done", ""))

    def list_page(request: Request) -> Response:
        return page(request, viewer(panel, request, Permission.MANAGE_OFFERS))

    def issue(request: Request, data: dict[str, str]) -> Response:
        view = viewer(panel, request, Permission.MANAGE_OFFERS)
        form = forms.bind(GIFT_FORM, data)
        if not form.ok:
            return page(request, view, form, 400)
        v = form.values
        now = panel.wall_clock()
        with database(panel).connection() as conn:
            try:
                with store.transaction(conn):
                    batch, _ = store_giftcards.issue(conn, view.club_id, int(v["value"]),
                                                     v["expires"], int(v["count"]), now)
                    common.audit(conn, view, "giftcard.issue", f"giftcard_batch:{batch.id}",
                                 None, {"value": batch.value, "count": batch.count,
                                        "expires_on": batch.expires_on.isoformat()}, now)
            except giftcards.GiftCardError:
                form.errors["expires"] = "روز پایان باید پس از امروز باشد."
                form.values.clear()
                return page(request, view, form, 400)
        return redirect("/giftcards?done=issued")

    def sell(request: Request, data: dict[str, str]) -> Response:
        """The counter sold a card: the report's sold column (its value was issued with
        the batch; selling moves no credit)."""
        view = viewer(panel, request, Permission.MANAGE_OFFERS)
        form = forms.bind(SELL_FORM, data)
        if not form.ok:
            return page(request, view, sell=form, status_code=400)
        number = form.values["number"]
        now = panel.wall_clock()
        with database(panel).connection() as conn, store.transaction(conn):
            if not giftcards.is_gift_card(number) or store_giftcards.card(
                    conn, number, view.club_id) is None:
                form.errors["number"] = "این شماره کارت هدیهٔ این باشگاه نیست."
                return page(request, view, sell=form, status_code=400)
            if not store_giftcards.mark_sold(conn, number, now):
                return redirect("/giftcards?done=already_sold")
            common.audit(conn, view, "giftcard.sell", f"giftcard:{number[-4:]}", None,
                         {"sold": True}, now)
        return redirect("/giftcards?done=sold")

    def csv_file(request: Request) -> Response:
        view = viewer(panel, request, Permission.MANAGE_OFFERS)
        batch_id = request.path_params["batch_id"]
        with database(panel).connection() as conn:
            if not any(b.id == batch_id for b in store_giftcards.batches(conn, view.club_id)):
                not_found()
            text = giftcards.printable_csv(store_giftcards.batch_cards(conn, batch_id))
        return Response(text, media_type="text/csv; charset=ascii", headers={
            "Content-Disposition": f'attachment; filename="giftcards-{batch_id}.csv"',
            "Cache-Control": "no-store"})

    return [
        Route("/giftcards", list_page, methods=["GET"]),
        Route("/giftcards", post_form(issue), methods=["POST"]),
        Route("/giftcards/sell", post_form(sell), methods=["POST"]),
        Route("/giftcards/{batch_id:int}.csv", csv_file, methods=["GET"]),
    ]
