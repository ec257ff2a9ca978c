"""advice: a purchase the bank settled (or declined): settle its quote, earn, recover debt."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from backend import (
    ledger,
    ledger_rules,
    store,
    store_member_tokens,
    store_offers,
    store_segments,
    texts,
)
from backend.handling import giftcard, reversal, survey
from backend.handling.context import Context, Outcome, locate, maintain, retier, sms
from backend.program import Offer, Purchase, RuleError, earnings
from backend.store import Member, PurchaseRecord, StoredResponse, ts
from protocols.mqtt import Request, parse_iso
from protocols.response_codes import ResponseCode


def look_ahead(ctx: Context, req: Request) -> Callable[[], Any]:
    """The advice's state, sent ahead with its key lock (valid under that lock, unless a
    reversal of it comes earlier in the same group: the handler sends none then)."""
    return store.advice_state_later(ctx.conn, req.key)


def read_with_answer(
    ctx: Context, req: Request
) -> tuple[StoredResponse | None, Callable[[], Any]]:
    """The stored answer under the advice's key and the advice's state, one statement
    (when nothing was sent ahead: read at the advice's own turn, under its key lock)."""
    stored, state = store.answer_and_advice_state(ctx.conn, req.key)
    return stored, lambda: state


def _answer(earned: int, bal: int, tier: str) -> Outcome:
    return Outcome(
        ResponseCode.APPROVED,
        {
            "earned": earned,
            "balance": bal,
            "receipt": texts.advice_receipt(earned=earned, balance=bal, tier=tier),
        },
    )


def handle(ctx: Context, req: Request, now: datetime) -> Outcome:
    conn, program, body = ctx.conn, ctx.program, req.body
    if giftcard.is_gift_quote(body.get("quote_id")):
        return giftcard.advice(ctx, req, now)
    when = parse_iso(body["occurred_at"])
    # One advice and its reversals at a time, whichever processes carry them out: the
    # handler holds this request's key lock (`request:KEY`), and a reversal of it takes
    # that lock too.
    done, pending = ctx.ahead() if ctx.ahead else store.advice_state(conn, req.key)
    if done is not None:
        # carried out long ago and its stored response since pruned: no second effect
        member = store.member_by_id(conn, done.member_id)
        earned = 0 if done.reversed else done.earned
        return _answer(earned, ledger.balance(conn, member.id), member.tier)
    quote = None
    if body.get("quote_id"):
        found = store.locked_quote_and_member(conn, body["quote_id"], now)
        if (
            found is None
            or found[0].terminal_id != req.terminal_id
            or found[1].club_id != ctx.club_id
        ):
            raise RuleError(ResponseCode.INVALID_TRANSACTION, "unknown quote")
        quote, member, due = found
        ctx.use_version(quote.program_version)  # the program the quote was computed with
        program = ctx.program
        if quote.status in (store.SETTLED, store.DECLINED):
            raise RuleError(
                ResponseCode.INVALID_TRANSACTION, "quote already used by another advice"
            )
    else:
        member, due = locate(ctx, body, now)
    # may release this very quote's hold if it lapsed (then it no longer holds_at now)
    available = maintain(ctx, member, now, due)
    # the open lots read with the lock serve the redemption unless an expiry moved them
    # (releasing holds, this quote's included, moves no lot)
    lots = due.open_lots if not due.lots else None
    approved = body["bank_code"] == "00"
    amount = body["amount"]
    redeemed = new_debt = 0
    if quote is not None:
        if quote.holds_at(now):
            available += ledger.release(conn, member.id, quote.id, quote.discount, now)
        if approved:
            redeemed, new_debt = ledger_rules.settle(quote.discount, available)
            ledger.redeem(conn, member.id, quote.id, redeemed, now, available=available,
                          lots=lots)
            if new_debt:
                store.add_debt(conn, member.id, new_debt)
        status = store.SETTLED if approved else store.DECLINED
        store.set_quote_status(conn, quote.id, status, advice_key=req.key)
    earned = recovered = 0
    earn_lot = None
    matched: list[Offer] = []
    # the settled purchases before this one: the running count read with the member
    visits = member.visits
    if approved:
        earned, matched = earnings(
            program,
            amount,
            Purchase(when, body["gross"], member.tier, visits, member.birthday,
                     store_segments.segment_of(conn, member.id)
                     if store_segments.wants_segment(ctx.offers) else None),
            ctx.offers,
        )
        earn_lot = ledger.credit(
            conn,
            member.id,
            "earn",
            earned,
            f"earn:{req.key}",
            earned_at=when,
            expires_at=program.credit_expiry(when),
            ref=req.key,
        )
        recovered = ledger_rules.recovery(member.debt + new_debt, earned)
        if recovered:
            ledger.debit(
                conn,
                member.id,
                "recovery",
                recovered,
                f"recovery:{req.key}",
                when,
                ref=req.key,
                first_lot=earn_lot,
            )
            store.add_debt(conn, member.id, -recovered)
    settled = store.insert_purchase(
        conn,
        PurchaseRecord(
            key=req.key,
            member_id=member.id,
            terminal_id=req.terminal_id,
            quote_id=quote.id if quote else None,
            amount=amount,
            gross=body["gross"],
            approved=approved,
            redeemed=redeemed,
            earned=earned,
            recovered=recovered,
            earn_lot=earn_lot,
            occurred_at=ts(when),
            branch_id=ctx.branch_id,
            program_version=ctx.program_version,
        ),
        member.totals,
    )
    if matched:  # the offers' effect, for the panel: which offer gave how much
        store_offers.record_uses(
            conn, req.key, [(o.id, o.extra(amount)) for o in matched if o.id is not None])
    tier = member.tier
    if approved:
        # a purchase already reversed is not the first purchase that pays the referrer
        if visits == 0 and member.referrer_id is not None and not pending:
            _referral(ctx, member, now)
        tier = retier(ctx, member, when, settled, now=now, cause="purchase")
    if pending:
        reversal.undo(ctx, req.key, now)
        earned = 0
        tier = store.member_by_id(conn, member.id).tier
    if quote is not None and approved and not pending:
        bal = available - redeemed + earned - recovered  # no query: nothing else moved
    else:
        bal = ledger.balance(conn, member.id)
    if approved and not pending:
        club = ctx.registry.clubs.get(ctx.club_id)
        link = store_member_tokens.sms_link(
            conn, member_id=member.id, club_id=ctx.club_id, now=now,
            public_url=club.public_url if club is not None else None,
            days=ctx.program.link_days)
        text = texts.purchase_sms(
            shop_name=ctx.shop_name, amount=amount, earned=earned, balance=bal, when=when,
            link=link,
        )
        asked = survey.survey_line(ctx, member, req.key, req.terminal_id, now)
        if asked:
            text += "\n" + asked
        sms(ctx, f"purchase:{req.key}", member.phone, text, "purchase", now)
    return _answer(earned, bal, tier)


def _referral(ctx: Context, member: Member, now: datetime) -> None:
    key = f"referral:{member.id}"
    if member.referrer_id is None or ledger.has_row(ctx.conn, key):
        return
    ledger.credit(
        ctx.conn,
        member.referrer_id,
        "referral",
        ctx.program.referral_bonus,
        key,
        earned_at=now,
        expires_at=ctx.program.credit_expiry(now),
        ref=member.phone,
    )
