"""reversal: undo a purchase (restore its redemption, take back its earning), once, or
record it to be applied when its advice comes."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from backend import engine, ledger, ledger_rules, store, store_giftcards, texts
from backend.handling import giftcard
from backend.handling.context import Context, Outcome, end_hold, find_member, retier, sms
from backend.program import RuleError
from backend.store import ReversalRecord, from_ts, ts
from protocols.identity import IdentityError
from protocols.mqtt import Request
from protocols.response_codes import ResponseCode


def handle(ctx: Context, req: Request, now: datetime) -> Outcome:
    conn, body = ctx.conn, req.body
    original = body["original_key"]
    if not original.startswith(f"{req.terminal_id}:0220:"):
        raise RuleError(
            ResponseCode.INVALID_TRANSACTION,
            "original_key is not a purchase advice of this terminal",
        )
    # one advice and its reversals at a time, whichever processes carry them out: the
    # advice's own key lock, held by the advice's request while it is carried out
    engine.exclusive(conn, f"request:{original}")
    gift = store_giftcards.hold_of_advice(conn, original)
    if gift is not None:  # a purchase paid (in part) by a gift card
        return giftcard.reversal(ctx, req, gift, now)
    done = store.reversal(conn, original)
    if done is None:
        purchase = store.purchase(conn, original)
        member_id = purchase.member_id if purchase else _member_of(ctx, body)
        if member_id is not None:
            store.member_by_id(conn, member_id, lock=True)
        store.insert_reversal(
            conn,
            ReversalRecord(
                original_key=original,
                key=req.key,
                terminal_id=req.terminal_id,
                member_id=member_id,
                received_at=ts(now),
            ),
        )
        restored = taken = 0
        if purchase is not None and member_id is not None:
            restored, taken = undo(ctx, original, now)
            if purchase.approved:  # a declined purchase moved no credit: nothing to tell
                _sms(ctx, original, member_id, restored, taken, now)
        elif body.get("quote_id"):
            # Reversed before its advice came (or instead of one): the quote is not
            # going to be paid with, so its credit is free again now.
            end_quote(ctx, body["quote_id"], req.terminal_id, store.REVERSED, now)
    else:
        member_id, restored, taken = done.member_id, done.restored, done.taken_back
    bal = ledger.balance(conn, member_id) if member_id is not None else 0
    return Outcome(
        ResponseCode.APPROVED, {"balance": bal, "restored": restored, "taken_back": taken}
    )


def _member_of(ctx: Context, body: dict[str, Any]) -> int | None:
    if body.get("quote_id"):
        q = store.quote(ctx.conn, body["quote_id"])
        return q.member_id if q else None
    try:
        return find_member(ctx, body).id
    except (RuleError, IdentityError):
        return None


def end_quote(ctx: Context, quote_id: str, terminal_id: str, status: str, now: datetime) -> int:
    """End the hold of a quote of `terminal_id` that is still held; the rials freed."""
    if giftcard.is_gift_quote(quote_id):
        return giftcard.end_quote(ctx, quote_id, terminal_id, status, now)
    q = store.quote(ctx.conn, quote_id)
    if q is None or q.terminal_id != terminal_id:
        return 0
    store.member_by_id(ctx.conn, q.member_id, lock=True)
    q = store.quote(ctx.conn, quote_id)  # as it is now that no one else may change it
    if q is None or q.status != store.HELD:
        return 0  # settled, declined, expired, released, or reversed
    end_hold(ctx, q, status, now)
    return q.discount


def undo(ctx: Context, original: str, now: datetime) -> tuple[int, int]:
    """Undo a stored purchase: restore its redemption, take back its earning. The member
    is locked by the caller."""
    conn = ctx.conn
    p = store.purchase(conn, original)
    assert p is not None, original
    restored = taken = shortfall = 0
    if p.approved:
        unpaid = 0  # the discount the redemption could not cover became a debt: void now
        if p.quote_id:
            restored = ledger.restore(
                conn, p.member_id, f"redeem:{p.quote_id}", f"reversal-restore:{original}", now
            )
            q = store.quote(conn, p.quote_id)
            unpaid = max(0, q.discount - p.redeemed) if q else 0
        taken, shortfall = ledger.take_back(
            conn,
            p.member_id,
            p.earned - p.recovered,
            f"reversal-takeback:{original}",
            now,
            first_lot=p.earn_lot,
        )
        debt = store.member_by_id(conn, p.member_id).debt
        left, refund = ledger_rules.undo_debt(debt, p.recovered, unpaid)
        if refund:
            # later earnings already paid part of that void debt: give it back as credit
            ledger.credit(
                conn,
                p.member_id,
                "adjustment",
                refund,
                f"reversal-refund:{original}",
                earned_at=now,
                expires_at=ctx.program.credit_expiry(now),
                ref=original,
            )
        if left != debt:
            store.add_debt(conn, p.member_id, left - debt)
    store.mark_reversed(conn, original)
    store.reversal_applied(
        conn,
        original,
        member_id=p.member_id,
        restored=restored,
        taken=taken,
        shortfall=shortfall + p.recovered,
    )
    if p.approved:
        retier(ctx, store.member_by_id(conn, p.member_id), from_ts(p.occurred_at),
               now=now, cause="reversal")
    return restored, taken


def _sms(
    ctx: Context, original: str, member_id: int, restored: int, taken: int, now: datetime
) -> None:
    member = store.member_by_id(ctx.conn, member_id)
    sms(
        ctx,
        f"reversal:{original}",
        member.phone,
        texts.reversal_sms(
            shop_name=ctx.shop_name,
            restored=restored,
            taken_back=taken,
            balance=ledger.balance(ctx.conn, member_id),
            when=now,
        ),
        "reversal",
        now,
    )
