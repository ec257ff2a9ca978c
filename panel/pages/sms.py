"""Page 6, SMS: the club's outbox by status and kind, its last messages (phones masked as
in the logs), the failures with their reason, and a retry button for a failed message
(CSRF-checked by the guard, idempotent in the store, written to the audit log)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from backend import store, store_sms
from backend.sms import outbox
from panel.pages import common
from panel.roles import Permission
from protocols.identity import mask_phone

if TYPE_CHECKING:
    from panel.app import Panel

common.nav(60, "/sms", "sms", Permission.VIEW_SMS)


def routes(panel: Panel) -> list[BaseRoute]:
    def page(request: Request) -> Response:
        view = common.viewer(panel, request, Permission.VIEW_SMS)
        with common.database(panel).connection() as conn:
            counts = store_sms.counts(conn, view.club_id)
            recent = store_sms.recent(conn, view.club_id)
            failed = store_sms.failures(conn, view.club_id)
        table: dict[str, dict[str, int]] = {}
        for c in counts:
            table.setdefault(c.kind, {})[c.status] = c.count
        return panel.render(
            request, "sms.html", view=view, kinds=outbox.KINDS,
            statuses=(outbox.PENDING, outbox.SENDING, outbox.SENT, outbox.FAILED),
            table=table, recent=recent, failed=failed, mask=mask_phone,
            retried=request.query_params.get("retried", ""))

    def retry(request: Request, data: dict[str, str]) -> Response:
        view = common.viewer(panel, request, Permission.RETRY_SMS)
        sms_id = int(request.path_params["sms_id"])
        now = panel.wall_clock()
        with common.database(panel).connection() as conn, store.transaction(conn):
            before = store_sms.message(conn, view.club_id, sms_id)
            if before is None:
                common.not_found()
            if store_sms.retry(conn, view.club_id, sms_id, now):
                common.audit(conn, view, "sms.retry", f"sms:{sms_id}",
                             {"status": before.status, "attempts": before.attempts},
                             {"status": outbox.PENDING}, now)
        return common.redirect(f"/sms?retried={sms_id}")

    return [Route("/sms", page, methods=["GET"]),
            Route("/sms/{sms_id:int}/retry", common.post_form(retry), methods=["POST"])]
