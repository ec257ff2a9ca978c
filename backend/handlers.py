"""Carrying out the agent's requests on the database: the one function the service uses.

`Handler.handle_batch` runs several requests in ONE transaction (group commit): each
request's idempotency key, its effects and its stored response commit together, so a
redelivered request or a second backend process on the same file gets the stored answer
and no second effect. Replies must be published only after the method returns.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
import secrets
import sqlite3
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from backend import ledger, store, texts
from backend.program import Offer, Program, Purchase, RuleError, earnings
from backend.sms import outbox
from backend.store import Member, from_ts, ts
from protocols.identity import IdentityError, normalize_card, normalize_phone
from protocols.mqtt import Request, Response, SchemaError, parse_iso, refusal

log = logging.getLogger(__name__)
_NORMALISED = re.compile(r"09[0-9]{9}")
Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class Outcome:
    """A request's answer before it is wrapped in a Response."""

    code: str
    body: dict[str, Any]
    message: str = ""


class Handler:
    """Requests in, responses out, on one SQLite connection (one thread at a time)."""

    def __init__(
        self,
        conn: sqlite3.Connection,
        program: Program | None = None,
        *,
        shop_name: str = "فروشگاه",
        offers: Sequence[Offer] = (),
        clock: Clock = utc_now,
        response_retention: timedelta = timedelta(days=30),
        wal_restart_seconds: float = 0.0,
    ) -> None:
        self.conn = conn
        # With checkpoints on another thread (store.Checkpointer) the WAL never restarts
        # while requests keep coming: this connection checkpoints the little that is left
        # now and then, after a commit, so that its next transaction starts the WAL over.
        self.wal_restart_seconds = wal_restart_seconds
        self._next_wal_restart = time.monotonic() + wal_restart_seconds
        self.response_retention = response_retention
        self.program = program or Program()
        self.shop_name = shop_name
        self.config_offers = tuple(offers)
        self.clock = clock
        self._offers: list[Offer] = []

    # --- entry points ------------------------------------------------------------------

    def handle(self, req: Request) -> Response:
        return self.handle_batch([req])[0]

    def handle_batch(self, reqs: Sequence[Request]) -> list[Response]:
        """Carry out `reqs` in one transaction; one failing request does not undo others."""
        out: list[Response] = []
        with store.transaction(self.conn):
            self._offers = [*self.config_offers, *store.offers(self.conn)]
            for req in reqs:
                self.conn.execute("SAVEPOINT request")
                try:
                    resp = self._one(req)
                except Exception:
                    log.exception("request %s (%s) failed", req.key, req.type)
                    self.conn.execute("ROLLBACK TO request")
                    resp = refusal(req, "96", "internal error")
                self.conn.execute("RELEASE request")
                out.append(resp)
        if self.wal_restart_seconds and time.monotonic() >= self._next_wal_restart:
            self._next_wal_restart = time.monotonic() + self.wal_restart_seconds
            store.catch_up_checkpoint(self.conn)
        return out

    def sweep(self) -> tuple[int, int]:
        """Release expired holds and expire old credit for everyone: (holds, rials expired)."""
        now = self.clock()
        with store.transaction(self.conn):
            holds = self._release_expired(None, now)
            expired = sum(
                ledger.expire(self.conn, m, now)
                for m in ledger.members_with_expired_lots(self.conn, now)
            )
        return holds, expired

    def prune_responses(self, *, batch: int = 500, max_batches: int = 20) -> int:
        """Delete stored responses older than the retention, `batch` rows per transaction
        (a short write lock each); how many were deleted."""
        before = self.clock() - self.response_retention
        total = 0
        for _ in range(max_batches):
            with store.transaction(self.conn):
                n = store.prune_responses(self.conn, before, limit=batch)
            total += n
            if n < batch:
                break
        return total

    # --- one request -------------------------------------------------------------------

    def _one(self, req: Request) -> Response:
        if not req.key.startswith(f"{req.terminal_id}:"):
            return refusal(req, "30", "idempotency key does not belong to this terminal")
        stored = store.stored_response(self.conn, req.key)
        if stored is not None:
            kind, code, message, body = stored
            if kind != req.type:
                return refusal(req, "30", "idempotency key reused for another request type")
            return Response(
                type=req.type, id=req.id, key=req.key, code=code, body=body, message=message
            )
        now = self.clock()
        try:
            outcome = getattr(self, f"_{req.type}")(req, now)
        except RuleError as exc:
            outcome = Outcome(exc.code, {}, exc.message)
        except IdentityError as exc:
            outcome = Outcome(exc.response_code, {}, str(exc))
        except SchemaError as exc:
            outcome = Outcome("30", {}, str(exc))
        store.store_response(
            self.conn,
            key=req.key,
            type=req.type,
            code=outcome.code,
            message=outcome.message,
            body=outcome.body,
            now=now,
        )
        return Response(
            type=req.type,
            id=req.id,
            key=req.key,
            code=outcome.code,
            body=outcome.body,
            message=outcome.message,
        )

    # --- shared steps ------------------------------------------------------------------

    def _member(self, body: dict[str, Any]) -> Member:
        member = None
        if body.get("phone"):
            typed = body["phone"]
            # The agent sends phones normalised; a look-up needs no full parse for those
            # (an invalid number in that shape is simply not a member: 14 either way).
            phone = typed if _NORMALISED.fullmatch(typed) else normalize_phone(typed)
            member = store.member_by_phone(self.conn, phone)
        elif body.get("card"):
            member = store.member_by_card(self.conn, normalize_card(body["card"]))
        if member is None:
            raise RuleError("14", "unknown member")
        return member

    def _release_expired(self, member_id: int | None, now: datetime) -> int:
        sql = "SELECT id, member_id, discount FROM quotes WHERE status = 'held' AND expires_at <= ?"
        args: tuple = (ts(now),)
        if member_id is not None:
            sql += " AND member_id = ?"
            args += (member_id,)
        rows = self.conn.execute(sql, args).fetchall()
        for qid, mid, discount in rows:
            self._end_hold(qid, mid, discount, "expired", now)
        return len(rows)

    def _end_hold(
        self, qid: str, member_id: int, discount: int, status: str, now: datetime
    ) -> None:
        ledger.release(self.conn, member_id, qid, discount, now)
        self.conn.execute("UPDATE quotes SET status = ? WHERE id = ?", (status, qid))

    def _maintain(self, member: Member, now: datetime) -> None:
        """On every access: the backend itself releases expired holds and old credit."""
        # one cheap look first: nearly always there is nothing to do
        holds, lots = self.conn.execute(
            "SELECT EXISTS (SELECT 1 FROM quotes WHERE member_id = ?1 AND status = 'held' "
            "AND expires_at <= ?2), EXISTS (SELECT 1 FROM lots WHERE member_id = ?1 "
            "AND remaining > 0 AND expires_at <= ?2)",
            (member.id, ts(now)),
        ).fetchone()
        if holds:
            self._release_expired(member.id, now)
        if lots:
            ledger.expire(self.conn, member.id, now)

    def _visits(self, member_id: int) -> int:
        return int(
            self.conn.execute(
                "SELECT COUNT(*) FROM purchases WHERE member_id = ? AND approved = 1 "
                "AND reversed = 0",
                (member_id,),
            ).fetchone()[0]
        )

    def _retier(self, member: Member, when: datetime) -> str:
        since = when - timedelta(days=self.program.tier_window_days)
        spend = self.conn.execute(
            "SELECT COALESCE(SUM(amount), 0) FROM purchases WHERE member_id = ? AND approved = 1 "
            "AND reversed = 0 AND occurred_at > ? AND occurred_at <= ?",
            (member.id, ts(since), ts(when)),
        ).fetchone()[0]
        tier = self.program.tier_for_spend(int(spend)).name
        if tier != member.tier:
            store.set_tier(self.conn, member.id, tier)
        return tier

    def _sms(self, key: str, phone: str, text: str, kind: str, now: datetime) -> None:
        outbox.enqueue(self.conn, key=key, phone=phone, text=text, kind=kind, now=now)

    # --- enrol -------------------------------------------------------------------------

    def _enroll(self, req: Request, now: datetime) -> Outcome:
        phone = normalize_phone(req.body["phone"])
        member = store.member_by_phone(self.conn, phone)
        new = member is None
        referrer_ignored = False
        if member is None:
            referrer_id = None
            if req.body.get("referrer"):
                try:
                    ref = store.member_by_phone(self.conn, normalize_phone(req.body["referrer"]))
                except IdentityError:
                    ref = None  # a mistyped referrer must not stop the enrolment
                referrer_id = ref.id if ref is not None else None
                referrer_ignored = referrer_id is None
            member = store.insert_member(
                self.conn,
                phone=phone,
                referrer_id=referrer_id,
                tier=self.program.base_tier.name,
                now=now,
            )
            ledger.credit(
                self.conn,
                member.id,
                "welcome",
                self.program.welcome_credit,
                f"welcome:{member.id}",
                earned_at=now,
                expires_at=self.program.credit_expiry(now),
            )
            self._sms(
                f"welcome:{member.id}",
                phone,
                texts.welcome_sms(shop_name=self.shop_name, member_code=member.code),
                "welcome",
                now,
            )
        else:
            self._maintain(member, now)
        bal = ledger.balance(self.conn, member.id)
        return Outcome(
            "00",
            {
                "member_code": member.code,
                "new": new,
                "balance": bal,
                "display": texts.enroll_display(
                    new=new, member_code=member.code, referrer_ignored=referrer_ignored
                ),
                "receipt": texts.enroll_receipt(
                    shop_name=self.shop_name, member_code=member.code, balance=bal, new=new
                ),
            },
        )

    # --- inquiry -----------------------------------------------------------------------

    def _inquiry(self, req: Request, now: datetime) -> Outcome:
        body = req.body
        member = self._member(body)
        gross = body["gross"]
        if gross <= 0:
            raise RuleError("13", "amount must be positive")
        self._maintain(member, now)
        # A new inquiry never ends an earlier hold, not even on the same terminal: that
        # quote's advice may be waiting in an agent's journal (docs/backend.md, "Holds").
        available = ledger.balance(self.conn, member.id)
        discount = self.program.discount(gross, available, body.get("redeem"))
        if self.program.needs_otp(discount):
            if not body.get("otp"):
                return self._send_otp(member, now)
            self._check_otp(member, body["otp"], now)
        # time first, then random: new quotes go to the end of the quotes B-tree instead of
        # dirtying a random page of it on every inquiry (and again on its advice)
        qid = f"Q{time.time_ns() // 1000:013x}{secrets.token_hex(6)}"
        self.conn.execute(
            "INSERT INTO quotes(id, member_id, terminal_id, gross, discount, status, created_at, "
            "expires_at) VALUES (?, ?, ?, ?, ?, 'held', ?, ?)",
            (
                qid,
                member.id,
                req.terminal_id,
                gross,
                discount,
                ts(now),
                ts(now) + self.program.hold_seconds,
            ),
        )
        ledger.hold(self.conn, member.id, qid, discount, now, available=available)
        net = gross - discount
        left = available - discount
        tier = member.tier
        names: list[str] = []
        if self._offers:  # the offers this purchase would get, for the receipt
            visits = self._visits(member.id)
            purchase = Purchase(now, gross, tier, visits, member.birthday)
            names = [o.name for o in self._offers if o.matches(purchase)]
        return Outcome(
            "00",
            {
                "otp_required": False,
                "quote_id": qid,
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

    def _otp_hash(self, salt: str, code: str) -> str:
        return hashlib.sha256(f"{salt}:{code}".encode()).hexdigest()

    def _send_otp(self, member: Member, now: datetime) -> Outcome:
        p = self.program
        code = "".join(secrets.choice("0123456789") for _ in range(p.otp_digits))
        salt = secrets.token_hex(8)
        self.conn.execute("UPDATE otps SET used = 1 WHERE member_id = ? AND used = 0", (member.id,))
        cur = self.conn.execute(
            "INSERT INTO otps(member_id, salt, hash, created_at, expires_at, tries_left) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            (
                member.id,
                salt,
                self._otp_hash(salt, code),
                ts(now),
                ts(now) + p.otp_seconds,
                p.otp_tries,
            ),
        )
        self._sms(
            f"otp:{cur.lastrowid}",
            member.phone,
            texts.otp_sms(shop_name=self.shop_name, code=code),
            "otp",
            now,
        )
        return Outcome("00", {"otp_required": True, "display": texts.otp_display()})

    def _check_otp(self, member: Member, code: str, now: datetime) -> None:
        row = self.conn.execute(
            "SELECT id, salt, hash, expires_at, tries_left FROM otps WHERE member_id = ? "
            "AND used = 0 ORDER BY id DESC LIMIT 1",
            (member.id,),
        ).fetchone()
        if row is None:
            raise RuleError("55", "no one-time code is open for this member")
        oid, salt, digest, expires_at, tries_left = row
        if expires_at <= ts(now) or tries_left <= 0:
            self.conn.execute("UPDATE otps SET used = 1 WHERE id = ?", (oid,))
            raise RuleError("55", "the one-time code has expired")
        if not hmac.compare_digest(self._otp_hash(salt, code.strip()), digest):
            left = tries_left - 1
            self.conn.execute(
                "UPDATE otps SET tries_left = ?, used = ? WHERE id = ?", (left, int(left <= 0), oid)
            )
            raise RuleError("55", "wrong one-time code")
        self.conn.execute("UPDATE otps SET used = 1 WHERE id = ?", (oid,))

    # --- purchase advice ---------------------------------------------------------------

    def _advice(self, req: Request, now: datetime) -> Outcome:
        body = req.body
        when = parse_iso(body["occurred_at"])
        # one statement: was it carried out already, and did its reversal come first?
        done_member, done_earned, done_reversed, pending = self.conn.execute(
            "SELECT p.member_id, p.earned, p.reversed, "
            "(SELECT 1 FROM reversals WHERE original_key = ?1 AND applied = 0) "
            "FROM (SELECT 1) LEFT JOIN purchases p ON p.key = ?1",
            (req.key,),
        ).fetchone()
        if done_member is not None:
            # carried out long ago and its stored response since pruned: no second effect
            member = store.member_by_id(self.conn, done_member)
            bal = ledger.balance(self.conn, member.id)
            earned = 0 if done_reversed else done_earned
            return Outcome(
                "00",
                {
                    "earned": earned,
                    "balance": bal,
                    "receipt": texts.advice_receipt(earned=earned, balance=bal, tier=member.tier),
                },
            )
        quote = None
        if body.get("quote_id"):
            row = self.conn.execute(
                "SELECT q.id, q.member_id, q.terminal_id, q.discount, q.status, q.expires_at, "
                f"{store.MEMBER_COLS_M} FROM quotes q JOIN members m ON m.id = q.member_id "
                "WHERE q.id = ?",
                (body["quote_id"],),
            ).fetchone()
            if row is None or row[2] != req.terminal_id:
                raise RuleError("12", "unknown quote")
            if row[4] in ("settled", "declined"):
                raise RuleError("12", "quote already used by another advice")
            quote, member = row[:6], Member(*row[6:])
        else:
            member = self._member(body)
        self._maintain(member, now)  # may release this very quote's hold if it lapsed
        approved = body["bank_code"] == "00"
        amount = body["amount"]
        redeemed = available = 0
        if quote is not None:
            qid, _, _, discount, status, expires_at = quote
            if status == "held" and expires_at > ts(now):
                ledger.release(self.conn, member.id, qid, discount, now)
            if approved:
                # The customer had the discount at the terminal: redeem it, even when the
                # hold had lapsed (store and forward); what is gone becomes a debt.
                available = ledger.balance(self.conn, member.id)
                redeemed = min(discount, available)
                ledger.redeem(self.conn, member.id, qid, redeemed, now, available=available)
                if discount > redeemed:
                    store.add_debt(self.conn, member.id, discount - redeemed)
            self.conn.execute(
                "UPDATE quotes SET status = ?, advice_key = ? WHERE id = ?",
                ("settled" if approved else "declined", req.key, qid),
            )
        earned = recovered = 0
        earn_lot = None
        # counting visits costs a query: only when a referral or an offer needs it
        need_visits = member.referrer_id is not None or any(
            o.target.startswith("visits:") for o in self._offers
        )
        visits = self._visits(member.id) if need_visits else 0
        if approved:
            earned, _ = earnings(
                self.program,
                amount,
                Purchase(when, body["gross"], member.tier, visits, member.birthday),
                self._offers,
            )
            earn_lot = ledger.credit(
                self.conn,
                member.id,
                "earn",
                earned,
                f"earn:{req.key}",
                earned_at=when,
                expires_at=self.program.credit_expiry(when),
                ref=req.key,
            )
            debt = member.debt + (discount - redeemed if quote is not None and approved else 0)
            recovered = min(debt, earned)
            if recovered:
                ledger.debit(
                    self.conn,
                    member.id,
                    "recovery",
                    recovered,
                    f"recovery:{req.key}",
                    when,
                    ref=req.key,
                    first_lot=earn_lot,
                )
                store.add_debt(self.conn, member.id, -recovered)
        self.conn.execute(
            "INSERT INTO purchases(key, member_id, terminal_id, quote_id, amount, gross, approved, "
            "redeemed, earned, recovered, earn_lot, occurred_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                req.key,
                member.id,
                req.terminal_id,
                quote[0] if quote else None,
                amount,
                body["gross"],
                int(approved),
                redeemed,
                earned,
                recovered,
                earn_lot,
                ts(when),
            ),
        )
        tier = member.tier
        if approved:
            # a purchase already reversed is not the first purchase that pays the referrer
            if visits == 0 and member.referrer_id is not None and pending is None:
                self._referral(member, now)
            tier = self._retier(member, when)
        if pending is not None:
            self._undo(req.key, now)
            earned = 0
            tier = store.member_by_id(self.conn, member.id).tier
        if quote is not None and approved and pending is None:
            bal = available - redeemed + earned - recovered  # no query: nothing else moved
        else:
            bal = ledger.balance(self.conn, member.id)
        if approved and pending is None:
            self._sms(
                f"purchase:{req.key}",
                member.phone,
                texts.purchase_sms(
                    shop_name=self.shop_name, amount=amount, earned=earned, balance=bal, when=when
                ),
                "purchase",
                now,
            )
        return Outcome(
            "00",
            {
                "earned": earned,
                "balance": bal,
                "receipt": texts.advice_receipt(earned=earned, balance=bal, tier=tier),
            },
        )

    def _referral(self, member: Member, now: datetime) -> None:
        key = f"referral:{member.id}"
        if member.referrer_id is None or ledger.has_row(self.conn, key):
            return
        ledger.credit(
            self.conn,
            member.referrer_id,
            "referral",
            self.program.referral_bonus,
            key,
            earned_at=now,
            expires_at=self.program.credit_expiry(now),
            ref=member.phone,
        )

    # --- reversal ----------------------------------------------------------------------

    def _reversal(self, req: Request, now: datetime) -> Outcome:
        body = req.body
        original = body["original_key"]
        if not original.startswith(f"{req.terminal_id}:0220:"):
            raise RuleError("12", "original_key is not a purchase advice of this terminal")
        done = self.conn.execute(
            "SELECT member_id, restored, taken_back FROM reversals WHERE original_key = ?",
            (original,),
        ).fetchone()
        if done is None:
            purchase = self.conn.execute(
                "SELECT member_id FROM purchases WHERE key = ?", (original,)
            ).fetchone()
            member_id = purchase[0] if purchase else self._reversal_member(body)
            self.conn.execute(
                "INSERT INTO reversals(original_key, key, terminal_id, member_id, received_at) "
                "VALUES (?, ?, ?, ?, ?)",
                (original, req.key, req.terminal_id, member_id, ts(now)),
            )
            restored = taken = 0
            if purchase is not None:
                restored, taken = self._undo(original, now)
                self._reversal_sms(original, member_id, restored, taken, now)
            elif body.get("quote_id"):
                # Reversed before its advice came (or instead of one): the quote is not
                # going to be paid with, so its credit is free again now.
                self._end_quote(body["quote_id"], req.terminal_id, "reversed", now)
        else:
            member_id, restored, taken = done
        bal = ledger.balance(self.conn, member_id) if member_id is not None else 0
        return Outcome("00", {"balance": bal, "restored": restored, "taken_back": taken})

    def _reversal_sms(
        self, original: str, member_id: int, restored: int, taken: int, now: datetime
    ) -> None:
        approved = self.conn.execute(
            "SELECT approved FROM purchases WHERE key = ?", (original,)
        ).fetchone()[0]
        if not approved:
            return  # a declined purchase moved no credit: nothing to tell
        member = store.member_by_id(self.conn, member_id)
        self._sms(
            f"reversal:{original}",
            member.phone,
            texts.reversal_sms(
                shop_name=self.shop_name,
                restored=restored,
                taken_back=taken,
                balance=ledger.balance(self.conn, member_id),
                when=now,
            ),
            "reversal",
            now,
        )

    # --- release -----------------------------------------------------------------------

    def _release(self, req: Request, now: datetime) -> Outcome:
        """The agent gave up an inquiry (docs/mqtt.md, release): end its hold, or, if the
        inquiry has not been carried out yet, answer it now so that it never holds."""
        inquiry_key = req.body["inquiry_key"]
        if not inquiry_key.startswith(f"{req.terminal_id}:0100:"):
            raise RuleError("12", "inquiry_key is not an inquiry of this terminal")
        stored = store.stored_response(self.conn, inquiry_key)
        if stored is None:
            store.store_response(
                self.conn,
                key=inquiry_key,
                type="inquiry",
                code="12",
                message="inquiry released by the agent before it was carried out",
                body={},
                now=now,
            )
            return Outcome("00", {"released": 0})
        # Only the quote that inquiry itself made: the body's quote_id is the agent's
        # note, never trusted to name another inquiry's quote.
        quote_id = stored[3].get("quote_id")
        released = 0
        if quote_id:
            released = self._end_quote(quote_id, req.terminal_id, "released", now)
        return Outcome("00", {"released": released})

    def _end_quote(self, quote_id: str, terminal_id: str, status: str, now: datetime) -> int:
        """End the hold of a quote of `terminal_id` that is still held; the rials freed."""
        row = self.conn.execute(
            "SELECT member_id, discount FROM quotes WHERE id = ? AND terminal_id = ? "
            "AND status = 'held'",
            (quote_id, terminal_id),
        ).fetchone()
        if row is None:
            return 0  # settled, declined, expired, released, or not this terminal's
        self._end_hold(quote_id, row[0], row[1], status, now)
        return int(row[1])

    def _reversal_member(self, body: dict[str, Any]) -> int | None:
        if body.get("quote_id"):
            row = self.conn.execute(
                "SELECT member_id FROM quotes WHERE id = ?", (body["quote_id"],)
            ).fetchone()
            return row[0] if row else None
        try:
            return self._member(body).id
        except (RuleError, IdentityError):
            return None

    def _undo(self, original: str, now: datetime) -> tuple[int, int]:
        """Undo a stored purchase: restore its redemption, take back its earning."""
        (member_id, quote_id, approved, earned, recovered, earn_lot, occurred_at) = (
            self.conn.execute(
                "SELECT member_id, quote_id, approved, earned, recovered, earn_lot, occurred_at "
                "FROM purchases WHERE key = ?",
                (original,),
            ).fetchone()
        )
        restored = taken = shortfall = 0
        if approved:
            unpaid = 0  # the discount the redemption could not cover became a debt: void now
            if quote_id:
                restored = ledger.restore(
                    self.conn, member_id, f"redeem:{quote_id}", f"reversal-restore:{original}", now
                )
                row = self.conn.execute(
                    "SELECT q.discount - p.redeemed FROM quotes q, purchases p "
                    "WHERE q.id = ? AND p.key = ?",
                    (quote_id, original),
                ).fetchone()
                unpaid = max(0, int(row[0])) if row else 0
            taken, shortfall = ledger.take_back(
                self.conn,
                member_id,
                earned - recovered,
                f"reversal-takeback:{original}",
                now,
                first_lot=earn_lot,
            )
            # the debt this purchase paid off comes back; the debt it created goes away
            debt = store.member_by_id(self.conn, member_id).debt
            left = debt + recovered - unpaid
            if left < 0:
                # later earnings already paid part of that void debt: give it back as credit
                ledger.credit(
                    self.conn,
                    member_id,
                    "adjustment",
                    -left,
                    f"reversal-refund:{original}",
                    earned_at=now,
                    expires_at=self.program.credit_expiry(now),
                    ref=original,
                )
                left = 0
            if left != debt:
                store.add_debt(self.conn, member_id, left - debt)
        self.conn.execute("UPDATE purchases SET reversed = 1 WHERE key = ?", (original,))
        self.conn.execute(
            "UPDATE reversals SET applied = 1, restored = ?, taken_back = ?, shortfall = ?, "
            "member_id = ? WHERE original_key = ?",
            (restored, taken, shortfall + recovered, member_id, original),
        )
        if approved:
            self._retier(store.member_by_id(self.conn, member_id), from_ts(occurred_at))
        return restored, taken
