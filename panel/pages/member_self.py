"""The member's own pages, /m/<token> and /m: served by the panel's app with their own,
much smaller permissions (docs/member-page.md).

No panel session is ever read here (panel.guard gives these paths none): the credential is
the token in the address, which opens one member of one club and nothing else. Every page
starts with `open_member(panel, request, conn)`, which resolves the token (hash lookup,
then member_tokens.check) or raises LinkInvalid, answered by one plain 404 page that never
says why; a client that keeps sending bad links is refused for a while (GuessLimiter).
A form's CSRF token is HMAC(secret, token hash): only someone holding the link can make
one, and no cookie is needed.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
import secrets
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from backend import (
    ledger,
    member_tokens,
    otp,
    store,
    store_audit,
    store_member_tokens,
    store_members,
    store_registry,
    store_segments,
    texts,
)
from backend.engine import Connection
from backend.member_tokens import GuessLimiter, TokenError, TokenRecord
from backend.program import Offer, Program
from backend.sms import outbox
from backend.store_members import MemberProfile
from backend.store_registry import Club
from backend.texts import tier_label
from panel import forms
from panel.pages.common import database, post_form, redirect
from panel.pages.members import birthday, birthday_field
from panel.pages.program import club_program
from panel.periods import jalali_day
from panel.texts import DIRECTION, TEXTS
from protocols.persian import TEHRAN, ascii_digits, format_rials, jalali, persian_digits

if TYPE_CHECKING:
    from starlette.applications import Starlette

    from panel.app import Panel

log = logging.getLogger("panel.member")

PURCHASES_SHOWN = 20
LEDGER_SHOWN = 30

PROFILE_FORM = (
    forms.Field("name", "self_name", forms.text, required=False, max_length=80),
    forms.Field("birthday", "self_birthday", birthday, required=False, max_length=20),
)


class LinkInvalid(Exception):
    """A link that opens nothing (unknown, expired, revoked, malformed, another club's):
    all answered by the same 404 page."""


class Throttled(Exception):
    """Too many bad links or code requests from this client: 429, nothing looked up."""


class FormRefused(Exception):
    """A member-side form without its CSRF token: 403, nothing changed."""


@dataclass
class MemberSide:
    """The member side's state, one per app: the CSRF secret and the rate limits."""

    secret: bytes
    #: bad links per client address
    guesses: GuessLimiter = field(default_factory=GuessLimiter)
    #: one-time code requests per client address, and per phone (so a known phone and
    #: an unknown one are limited alike: no membership oracle)
    asks: GuessLimiter = field(default_factory=lambda: GuessLimiter(5, 600.0))
    phones: GuessLimiter = field(default_factory=lambda: GuessLimiter(3, 600.0))
    #: wrong codes per client address
    codes: GuessLimiter = field(default_factory=lambda: GuessLimiter(6, 600.0))


@dataclass(frozen=True, slots=True)
class Opened:
    """What a valid link opened: the member and club it is bound to, and the form token."""

    token: str
    record: TokenRecord
    member: MemberProfile
    club: Club
    program: Program
    csrf: str

    @property
    def path(self) -> str:
        """The page's own path, `/m/<token>` (forms post under it)."""
        return member_tokens.link_path(member_tokens.PAGE, self.token)


def side(panel: Panel) -> MemberSide:
    return panel.member_side


#: the fresh-link form's cookie (its CSRF token is an HMAC of it): /m has no link yet
ASK_COOKIE = "m_form"
_ASK_VALUE = re.compile(r"[A-Za-z0-9_-]{22}")


def _secure(panel: Panel, request: Request) -> bool:
    secure = panel.settings.secure_cookies
    return request.url.scheme == "https" if secure is None else secure


def club_of_request(conn: Connection, request: Request) -> Club | None:
    """The club whose public address this request came to (host and port, as the SMS
    links name it); None when no club's, or several clubs', address is this host."""
    here = request.url.netloc.lower()
    clubs = [c for c in store_registry.list_clubs(conn)
             if c.public_url and urlsplit(c.public_url).netloc.lower() == here]
    return clubs[0] if len(clubs) == 1 else None


def client_of(request: Request) -> str:
    return request.client.host if request.client else "?"


def form_token(secret: bytes, what: str) -> str:
    return hmac.new(secret, what.encode(), hashlib.sha256).hexdigest()[:32]


def open_member(panel: Panel, request: Request, conn: Connection) -> Opened:
    """The member the path's token opens, or LinkInvalid (Throttled when this client has
    sent too many bad links). Every page and form of /m/<token> starts here."""
    state, client, now = side(panel), client_of(request), panel.clock()
    if not state.guesses.allowed(client, now):
        raise Throttled
    path = member_tokens.link_path(member_tokens.PAGE, str(request.path_params["token"]))
    try:
        _, token = member_tokens.parse_path(path)
        record = store_member_tokens.find(conn, member_tokens.hash_token(token))
        club_id = record.club_id if record is not None else -1
        record = member_tokens.check(record, path, club_id, panel.wall_clock())
        club = store_registry.club_by_id(conn, record.club_id)
        member = store_members.member(conn, record.club_id, record.member_id)
        if club is None or member is None:
            raise TokenError("member or club gone")
    except TokenError as exc:
        state.guesses.failed(client, now)
        log.info("member link refused (%s) from %s", exc.reason, client)
        raise LinkInvalid from None
    return Opened(token, record, member, club, club_program(panel, conn, club.id),
                  form_token(state.secret, "page:" + record.token_hash))


def check_form(panel: Panel, me: Opened, data: dict[str, str]) -> None:
    """A member-side form must carry the token its page was rendered with."""
    if not hmac.compare_digest(data.get("csrf", ""), me.csrf):
        raise FormRefused


def render(panel: Panel, request: Request, name: str, status: int = 200,
           **context: Any) -> Response:
    """A member-side page: the small mobile base (self_base.html), Persian digits and
    Jalali dates in Persian, and nothing of the panel's session."""
    lang = panel.language(request)

    def num(value: object) -> str:
        return persian_digits(value) if lang == "fa" else str(value)

    def money(value: int) -> str:
        return format_rials(value) if lang == "fa" else f"{value:,}"

    def day(value: datetime | None) -> str:
        return "" if value is None else num(jalali(value, "%Y/%m/%d"))

    def when(value: datetime | None) -> str:
        return "" if value is None else num(jalali(value, "%Y/%m/%d %H:%M"))

    context.update(lang=lang, dir=DIRECTION[lang], t=TEXTS[lang], num=num, money=money,
                   day=day, when=when, tier_label=tier_label,
                   jalali_date=lambda d: num(jalali_day(d)))
    return panel.templates.TemplateResponse(request, name, context, status_code=status)


def next_tier(program: Program, spend: int) -> tuple[str, int] | None:
    """The next tier above what `spend` reaches and the rials still needed; None at the top."""
    for tier in program.tiers:
        if tier.min_spend > spend:
            return tier.name, tier.min_spend - spend
    return None


def offers_for(offers: list[Offer], now: datetime, *, tier: str, visits: int,
               segment: str | None) -> list[Offer]:
    """The club's offers running today (or later) that this member can get: the target
    decides (a birthday offer is shown to everyone: it says when it applies)."""
    today = now.astimezone(TEHRAN).date()
    shown = []
    for o in offers:
        if o.ended or o.until < today:
            continue
        kind, arg = o.target.partition(":")[0], o.target.partition(":")[2]
        if ((kind == "tier" and arg != tier) or (kind == "visits" and visits < int(arg))
                or (kind == "segment" and arg != segment)):
            continue
        shown.append(o)
    return shown


def page_context(panel: Panel, conn: Connection, me: Opened) -> dict[str, Any]:
    """Everything the member's page shows, read for this member only."""
    m, program, now = me.member, me.program, panel.wall_clock()
    spend = store.spend(conn, m.id, now - timedelta(days=program.tier_window_days), now)
    visits = store.visits(conn, m.id)
    return dict(
        me=me, m=m, club=me.club, balance=ledger.balance(conn, m.id),
        held=ledger.held(conn, m.id), lots=store_member_tokens.expiring_lots(conn, m.id),
        spend=spend, next_tier=next_tier(program, spend), window=program.tier_window_days,
        purchases=store_members.purchases(conn, m.id, limit=PURCHASES_SHOWN),
        entries=store_members.ledger(conn, m.id, limit=LEDGER_SHOWN),
        offers=offers_for(store.offers(conn, club_id=me.club.id), now, tier=m.tier,
                          visits=visits, segment=store_segments.segment_of(conn, m.id)),
        from_ts=store.from_ts)


def profile_form(m: MemberProfile) -> forms.BoundForm:
    return forms.BoundForm(PROFILE_FORM, {"name": m.name or "",
                                          "birthday": birthday_field(m.birthday)})


def _audit(conn: Connection, me: Opened, action: str, before: dict[str, Any],
           after: dict[str, Any], now: datetime) -> None:
    """A change the member made, in the owner's audit log under the member's code."""
    store_audit.record(conn, user=f"member:{me.member.code}", club_id=me.club.id,
                       action=action, target=f"member:{me.member.code}", before=before,
                       after=after, now=now)


def routes(panel: Panel) -> list[BaseRoute]:
    def member_page(request: Request, data: dict[str, str] | None = None) -> Response:
        with database(panel).connection() as conn:
            me = open_member(panel, request, conn)
            context = page_context(panel, conn, me)
        notice = request.query_params.get("done", "") in ("profile", "consent")
        return render(panel, request, "self_page.html", notice=notice,
                      profile_form=profile_form(me.member), **context)

    def profile(request: Request, data: dict[str, str]) -> Response:
        now = panel.wall_clock()
        with database(panel).connection() as conn:
            me = open_member(panel, request, conn)
            check_form(panel, me, data)
            form = forms.bind(PROFILE_FORM, data)
            if not form.ok:
                context = page_context(panel, conn, me)
                return render(panel, request, "self_page.html", 400, notice=False,
                              profile_form=form, **context)
            name, born = form.values["name"] or None, form.values["birthday"] or None
            with store.transaction(conn):
                m = store_members.member(conn, me.club.id, me.member.id)
                assert m is not None  # open_member found it; members are never deleted
                before = {"name": m.name, "birthday": m.birthday}
                after = {"name": name, "birthday": born}
                if before != after:
                    store_members.set_name(conn, m.id, name)  # type: ignore[arg-type]
                    store.set_birthday(conn, m.id, born)  # type: ignore[arg-type]
                    _audit(conn, me, "member.self_profile", before, after, now)
        return redirect(f"{me.path}?done=profile")

    def consent(request: Request, data: dict[str, str]) -> Response:
        now = panel.wall_clock()
        with database(panel).connection() as conn:
            me = open_member(panel, request, conn)
            check_form(panel, me, data)
            wanted = data.get("consent")
            if wanted not in ("on", "off"):
                raise FormRefused
            on = wanted == "on"
            with store.transaction(conn):
                m = store_members.member(conn, me.club.id, me.member.id)
                assert m is not None
                if m.marketing_consent != on:
                    store_members.set_consent(conn, m.id, on, now)
                    _audit(conn, me, "member.self_marketing_sms",
                           {"marketing_sms": m.marketing_consent}, {"marketing_sms": on}, now)
        return redirect(f"{me.path}?done=consent")

    async def page(request: Request) -> Response:
        return await run_in_threadpool(member_page, request)

    # -- a fresh link: phone -> a one-time code by SMS -> the code -> a link by SMS ----
    # Every answer is the same for a phone that is a member and one that is not (and for
    # a club this address does not serve): the page is no membership oracle.

    def ask_render(request: Request, step: str, status: int = 200, *, phone: str = "",
                   error: str = "") -> Response:
        cookie = request.cookies.get(ASK_COOKIE, "")
        fresh = not _ASK_VALUE.fullmatch(cookie)
        if fresh:
            cookie = secrets.token_urlsafe(16)
        response = render(panel, request, "self_ask.html", status, step=step, phone=phone,
                          error=error, csrf=form_token(side(panel).secret, "ask:" + cookie))
        if fresh:
            response.set_cookie(ASK_COOKIE, cookie, httponly=True, samesite="strict",
                                path="/m", secure=_secure(panel, request))
        return response

    def ask_page(request: Request) -> Response:
        return ask_render(request, "phone")

    def ask(request: Request, data: dict[str, str]) -> Response:
        state, client, clock = side(panel), client_of(request), panel.clock()
        cookie = request.cookies.get(ASK_COOKIE, "")
        if not _ASK_VALUE.fullmatch(cookie) or not hmac.compare_digest(
                data.get("csrf", ""), form_token(state.secret, "ask:" + cookie)):
            raise FormRefused
        try:
            phone = forms.phone(data.get("phone", ""))
        except forms.FieldError as exc:
            return ask_render(request, "phone", 400, phone=data.get("phone", "")[:32],
                              error=str(exc))
        if data.get("step") == "code":
            return check_code(request, phone, data.get("code", ""), state, client, clock)
        if not (state.asks.allowed(client, clock) and state.phones.allowed(phone, clock)):
            return ask_render(request, "too_many", 429)
        state.asks.failed(client, clock)  # every request counts, member or not
        state.phones.failed(phone, clock)
        now = panel.wall_clock()
        with database(panel).connection() as conn, store.transaction(conn):
            club = club_of_request(conn, request)
            member = (store.member_by_phone(conn, phone, club_id=club.id)
                      if club is not None else None)
            if club is not None and member is not None:
                program = club_program(panel, conn, club.id)
                otp_id, code = otp.issue(conn, member.id, program, now, store.OTP_LINK)
                outbox.enqueue(conn, key=f"otp:{otp_id}", phone=phone, kind="otp", now=now,
                               text=texts.link_otp_sms(shop_name=club.name, code=code),
                               club_id=club.id, member_id=member.id)
        return ask_render(request, "code", phone=phone)

    def check_code(request: Request, phone: str, code: str, state: MemberSide, client: str,
                   clock: float) -> Response:
        if not state.codes.allowed(client, clock):
            return ask_render(request, "too_many", 429)
        code = ascii_digits(code.strip())
        now = panel.wall_clock()
        with database(panel).connection() as conn, store.transaction(conn):
            club = club_of_request(conn, request)
            member = (store.member_by_phone(conn, phone, club_id=club.id)
                      if club is not None and code.isascii() and code.isdigit() else None)
            why = (otp.check(conn, member.id, code, now, store.OTP_LINK)
                   if member is not None else otp.NONE_OPEN)
            if why is None and club is not None and member is not None:
                program = club_program(panel, conn, club.id)
                link = store_member_tokens.sms_link(
                    conn, member_id=member.id, club_id=club.id, public_url=club.public_url,
                    now=now, days=program.link_days)
                if link is not None:
                    outbox.enqueue(conn, key=f"link:{member.id}:{secrets.token_hex(8)}",
                                   phone=phone, kind="link", now=now, club_id=club.id,
                                   member_id=member.id,
                                   text=texts.link_sms(shop_name=club.name, link=link))
        if why is not None:
            state.codes.failed(client, clock)
            log.info("fresh link: code refused (%s) from %s", why, client)
            return ask_render(request, "code", 400, phone=phone, error="wrong")
        return ask_render(request, "sent")

    return [
        Route("/m", ask_page, methods=["GET"]),
        Route("/m", post_form(ask), methods=["POST"]),
        Route("/m/{token}", page, methods=["GET"]),
        Route("/m/{token}/profile", post_form(profile), methods=["POST"]),
        Route("/m/{token}/consent", post_form(consent), methods=["POST"]),
    ]


def install(app: Starlette, panel: Panel) -> None:
    """The member side's answers: one plain page for any bad link, 429, 403."""

    async def invalid(request: Request, exc: Exception) -> Response:
        return render(panel, request, "self_invalid.html", 404)

    async def throttled(request: Request, exc: Exception) -> Response:
        return render(panel, request, "self_invalid.html", 429, throttled=True)

    async def refused(request: Request, exc: Exception) -> Response:
        return render(panel, request, "self_refused.html", 403)

    app.add_exception_handler(LinkInvalid, invalid)
    app.add_exception_handler(Throttled, throttled)
    app.add_exception_handler(FormRefused, refused)


def new_state(secret: bytes | None) -> MemberSide:
    """The member side's state; its CSRF secret from the panel's [panel] secret when set
    (forms survive a restart), else random per process."""
    return MemberSide(hashlib.sha256(b"member-side:" + secret).digest() if secret
                      else secrets.token_bytes(32))
