"""The panel's Starlette application, built by `create_app` from settings and a user port.

Starlette rather than FastAPI: the panel renders HTML forms, not a JSON API, so FastAPI's
pydantic models and OpenAPI schema would be weight without use; Starlette is the part of
FastAPI the panel needs (routing, requests, Jinja2 responses, static files, test client).
"""

from __future__ import annotations

import asyncio
import importlib.metadata
import logging
import math
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jinja2
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates

from backend.config import MqttSettings
from backend.program import Program
from panel import forms
from panel.assets import STATIC, load_manifest
from panel.database import Database
from panel.guard import COOKIE, PanelGuard
from panel.pages import audit as audit_page
from panel.pages import campaigns as campaigns_page
from panel.pages import (
    common,
    dashboard,
    member_self,
    member_transfer,
    members,
    offers,
    program,
    sms,
    terminals,
)
from panel.pages import draws as draws_page
from panel.pages import giftcards as giftcards_page
from panel.pages import marketing as marketing_page
from panel.pages import survey as survey_page
from panel.pages import surveys as surveys_page
from panel.pages import users as users_page
from panel.passwords import verify_password
from panel.presence import PresenceWatcher
from panel.roles import Permission, allowed
from panel.sessions import IDLE_TIMEOUT, Session, SessionStore
from panel.texts import DIRECTION, LANGUAGES, TEXTS
from panel.throttle import LoginThrottle
from panel.users import DatabaseUserDirectory, PanelUser, UserDirectory
from protocols.persian import format_rials, jalali, persian_digits

log = logging.getLogger("panel")
TEMPLATES = Path(__file__).resolve().parent / "templates"
LANG_COOKIE = "panel_lang"

LOGIN_FORM = (
    forms.Field("name", "user_name", forms.text, max_length=64),
    forms.Field("password", "password", forms.secret, max_length=256, input_type="password"),
)


@dataclass(frozen=True, slots=True)
class PanelSettings:
    """What `--config FILE` ([panel] table) and the command line set."""

    db: str = ""
    #: True: cookies always Secure; False: never (plain loopback); None: when the request
    #: came over https (directly or as the reverse proxy's X-Forwarded-Proto says).
    secure_cookies: bool | None = None
    idle_timeout: float = IDLE_TIMEOUT
    default_language: str = "fa"
    secret: bytes | None = None
    #: the program of a club with no stored version: the backend configuration's
    #: ([panel] backend_config), else the defaults
    program: Program = field(default_factory=Program)
    #: the backend's broker account ([panel] backend_config's [mqtt]), for presence
    mqtt: MqttSettings | None = None


class Panel:
    """The app's state: the stores and clocks every page uses (no module-level globals)."""

    def __init__(self, settings: PanelSettings, users: UserDirectory | None,
                 clock: Callable[[], float], wall_clock: Callable[[], datetime],
                 database: Database | None = None) -> None:
        self.settings = settings
        self.users = users
        #: the backend's database (None: a panel of the login page only, for tests)
        self.database = database
        #: the terminals' presence from the broker (None: no broker configured)
        self.presence: PresenceWatcher | None = None
        self.clock = clock
        self.wall_clock = wall_clock
        self.sessions = SessionStore(settings.secret or secrets.token_bytes(32),
                                     idle_timeout=settings.idle_timeout)
        self.throttle = LoginThrottle()
        #: the member's own pages (/m): their CSRF secret and rate limits
        self.member_side = member_self.new_state(settings.secret)
        self.login_lock = asyncio.Lock()
        env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES),
                                 autoescape=True, undefined=jinja2.StrictUndefined)
        self.templates = Jinja2Templates(env=env)

    # -- helpers shared by pages ---------------------------------------------------------

    def session(self, request: Request) -> Session | None:
        return request.scope["state"].get("panel_session")

    def user(self, request: Request) -> PanelUser | None:
        """The logged-in user, re-read from the directory so a disabled user is out at once."""
        session = self.session(request)
        if session is None or session.user is None or self.users is None:
            return None
        user = self.users.find_user(session.user)
        if user is None or user.disabled:
            self.sessions.drop(session.id)
            return None
        return user

    def language(self, request: Request) -> str:
        lang = request.cookies.get(LANG_COOKIE, self.settings.default_language)
        return lang if lang in LANGUAGES else "fa"

    def render(self, request: Request, name: str, status: int = 200,
               session: Session | None = None, **context: Any) -> Response:
        lang = self.language(request)
        session = session or self.session(request)
        user = self.user(request)

        def num(value: object) -> str:
            return persian_digits(value) if lang == "fa" else str(value)

        def money(value: int) -> str:
            return format_rials(value) if lang == "fa" else f"{value:,}"

        def when(value: datetime | None, fmt: str = "%Y/%m/%d %H:%M") -> str:
            return "" if value is None else num(jalali(value, fmt))

        context.update(
            lang=lang, dir=DIRECTION[lang], t=TEXTS[lang], num=num, user=user,
            csrf_token=session.csrf_token if session else "", path=request.url.path,
            can=lambda p: user is not None and allowed(user.role, Permission(p)),
            money=money, when=when, nav=common.nav_for(user),
            club_shown=(session.data.get("club_name") if session else None) or (
                user.club if user else None))
        response = self.templates.TemplateResponse(request, name, context, status_code=status)
        if session is not None and self.session(request) is not session:
            self.set_cookie(request, response, session)
        return response

    def set_cookie(self, request: Request, response: Response, session: Session) -> None:
        secure = self.settings.secure_cookies
        if secure is None:
            secure = request.url.scheme == "https"
        response.set_cookie(COOKIE, self.sessions.cookie_value(session), httponly=True,
                            samesite="strict", secure=secure, path="/")


def create_app(settings: PanelSettings | None = None, users: UserDirectory | None = None, *,
               clock: Callable[[], float] = time.monotonic,
               wall_clock: Callable[[], datetime] = lambda: datetime.now(UTC),
               database: Database | None = None,
               presence: PresenceWatcher | None = None) -> Starlette:
    """The panel over `database` (its users too, unless `users` is given); with neither,
    nobody can log in, and the login page says so."""
    settings = settings or PanelSettings()
    if users is None and database is not None:
        users = DatabaseUserDirectory(database)
    panel = Panel(settings, users, clock, wall_clock, database)
    panel.presence = presence
    if users is None:
        log.warning("no users exist yet: they will be added with `loyalty-backend user add`, "
                    "which comes with the store layer; nobody can log in until then")

    def login_page(request: Request, form: forms.BoundForm, status: int = 200,
                   error: str = "") -> Response:
        session = panel.session(request) or panel.sessions.create(panel.clock())
        return panel.render(request, "login.html", status, session=session, form=form,
                            error=error, no_users=panel.users is None)

    async def home(request: Request) -> Response:
        user = panel.user(request)
        if user is None:
            return RedirectResponse("/login", status_code=303)
        return panel.render(request, "home.html")

    async def login_get(request: Request) -> Response:
        if panel.user(request) is not None:
            return RedirectResponse("/", status_code=303)
        return login_page(request, forms.empty_form(LOGIN_FORM))

    async def login_post(request: Request) -> Response:
        form = forms.bind(LOGIN_FORM, await request.form())
        # One login at a time: the throttle's wait() and failed() must not interleave, or
        # a burst of parallel guesses would all pass wait() before the first failed().
        async with panel.login_lock:
            return await check_login(request, form)

    async def check_login(request: Request, form: forms.BoundForm) -> Response:
        t = TEXTS[panel.language(request)]
        if not form.ok:
            return login_page(request, form, 400)
        if panel.users is None:
            return login_page(request, form, 400, t["no_users"])
        name = str(form.values["name"])
        address = request.client.host if request.client else "?"
        now = panel.clock()
        wait = panel.throttle.wait(name, address, now)
        if wait > 0:
            log.warning("login of %r from %s throttled for %.0f s", name, address, wait)
            seconds = math.ceil(wait)
            return login_page(request, form, 429, t["throttled"].format(
                seconds=persian_digits(seconds) if panel.language(request) == "fa"
                else seconds))
        user = panel.users.find_user(name)
        # In a worker thread, so pages keep being served during the ~0.1 s of Argon2id.
        good = await run_in_threadpool(verify_password, user.password_hash if user else None,
                                       str(form.values["password"]))
        if not good or user is None or user.disabled:
            panel.throttle.failed(name, address, now)
            log.info("failed login of %r from %s", name, address)
            return login_page(request, form, 400, t["bad_login"])
        panel.throttle.succeeded(name, address, now)
        old = panel.session(request)
        if old is not None:
            panel.sessions.drop(old.id)  # a new id at login: no session fixation
        session = panel.sessions.create(now, user=user.name)
        panel.users.record_login(user.name, panel.wall_clock(), address)
        log.info("login of %r (%s) from %s", user.name, user.role.value, address)
        response = RedirectResponse("/", status_code=303)
        panel.set_cookie(request, response, session)
        return response

    async def logout(request: Request) -> Response:
        session = panel.session(request)
        if session is not None:
            panel.sessions.drop(session.id)
        response = RedirectResponse("/login", status_code=303)
        response.delete_cookie(COOKIE, path="/", httponly=True, samesite="strict")
        return response

    async def health(request: Request) -> Response:
        return panel.render(request, "health.html", now=jalali(panel.wall_clock()),
                            users_ready=panel.users is not None)

    async def about(request: Request) -> Response:
        if panel.user(request) is None:
            return RedirectResponse("/login", status_code=303)
        libraries = [(name, importlib.metadata.version(name))
                     for name in ("starlette", "jinja2", "uvicorn", "argon2-cffi")]
        return panel.render(request, "about.html", assets=load_manifest(), libraries=libraries)

    async def language(request: Request) -> Response:
        lang = request.path_params["lang"]
        if lang not in LANGUAGES:
            return panel.render(request, "error.html", 404, message_key="not_found")
        back = request.query_params.get("next", "/")
        if not back.startswith("/") or back.startswith("//") or "\\" in back:
            back = "/"
        response = RedirectResponse(back, status_code=303)
        response.set_cookie(LANG_COOKIE, lang, max_age=365 * 86400, httponly=True,
                            samesite="strict", path="/")
        return response

    routes = [
        Route("/", home),
        Route("/login", login_get, methods=["GET"]),
        Route("/login", login_post, methods=["POST"]),
        Route("/logout", logout, methods=["POST"]),
        Route("/health", health),
        Route("/about", about),
        Route("/lang/{lang}", language),
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
    ]
    routes += common.routes(panel)
    routes += members.routes(panel)
    routes += offers.routes(panel)
    routes += giftcards_page.routes(panel)
    routes += campaigns_page.routes(panel)
    routes += marketing_page.routes(panel)
    routes += draws_page.routes(panel)
    routes += program.routes(panel)
    routes += users_page.routes(panel)
    routes += audit_page.routes(panel)
    routes += dashboard.routes(panel)
    routes += terminals.routes(panel)
    routes += sms.routes(panel)
    routes += member_self.routes(panel)
    routes += member_transfer.routes(panel)
    routes += survey_page.routes(panel)
    routes += surveys_page.routes(panel)
    app = Starlette(routes=routes)
    common.install(app, panel)
    member_self.install(app, panel)
    app.state.panel = panel
    app.add_middleware(PanelGuard, sessions=panel.sessions, clock=clock)
    return app

