"""The audit log: every change made in the panel (and by `loyalty-backend user`), newest
first, with who, when, what, and the values before and after."""

from __future__ import annotations

from typing import TYPE_CHECKING

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from backend import store_audit
from panel.pages import common
from panel.pages.common import database, viewer
from panel.roles import Permission
from protocols.persian import ascii_digits

if TYPE_CHECKING:
    from panel.app import Panel

common.nav(80, "/audit", "audit", Permission.READ_AUDIT_LOG)
PAGE = 100


def routes(panel: Panel) -> list[BaseRoute]:
    def audit_page(request: Request) -> Response:
        view = viewer(panel, request, Permission.READ_AUDIT_LOG)
        before = ascii_digits(request.query_params.get("before", ""))
        before_id = int(before) if before.isascii() and before.isdigit() else None
        with database(panel).connection() as conn:
            entries = store_audit.entries(conn, view.club_id, limit=PAGE, before_id=before_id)
        return panel.render(request, "audit.html", view=view, entries=entries,
                            more=entries[-1].id if len(entries) == PAGE else None)

    return [Route("/audit", audit_page, methods=["GET"])]
