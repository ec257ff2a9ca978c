"""enroll: a new member (welcome credit and SMS), or the existing one's code and balance."""

from __future__ import annotations

from datetime import datetime

from backend import engine, ledger, store, texts
from backend.handling.context import Context, Outcome, maintain, sms
from protocols.identity import IdentityError, normalize_phone
from protocols.mqtt import Request
from protocols.response_codes import ResponseCode


def handle(ctx: Context, req: Request, now: datetime) -> Outcome:
    conn, program = ctx.conn, ctx.program
    phone = normalize_phone(req.body["phone"])
    # two terminals enrolling one phone at once, in two processes: one member
    engine.exclusive(conn, f"phone:{ctx.club_id}:{phone}")
    member = store.member_by_phone(conn, phone, club_id=ctx.club_id, lock=True)
    new = member is None
    referrer_ignored = False
    if member is None:
        referrer_id = None
        if req.body.get("referrer"):
            try:
                ref = store.member_by_phone(
                    conn, normalize_phone(req.body["referrer"]), club_id=ctx.club_id
                )
            except IdentityError:
                ref = None  # a mistyped referrer must not stop the enrolment
            referrer_id = ref.id if ref is not None else None
            referrer_ignored = referrer_id is None
        member = store.insert_member(
            conn,
            phone=phone,
            referrer_id=referrer_id,
            tier=program.base_tier.name,
            now=now,
            club_id=ctx.club_id,
        )
        ledger.credit(
            conn,
            member.id,
            "welcome",
            program.welcome_credit,
            f"welcome:{member.id}",
            earned_at=now,
            expires_at=program.credit_expiry(now),
        )
        sms(
            ctx,
            f"welcome:{member.id}",
            phone,
            texts.welcome_sms(shop_name=ctx.shop_name, member_code=member.code),
            "welcome",
            now,
        )
    else:
        maintain(ctx, member, now)
    bal = ledger.balance(conn, member.id)
    return Outcome(
        ResponseCode.APPROVED,
        {
            "member_code": member.code,
            "new": new,
            "balance": bal,
            "display": texts.enroll_display(
                new=new, member_code=member.code, referrer_ignored=referrer_ignored
            ),
            "receipt": texts.enroll_receipt(
                shop_name=ctx.shop_name, member_code=member.code, balance=bal, new=new
            ),
        },
    )
