"""enroll: a new member (welcome credit and SMS), or the existing one's code and balance."""

from __future__ import annotations

from datetime import datetime

from backend import engine, ledger, store, store_member_tokens, store_registry, texts
from backend.engine import Connection
from backend.handling.context import Context, Outcome, maintain
from backend.program import Program
from backend.sms import outbox
from backend.store import Member
from protocols.identity import IdentityError, normalize_phone
from protocols.mqtt import Request
from protocols.response_codes import ResponseCode


def enrol_new(conn: Connection, *, club_id: int, phone: str, referrer_id: int | None,
              program: Program, shop_name: str, now: datetime) -> Member:
    """A new member of the club with its welcome credit and SMS, in the caller's
    transaction (which has checked the phone is not a member yet): the terminal's enroll
    and the panel's enrol button are one rule."""
    member = store.insert_member(conn, phone=phone, referrer_id=referrer_id,
                                 tier=program.base_tier.name, now=now, club_id=club_id)
    ledger.credit(conn, member.id, "welcome", program.welcome_credit, f"welcome:{member.id}",
                  earned_at=now, expires_at=program.credit_expiry(now))
    club = store_registry.club_by_id(conn, club_id)
    link = store_member_tokens.sms_link(
        conn, member_id=member.id, club_id=club_id, now=now, days=program.link_days,
        public_url=club.public_url if club is not None else None)
    outbox.enqueue(conn, key=f"welcome:{member.id}", phone=phone,
                   text=texts.welcome_sms(shop_name=shop_name, member_code=member.code,
                                          link=link),
                   kind="welcome", now=now, club_id=club_id)
    return member


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
        member = enrol_new(conn, club_id=ctx.club_id, phone=phone, referrer_id=referrer_id,
                           program=program, shop_name=ctx.shop_name, now=now)
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
