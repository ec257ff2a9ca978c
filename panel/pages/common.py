"""What every page of the panel shares: who is looking at which club, the header's links,
the answers for "log in first", "not allowed" and "not found", and the audit row.

A page starts with `view = viewer(panel, request, Permission.X)`: it raises before the page
does anything when the user may not, and `view.club_id` is the only club the page may read.
An id from a URL is always looked up together with that club, so another club's member or
offer answers 404 (`not_found()`), exactly as an id that does not exist.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, NoReturn

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from backend import store_audit
from backend.engine import Connection
from panel.database import Database
from panel.roles import Permission, Role, allowed, shown_phone
from panel.users import PanelUser

if TYPE_CHECKING:
    from starlette.applications import Starlette

    from panel.app import Panel

#: The session key of the club a provider is looking at (owner and staff have their own).
CLUB_KEY = "club_id"


class LoginRequired(Exception):
    """No live session: the answer is the login page."""


class Denied(Exception):
    """Logged in, but this role may not do this: 403, nothing changed."""


class NotFound(Exception):
    """No such thing in the viewer's club (or none at all: the two look the same)."""


class NoDatabase(Exception):
    """The panel was started without a database: pages that need one answer 503."""


@dataclass(frozen=True, slots=True)
class Viewer:
    user: PanelUser
    club_id: int
    club_name: str

    def can(self, permission: Permission | str) -> bool:
        return allowed(self.user.role, Permission(permission))

    def phone(self, phone: str) -> str:
        """Masked for staff, as in the logs; whole for an owner or a provider."""
        return shown_phone(self.user.role, phone)


@dataclass(frozen=True, slots=True)
class NavItem:
    order: int
    path: str
    text_key: str
    permission: Permission


NAV: list[NavItem] = []


def nav(order: int, path: str, text_key: str, permission: Permission) -> None:
    """A link in the header, shown to the users with `permission` (called at import)."""
    if not any(item.path == path for item in NAV):
        NAV.append(NavItem(order, path, text_key, permission))
        NAV.sort(key=lambda item: item.order)


def nav_for(user: PanelUser | None) -> list[NavItem]:
    if user is None:
        return []
    return [item for item in NAV if allowed(user.role, item.permission)]


def database(panel: Panel) -> Database:
    if panel.database is None:
        raise NoDatabase
    return panel.database


def viewer(panel: Panel, request: Request, permission: Permission) -> Viewer:
    user = panel.user(request)
    if user is None:
        raise LoginRequired
    if not allowed(user.role, permission):
        raise Denied
    if user.role is not Role.PROVIDER:
        if user.club_id is None or user.club is None:
            raise Denied  # an owner or staff member always has a club; never guess one
        return Viewer(user, user.club_id, user.club)
    from backend import store_registry

    session = panel.session(request)
    chosen = session.data.get(CLUB_KEY) if session is not None else None
    with database(panel).connection() as conn:
        club = store_registry.club_by_id(conn, int(chosen)) if chosen else None
        if club is None:
            clubs = store_registry.list_clubs(conn)
            if not clubs:
                raise NotFound
            club = min(clubs, key=lambda c: c.id)
    return Viewer(user, club.id, club.name)


def not_found() -> NoReturn:
    raise NotFound


async def form_data(request: Request) -> dict[str, str]:
    """The posted form as text fields (a field sent twice keeps its first value)."""
    form = await request.form()
    out: dict[str, str] = {}
    for key, value in form.multi_items():
        if isinstance(value, str):
            out.setdefault(key, value)
    return out


def audit(conn: Connection, view: Viewer, action: str, target: str,
          before: Mapping[str, Any] | None, after: Mapping[str, Any] | None,
          now: datetime) -> None:
    """The audit row of a change, in the change's transaction (the caller's)."""
    store_audit.record(conn, user=view.user.name, club_id=view.club_id, action=action,
                       target=target, before=dict(before) if before is not None else None,
                       after=dict(after) if after is not None else None, now=now)


def post_form(handler: Callable[[Request, dict[str, str]], Response]
              ) -> Callable[[Request], Awaitable[Response]]:
    """An endpoint that reads the posted form here and runs `handler(request, form)` (the
    database work) in a worker thread, so the event loop never waits on the database."""
    async def endpoint(request: Request) -> Response:
        data = await form_data(request)
        return await run_in_threadpool(handler, request, data)
    return endpoint


def redirect(path: str) -> Response:
    return RedirectResponse(path, status_code=303)


def install(app: Starlette, panel: Panel) -> None:
    """The answers of the exceptions above, for every page."""

    async def login_required(request: Request, exc: Exception) -> Response:
        return redirect("/login")

    async def denied(request: Request, exc: Exception) -> Response:
        return panel.render(request, "error.html", 403, message_key="denied")

    async def not_found_page(request: Request, exc: Exception) -> Response:
        return panel.render(request, "error.html", 404, message_key="not_found")

    async def no_database(request: Request, exc: Exception) -> Response:
        return panel.render(request, "error.html", 503, message_key="no_database")

    app.add_exception_handler(LoginRequired, login_required)
    app.add_exception_handler(Denied, denied)
    app.add_exception_handler(NotFound, not_found_page)
    app.add_exception_handler(NoDatabase, no_database)


def routes(panel: Panel) -> list[BaseRoute]:
    """The provider's club picker: GET lists the clubs, POST chooses one (kept in the
    session, so every page after it shows that club)."""
    from backend import store_registry

    def clubs_page(request: Request) -> Response:
        view = viewer(panel, request, Permission.ALL_CLUBS)
        with database(panel).connection() as conn:
            clubs = store_registry.list_clubs(conn)
        return panel.render(request, "clubs.html", clubs=clubs, view=view)

    def choose(request: Request, data: dict[str, str]) -> Response:
        viewer(panel, request, Permission.ALL_CLUBS)
        try:
            club_id = int(data.get("club", ""))
        except ValueError:
            raise NotFound from None
        with database(panel).connection() as conn:
            club = store_registry.club_by_id(conn, club_id)
        if club is None:
            raise NotFound
        session = panel.session(request)
        assert session is not None  # viewer() found its user through it
        session.data[CLUB_KEY] = str(club.id)
        session.data["club_name"] = club.name
        return redirect("/")

    return [Route("/club", clubs_page, methods=["GET"]),
            Route("/club", post_form(choose), methods=["POST"])]

