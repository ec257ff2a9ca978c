"""inquiry: the discount a purchase gets, held for the quote; a one-time code when large."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from datetime import datetime

from backend import ledger, store, store_segments, texts
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
        purchase = Purchase(now, gross, tier, store.visits(conn, member.id), member.birthday,
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


def otp_hash(salt: str, code: str) -> str:
    return hashlib.sha256(f"{salt}:{code}".encode()).hexdigest()


def _send_otp(ctx: Context, member: Member, now: datetime) -> Outcome:
    p = ctx.program
    code = "".join(secrets.choice("0123456789") for _ in range(p.otp_digits))
    salt = secrets.token_hex(8)
    otp_id = store.new_otp(
        ctx.conn,
        member.id,
        salt=salt,
        digest=otp_hash(salt, code),
        now=now,
        seconds=p.otp_seconds,
        tries=p.otp_tries,
    )
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
    otp = store.open_otp(ctx.conn, member.id)
    if otp is None:
        raise RuleError(ResponseCode.WRONG_OTP, "no one-time code is open for this member")
    if otp.expires_at <= ts(now) or otp.tries_left <= 0:
        store.set_otp(ctx.conn, otp.id, tries_left=otp.tries_left, used=True)
        raise RuleError(ResponseCode.WRONG_OTP, "the one-time code has expired")
    if not hmac.compare_digest(otp_hash(otp.salt, code.strip()), otp.hash):
        left = otp.tries_left - 1
        store.set_otp(ctx.conn, otp.id, tries_left=left, used=left <= 0)
        raise RuleError(ResponseCode.WRONG_OTP, "wrong one-time code")
    store.set_otp(ctx.conn, otp.id, tries_left=otp.tries_left, used=True)
