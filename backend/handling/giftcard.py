"""A gift card at the till: the inquiry whose CN is a gift card number quotes the card's
balance, holds it; the advice settles it (or frees it when declined), a release frees it,
a reversal restores it. The arithmetic is backend.giftcards'; each movement is a row of
store_giftcards under a unique key, so a repeated request moves the card once.

A gift card's quote id starts with GIFT_QUOTE ("G"; a member's starts with "Q"): the
advice and the release tell the two apart without a query. No member is involved, so no
cash-back is earned and no SMS is sent; the 0110 shows the card as TR `gift` and its rest
and expiry in MG (docs/protocol-readings.md, reading 26).
"""

from __future__ import annotations

from datetime import datetime

from backend import engine, giftcards, store, store_giftcards, texts
from backend.giftcards import GiftCard, GiftCardError, GiftProgram, Movement
from backend.handling.context import Context, Outcome
from backend.program import Program, RuleError
from backend.store import ts
from protocols.identity import IdentityError, normalize_card
from protocols.mqtt import Request
from protocols.response_codes import ResponseCode

GIFT_QUOTE = "G"
HELD, SETTLED, DECLINED, RELEASED, EXPIRED, REVERSED = (
    "held", "settled", "declined", "released", "expired", "reversed")


def number_of(body: dict) -> str | None:
    """The gift card number a request's CN is, if it is one."""
    typed = body.get("card")
    if not typed:
        return None
    try:
        number = normalize_card(typed)
    except IdentityError:
        return None
    return number if giftcards.is_gift_card(number) else None


def is_gift_quote(quote_id: str | None) -> bool:
    return bool(quote_id) and str(quote_id).startswith(GIFT_QUOTE)


def gift_program(program: Program) -> GiftProgram:
    cap = None if program.gift_max_percent >= 100 else program.gift_max_percent
    return GiftProgram(cap_percent=cap, earn_on_gift_part=program.gift_earn)


def _unknown() -> RuleError:
    # an expired or unknown gift card is answered as an unknown loyalty card is
    return RuleError(ResponseCode.UNKNOWN_MEMBER, "unknown member")


def _locked_card(ctx: Context, number: str, now: datetime) -> GiftCard:
    card = store_giftcards.card(ctx.conn, number, ctx.club_id, lock=True)
    if card is None:
        raise _unknown()
    for h in store_giftcards.open_holds(ctx.conn, number):
        if h.expires_at <= ts(now):  # lapsed: the card's again
            _free(ctx, h, EXPIRED, now)
    return card


def _free(ctx: Context, h: store_giftcards.Hold, status: str, now: datetime) -> int:
    before = store_giftcards.movements(ctx.conn, h.number)
    written = store_giftcards.record(ctx.conn, h.number, before,
                                     giftcards.release(before, h.quote_id), now)
    store_giftcards.set_hold(ctx.conn, h.quote_id, status)
    return sum(m.amount for m in written)


def inquiry(ctx: Context, req: Request, number: str, now: datetime) -> Outcome:
    gross = req.body["gross"]
    if gross <= 0:
        raise RuleError(ResponseCode.INVALID_AMOUNT, "amount must be positive")
    card = _locked_card(ctx, number, now)
    if card.expired(now):
        raise _unknown()
    before = store_giftcards.movements(ctx.conn, number)
    q = giftcards.quote(card, before, gross, now, gift_program(ctx.program), min_bank=1)
    quote_id = GIFT_QUOTE + store.new_quote_id(now)[1:]
    store_giftcards.record(ctx.conn, number, before, giftcards.hold(before, q, quote_id), now)
    store_giftcards.insert_hold(ctx.conn, store_giftcards.Hold(
        quote_id, number, ctx.club_id, req.terminal_id, gross, q.gift_part, HELD, ts(now),
        ts(now) + ctx.program.hold_seconds, None))
    fields = giftcards.inquiry_fields(q, card)
    return Outcome(ResponseCode.APPROVED, {
        "otp_required": False,
        "quote_id": quote_id,
        "gross": gross,
        "discount": q.gift_part,
        "net": q.bank_part,
        "balance": q.balance_after,
        "tier": giftcards.GIFT_TIER,
        "display": fields["MG"],
        "receipt": texts.inquiry_receipt(gross=gross, discount=q.gift_part, net=q.bank_part,
                                         balance=q.balance_after, tier=giftcards.GIFT_TIER),
    })


def _balance(ctx: Context, number: str) -> int:
    return giftcards.balance(store_giftcards.movements(ctx.conn, number))


def _advice_answer(bal: int) -> Outcome:
    return Outcome(ResponseCode.APPROVED, {
        "earned": 0, "balance": bal,
        "receipt": texts.advice_receipt(earned=0, balance=bal, tier=giftcards.GIFT_TIER)})


def advice(ctx: Context, req: Request, now: datetime) -> Outcome:
    """The purchase of a gift card quote: approved, its hold becomes a redemption;
    declined, the hold is freed. A quote already settled by this advice: no change."""
    quote_id = req.body["quote_id"]
    h = store_giftcards.hold(ctx.conn, quote_id)
    if h is None or h.terminal_id != req.terminal_id or h.club_id != ctx.club_id:
        raise RuleError(ResponseCode.INVALID_TRANSACTION, "unknown quote")
    store_giftcards.card(ctx.conn, h.number, ctx.club_id, lock=True)
    h = store_giftcards.hold(ctx.conn, quote_id)  # as it is under the card's lock
    assert h is not None
    if h.advice_key == req.key:
        return _advice_answer(_balance(ctx, h.number))
    if h.status in (SETTLED, DECLINED):
        raise RuleError(ResponseCode.INVALID_TRANSACTION, "quote already used by another advice")
    approved = req.body["bank_code"] == "00"
    if h.status == REVERSED:  # reversed before its advice came: nothing is taken
        store_giftcards.set_hold(ctx.conn, quote_id, REVERSED, advice_key=req.key)
        return _advice_answer(_balance(ctx, h.number))
    before = store_giftcards.movements(ctx.conn, h.number)
    if not approved:
        after = giftcards.release(before, quote_id)
    elif h.status != HELD:
        # the hold lapsed and was freed: the purchase takes what the card still has of it
        # (its hold's keys are used: one redemption row under the quote's redeem key)
        part = min(h.amount, max(0, giftcards.balance(before)))
        after = [*before, Movement(f"{quote_id}:redeem", "gc_redeem", -part, quote_id)]
    else:
        try:
            after = giftcards.settle(before, quote_id)
        except GiftCardError:
            after = before  # nothing was held (a zero quote): nothing to settle
    store_giftcards.record(ctx.conn, h.number, before, after, now)
    store_giftcards.set_hold(ctx.conn, quote_id, SETTLED if approved else DECLINED,
                             advice_key=req.key)
    return _advice_answer(_balance(ctx, h.number))


def reversal(ctx: Context, req: Request, h: store_giftcards.Hold, now: datetime) -> Outcome:
    """The purchase `h` was settled by is undone: what it took is the card's again."""
    store_giftcards.card(ctx.conn, h.number, ctx.club_id, lock=True)
    before = store_giftcards.movements(ctx.conn, h.number)
    written = store_giftcards.record(ctx.conn, h.number, before,
                                     giftcards.reverse(before, h.quote_id), now)
    store_giftcards.set_hold(ctx.conn, h.quote_id, REVERSED)
    restored = sum(m.amount for m in written)
    return Outcome(ResponseCode.APPROVED, {
        "balance": _balance(ctx, h.number), "restored": restored, "taken_back": 0})


def end_quote(ctx: Context, quote_id: str, terminal_id: str, status: str, now: datetime) -> int:
    """A gift card quote released by the agent or reversed before its advice: its hold
    freed if still held; the rials freed."""
    h = store_giftcards.hold(ctx.conn, quote_id)
    if h is None or h.terminal_id != terminal_id:
        return 0
    store_giftcards.card(ctx.conn, h.number, h.club_id, lock=True)
    h = store_giftcards.hold(ctx.conn, quote_id)
    if h is None or h.status != HELD:
        return 0
    return _free(ctx, h, status, now)


def sweep(ctx: Context, now: datetime) -> int:
    """For every club: lapsed gift card holds freed, the rests of cards past their last
    day expired; the rials expired. A card another process holds: the next sweep."""
    conn = ctx.conn
    conn.execute("SAVEPOINT giftcards")
    try:
        for h in store_giftcards.lapsed_holds(conn, now):
            store_giftcards.card(conn, h.number, h.club_id, lock=True)
            fresh = store_giftcards.hold(conn, h.quote_id)
            if fresh is not None and fresh.status == HELD and fresh.expires_at <= ts(now):
                _free(ctx, fresh, EXPIRED, now)
        expired = store_giftcards.expire_due(conn, None, now)
    except Exception as exc:
        conn.execute("ROLLBACK TO giftcards")
        conn.execute("RELEASE giftcards")
        if not engine.is_busy(exc):
            raise
        return 0
    conn.execute("RELEASE giftcards")
    return expired
