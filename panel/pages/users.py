"""Users: the club's owners and staff; an owner adds and disables their staff, a provider
any club's owners and staff. Passwords are hashed (Argon2id) in a worker thread; the audit
row never holds a password or its hash.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from backend import store, store_users
from backend.passwords import hash_password
from panel import forms
from panel.pages import common
from panel.pages.common import Viewer, database, not_found, post_form, redirect, viewer
from panel.roles import Permission, Role

if TYPE_CHECKING:
    from panel.app import Panel

common.nav(70, "/users", "users", Permission.MANAGE_USERS)
MIN_PASSWORD = 8


def _user_name(value: str) -> str:
    try:
        return store_users.check_name(value.strip())
    except store_users.UserError:
        raise forms.FieldError("۱ تا ۶۴ حرف، رقم یا ._@- بدون فاصله.") from None


def _password(value: str) -> str:
    if len(value) < MIN_PASSWORD:
        raise forms.FieldError(f"گذرواژه دست‌کم {forms.persian_digits(MIN_PASSWORD)} "
                               "نویسه است.")
    return value


def _role(value: str) -> str:
    if value not in (Role.OWNER.value, Role.STAFF.value):
        raise forms.FieldError("مالک یا کارمند را برگزینید.")
    return value


USER_FORM = (
    forms.Field("name", "user_name", _user_name, max_length=64),
    forms.Field("role", "role", _role, max_length=10),
    forms.Field("password", "password", _password, max_length=256, input_type="password"),
    forms.Field("again", "password_again", forms.secret, max_length=256,
                input_type="password"),
)
PASSWORD_FORM = USER_FORM[2:]


def may_manage(view: Viewer, account: store_users.UserAccount) -> bool:
    """An owner manages their club's staff; a provider the club's owners and staff; nobody
    disables themselves (a club would lose its last owner by one click)."""
    if account.club_id != view.club_id or account.name == view.user.name:
        return False
    return view.user.role is Role.PROVIDER or account.role == Role.STAFF.value


def routes(panel: Panel) -> list[BaseRoute]:
    def page(request: Request, view: Viewer, form: forms.BoundForm | None = None,
             status_code: int = 200, pw_form: forms.BoundForm | None = None,
             pw_for: str = "") -> Response:
        with database(panel).connection() as conn:
            accounts = store_users.list_users(conn, view.club_id)
        return panel.render(
            request, "users.html", status_code, view=view, accounts=accounts,
            may=lambda a: may_manage(view, a), notice=request.query_params.get("done", ""),
            form=form or forms.BoundForm(USER_FORM, {"name": "", "role": "staff"}),
            pw_form=pw_form, pw_for=pw_for,
            roles=[Role.STAFF.value] + ([Role.OWNER.value]
                                        if view.user.role is Role.PROVIDER else []))

    def users_page(request: Request) -> Response:
        return page(request, viewer(panel, request, Permission.MANAGE_USERS))

    def add(request: Request, data: dict[str, str]) -> Response:
        view = viewer(panel, request, Permission.MANAGE_USERS)
        form = forms.bind(USER_FORM, data)
        if form.ok and form.values["role"] == Role.OWNER.value and (
                view.user.role is not Role.PROVIDER):
            form.errors["role"] = "مالک را تنها ارائه‌دهنده می‌افزاید."
        if form.ok and form.values["password"] != form.values["again"]:
            form.errors["again"] = "دو گذرواژه یکی نیستند."
        if not form.ok:
            form.values.clear()
            return page(request, view, form, 400)
        hashed = hash_password(str(form.values["password"]))
        now = panel.wall_clock()
        with database(panel).connection() as conn:
            try:
                with store.transaction(conn):
                    account = store_users.add_user(
                        conn, name=str(form.values["name"]), role=str(form.values["role"]),
                        club_id=view.club_id, password_hash=hashed, now=now)
                    common.audit(conn, view, "user.add", f"user:{account.name}", None,
                                 {"role": account.role}, now)
            except store_users.UserError:
                form.errors["name"] = "این نام کاربری پیش‌تر گرفته شده است."
                return page(request, view, form, 400)
        return redirect("/users?done=added")

    def account_of(conn: store.Connection, view: Viewer, name: str) -> store_users.UserAccount:
        account = store_users.find_user(conn, name)
        if account is None or account.club_id != view.club_id:
            not_found()
        if not may_manage(view, account):
            raise common.Denied
        return account

    def set_disabled(request: Request, data: dict[str, str]) -> Response:
        view = viewer(panel, request, Permission.MANAGE_USERS)
        disabled = request.path_params["action"] == "disable"
        now = panel.wall_clock()
        with database(panel).connection() as conn, store.transaction(conn):
            account = account_of(conn, view, request.path_params["name"])
            if account.disabled != disabled:
                store_users.set_disabled(conn, account.name, disabled, now)
                common.audit(conn, view, "user.disable" if disabled else "user.enable",
                             f"user:{account.name}", {"disabled": account.disabled},
                             {"disabled": disabled}, now)
        return redirect("/users?done=" + ("disabled" if disabled else "enabled"))

    def set_password(request: Request, data: dict[str, str]) -> Response:
        view = viewer(panel, request, Permission.MANAGE_USERS)
        name = request.path_params["name"]
        with database(panel).connection() as conn:
            account_of(conn, view, name)
        form = forms.bind(PASSWORD_FORM, data)
        if form.ok and form.values["password"] != form.values["again"]:
            form.errors["again"] = "دو گذرواژه یکی نیستند."
        if not form.ok:
            return page(request, view, None, 400, pw_form=form, pw_for=name)
        hashed = hash_password(str(form.values["password"]))
        now = panel.wall_clock()
        with database(panel).connection() as conn, store.transaction(conn):
            account = account_of(conn, view, name)
            store_users.set_password(conn, account.name, hashed, now)
            common.audit(conn, view, "user.passwd", f"user:{account.name}", None, None, now)
        return redirect("/users?done=password")

    return [
        Route("/users", users_page, methods=["GET"]),
        Route("/users", post_form(add), methods=["POST"]),
        Route("/users/{name}/{action:str}", post_form(_dispatch(set_disabled, set_password)),
              methods=["POST"]),
    ]


def _dispatch(toggle, password):  # type: ignore[no-untyped-def]
    def handler(request: Request, data: dict[str, str]) -> Response:
        action = request.path_params["action"]
        if action in ("disable", "enable"):
            return toggle(request, data)
        if action == "password":
            return password(request, data)
        not_found()
    return handler
