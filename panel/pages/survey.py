"""The member's survey page, /s/<token>: one rating 1-5 and an optional comment.

No panel session: the link's token is the credential (backend.member_tokens), bound to
one purchase. The form's CSRF value is an HMAC of the token under a secret of this app,
so a form is only good for its own link. Bad links count against the client in a
GuessLimiter and all answer the same 404. Every answer is `no-store` and sends no
referrer (the token is in the path).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from typing import TYPE_CHECKING

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from backend import member_tokens, store, store_surveys, surveys
from backend.member_tokens import GuessLimiter, TokenError
from panel.pages.common import database, post_form
from protocols.persian import persian_digits

if TYPE_CHECKING:
    from panel.app import Panel

HEADERS = {"Referrer-Policy": "no-referrer", "Cache-Control": "no-store"}


def routes(panel: Panel) -> list[BaseRoute]:
    secret = panel.settings.secret or secrets.token_bytes(32)
    limiter = GuessLimiter()

    def csrf(token: str) -> str:
        return hmac.new(secret, b"survey:" + token.encode("ascii"), hashlib.sha256).hexdigest()

    def show(request: Request, status: int, **context: object) -> Response:
        context.setdefault("survey", None)
        context.setdefault("error", "")
        context.setdefault("state", "")
        response = panel.templates.TemplateResponse(
            request, "survey.html", {"fa": persian_digits, **context}, status_code=status)
        response.headers.update(HEADERS)
        return response

    def client(request: Request) -> str:
        return request.client.host if request.client else "-"

    def opened(request: Request, conn: object) -> store_surveys.Survey | None:
        """The survey of this link, or None (counted as a bad guess)."""
        token = request.path_params["token"]
        now = panel.wall_clock()
        if not limiter.allowed(client(request), time.monotonic()):
            return None
        try:
            member_tokens.parse_path(f"/s/{token}")
            s = store_surveys.by_token(conn, token)  # type: ignore[arg-type]
            if s is None:
                raise TokenError("unknown token")
            member_tokens.check(s.token_record(), f"/s/{token}", s.club_id, now)
            return s
        except TokenError:
            limiter.failed(client(request), time.monotonic())
            return None

    def get(request: Request) -> Response:
        with database(panel).connection() as conn:
            s = opened(request, conn)
        if s is None:
            return show(request, 404, state="invalid")
        return show(request, 200, survey=s, csrf=csrf(request.path_params["token"]),
                    state="answered" if s.answered_at else "ask")

    def post(request: Request, data: dict[str, str]) -> Response:
        token = request.path_params["token"]
        with database(panel).connection() as conn:
            s = opened(request, conn)
            if s is None:
                return show(request, 404, state="invalid")
            if not hmac.compare_digest(data.get("csrf", ""), csrf(token)):
                return show(request, 403, state="csrf")
            if s.answered_at is not None:
                return show(request, 200, survey=s, state="answered")
            try:
                rating, comment = surveys.parse_answer(data.get("rating", ""),
                                                       data.get("comment", ""))
            except surveys.SurveyError as exc:
                return show(request, 400, survey=s, csrf=csrf(token), state="ask",
                            error=str(exc), comment=data.get("comment", "")[:500])
            with store.transaction(conn):
                done = store_surveys.answer(conn, s.id, rating, comment, panel.wall_clock())
        return show(request, 200, survey=s, state="thanks" if done else "answered")

    return [Route("/s/{token}", get, methods=["GET"]),
            Route("/s/{token}", post_form(post), methods=["POST"])]
