"""SMS campaigns: the club's campaigns going out (sent, pending, failed) with "cancel",
and the compose form that shows the reach, SMS parts and cost before anything is sent.

The form's "estimate" button saves nothing (store_campaigns.preview); "send" saves and
queues in one transaction through store_campaigns.add/enqueue, the functions
`loyalty-backend campaign add` uses; the SMS worker sends from the chosen time within the
marketing rules (consent, quiet hours, daily limits).
"""

from __future__ import annotations

from datetime import datetime, time
from typing import TYPE_CHECKING

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from backend import store, store_campaigns, store_marketing
from backend.store_campaigns import CampaignError, Filter
from panel import forms
from panel.pages import common
from panel.pages.common import Viewer, database, not_found, post_form, redirect, viewer
from panel.roles import Permission
from protocols.persian import TEHRAN

if TYPE_CHECKING:
    from panel.app import Panel

common.nav(36, "/campaigns", "campaigns", Permission.MANAGE_OFFERS)

CAMPAIGN_FORM = (
    forms.Field("text", "camp_text", forms.text, max_length=1000),
    forms.Field("segment", "camp_segment", forms.text, required=False, max_length=20),
    forms.Field("tier", "camp_tier", forms.text, required=False, max_length=40),
    forms.Field("visited_before", "camp_before", forms.jalali_date, required=False,
                max_length=20),
    forms.Field("visited_after", "camp_after", forms.jalali_date, required=False,
                max_length=20),
    forms.Field("min_spend", "camp_min_spend", forms.integer(0, 10**13), required=False,
                max_length=20),
    forms.Field("branch", "camp_branch", forms.text, required=False, max_length=80),
    forms.Field("at", "camp_at", forms.jalali_date, required=False, max_length=20),
    forms.Field("hour", "camp_hour", forms.integer(0, 23), required=False, max_length=4),
    forms.Field("holdout", "camp_holdout", forms.integer(0, 50), required=False,
                max_length=4),
    forms.Field("price", "camp_price", forms.integer(0, 10**9), required=False,
                max_length=12),
)


def _filter(v: dict[str, object]) -> Filter:
    return Filter(tier=v.get("tier") or None, segment=v.get("segment") or None,  # type: ignore[arg-type]
                  visited_before=v.get("visited_before"),  # type: ignore[arg-type]
                  visited_after=v.get("visited_after"),  # type: ignore[arg-type]
                  min_spend=v.get("min_spend"), branch=v.get("branch") or None)  # type: ignore[arg-type]


def routes(panel: Panel) -> list[BaseRoute]:
    def page(request: Request, view: Viewer, form: forms.BoundForm | None = None,
             preview: store_campaigns.Preview | None = None,
             status_code: int = 200) -> Response:
        now = panel.wall_clock()
        rows = []
        with database(panel).connection() as conn:
            for c in reversed(store_campaigns.list_campaigns(conn, view.club_id)):
                with store.transaction(conn):
                    status = store_campaigns.status(conn, c.id, now)
                rows.append((c, status, store_campaigns.counts(conn, c.id),
                             store_campaigns.effect(conn, c.id)))
        return panel.render(
            request, "campaigns.html", status_code, view=view, rows=rows, preview=preview,
            form=form or forms.empty_form(CAMPAIGN_FORM), tehran=TEHRAN,
            notice=request.query_params.get("done", ""))

    def list_page(request: Request) -> Response:
        return page(request, viewer(panel, request, Permission.MANAGE_OFFERS))

    def compose(request: Request, data: dict[str, str]) -> Response:
        view = viewer(panel, request, Permission.MANAGE_OFFERS)
        form = forms.bind(CAMPAIGN_FORM, data)
        if not form.ok:
            return page(request, view, form, status_code=400)
        v = form.values
        now = panel.wall_clock()
        f = _filter(v)
        holdout = int(v["holdout"]) / 100 if v.get("holdout") is not None else 0.10  # type: ignore[call-overload]
        at: datetime | None = None
        if v.get("at") is not None:
            at = datetime.combine(v["at"], time(int(v.get("hour") or 10)), TEHRAN)  # type: ignore[arg-type, call-overload]
        with database(panel).connection() as conn:
            # a blank price: the club's (club marketing NAME --sms-price)
            price = (store_marketing.sms_price(conn, view.club_id) if v.get("price") is None
                     else int(v["price"]))  # type: ignore[call-overload]
            try:
                preview = store_campaigns.preview(conn, view.club_id, str(v["text"]), f,
                                                  holdout=holdout, price_per_part=price)
                if data.get("action") != "send":
                    return page(request, view, form, preview)
                with store.transaction(conn):
                    c, new = store_campaigns.add(conn, view.club_id, str(v["text"]), f,
                                                 at=at, now=now, holdout=holdout,
                                                 price_per_part=price)
                    if new:  # the same campaign again (a second click) queues nothing
                        store_campaigns.enqueue(conn, c.id, now)
                        common.audit(conn, view, "campaign.add", f"campaign:{c.id}", None,
                                     {"text": c.text, "filter": f.to_json(),
                                      "at": c.scheduled_at.isoformat()}, now)
            except CampaignError as exc:
                form.errors["text"] = f"پذیرفته نشد: {exc}"
                return page(request, view, form, status_code=400)
        return redirect("/campaigns?done=added")

    def cancel(request: Request, data: dict[str, str]) -> Response:
        view = viewer(panel, request, Permission.MANAGE_OFFERS)
        campaign_id = request.path_params["campaign_id"]
        now = panel.wall_clock()
        with database(panel).connection() as conn, store.transaction(conn):
            ids = {c.id for c in store_campaigns.list_campaigns(conn, view.club_id)}
            if campaign_id not in ids:
                not_found()
            try:
                n = store_campaigns.cancel(conn, campaign_id, now)
            except CampaignError:
                return redirect("/campaigns")
            common.audit(conn, view, "campaign.cancel", f"campaign:{campaign_id}", None,
                         {"stopped": n}, now)
        return redirect("/campaigns?done=cancelled")

    return [
        Route("/campaigns", list_page, methods=["GET"]),
        Route("/campaigns", post_form(compose), methods=["POST"]),
        Route("/campaigns/{campaign_id:int}/cancel", post_form(cancel), methods=["POST"]),
    ]
