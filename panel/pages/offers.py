"""Offers: the club's list with status and effect, the add form, and "end now".

An offer is added and ended through the store's `add_offer` / `end_offer`, the very
functions `loyalty-backend offer add|end` use, so running backends see it within their
registry refresh; the effect (purchases it applied to, extra credit given) is read from
the offer uses the advice records with each purchase.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import date
from enum import StrEnum
from typing import TYPE_CHECKING

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from backend import store, store_offers
from backend.program import WEEKDAYS, Offer
from panel import forms
from panel.pages import common
from panel.pages.common import Viewer, database, not_found, post_form, redirect, viewer
from panel.pages.program import club_program
from panel.periods import jalali_day, tehran_day
from panel.roles import Permission
from protocols.persian import ascii_digits

if TYPE_CHECKING:
    from panel.app import Panel

common.nav(30, "/offers", "offers", Permission.LOOK_UP_MEMBERS)

#: The Iranian week, Saturday first, as the form shows it.
WEEK = ("sat", "sun", "mon", "tue", "wed", "thu", "fri")
MAX_RIALS = 10**12


class Status(StrEnum):
    RUNNING = "running"
    SCHEDULED = "scheduled"
    ENDED = "ended"


def status(offer: Offer, today: date) -> Status:
    if offer.ended or offer.until < today:
        return Status.ENDED
    if offer.start is not None and offer.start > today:
        return Status.SCHEDULED
    return Status.RUNNING


def _percent(value: str) -> float:
    text = ascii_digits(value.strip()).replace("٫", ".").replace("/", ".")
    try:
        n = float(text)
    except ValueError:
        raise forms.FieldError("یک عدد بنویسید (مثل ۵ یا ۲٫۵).") from None
    if not 0 < n <= 100:
        raise forms.FieldError("درصد باید بیش از ۰ و تا ۱۰۰ باشد.")
    return n


def _kind(value: str) -> str:
    if value not in ("percent", "amount"):
        raise forms.FieldError("درصد یا مبلغ را برگزینید.")
    return value


def _hour(value: str) -> int:
    return forms.integer(0, 24)(value)


OFFER_FORM = (
    forms.Field("name", "offer_name", forms.text, max_length=80),
    forms.Field("kind", "offer_kind", _kind, max_length=10),
    forms.Field("value", "offer_value", forms.text, max_length=20),
    forms.Field("start", "start_day", forms.jalali_date, required=False, max_length=20),
    forms.Field("until", "until_day", forms.jalali_date, max_length=20),
    forms.Field("hour_from", "hour_from", _hour, required=False, max_length=4),
    forms.Field("hour_to", "hour_to", _hour, required=False, max_length=4),
    forms.Field("min_purchase", "min_purchase", forms.integer(0, MAX_RIALS), required=False,
                max_length=20),
    forms.Field("target", "target", forms.text, max_length=80),
    forms.Field("visits", "min_visits", forms.integer(1, 10_000), required=False,
                max_length=6),
)


@dataclass(frozen=True, slots=True)
class OfferRow:
    offer: Offer
    status: Status
    purchases: int
    extra_credit: int

    @property
    def days(self) -> tuple[str, ...]:
        """The offer's weekdays, Saturday first (empty: every day)."""
        return tuple(d for d in WEEK if WEEKDAYS.index(d) in self.offer.weekdays)

    @property
    def percent(self) -> str:
        p = self.offer.percent
        return str(int(p)) if float(p).is_integer() else str(p)


def build_offer(form: forms.BoundForm, data: dict[str, str], club_id: int,
                tiers: list[str], today: date) -> Offer | None:
    """The offer the form describes, or None with the errors put beside their fields."""
    errors = form.errors
    # each field's own value where it parsed, so the rules between fields are checked too
    # and every error is shown at once (bind keeps no values when any field failed)
    v: dict[str, object] = {}
    for f in form.fields:
        v.update(forms.bind((f,), data).values)
    percent, amount = 0.0, 0
    if "kind" not in errors and "value" not in errors:
        try:
            if v["kind"] == "percent":
                percent = _percent(str(v["value"]))
            else:
                amount = forms.integer(1, MAX_RIALS)(str(v["value"]))
        except forms.FieldError as exc:
            errors["value"] = str(exc)
    target = str(v.get("target") or "")
    if "target" not in errors:
        if target == "visits":
            if v.get("visits") is None and "visits" not in errors:
                errors["visits"] = "کمینه خریدهای پیشین را بنویسید."
            else:
                target = f"visits:{v.get('visits')}"
        elif target not in ("everyone", "birthday") and not (
                target.startswith("tier:") and target[5:] in tiers):
            errors["target"] = "این گروه را نمی‌شناسیم."
    hours = None
    lo, hi = v.get("hour_from"), v.get("hour_to")
    if (lo is None) != (hi is None) and not {"hour_from", "hour_to"} & set(errors):
        errors["hour_to"] = "هر دو ساعت آغاز و پایان را بنویسید، یا هیچ‌کدام را."
    elif lo is not None and hi is not None:
        if not int(lo) < int(hi):  # type: ignore[call-overload]
            errors["hour_to"] = "ساعت پایان باید پس از ساعت آغاز باشد."
        else:
            hours = (int(lo), int(hi))  # type: ignore[call-overload]
    until, start = v.get("until"), v.get("start")
    if isinstance(until, date) and until < today:
        errors["until"] = "این روز گذشته است."
    if isinstance(until, date) and isinstance(start, date) and start > until:
        errors["start"] = "آغاز پس از پایان است."
    weekdays = frozenset(WEEKDAYS.index(d) for d in WEEK if data.get(f"wd_{d}") == "on")
    if errors:
        form.values.clear()
        return None
    try:
        return Offer(name=str(v["name"]), percent=percent, amount=amount,
                     start=start if isinstance(start, date) else None,
                     until=until,  # type: ignore[arg-type]
                     weekdays=weekdays, hours=hours,
                     min_purchase=int(v.get("min_purchase") or 0),  # type: ignore[call-overload]
                     target=target, club_id=club_id)
    except ValueError as exc:  # every rule is checked above; this is the last guard
        errors["name"] = f"پیشنهاد پذیرفته نشد: {exc}"
        return None


def routes(panel: Panel) -> list[BaseRoute]:
    def page(request: Request, view: Viewer, form: forms.BoundForm | None = None,
             data: dict[str, str] | None = None, status_code: int = 200) -> Response:
        today = tehran_day(panel.wall_clock())
        with database(panel).connection() as conn:
            offers = store.offers(conn, club_id=view.club_id, include_ended=True)
            effects = store_offers.effects(conn, view.club_id)
            tiers = [t.name for t in club_program(panel, conn, view.club_id).tiers]
        none = store_offers.OfferEffect(0, 0)
        rows = [OfferRow(o, status(o, today), effects.get(o.id or 0, none).purchases,
                         effects.get(o.id or 0, none).extra_credit)
                for o in sorted(offers, key=lambda o: -(o.id or 0))]
        return panel.render(
            request, "offers.html", status_code, view=view, rows=rows, tiers=tiers,
            form=form or forms.BoundForm(OFFER_FORM, {f.name: "" for f in OFFER_FORM}
                                         | {"kind": "percent", "target": "everyone"}),
            data=data or {}, week=WEEK, jday=jalali_day,
            notice=request.query_params.get("done", ""))

    def offers_page(request: Request) -> Response:
        return page(request, viewer(panel, request, Permission.LOOK_UP_MEMBERS))

    def add(request: Request, data: dict[str, str]) -> Response:
        view = viewer(panel, request, Permission.MANAGE_OFFERS)
        form = forms.bind(OFFER_FORM, data)
        today = tehran_day(panel.wall_clock())
        now = panel.wall_clock()
        with database(panel).connection() as conn:
            tiers = [t.name for t in club_program(panel, conn, view.club_id).tiers]
            offer = build_offer(form, data, view.club_id, tiers, today)
            if offer is None:
                return page(request, view, form, data, 400)
            with store.transaction(conn):
                oid = store.add_offer(conn, offer, now)
                common.audit(conn, view, "offer.add", f"offer:{oid}", None,
                             describe(replace(offer, id=oid)), now)
        return redirect("/offers?done=added")

    def end(request: Request, data: dict[str, str]) -> Response:
        view = viewer(panel, request, Permission.MANAGE_OFFERS)
        offer_id = request.path_params["offer_id"]
        now = panel.wall_clock()
        with database(panel).connection() as conn, store.transaction(conn):
            offer = next((o for o in store.offers(conn, club_id=view.club_id,
                                                  include_ended=True) if o.id == offer_id), None)
            if offer is None:
                not_found()
            if not offer.ended and store.end_offer(conn, offer_id, now):
                common.audit(conn, view, "offer.end", f"offer:{offer_id}", {"ended": False},
                             {"ended": True}, now)
        return redirect("/offers?done=ended")

    return [
        Route("/offers", offers_page, methods=["GET"]),
        Route("/offers", post_form(add), methods=["POST"]),
        Route("/offers/{offer_id:int}/end", post_form(end), methods=["POST"]),
    ]


def describe(o: Offer) -> dict[str, object]:
    """An offer as the audit log keeps it."""
    return {"name": o.name, "percent": o.percent, "amount": o.amount,
            "start": o.start.isoformat() if o.start else None, "until": o.until.isoformat(),
            "weekdays": ",".join(WEEKDAYS[d] for d in sorted(o.weekdays)),
            "hours": f"{o.hours[0]}-{o.hours[1]}" if o.hours else None,
            "min_purchase": o.min_purchase, "target": o.target}
