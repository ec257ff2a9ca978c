"""Automatic messages and the club's marketing settings: the owner changes them, staff
read them.

Every message kind (birthday, anniversary, win-back, tier up, expiring credit, and each
occasion of the shipped list) is one row: on/off, its template, gift, segment, days and
date offset. The checks are the CLI's (`automsg set`: backend.automsg.build; `club
marketing`: store_marketing.changed_settings), so a template with an unknown placeholder
is refused here too, its error beside the field, and nothing is saved. Every change is
audited with what it was before.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from backend import automsg, store, store_automsg, store_marketing
from backend.occasions import KINDS, AutoMessage, load_occasions
from backend.store_marketing import SettingsError
from panel import forms
from panel.pages import common
from panel.pages.common import Viewer, database, not_found, post_form, redirect, viewer
from panel.roles import Permission

if TYPE_CHECKING:
    from panel.app import Panel

common.nav(38, "/marketing", "marketing", Permission.LOOK_UP_MEMBERS)


def _choice(*allowed: str):  # type: ignore[no-untyped-def]
    def parse(value: str) -> str:
        if value.strip() not in allowed:
            raise forms.FieldError("یکی از گزینه‌ها را برگزینید.")
        return value.strip()
    return parse


MESSAGE_FORM = (
    forms.Field("enabled", "am_enabled", _choice("on", "off"), max_length=3),
    forms.Field("template", "am_template", forms.text, max_length=600),
    forms.Field("days", "am_days", forms.integer(0, 3650), required=False, max_length=6),
    forms.Field("offset", "am_offset", forms.integer(-60, 60), required=False, max_length=4),
    forms.Field("segment", "am_segment", forms.text, required=False, max_length=20),
    forms.Field("gift", "am_gift", forms.integer(0, 10**10), required=False, max_length=14),
    forms.Field("gift_days", "am_gift_days", forms.integer(0, 3650), required=False,
                max_length=6),
)
SETTINGS_FORM = (
    forms.Field("quiet", "mk_quiet", forms.text, max_length=20),
    forms.Field("daily_limit", "mk_daily_limit", forms.text, required=False, max_length=12),
    forms.Field("consent", "mk_consent", _choice("yes", "no"), max_length=3),
    forms.Field("sms_price", "mk_sms_price",
                forms.integer(0, store_marketing.MAX_SMS_PRICE), required=False, max_length=14),
)


def message_keys() -> list[str]:
    """Every message a club may switch on: the kinds, then each occasion of the list."""
    return ([k for k in KINDS if k != "occasion"]
            + [f"occasion:{key}" for key in load_occasions()])


def _message_raw(msg: AutoMessage | None, enabled: bool) -> dict[str, str]:
    if msg is None:
        return {"enabled": "off", "template": "", "days": "", "offset": "", "segment": "",
                "gift": "", "gift_days": ""}
    return {"enabled": "on" if enabled else "off", "template": msg.template,
            "days": str(msg.days or ""), "offset": str(msg.offset_days or ""),
            "segment": msg.segment or "", "gift": str(msg.gift_credit or ""),
            "gift_days": str(msg.gift_days or "")}


def _settings_raw(s: store_marketing.Settings, consent: bool, price: int) -> dict[str, str]:
    return {"quiet": f"{s.quiet_start:%H:%M}-{s.quiet_end:%H:%M}",
            "daily_limit": "" if s.club_daily is None else str(s.club_daily),
            "consent": "yes" if consent else "no", "sms_price": str(price)}


def routes(panel: Panel) -> list[BaseRoute]:
    def page(request: Request, view: Viewer, bad: tuple[str, forms.BoundForm] | None = None,
             status_code: int = 200) -> Response:
        occasions = load_occasions()
        with database(panel).connection() as conn:
            stored = {s.message.key: s for s in store_automsg.messages(conn, view.club_id)}
            s = store_marketing.settings(conn, view.club_id)
            consent = store_marketing.consent_at_enrolment(conn, view.club_id)
            price = store_marketing.sms_price(conn, view.club_id)
        rows = []
        for key in message_keys():
            have = stored.get(key)
            if bad is not None and bad[0] == key:
                form = bad[1]
            else:
                form = forms.empty_form(MESSAGE_FORM)
                form.raw = _message_raw(have.message if have else None,
                                        bool(have and have.enabled))
            kind, _, occ = key.partition(":")
            allowed = sorted(automsg.COMMON | automsg.BY_KIND[kind])
            rows.append((key, key.replace(":", "-"), kind, occasions[occ].name if occ else "",
                         have, form, allowed))
        if bad is not None and bad[0] == "settings":
            settings_form = bad[1]
        else:
            settings_form = forms.empty_form(SETTINGS_FORM)
            settings_form.raw = _settings_raw(s, consent, price)
        return panel.render(request, "marketing.html", status_code, view=view, rows=rows,
                            settings=s, consent=consent, settings_form=settings_form,
                            quiet=_settings_raw(s, consent, price)["quiet"], sms_price=price,
                            notice=request.query_params.get("done", ""))

    def marketing_page(request: Request) -> Response:
        return page(request, viewer(panel, request, Permission.LOOK_UP_MEMBERS))

    def save_settings(request: Request, data: dict[str, str]) -> Response:
        view = viewer(panel, request, Permission.EDIT_PROGRAM)
        form = forms.bind(SETTINGS_FORM, data)
        if not form.ok:
            return page(request, view, ("settings", form), 400)
        now = panel.wall_clock()
        with database(panel).connection() as conn, store.transaction(conn):
            old = store_marketing.settings(conn, view.club_id)
            old_consent = store_marketing.consent_at_enrolment(conn, view.club_id)
            old_price = store_marketing.sms_price(conn, view.club_id)
            try:
                new = store_marketing.changed_settings(
                    old, quiet=str(form.values["quiet"]),
                    daily_limit=str(form.values.get("daily_limit") or "none"))
            except SettingsError as exc:
                form.errors[exc.field] = f"پذیرفته نشد: {exc}"
                return page(request, view, ("settings", form), 400)
            consent = form.values["consent"] == "yes"
            store_marketing.set_settings(conn, view.club_id, new)
            store_marketing.set_consent_at_enrolment(conn, view.club_id, consent)
            given = form.values.get("sms_price")
            price = old_price if given is None else int(given)  # type: ignore[call-overload]
            store_marketing.set_sms_price(conn, view.club_id, price)
            common.audit(conn, view, "marketing.settings", f"club:{view.club_id}",
                         _settings_raw(old, old_consent, old_price),
                         _settings_raw(new, consent, price), now)
        return redirect("/marketing?done=settings")

    def save_message(request: Request, data: dict[str, str]) -> Response:
        view = viewer(panel, request, Permission.EDIT_PROGRAM)
        key = request.path_params["key"]
        if key not in message_keys():
            not_found()
        form = forms.bind(MESSAGE_FORM, data)
        if not form.ok:
            return page(request, view, (key, form), 400)
        v = form.values
        try:
            msg = automsg.build(
                key, str(v["template"]), days=int(v.get("days") or 0),  # type: ignore[call-overload]
                offset_days=int(v.get("offset") or 0),  # type: ignore[call-overload]
                segment=str(v["segment"]) if v.get("segment") else None,
                gift_credit=int(v.get("gift") or 0),  # type: ignore[call-overload]
                gift_days=int(v.get("gift_days") or 0))  # type: ignore[call-overload]
        except automsg.MessageError as exc:
            field = exc.field if exc.field in form.raw else "template"
            form.errors[field] = f"پذیرفته نشد: {exc}"
            return page(request, view, (key, form), 400)
        enabled = v["enabled"] == "on"
        now = panel.wall_clock()
        with database(panel).connection() as conn, store.transaction(conn):
            old = {s.message.key: s for s in store_automsg.messages(conn, view.club_id)}.get(key)
            store_automsg.save(conn, view.club_id, msg, enabled)
            common.audit(conn, view, "automsg.set", f"automsg:{key}",
                         _message_raw(old.message, old.enabled) if old else None,
                         _message_raw(msg, enabled), now)
        return redirect(f"/marketing?done=saved#msg-{key.replace(':', '-')}")

    def switch_off(request: Request, data: dict[str, str]) -> Response:
        view = viewer(panel, request, Permission.EDIT_PROGRAM)
        key = request.path_params["key"]
        now = panel.wall_clock()
        with database(panel).connection() as conn, store.transaction(conn):
            old = {s.message.key: s for s in store_automsg.messages(conn, view.club_id)}.get(key)
            if old is None:  # not this club's message (another club's, or none)
                not_found()
            store_automsg.set_enabled(conn, view.club_id, key, False)
            common.audit(conn, view, "automsg.off", f"automsg:{key}",
                         {"enabled": "on" if old.enabled else "off"}, {"enabled": "off"}, now)
        return redirect("/marketing?done=off")

    return [
        Route("/marketing", marketing_page, methods=["GET"]),
        Route("/marketing/settings", post_form(save_settings), methods=["POST"]),
        Route("/marketing/messages/{key}", post_form(save_message), methods=["POST"]),
        Route("/marketing/messages/{key}/off", post_form(switch_off), methods=["POST"]),
    ]
