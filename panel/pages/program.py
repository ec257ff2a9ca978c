"""Program: the club's rules in plain Persian, and the owner's form that makes a new version.

The form's values are written as the program TOML (`config.program_toml`) and that text is
checked by `config.parse_program`, the check `loyalty-backend program import` makes, before
it is stored as the club's next version (`store_registry.add_program`): one set of rules,
whichever way a program comes in. A club with no stored version runs the configuration's.
"""

from __future__ import annotations

import tomllib
from dataclasses import replace
from typing import TYPE_CHECKING

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from backend import store, store_registry
from backend.config import ConfigError, parse_program, program_toml
from backend.engine import Connection
from backend.program import Program, Tier
from panel import forms
from panel.pages import common
from panel.pages.common import Viewer, database, post_form, redirect, viewer
from panel.roles import Permission
from protocols.persian import ascii_digits

if TYPE_CHECKING:
    from panel.app import Panel

common.nav(40, "/program", "program", Permission.LOOK_UP_MEMBERS)

#: Tier rows the form offers (empty rows are left out).
TIER_ROWS = 6
MAX_RIALS = 10**12


def club_program(panel: Panel, conn: Connection, club_id: int) -> Program:
    """The program the club runs now: its newest stored version, else the configuration's."""
    latest = store_registry.latest_program(conn, club_id)
    if latest is None:
        return panel.settings.program
    return parse_program(tomllib.loads(latest.body))


def _decimal(low: float, high: float):  # type: ignore[no-untyped-def]
    def parse(value: str) -> float:
        text = ascii_digits(value.strip()).replace("٫", ".")
        try:
            n = float(text)
        except ValueError:
            raise forms.FieldError("یک عدد بنویسید (مثل ۵ یا ۲٫۵).") from None
        if not low <= n <= high:
            raise forms.FieldError(f"عدد باید از {forms.persian_digits(low)} تا "
                                   f"{forms.persian_digits(high)} باشد.")
        return n
    return parse


#: (field, label, parser, the Program attribute)
NUMBERS = (
    ("tier_window_days", forms.integer(1, 3650)),
    ("max_redeem_percent", _decimal(0, 100)),
    ("hold_seconds", forms.integer(30, 86_400)),
    ("credit_days", forms.integer(1, 3650)),
    ("welcome_credit", forms.integer(0, MAX_RIALS)),
    ("referral_bonus", forms.integer(0, MAX_RIALS)),
    ("otp_threshold", forms.integer(0, MAX_RIALS)),
    ("otp_digits", forms.integer(4, 10)),
    ("otp_seconds", forms.integer(30, 3600)),
    ("otp_tries", forms.integer(1, 10)),
    ("transfer_enabled", forms.integer(0, 1)),
    ("transfer_min", forms.integer(1, MAX_RIALS)),
    ("transfer_max", forms.integer(1, MAX_RIALS)),
    ("transfer_day_max", forms.integer(1, MAX_RIALS)),
)
PROGRAM_FORM = tuple(
    forms.Field(name, f"p_{name}", parse, max_length=20) for name, parse in NUMBERS
) + tuple(
    f for i in range(TIER_ROWS) for f in (
        forms.Field(f"tier{i}_name", "tier_name", forms.text, required=False, max_length=40),
        forms.Field(f"tier{i}_min", "tier_min_spend", forms.integer(0, MAX_RIALS * 1000),
                    required=False, max_length=24),
        forms.Field(f"tier{i}_percent", "tier_percent", _decimal(0, 100), required=False,
                    max_length=10),
    )
)


def form_of(program: Program) -> forms.BoundForm:
    raw = {name: _plain(getattr(program, name)) for name, _ in NUMBERS}
    for i in range(TIER_ROWS):
        t = program.tiers[i] if i < len(program.tiers) else None
        raw[f"tier{i}_name"] = t.name if t else ""
        raw[f"tier{i}_min"] = str(t.min_spend) if t else ""
        raw[f"tier{i}_percent"] = _plain(t.percent) if t else ""
    return forms.BoundForm(PROGRAM_FORM, raw)


def _plain(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


def build_program(form: forms.BoundForm, base: Program) -> tuple[Program, str] | None:
    """The program of the form and its TOML, checked as an import is; None with errors.
    Settings the form does not show (the gift card ones, say) keep `base`'s values."""
    v, errors = form.values, form.errors
    tiers = []
    for i in range(TIER_ROWS):
        name, low, pct = (f"tier{i}_name", f"tier{i}_min", f"tier{i}_percent")
        given = [k for k in (name, low, pct) if form.raw.get(k, "").strip()]
        if not given:
            continue
        for k in (name, low, pct):
            if k not in given and k not in errors:
                errors[k] = "هر سه خانه این رده را پر کنید."
        if errors.keys() & {name, low, pct}:
            continue
        tiers.append(Tier(str(v[name]), int(v[low]), float(v[pct])))  # type: ignore[call-overload]
    if not tiers and "tier0_name" not in errors:
        errors["tier0_name"] = "دست‌کم یک رده لازم است."
    if errors:
        v.clear()
        return None
    try:
        numbers = {name: v[name] for name, _ in NUMBERS}
        numbers["transfer_enabled"] = bool(numbers["transfer_enabled"])
        program = replace(base, tiers=tuple(tiers), **numbers)
        body = program_toml(program)
        parse_program(tomllib.loads(body))  # the import's own check, on the very text stored
    except (ValueError, ConfigError, tomllib.TOMLDecodeError) as exc:
        errors[_field_of(str(exc))] = _persian_rule_error(str(exc))
        v.clear()
        return None
    return program, body


def _field_of(message: str) -> str:
    for name, _ in NUMBERS:
        if name in message or name.removeprefix("otp_") in message:
            return name
    return "tier0_name"


def _persian_rule_error(message: str) -> str:
    if "transfer" in message:
        return "باید کمینه انتقال ≤ بیشینه هر انتقال ≤ سقف روزانه باشد."
    if "lowest tier" in message:
        return "پایین‌ترین رده باید از کمینه خرید ۰ آغاز شود."
    if "names must be unique" in message:
        return "نام رده‌ها باید یکتا باشد."
    if "share one min_spend" in message:
        return "دو رده یک کمینه خرید دارند."
    return f"برنامه پذیرفته نشد ({message})."


def routes(panel: Panel) -> list[BaseRoute]:
    def page(request: Request, view: Viewer, form: forms.BoundForm | None = None,
             status_code: int = 200) -> Response:
        with database(panel).connection() as conn:
            program = club_program(panel, conn, view.club_id)
            history = store_registry.program_history(conn, view.club_id)
        return panel.render(request, "program.html", status_code, view=view, program=program,
                            history=list(reversed(history)), form=form or form_of(program),
                            tier_rows=range(TIER_ROWS), numbers=[n for n, _ in NUMBERS],
                            notice=request.query_params.get("done", ""))

    def program_page(request: Request) -> Response:
        return page(request, viewer(panel, request, Permission.LOOK_UP_MEMBERS))

    def save(request: Request, data: dict[str, str]) -> Response:
        view = viewer(panel, request, Permission.EDIT_PROGRAM)
        form = forms.bind(PROGRAM_FORM, data)
        with database(panel).connection() as conn:
            current = club_program(panel, conn, view.club_id)
        built = build_program(form, current) if form.ok else None
        if built is None:
            return page(request, view, form, 400)
        program, body = built
        now = panel.wall_clock()
        with database(panel).connection() as conn, store.transaction(conn):
            old = club_program(panel, conn, view.club_id)
            if old == program:
                return redirect("/program?done=same")
            latest = store_registry.latest_program(conn, view.club_id)
            version = store_registry.add_program(conn, view.club_id, body,
                                                 f"panel:{view.user.name}", now)
            common.audit(conn, view, "program.edit", f"program:{version.version}",
                         {"version": latest.version if latest else 0,
                          "toml": latest.body if latest else program_toml(old)},
                         {"version": version.version, "toml": body}, now)
        return redirect("/program?done=saved")

    return [
        Route("/program", program_page, methods=["GET"]),
        Route("/program", post_form(save), methods=["POST"]),
    ]
