"""The member's credit transfer on their own page: ask, confirm with the SMS code, done.

POST /m/<token>/transfer (phone, amount) asks (backend.credit_transfer.start: the code
goes to the member's phone) and answers the code form; POST /m/<token>/transfer/<id>
(code) confirms. Both are member-side forms (member_self.open_member, check_form): a link
opens one member, and a transfer is confirmed only by the member who asked for it (the
backend checks the confirming member is the sender). Bad input gives the form back with
the error in Persian and nothing changed; wrong codes count per client as well as per
code (member_self's `codes` limiter).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from backend import credit_transfer
from backend.credit_transfer import CodeRefused, TransferError
from backend.program import Program
from panel import forms
from panel.pages.common import database, post_form
from panel.pages.member_self import (
    Opened,
    Throttled,
    check_form,
    client_of,
    open_member,
    page_context,
    profile_form,
    render,
    side,
)
from protocols.persian import format_rials, persian_digits

if TYPE_CHECKING:
    from panel.app import Panel

MAX_RIALS = 10**12
TRANSFER_FORM = (
    forms.Field("to_phone", "self_transfer_phone", forms.phone, max_length=20),
    forms.Field("amount", "self_transfer_amount", forms.integer(1, MAX_RIALS), max_length=20),
)
CODE_FORM = (forms.Field("code", "self_transfer_code", forms.text, max_length=12),)


def refusal(exc: TransferError, program: Program) -> tuple[str, str]:
    """(field, Persian sentence) of a transfer the rules refuse."""
    rials = format_rials
    words = {
        "minimum": ("amount", f"کمترین مبلغ انتقال {rials(program.transfer_min)} ریال است."),
        "per_transfer": ("amount",
                         f"در هر انتقال بیش از {rials(program.transfer_max)} ریال نمی‌شود."),
        "per_day": ("amount", f"سقف انتقال روزانه {rials(program.transfer_day_max)} ریال "
                              "است و امروز به آن رسیده‌اید."),
        "balance": ("amount", "مبلغ از اعتبار آزاد شما (بی اعتبار در حال استفاده در "
                              "صندوق) بیشتر است."),
        "self": ("to_phone", "به شماره خودتان نمی‌شود اعتبار داد."),
        "phone": ("to_phone", "شماره همراه درست نیست (مثل ۰۹۱۲۱۲۳۴۵۶۷)."),
        "off": ("amount", "انتقال اعتبار در این باشگاه خاموش است."),
        "closed": ("amount", "این انتقال پایان یافته است؛ دوباره درخواست کنید."),
    }
    return words.get(exc.reason, ("amount", "این انتقال پذیرفته نشد."))


def _code_refused(exc: CodeRefused) -> str:
    if exc.reason == "wrong":
        return "کد درست نیست؛ دوباره بنویسید."
    if exc.reason == "expired":
        return "زمان کد گذشته است؛ انتقال را دوباره درخواست کنید."
    return "کدی برای این انتقال باز نیست؛ دوباره درخواست کنید."


def routes(panel: Panel) -> list[BaseRoute]:
    def page_again(request: Request, conn: object, me: Opened, form: forms.BoundForm
                   ) -> Response:
        context = page_context(panel, conn, me)  # type: ignore[arg-type]
        return render(panel, request, "self_page.html", 400, notice=False,
                      profile_form=profile_form(me.member), transfer_form=form, **context)

    def ask(request: Request, data: dict[str, str]) -> Response:
        with database(panel).connection() as conn:
            me = open_member(panel, request, conn)
            check_form(panel, me, data)
            form = forms.bind(TRANSFER_FORM, data)
            if form.ok:
                try:
                    tid = credit_transfer.start(
                        conn, me.club.id, me.member.id, str(form.values["to_phone"]),
                        int(form.values["amount"]), panel.wall_clock(),  # type: ignore[call-overload]
                        program=me.program, shop_name=me.club.name)
                except TransferError as exc:
                    name, words = refusal(exc, me.program)
                    form.errors[name] = words
            if not form.ok:
                return page_again(request, conn, me, form)
        return render(panel, request, "self_transfer_code.html", me=me, transfer_id=tid,
                      to_phone=form.values["to_phone"], amount=form.values["amount"],
                      code_form=forms.empty_form(CODE_FORM),
                      seconds=persian_digits(me.program.otp_seconds))

    def confirm(request: Request, data: dict[str, str]) -> Response:
        state, client, now = side(panel), client_of(request), panel.clock()
        tid = int(request.path_params["transfer_id"])
        with database(panel).connection() as conn:
            me = open_member(panel, request, conn)
            check_form(panel, me, data)
            if not state.codes.allowed(client, now):
                raise Throttled
            form = forms.bind(CODE_FORM, data)
            made = None
            if form.ok:
                try:
                    made = credit_transfer.confirm(
                        conn, tid, str(form.values["code"]), panel.wall_clock(),
                        member_id=me.member.id, program=me.program, shop_name=me.club.name)
                except CodeRefused as exc:
                    state.codes.failed(client, now)
                    if exc.reason != "wrong":
                        return page_again(request, conn, me, _closed(_code_refused(exc)))
                    form.errors["code"] = _code_refused(exc)
                except TransferError as exc:
                    if exc.reason == "unknown":
                        state.codes.failed(client, now)
                    return page_again(request, conn, me, _closed(refusal(exc, me.program)[1]))
            if made is None:
                return render(panel, request, "self_transfer_code.html", 400, me=me,
                              transfer_id=tid, to_phone=None, amount=None, code_form=form,
                              seconds=persian_digits(me.program.otp_seconds))
        return render(panel, request, "self_transfer_done.html", me=me, amount=made.amount)

    return [
        Route("/m/{token}/transfer", post_form(ask), methods=["POST"]),
        Route("/m/{token}/transfer/{transfer_id:int}", post_form(confirm), methods=["POST"]),
    ]


def _closed(words: str) -> forms.BoundForm:
    """The transfer form again, empty, with why the last transfer did not happen."""
    form = forms.empty_form(TRANSFER_FORM)
    form.errors["amount"] = words
    return form
