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
import secrets
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from backend import (
    ledger,
    member_tokens,
    store,
    store_member_tokens,
    store_members,
    store_registry,
    store_segments,
)
from backend.engine import Connection
from backend.member_tokens import GuessLimiter, TokenError, TokenRecord
from backend.program import Offer, Program
from backend.store_members import MemberProfile
from backend.store_registry import Club
from backend.texts import tier_label
from panel import forms
from panel.pages.common import database
from panel.pages.members import birthday, birthday_field
from panel.pages.program import club_program
from panel.periods import jalali_day
from panel.texts import DIRECTION, TEXTS
from protocols.persian import TEHRAN, format_rials, jalali, persian_digits

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


def routes(panel: Panel) -> list[BaseRoute]:
    def member_page(request: Request) -> Response:
        with database(panel).connection() as conn:
            me = open_member(panel, request, conn)
            context = page_context(panel, conn, me)
        notice = request.query_params.get("done", "") in ("profile", "consent")
        return render(panel, request, "self_page.html", notice=notice,
                      profile_form=profile_form(me.member), **context)

    async def page(request: Request) -> Response:
        return await run_in_threadpool(member_page, request)

    return [
        Route("/m/{token}", page, methods=["GET"]),
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
