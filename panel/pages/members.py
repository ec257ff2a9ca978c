"""Members: search, the filtered list (and its CSV), a member's page and its actions.

Staff may look up, and link cards; the owner (and a provider) also adjusts credit, edits
the name and birthday and turns marketing SMS on or off. Every change is one transaction
with its audit row; a form with an error comes back with the error beside its field and
nothing changed.
"""

from __future__ import annotations

import csv
import io
import re
import secrets
from datetime import UTC, date, datetime, timedelta
from functools import lru_cache
from itertools import islice
from typing import TYPE_CHECKING
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import BaseRoute, Route

from backend import (
    engine,
    ledger,
    store,
    store_member_tokens,
    store_members,
    store_segments,
    store_tiers,
    texts,
)
from backend.handling import enroll
from backend.program import Program
from backend.store_members import Cursor, MemberFilter, MemberSummary, SortKey
from panel import forms
from panel.pages import common
from panel.pages.common import Viewer, database, not_found, post_form, redirect, viewer
from panel.pages.program import club_program
from panel.periods import jalali_day
from panel.roles import Permission
from protocols.persian import TEHRAN, ascii_digits, jalali, persian_digits

if TYPE_CHECKING:
    from collections.abc import Iterator

    from panel.app import Panel

PAGE = 50
LEDGER_PAGE = 500
CSV_LIMIT = 200_000
MAX_ADJUST = 10**12

common.nav(20, "/members", "members", Permission.LOOK_UP_MEMBERS)


def _nonzero_amount(value: str) -> int:
    n = forms.integer(-MAX_ADJUST, MAX_ADJUST)(value)
    if n == 0:
        raise forms.FieldError("صفر چیزی را تغییر نمی‌دهد؛ مبلغی مثبت یا منفی بنویسید.")
    return n


def birthday(value: str) -> str:
    """A Jalali birthday, `1370/05/12` (as the Gregorian ISO date the backend keeps)."""
    return forms.jalali_date(value).isoformat()


ADJUST_FORM = (
    forms.Field("amount", "amount_rials", _nonzero_amount, max_length=20),
    forms.Field("reason", "reason", forms.text, max_length=200),
)
CARD_FORM = (
    forms.Field("card", "new_card", forms.card, max_length=40),
    forms.Field("old", "old_card", forms.card, required=False, max_length=40),
)
ENROL_FORM = (
    forms.Field("phone", "phone", forms.phone, max_length=32),
    forms.Field("name", "name", forms.text, required=False, max_length=80),
    forms.Field("referrer", "referrer_phone", forms.phone, required=False, max_length=32),
)
PROFILE_FORM = (
    forms.Field("name", "name", forms.text, required=False, max_length=80),
    forms.Field("birthday", "birthday", birthday, required=False, max_length=20),
)


def _jalali_bound(value: str, field: str, errors: dict[str, str]) -> datetime | None:
    """A Jalali day of a filter as the UTC instant of its Tehran midnight."""
    if not value.strip():
        return None
    try:
        day = forms.jalali_date(value)
    except forms.FieldError as exc:
        errors[field] = str(exc)
        return None
    return datetime.combine(day, datetime.min.time(), TEHRAN).astimezone(UTC)


def parse_filter(params: dict[str, str]) -> tuple[MemberFilter, dict[str, str]]:
    """The list's filter from the query string; errors per field, in Persian."""
    errors: dict[str, str] = {}
    day = timedelta(days=1)
    enrolled_from = _jalali_bound(params.get("enrolled_from", ""), "enrolled_from", errors)
    enrolled_to = _jalali_bound(params.get("enrolled_to", ""), "enrolled_to", errors)
    visited_from = _jalali_bound(params.get("visited_from", ""), "visited_from", errors)
    visited_to = _jalali_bound(params.get("visited_to", ""), "visited_to", errors)
    min_spend = None
    if params.get("min_spend", "").strip():
        try:
            min_spend = forms.integer(0, MAX_ADJUST * 1000)(params["min_spend"])
        except forms.FieldError as exc:
            errors["min_spend"] = str(exc)
    try:
        sort = SortKey(params.get("sort", SortKey.ENROLLED.value))
    except ValueError:
        errors["sort"] = "این ترتیب را نمی‌شناسیم."
        sort = SortKey.ENROLLED
    tier = params.get("tier", "").strip() or None
    flt = MemberFilter(
        tier=tier, enrolled_from=enrolled_from,
        enrolled_until=enrolled_to + day if enrolled_to else None,
        visited_from=visited_from, visited_until=visited_to + day if visited_to else None,
        min_spend=min_spend, sort=sort, descending=params.get("dir", "desc") != "asc")
    return flt, errors


#: the query parameters of a place in the list (not of its filter): the page's number as
#: shown, and the row it starts after or before (its id, and its sort value: `key`, absent
#: for NULL), or the last page
PLACE = ("page", "after", "before", "key", "last")


def parse_place(params: dict[str, str], sort: SortKey) -> tuple[str, Cursor | None, int]:
    """Where the list starts: ("first", None, 1), ("after" | "before", the cursor, the
    page number the link said) or ("last", None, 0). A cursor that does not parse (edited
    by hand) gives the first page: a link, not a form, so there is no field to blame."""
    if params.get("last") == "1":
        return "last", None, 0
    for side in ("after", "before"):
        if side not in params:
            continue
        raw_id = ascii_digits(params[side])
        raw_key = params.get("key")
        if not (raw_id.isascii() and raw_id.isdigit() and len(raw_id) < 19):
            break
        value: int | str | None = raw_key
        if raw_key is None:
            if sort not in (SortKey.LAST_VISIT, SortKey.NAME):  # never NULL
                break
        elif sort is not SortKey.NAME:
            key = raw_key.removeprefix("-")
            if not (key.isascii() and key.isdigit() and len(key) < 19):
                break
            value = int(raw_key)
        try:
            page = max(1, min(10**6, int(ascii_digits(params.get("page", "1")))))
        except ValueError:
            page = 1
        return side, Cursor(value, int(raw_id)), page
    return "first", None, 1


def place_query(params: dict[str, str], side: str, row: MemberSummary, sort: SortKey,
                page: int) -> str:
    """The query string of the page after or before `row` (the filter kept)."""
    cursor = store_members.cursor_of(row, sort)
    place: dict[str, object] = {side: cursor.id}
    if cursor.value is not None:
        place["key"] = cursor.value
    return urlencode({**{k: v for k, v in params.items() if k not in PLACE}, **place,
                      "page": page})


def _read_page(conn: engine.Connection, club_id: int, flt: MemberFilter, side: str,
               cursor: Cursor | None) -> store_members.MemberPage:
    """The page at the place asked; the first page when nothing is before the place asked
    (members enrolled since the link was made), the last when nothing is after it."""
    if side == "last":
        return store_members.list_members(conn, club_id, flt, limit=PAGE, last=True)
    if side == "before":
        listed = store_members.list_members(conn, club_id, flt, limit=PAGE, before=cursor)
        if len(listed.rows) < PAGE:
            return store_members.list_members(conn, club_id, flt, limit=PAGE)
        return listed
    listed = store_members.list_members(conn, club_id, flt, limit=PAGE, after=cursor)
    if not listed.rows:
        return store_members.list_members(conn, club_id, flt, limit=PAGE, last=True)
    return listed


def next_tier(program: Program, spend: int) -> tuple[str, int] | None:
    """The next tier above what `spend` reaches and the rials still needed; None at the top."""
    for tier in program.tiers:
        if tier.min_spend > spend:
            return tier.name, tier.min_spend - spend
    return None


def routes(panel: Panel) -> list[BaseRoute]:
    def members_page(request: Request) -> Response:
        return list_page(request, viewer(panel, request, Permission.LOOK_UP_MEMBERS))

    def list_page(request: Request, view: Viewer, enrol_form: forms.BoundForm | None = None
                  ) -> Response:
        params = dict(request.query_params)
        query = params.get("q", "").strip()
        flt, errors = parse_filter(params)
        side, cursor, page = parse_place(params, flt.sort)
        with database(panel).connection() as conn:
            found = store_members.search(conn, view.club_id, query) if query else None
            if found is not None and len(found) == 1 and enrol_form is None:
                return redirect(f"/members/{found[0].id}")
            listed = None if errors else _read_page(conn, view.club_id, flt, side, cursor)
            tiers = [t.name for t in club_program(panel, conn, view.club_id).tiers]
        total = listed.total if listed else 0
        pages = max(1, -(-total // PAGE))
        if listed is None or not listed.more_before:
            page = 1
        elif not listed.more_after:
            page = pages
        else:  # as the link counted, within what is possible in the middle
            page = max(2, min(pages - 1, page))
        bad = errors or (enrol_form is not None and not enrol_form.ok)
        base = {k: v for k, v in params.items() if k not in PLACE}
        return panel.render(
            request, "members.html", 400 if bad else 200, view=view, query=query,
            enrol_form=enrol_form or forms.empty_form(ENROL_FORM),
            found=found, rows=listed.rows if listed else [], total=total, page=page,
            pages=pages, params=params, errors=errors, tiers=tiers, flt=flt,
            more_before=bool(listed and listed.more_before),
            more_after=bool(listed and listed.more_after),
            base_query=urlencode(base),
            place_query=lambda side, row, to: place_query(params, side, row, flt.sort, to),
            sort_query=lambda key: urlencode(
                {**{k: v for k, v in base.items() if k not in ("sort", "dir")},
                 "sort": key, "dir": "asc" if flt.sort.value == key and flt.descending
                 else "desc"}))

    def members_csv(request: Request) -> Response:
        """The list as CSV, streamed: rows are read in keyset batches and written as they
        come, so memory stays flat at any club size and the first byte comes at once."""
        view = viewer(panel, request, Permission.LOOK_UP_MEMBERS)
        flt, errors = parse_filter(dict(request.query_params))
        if errors:
            return panel.render(request, "error.html", 400, message_key="bad_filter")

        def chunks() -> Iterator[str]:
            out = io.StringIO()
            w = csv.writer(out)
            w.writerow(["code", "phone", "name", "tier", "enrolled_jalali",
                        "last_visit_jalali", "visits", "spend_rials"])
            yield "\ufeff" + _drain(out)
            with database(panel).connection() as conn:
                rows = islice(store_members.each_member(conn, view.club_id, flt), CSV_LIMIT)
                for n, r in enumerate(rows, 1):
                    w.writerow([r.code, view.phone(r.phone), _cell(r.name or ""), r.tier,
                                _jalali_of(r.enrolled_at),
                                _jalali_of(r.last_visit) if r.last_visit else "",
                                r.visits, r.spend])
                    if n % 1000 == 0:
                        yield _drain(out)
            yield _drain(out)

        return StreamingResponse(
            chunks(), media_type="text/csv; charset=utf-8",
            headers={"content-disposition": 'attachment; filename="members.csv"'})

    def member_context(view: Viewer, member_id: int, ledger_before: int | None = None) -> dict:
        with database(panel).connection() as conn:
            m = store_members.member(conn, view.club_id, member_id)
            if m is None:
                not_found()
            program = club_program(panel, conn, view.club_id)
            now = panel.wall_clock()
            spend = store.spend(conn, m.id, now - timedelta(days=program.tier_window_days), now)
            referrer = (store_members.member(conn, view.club_id, m.referrer_id)
                        if m.referrer_id is not None else None)
            return dict(
                m=m, view=view, balance=ledger.balance(conn, m.id),
                held=ledger.held(conn, m.id), spend=spend, next_tier=next_tier(program, spend),
                window=program.tier_window_days, cards=store.cards_of(conn, m.id),
                purchases=store_members.purchases(conn, m.id),
                entries=store_members.ledger(conn, m.id, limit=LEDGER_PAGE,
                                             before_id=ledger_before),
                ledger_page=LEDGER_PAGE, referrer=referrer,
                totals=store.purchase_totals(conn, m.id),
                birthday_shown=_birthday_shown(m.birthday),
                segment=store_segments.member_segment(conn, m.id),
                live_links=store_member_tokens.live_count(conn, m.id, now),
                tier_history=store_tiers.history(conn, m.id), tier_label=texts.tier_label,
                jalali_day=jalali_day,
                when_ts=lambda value: jalali(store.from_ts(value)),
                reason=lambda ref: shown_reason(view, ref))

    def render_member(request: Request, view: Viewer, member_id: int, status: int = 200,
                      *, notice: str = "", ledger_before: int | None = None,
                      **forms_given: forms.BoundForm) -> Response:
        context = member_context(view, member_id, ledger_before)
        m = context["m"]
        profile = forms_given.get("profile_form") or forms.BoundForm(
            PROFILE_FORM, {"name": m.name or "",
                           "birthday": birthday_field(m.birthday)})
        return panel.render(
            request, "member.html", status, notice=notice,
            adjust_form=forms_given.get("adjust_form") or forms.empty_form(ADJUST_FORM),
            card_form=forms_given.get("card_form") or forms.empty_form(CARD_FORM),
            profile_form=profile, adjust_token=secrets.token_urlsafe(16), **context)

    def member_page(request: Request) -> Response:
        view = viewer(panel, request, Permission.LOOK_UP_MEMBERS)
        notice = request.query_params.get("done", "")
        before = ascii_digits(request.query_params.get("ledger_before", ""))
        return render_member(request, view, request.path_params["member_id"],
                             notice=notice if notice in NOTICES else "",
                             ledger_before=int(before) if before.isascii() and before.isdigit()
                             else None)

    # -- actions: each an async shell reading the form, the work in a thread --------------

    def adjust(request: Request, data: dict[str, str]) -> Response:
        view = viewer(panel, request, Permission.ADJUST_CREDIT)
        member_id = request.path_params["member_id"]
        form = forms.bind(ADJUST_FORM, data)
        token = data.get("token", "")
        if not (16 <= len(token) <= 64 and token.isascii()
                and token.replace("-", "").replace("_", "").isalnum()):
            form.errors["amount"] = "فرم کهنه است؛ صفحه را دوباره باز کنید."
        if not form.ok:
            _member_or_404(view, member_id)
            return render_member(request, view, member_id, 400, adjust_form=form)
        amount, reason = int(form.values["amount"]), str(form.values["reason"])
        now = panel.wall_clock()
        with database(panel).connection() as conn:
            try:
                with store.transaction(conn):
                    m = store_members.member(conn, view.club_id, member_id)
                    if m is None:
                        not_found()
                    program = club_program(panel, conn, view.club_id)
                    before = ledger.balance(conn, m.id)
                    applied = ledger.adjust(
                        conn, m.id, amount, f"adjustment:{m.id}:panel:{token}",
                        reason=reason, now=now, expires_at=program.credit_expiry(now))
                    if applied:
                        common.audit(conn, view, "member.adjust", f"member:{m.code}",
                                     {"balance": before},
                                     {"balance": before + amount, "amount": amount,
                                      "reason": reason}, now)
            except ledger.AdjustmentRefused:
                form.errors["amount"] = "این کاهش از اعتبار آزاد عضو بیشتر است."
                return render_member(request, view, member_id, 400, adjust_form=form)
        return redirect(f"/members/{member_id}?done={'adjusted' if applied else 'repeated'}")

    def card(request: Request, data: dict[str, str]) -> Response:
        view = viewer(panel, request, Permission.LINK_CARDS)
        member_id = request.path_params["member_id"]
        form = forms.bind(CARD_FORM, data)
        if not form.ok:
            _member_or_404(view, member_id)
            return render_member(request, view, member_id, 400, card_form=form)
        new, old = str(form.values["card"]), form.values["old"]
        now = panel.wall_clock()
        with database(panel).connection() as conn:
            try:
                with store.transaction(conn):
                    m = store_members.member(conn, view.club_id, member_id)
                    if m is None:
                        not_found()
                    if old is None:
                        changed = store_members.link_card(conn, m.id, new, now)
                        action, before = "member.card_link", None
                    else:
                        store_members.replace_card(conn, m.id, str(old), new, now)
                        changed, action, before = True, "member.card_replace", {"card": old}
                    if changed:
                        common.audit(conn, view, action, f"member:{m.code}", before,
                                     {"card": new}, now)
            except store_members.CardError as exc:
                field = "old" if str(exc).startswith("old") else "card"
                form.errors[field] = CARD_ERRORS.get(str(exc), "این کارت پذیرفته نشد.")
                return render_member(request, view, member_id, 400, card_form=form)
        return redirect(f"/members/{member_id}?done=card")

    def profile(request: Request, data: dict[str, str]) -> Response:
        view = viewer(panel, request, Permission.EDIT_MEMBERS)
        member_id = request.path_params["member_id"]
        form = forms.bind(PROFILE_FORM, data)
        if not form.ok:
            _member_or_404(view, member_id)
            return render_member(request, view, member_id, 400, profile_form=form)
        name = form.values["name"] or None
        born = form.values["birthday"] or None
        now = panel.wall_clock()
        with database(panel).connection() as conn, store.transaction(conn):
            m = store_members.member(conn, view.club_id, member_id)
            if m is None:
                not_found()
            before = {"name": m.name, "birthday": m.birthday}
            after = {"name": name, "birthday": born}
            if before != after:
                store_members.set_name(conn, m.id, name)  # type: ignore[arg-type]
                store.set_birthday(conn, m.id, born)  # type: ignore[arg-type]
                common.audit(conn, view, "member.profile", f"member:{m.code}", before, after,
                             now)
        return redirect(f"/members/{member_id}?done=profile")

    def consent(request: Request, data: dict[str, str]) -> Response:
        view = viewer(panel, request, Permission.EDIT_MEMBERS)
        member_id = request.path_params["member_id"]
        wanted = data.get("consent")
        if wanted not in ("on", "off"):
            _member_or_404(view, member_id)
            return render_member(request, view, member_id, 400, notice="bad_consent")
        now = panel.wall_clock()
        with database(panel).connection() as conn, store.transaction(conn):
            m = store_members.member(conn, view.club_id, member_id)
            if m is None:
                not_found()
            on = wanted == "on"
            if m.marketing_consent != on:
                store_members.set_consent(conn, m.id, on, now)
                common.audit(conn, view, "member.marketing_sms", f"member:{m.code}",
                             {"marketing_sms": m.marketing_consent}, {"marketing_sms": on}, now)
        return redirect(f"/members/{member_id}?done=consent")

    def revoke_links(request: Request, data: dict[str, str]) -> Response:
        """End every link to the member's own page (a lost or shared phone)."""
        view = viewer(panel, request, Permission.EDIT_MEMBERS)
        member_id = request.path_params["member_id"]
        now = panel.wall_clock()
        with database(panel).connection() as conn, store.transaction(conn):
            m = store_members.member(conn, view.club_id, member_id)
            if m is None:
                not_found()
            ended = store_member_tokens.revoke_all(conn, m.id, now)
            common.audit(conn, view, "member.revoke_links", f"member:{m.code}",
                         {"live_links": ended}, {"live_links": 0}, now)
        return redirect(f"/members/{member_id}?done=links_revoked")

    def enrol(request: Request, data: dict[str, str]) -> Response:
        view = viewer(panel, request, Permission.ENROL_MEMBERS)
        form = forms.bind(ENROL_FORM, data)
        if not form.ok:
            return list_page(request, view, form)
        phone, name = str(form.values["phone"]), form.values["name"] or None
        referrer_phone = form.values["referrer"]
        now = panel.wall_clock()
        with database(panel).connection() as conn, store.transaction(conn):
            engine.exclusive(conn, f"phone:{view.club_id}:{phone}")  # as the terminal's enroll
            found = store.member_by_phone(conn, phone, club_id=view.club_id, lock=True)
            if found is not None:
                return redirect(f"/members/{found.id}?done=exists")
            referrer = (store.member_by_phone(conn, str(referrer_phone), club_id=view.club_id)
                        if referrer_phone else None)
            member = enroll.enrol_new(conn, club_id=view.club_id, phone=phone,
                                      referrer_id=referrer.id if referrer else None,
                                      program=club_program(panel, conn, view.club_id),
                                      shop_name=view.club_name, now=now)
            if name:
                store_members.set_name(conn, member.id, str(name))
            common.audit(conn, view, "member.enrol", f"member:{member.code}", None,
                         {"name": name, "referrer": referrer.code if referrer else None}, now)
        return redirect(f"/members/{member.id}?done=enrolled")

    def _member_or_404(view: Viewer, member_id: int) -> None:
        with database(panel).connection() as conn:
            if store_members.member(conn, view.club_id, member_id) is None:
                not_found()

    return [
        Route("/members", members_page, methods=["GET"]),
        Route("/members.csv", members_csv, methods=["GET"]),
        Route("/members/enrol", post_form(enrol), methods=["POST"]),
        Route("/members/{member_id:int}", member_page, methods=["GET"]),
        Route("/members/{member_id:int}/adjust", post_form(adjust), methods=["POST"]),
        Route("/members/{member_id:int}/card", post_form(card), methods=["POST"]),
        Route("/members/{member_id:int}/profile", post_form(profile), methods=["POST"]),
        Route("/members/{member_id:int}/consent", post_form(consent), methods=["POST"]),
        Route("/members/{member_id:int}/revoke-links", post_form(revoke_links),
              methods=["POST"]),
    ]


NOTICES = ("adjusted", "repeated", "card", "profile", "consent", "enrolled", "exists",
           "links_revoked")
CARD_ERRORS = {
    "card is linked to another member": "این کارت به عضو دیگری وصل است.",
    "card was replaced and no longer works": "این کارت جایگزین شده و دیگر کار نمی‌کند.",
    "old card is not an active card of this member": "این کارت، کارت فعال این عضو نیست.",
    "new card is already issued": "این کارت پیش‌تر صادر شده است.",
}


_PHONE_IN_TEXT = re.compile(r"(?<!\d)09\d{9}(?!\d)")


def shown_reason(view: Viewer, ref: str | None) -> str:
    """A ledger row's reason as this viewer may read it: a referral's reason is the
    referred member's phone, masked for staff like every other phone."""
    if not ref:
        return ""
    return _PHONE_IN_TEXT.sub(lambda m: view.phone(m.group(0)), ref)


def _drain(out: io.StringIO) -> str:
    text = out.getvalue()
    out.seek(0)
    out.truncate()
    return text


def _jalali_of(at: datetime) -> str:
    """The Tehran day of `at` as a Jalali date (cached per day: an export has 100,000
    rows and a few hundred distinct days)."""
    return _jalali_cached(at.astimezone(TEHRAN).date())


@lru_cache(maxsize=4096)
def _jalali_cached(day: date) -> str:
    return jalali_day(day)


def _cell(text: str) -> str:
    """A CSV cell a spreadsheet will not run as a formula (=, +, -, @ at the start)."""
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


def birthday_field(value: str | None) -> str:
    """The stored birthday as the form shows it: a Jalali date (MM-DD ones stay as typed)."""
    if not value or len(value) != 10:
        return value or ""
    import jdatetime

    day = datetime.fromisoformat(value).date()
    return persian_digits(jdatetime.date.fromgregorian(date=day).strftime("%Y/%m/%d"))


def _birthday_shown(value: str | None) -> str:
    return birthday_field(value) if value else "-"
