"""The ASGI layer every request passes: session lookup, the CSRF check, security headers.

A CSRF check in each page would be one forgotten page away from a hole; here every
request that is not GET or HEAD is refused with 403 before any page sees it, unless it
carries its session's token (form field `csrf_token`, or header `X-CSRF-Token` for htmx).
Only url-encoded forms are accepted, so the token is always found where it is looked for.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from http.cookies import SimpleCookie
from typing import Any
from urllib.parse import parse_qs

from panel.sessions import SessionStore, csrf_valid
from panel.texts import TEXTS
from protocols.persian import persian_digits

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

COOKIE = "panel_session"
MAX_FORM_BYTES = 64 * 1024
SAFE_METHODS = frozenset({"GET", "HEAD"})
#: Everything from this origin only: the vendored htmx and font, the panel's own CSS.
#: No inline script; inline style attributes are allowed for SVG charts' fills.
SECURITY_HEADERS = [
    (b"content-security-policy",
     b"default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
     b"img-src 'self' data:; font-src 'self'; form-action 'self'; frame-ancestors 'none'; "
     b"base-uri 'none'"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"same-origin"),
    (b"x-frame-options", b"DENY"),
    (b"cache-control", b"no-store"),
]
#: The member's side (/m, /m/<token>): no script at all, and no Referer ever, so the
#: token in the address never leaves in a header (docs/member-page.md).
MEMBER_HEADERS = [
    (b"content-security-policy",
     b"default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; "
     b"frame-ancestors 'none'; base-uri 'none'"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
    (b"cache-control", b"no-store"),
]


def member_side(path: str) -> bool:
    """The member's own pages and the survey: their credential is the token, never a
    panel session, and their forms carry a CSRF token bound to it (checked by
    panel.pages.member_self and panel.pages.survey)."""
    return path == "/m" or path.startswith(("/m/", "/s/"))


def session_cookie(scope: Scope) -> str | None:
    for name, value in scope.get("headers", []):
        if name == b"cookie":
            jar: SimpleCookie = SimpleCookie()
            try:
                jar.load(value.decode("latin-1"))
            except Exception:
                return None
            if COOKIE in jar:
                return jar[COOKIE].value
    return None


class PanelGuard:
    def __init__(self, app: ASGIApp, sessions: SessionStore, clock: Callable[[], float]) -> None:
        self.app = app
        self.sessions = sessions
        self.clock = clock

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        member = member_side(scope.get("path", ""))
        session = (None if member else
                   self.sessions.from_cookie(session_cookie(scope), self.clock()))
        scope.setdefault("state", {})["panel_session"] = session
        extra = MEMBER_HEADERS if member else SECURITY_HEADERS

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                present = {k.lower() for k, _ in headers}
                headers += [(k, v) for k, v in extra if k not in present]
                message["headers"] = headers
            await send(message)

        if scope["method"] in SAFE_METHODS:
            await self.app(scope, receive, send_with_headers)
            return
        headers = {k.lower(): v for k, v in scope.get("headers", [])}
        ctype = headers.get(b"content-type", b"").split(b";")[0].strip().lower()
        if ctype != b"application/x-www-form-urlencoded":
            await _refuse(send_with_headers, 415, "only url-encoded forms are accepted")
            return
        body = bytearray()
        more = True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body += message.get("body", b"")
            more = message.get("more_body", False)
            if len(body) > MAX_FORM_BYTES:
                await _refuse(send_with_headers, 413, "form too large")
                return
        try:
            form = parse_qs(body.decode("utf-8"), keep_blank_values=True)
        except UnicodeDecodeError:
            await _refuse(send_with_headers, 400, "form is not UTF-8")
            return
        tokens = form.get("csrf_token", [])
        token = tokens[0] if len(tokens) == 1 else None
        if token is None and b"x-csrf-token" in headers:
            token = headers[b"x-csrf-token"].decode("latin-1")
        # the member's side checks its own token, bound to the member's link or /m form
        if not member and not csrf_valid(session, token):
            await _refuse(send_with_headers, 403, "CSRF token missing or wrong: nothing changed")
            return
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": bytes(body), "more_body": False}
            return await receive()

        await self.app(scope, replay, send_with_headers)


async def _refuse(send: Send, status: int, why: str) -> None:
    """A short plain answer in both languages; the request went no further than here."""
    text = f"{persian_digits(status)}: {TEXTS['fa']['refused']}\n{status}: {why}\n".encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"text/plain; charset=utf-8"),
                            (b"content-length", str(len(text)).encode())]})
    await send({"type": "http.response.body", "body": text})
