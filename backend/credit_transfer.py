"""Credit transfer from one member to another phone of the same club (issue 16).

Rule 1: a member asks (`start`): the program allows transfers, the amount is within its
limits (at least `transfer_min`, at most `transfer_max`, with the day's done transfers at
most `transfer_day_max`, the Tehran day), and at most the free balance (the balance less
what open holds keep for a till; lapsed holds and expired lots are settled first). A code
(store.OTP_TRANSFER; the program's digits, seconds and tries) goes to the sender by SMS
with the amount and the receiving phone in it. A new ask ends the member's earlier
pending one (its code is void).
Rule 2: the sender confirms with that code (`confirm`), in ONE transaction: the code is
checked, every rule of rule 1 checked again under the members' row locks, the receiver
enrolled if not a member yet (welcome credit and SMS as at the till, no referrer), then
the two ledger rows `transfer:<key>:out` and `:in` (one key), the receiver's lots with the
expiries of the sender's lots the credit came from (FIFO: a transfer never lengthens
credit's life), and an SMS to each side (kind transfer). A wrong code counts a try
(committed); the last wrong try, an expired code or a rule refusing now ends the
transfer unmade.
Rule 3: a transfer is made once: a second confirmation, or two at the same moment in two
processes, finds it done and changes nothing (the transfer's row is read again under the
locks; the ledger keys are UNIQUE besides).
Rule 4: an operator's `loyalty-backend transfer` (`by_operator`) skips the code (it is the
operator's act, audited) and keeps every other rule.

Locks, in one order everywhere: the receiving phone's enrolment lock (as the till's
enroll takes it), then the members' rows in id order (two transfers crossing between
the same two members never deadlock).
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime, time

from backend import engine, ledger, otp, store, store_audit, store_transfers, texts
from backend.engine import Connection
from backend.handling.context import Context, maintain
from backend.handling.enroll import enrol_new
from backend.member_tokens import TransferError, TransferPlan, plan_transfer
from backend.program import Program
from backend.sms import outbox
from backend.store import Member
from backend.store_transfers import Transfer
from protocols.identity import IdentityError, normalize_phone
from protocols.persian import TEHRAN

__all__ = ["CodeRefused", "Made", "TransferError", "by_operator", "confirm", "start"]


class CodeRefused(ValueError):
    """The code opens nothing; `reason` is "none", "expired" or "wrong" (a try counted:
    the member may try again while tries are left)."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


_CODE_REASONS = {otp.NONE_OPEN: "none", otp.EXPIRED: "expired", otp.WRONG: "wrong"}


@dataclass(frozen=True, slots=True)
class Made:
    """A transfer done; `again`: it had been done before and nothing changed now."""

    transfer_id: int
    amount: int
    sender_id: int
    receiver_id: int
    enrolled: bool
    again: bool = False


def receiving_phone(text: str) -> str:
    """The receiver's phone as stored (TransferError "phone" when it is not a mobile)."""
    try:
        return normalize_phone(text)
    except IdentityError as exc:
        raise TransferError(f"not a mobile number: {exc}", "phone") from None


def day_start(now: datetime) -> datetime:
    """The start of `now`'s Tehran day: the per-day limit counts from it."""
    return datetime.combine(now.astimezone(TEHRAN).date(), time(0), TEHRAN)


def _plan(conn: Connection, program: Program, shop_name: str, sender: Member,
          receiver_id: int, amount: int, key: str, now: datetime) -> TransferPlan:
    ctx = Context(conn=conn, program=program, shop_name=shop_name, clock=lambda: now,
                  club_id=sender.club_id)
    maintain(ctx, sender, now)  # lapsed holds end, expired lots go, before the balance
    held = ledger.held(conn, sender.id)
    free = ledger.balance(conn, sender.id)  # the ledger's balance has the holds out already
    sent = store_transfers.sent_since(conn, sender.id, day_start(now))
    return plan_transfer(key, sender.id, receiver_id, amount, free + held, held, sent,
                         program.transfer_limits)


def _enabled(program: Program) -> None:
    if not program.transfer_enabled:
        raise TransferError("credit transfer is off in this club's program", "off")


def start(conn: Connection, club_id: int, sender_member_id: int, to_phone: str, amount: int,
          now: datetime, *, program: Program, shop_name: str) -> int:
    """Rule 1: the pending transfer's id, its code sent to the sender; TransferError
    (nothing written) when a rule refuses. `program`: the club's program in force."""
    _enabled(program)
    phone = receiving_phone(to_phone)
    with store.transaction(conn):
        sender = store.member_by_id(conn, sender_member_id, lock=True)
        if sender.club_id != club_id:
            raise TransferError("the member is not of this club", "club")
        receiver = store.member_by_phone(conn, phone, club_id=club_id)
        key = secrets.token_hex(16)
        _plan(conn, program, shop_name, sender, receiver.id if receiver else 0, amount, key,
              now)
        store_transfers.refuse_pending(conn, sender.id, "replaced", now)
        transfer_id = store_transfers.insert(conn, key=key, club_id=club_id,
                                             sender_id=sender.id, to_phone=phone,
                                             amount=amount, now=now)
        otp_id, code = otp.issue(conn, sender.id, program, now, store.OTP_TRANSFER)
        store_transfers.set_otp(conn, transfer_id, otp_id)
        outbox.enqueue(conn, key=f"otp:{otp_id}", phone=sender.phone,
                       text=texts.transfer_otp_sms(shop_name=shop_name, amount=amount,
                                                   to_phone=phone, code=code),
                       kind="otp", now=now, club_id=club_id, member_id=sender.id)
    return transfer_id


def confirm(conn: Connection, transfer_id: int, code: str, now: datetime, *, member_id: int,
            program: Program, shop_name: str) -> Made:
    """Rules 2 and 3. `member_id`: the member confirming (the page's), who must be the
    sender. CodeRefused for a code that opens nothing (reason "wrong": ask again),
    TransferError when the transfer is unknown, over, or refused now; the tries and the
    transfer's end are committed before either is raised."""
    with store.transaction(conn):
        t = store_transfers.get(conn, transfer_id)
        if t is None or t.sender_id != member_id or t.via != store_transfers.BY_MEMBER:
            raise TransferError("no such transfer of this member", "unknown")
        made, failure = _confirm_locked(conn, t, code, now, program, shop_name)
    if failure is not None:
        raise failure
    assert made is not None
    return made


def _lock(conn: Connection, t: Transfer) -> tuple[Member, Member | None, Transfer]:
    """The sender and the receiver (None: not a member yet) locked, and the transfer as
    it is now, in the module's lock order."""
    engine.exclusive(conn, f"phone:{t.club_id}:{t.to_phone}")
    receiver = store.member_by_phone(conn, t.to_phone, club_id=t.club_id)
    ids = sorted({t.sender_id, *([receiver.id] if receiver else [])})
    locked = {i: store.member_by_id(conn, i, lock=True) for i in ids}
    now_t = store_transfers.get(conn, t.id)
    assert now_t is not None
    return locked[t.sender_id], locked.get(receiver.id) if receiver else None, now_t


def _confirm_locked(conn: Connection, t: Transfer, code: str, now: datetime, program: Program,
                    shop_name: str) -> tuple[Made | None, Exception | None]:
    sender, receiver, t = _lock(conn, t)
    if t.status == store_transfers.DONE:
        assert t.receiver_id is not None
        return Made(t.id, t.amount, t.sender_id, t.receiver_id, False, again=True), None
    if t.status != store_transfers.PENDING:
        return None, TransferError("this transfer is over; ask for a new one", "closed")
    why = otp.check(conn, sender.id, code, now, store.OTP_TRANSFER, otp_id=t.otp_id)
    if why is not None:
        refused = CodeRefused(_CODE_REASONS[why], why)
        if refused.reason != "wrong" or store.open_otp(conn, sender.id,
                                                       store.OTP_TRANSFER) is None:
            store_transfers.mark_refused(conn, t.id, f"code {refused.reason}", now)
        return None, refused
    try:
        _enabled(program)
        return _make(conn, t, sender, receiver, now, program, shop_name), None
    except TransferError as exc:
        store_transfers.mark_refused(conn, t.id, exc.reason, now)
        return None, exc


def _make(conn: Connection, t: Transfer, sender: Member, receiver: Member | None,
          now: datetime, program: Program, shop_name: str) -> Made:
    """Check again and move the credit; in the caller's transaction, members locked."""
    plan = _plan(conn, program, shop_name, sender, receiver.id if receiver else 0, t.amount,
                 t.key, now)
    enrolled = receiver is None
    if receiver is None:
        receiver = enrol_new(conn, club_id=t.club_id, phone=t.to_phone, referrer_id=None,
                             program=program, shop_name=shop_name, now=now)
    ledger.transfer(conn, sender.id, receiver.id, plan.amount, plan.out_key, plan.in_key, now)
    store_transfers.mark_done(conn, t.id, receiver.id, now)
    outbox.enqueue(conn, key=plan.out_key, phone=sender.phone, kind="transfer", now=now,
                   text=texts.transfer_sent_sms(shop_name=shop_name, amount=plan.amount,
                                                to_phone=receiver.phone,
                                                balance=ledger.balance(conn, sender.id),
                                                when=now),
                   club_id=t.club_id, member_id=sender.id)
    outbox.enqueue(conn, key=plan.in_key, phone=receiver.phone, kind="transfer", now=now,
                   text=texts.transfer_received_sms(shop_name=shop_name, amount=plan.amount,
                                                    from_phone=sender.phone,
                                                    balance=ledger.balance(conn, receiver.id),
                                                    when=now),
                   club_id=t.club_id, member_id=receiver.id)
    return Made(t.id, plan.amount, sender.id, receiver.id, enrolled)


def by_operator(conn: Connection, club_id: int, from_phone: str, to_phone: str, amount: int,
                now: datetime, *, program: Program, shop_name: str, user: str) -> Made:
    """Rule 4: an operator's transfer, made at once without a code, audited; every other
    rule (limits, free balance, same club, enrolment) as the member's."""
    _enabled(program)
    sender_phone, phone = receiving_phone(from_phone), receiving_phone(to_phone)
    with store.transaction(conn):
        sender = store.member_by_phone(conn, sender_phone, club_id=club_id)
        if sender is None:
            raise TransferError(f"{sender_phone} is not a member of this club", "unknown")
        key = secrets.token_hex(16)
        t_id = store_transfers.insert(conn, key=key, club_id=club_id, sender_id=sender.id,
                                      to_phone=phone, amount=amount, now=now,
                                      via=store_transfers.BY_OPERATOR)
        t = store_transfers.get(conn, t_id)
        assert t is not None
        locked_sender, receiver, t = _lock(conn, t)
        made = _make(conn, t, locked_sender, receiver, now, program, shop_name)
        store_audit.record(conn, user=user, club_id=club_id, action="member.transfer",
                           target=sender_phone, before=None,
                           after={"to": phone, "amount": amount, "transfer": t_id,
                                  "enrolled": made.enrolled}, now=now)
    return made
