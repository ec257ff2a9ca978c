"""inquiry: the discount a purchase gets, held for the quote; a one-time code when large."""

from __future__ import annotations

from datetime import datetime

from backend import ledger, otp, store, store_segments, texts
from backend.handling import giftcard
from backend.handling.context import Context, Outcome, locate, maintain, sms
from backend.program import Purchase, RuleError
from backend.store import Member, Quote, ts
from protocols.mqtt import Request
from protocols.response_codes import ResponseCode


def handle(ctx: Context, req: Request, now: datetime) -> Outcome:
    conn, program, body = ctx.conn, ctx.program, req.body
    gift = giftcard.number_of(body)
    if gift is not None:  # a gift card's CN: its balance is the credit
        return giftcard.inquiry(ctx, req, gift, now)
    member, due = locate(ctx, body, now)
    gross = body["gross"]
    if gross <= 0:
        raise RuleError(ResponseCode.INVALID_AMOUNT, "amount must be positive")
    available = maintain(ctx, member, now, due)
    # A new inquiry never ends an earlier hold, not even on the same terminal: that
    # quote's advice may be waiting in an agent's journal (docs/backend.md, "Holds").
    discount = program.discount(gross, available, body.get("redeem"))
    if program.needs_otp(discount):
        if not body.get("otp"):
            return _send_otp(ctx, member, now)
        _check_otp(ctx, member, body["otp"], now)
    q = Quote(
        id=store.new_quote_id(now),
        member_id=member.id,
        terminal_id=req.terminal_id,
        gross=gross,
        discount=discount,
        status=store.HELD,
        created_at=ts(now),
        expires_at=ts(now) + program.hold_seconds,
        branch_id=ctx.branch_id,
        program_version=ctx.program_version,
    )
    store.insert_quote(conn, q)
    ledger.hold(conn, member.id, q.id, discount, now, available=available)
    net = gross - discount
    left = available - discount
    tier = member.tier
    names: list[str] = []
    if ctx.offers:  # the offers this purchase would get, for the receipt
        segment = (store_segments.segment_of(conn, member.id)
                   if store_segments.wants_segment(ctx.offers) else None)
        purchase = Purchase(now, gross, tier, member.visits, member.birthday,
                            segment)
        names = [o.name for o in ctx.offers if o.matches(purchase)]
    return Outcome(
        ResponseCode.APPROVED,
        {
            "otp_required": False,
            "quote_id": q.id,
            "gross": gross,
            "discount": discount,
            "net": net,
            "balance": left,
            "tier": tier,
            "display": texts.inquiry_display(discount=discount, net=net, tier=tier),
            "receipt": texts.inquiry_receipt(
                gross=gross, discount=discount, net=net, balance=left, tier=tier, offers=names
            ),
        },
    )


def _send_otp(ctx: Context, member: Member, now: datetime) -> Outcome:
    otp_id, code = otp.issue(ctx.conn, member.id, ctx.program, now)
    sms(
        ctx,
        f"otp:{otp_id}",
        member.phone,
        texts.otp_sms(shop_name=ctx.shop_name, code=code),
        "otp",
        now,
    )
    return Outcome(ResponseCode.APPROVED, {"otp_required": True, "display": texts.otp_display()})


def _check_otp(ctx: Context, member: Member, code: str, now: datetime) -> None:
    why = otp.check(ctx.conn, member.id, code, now)
    if why is not None:
        raise RuleError(ResponseCode.WRONG_OTP, why)
