"""Page 5, terminals: every terminal of the club with its branch, presence (the agents'
retained status on the broker, panel/presence.py), last seen and sales today; and the
unknown terminals that knocked (a provider sees all; an owner those with a merchant id of
one of the club's terminals, which is how a shop's new, unregistered terminal shows)."""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from backend import store_registry, store_terminals
from backend.store import ts
from panel import periods
from panel.pages import common
from panel.roles import Permission

if TYPE_CHECKING:
    from panel.app import Panel

common.nav(50, "/terminals", "terminals", Permission.VIEW_TERMINALS)


def routes(panel: Panel) -> list[BaseRoute]:
    def page(request: Request) -> Response:
        view = common.viewer(panel, request, Permission.VIEW_TERMINALS)
        today = periods.today(periods.tehran_day(panel.wall_clock()))
        since, until = today.utc_bounds()
        with common.database(panel).connection() as conn:
            terminals = store_registry.list_terminals(conn, view.club_id)
            sales = store_terminals.sales_by_terminal(conn, view.club_id, ts(since), ts(until))
            unknown = store_registry.list_unknown_terminals(conn)
        if not view.can(Permission.ALL_CLUBS):
            merchants = {t.merchant_id for t in terminals if t.merchant_id}
            unknown = [u for u in unknown if u.merchant_id in merchants]
        presence = panel.presence
        seen = presence.all() if presence is not None else {}
        rows = []
        for t in terminals:
            p = seen.get(t.id)
            s = sales.get(t.id)
            rows.append({
                "t": t, "state": "unknown" if p is None else "online" if p.online else "offline",
                "since": (p.said_at or p.received_at) if p is not None else None,
                "purchases": s.purchases if s else 0, "sales": s.sales if s else 0,
                "last_purchase": s.last_purchase if s else None,
            })
        return panel.render(
            request, "terminals.html", view=view, rows=rows, unknown=unknown,
            broker=presence.broker if presence is not None else None,
            broker_connected=presence is not None and presence.connected.is_set(),
            today_label=today.label(), stale=timedelta(minutes=5))

    return [Route("/terminals", page)]
