"""A hypothesis state machine over the ledger and program rules.

It drives `Handler.handle`, the function the MQTT service uses, on a real SQLite file,
with random enrolments, quotes, advices, declines, reversals, one-time codes, repeated
requests and clock jumps, and checks the ledger's invariants after every step.
"""

from __future__ import annotations

import re
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from backend import credit_transfer, ledger, store, store_transfers
from backend.credit_transfer import CodeRefused, TransferError
from backend.handlers import Handler
from backend.program import Program
from backend.sms.senders import otp_token
from protocols import mqtt as schema
from protocols.mqtt import Request, Response
from tests.backend.core_helpers import FakeClock, advice, phone, request, reversal
from tests.backend.engines import ENGINES, register_test_terminals, wipe

PHONES = [phone(i) for i in range(5)]
_FA = str.maketrans("۰۱۲۳۴۵۶۷۸۹", "0123456789")
#: the machine's program (its low OTP threshold), for the transfers too
TRANSFER_PROGRAM = Program(otp_threshold=50_000)
AMOUNTS = st.one_of(st.integers(1, 3_000_000), st.sampled_from([1, 99, 400_000_000]))


NewDb = Callable[[], tuple[str, Callable[[], None]]]


def _sqlite_db() -> tuple[str, Callable[[], None]]:
    folder = Path(tempfile.mkdtemp(prefix="ledger-sm-"))
    register_test_terminals(folder / "loyalty.db")  # the requests' terminals
    return str(folder / "loyalty.db"), lambda: shutil.rmtree(folder, ignore_errors=True)


class LedgerMachine(RuleBasedStateMachine):
    def __init__(self, new_db: NewDb = _sqlite_db) -> None:
        super().__init__()
        self.db, self._drop = new_db()
        self.conn = store.connect(self.db)
        self.clock = FakeClock()
        # a low OTP threshold so that random runs reach it
        self.handler = Handler(self.conn, TRANSFER_PROGRAM, clock=self.clock)
        self.members: set[str] = set()
        self.quotes: list[tuple[str, str]] = []  # (quote id, phone)
        self.inquiry_of: dict[str, Request] = {}  # quote id -> the inquiry that made it
        self.releases: dict[str, Response] = {}  # release key -> its first answer
        self.advices: list[Request] = []
        self.sent: list[tuple[Request, Response]] = []
        self.approved_earning: set[str] = set()  # advice keys that earned credit
        self.reversed: set[str] = set()
        self.otp_phones: set[str] = set()

    def teardown(self) -> None:
        self.conn.close()
        self._drop()

    def _do(self, req: Request) -> Response:
        resp = self.handler.handle(req)
        assert resp.id == req.id and resp.key == req.key
        self.sent.append((req, resp))
        return resp

    def _balance(self, p: str) -> int:
        m = store.member_by_phone(self.conn, p, club_id=1)
        assert m is not None
        return ledger.balance(self.conn, m.id)

    # --- rules ------------------------------------------------------------------------

    @initialize(spend=st.lists(st.integers(0, 5_000_000), min_size=3, max_size=3))
    def founders(self, spend: list[int]) -> None:
        """Three members, the second referred by the first, with some credit to play with."""
        for i, amount in enumerate(spend):
            referrer = PHONES[0] if i == 1 else None
            assert (
                self._do(request("enroll", {"phone": PHONES[i], "referrer": referrer})).code == "00"
            )
            self.members.add(PHONES[i])
            if amount:
                self.advice_by_phone(i, amount)

    @rule(i=st.integers(0, 4), ref=st.one_of(st.none(), st.integers(0, 4)))
    def enroll(self, i: int, ref: int | None) -> None:
        p = PHONES[i]
        resp = self._do(
            request("enroll", {"phone": p, "referrer": PHONES[ref] if ref is not None else None})
        )
        assert resp.code == "00"
        assert resp.body["new"] is (p not in self.members)
        self.members.add(p)

    @rule(i=st.integers(0, 4), gross=AMOUNTS, redeem=st.one_of(st.none(), st.integers(0, 200_000)))
    def inquiry(self, i: int, gross: int, redeem: int | None) -> None:
        p = PHONES[i]
        inq = request("inquiry", {"phone": p, "gross": gross, "redeem": redeem})
        resp = self._do(inq)
        if p not in self.members:
            assert resp.code == "14"
            return
        if resp.code == "51":
            assert redeem is not None and redeem > self._balance(p)
            return
        assert resp.code == "00", resp
        if resp.body["otp_required"]:
            self.otp_phones.add(p)
            return
        b = resp.body
        assert b["discount"] <= gross // 2 and b["net"] == gross - b["discount"]
        assert b["balance"] == self._balance(p)
        if redeem is not None:
            assert b["discount"] == min(redeem, gross // 2)
        self.quotes.append((b["quote_id"], p))
        self.inquiry_of[b["quote_id"]] = inq

    @precondition(lambda self: self.otp_phones)
    @rule(data=st.data(), right=st.booleans())
    def inquiry_with_otp(self, data: st.DataObject, right: bool) -> None:
        p = data.draw(st.sampled_from(sorted(self.otp_phones)))
        text = self.conn.execute(
            "SELECT text FROM sms_outbox WHERE phone = ? AND kind = 'otp' ORDER BY id DESC",
            (p,),
        ).fetchone()[0]
        code = re.findall(r"\d{6}", text.translate(_FA))[0]
        if not right:
            code = f"{(int(code) + 1) % 1_000_000:06d}"
        inq = request("inquiry", {"phone": p, "gross": 400_000_000, "otp": code})
        resp = self._do(inq)
        if not right:
            assert resp.code in ("55", "00")  # 00 when the discount no longer needs a code
        if resp.code == "00" and not resp.body["otp_required"]:
            self.quotes.append((resp.body["quote_id"], p))
            self.inquiry_of[resp.body["quote_id"]] = inq
            self.otp_phones.discard(p)

    @precondition(lambda self: self.quotes)
    @rule(data=st.data(), approved=st.booleans(), amount=AMOUNTS)
    def advice_for_quote(self, data: st.DataObject, approved: bool, amount: int) -> None:
        qid, p = data.draw(st.sampled_from(self.quotes))
        status, discount, expires_at = self.conn.execute(
            "SELECT status, discount, expires_at FROM quotes WHERE id = ?", (qid,)
        ).fetchone()
        debt_before = store.member_by_phone(self.conn, p, club_id=1).debt
        req = advice(
            amount=amount,
            occurred_at=self.clock.iso(),
            quote_id=qid,
            bank_code="00" if approved else "51",
        )
        resp = self._do(req)
        if resp.code == "12":  # the quote was already used by another advice
            assert status in ("settled", "declined")
            return
        assert resp.code == "00", resp
        redeemed, recovered, reversed_ = self.conn.execute(
            "SELECT redeemed, recovered, reversed FROM purchases WHERE key = ?", (req.key,)
        ).fetchone()
        if approved and not reversed_:
            # the advice redeems exactly the DA its terminal was given: from credit while
            # the hold stood, and what a lapsed or released hold lost becomes a debt
            if status == "held" and expires_at > store.ts(self.clock()):
                assert redeemed == discount
            debt_after = store.member_by_phone(self.conn, p, club_id=1).debt
            assert debt_after == debt_before + (discount - redeemed) - recovered
        assert resp.body["balance"] == self._balance(p)
        self.advices.append(req)
        if approved and resp.body["earned"] > 0:
            self.approved_earning.add(req.key)
        if not approved:
            assert resp.body["earned"] == 0

    @rule(i=st.integers(0, 4), amount=AMOUNTS)
    def advice_by_phone(self, i: int, amount: int) -> None:
        p = PHONES[i]
        req = advice(amount=amount, occurred_at=self.clock.iso(), phone=p)
        resp = self._do(req)
        if p not in self.members:
            assert resp.code == "14"
            return
        assert resp.code == "00" and resp.body["balance"] == self._balance(p)
        self.advices.append(req)
        if resp.body["earned"] > 0:
            self.approved_earning.add(req.key)

    @precondition(lambda self: self.advices)
    @rule(data=st.data())
    def reverse(self, data: st.DataObject) -> None:
        original = data.draw(st.sampled_from(self.advices))
        resp = self._do(reversal(original, occurred_at=self.clock.iso()))
        assert resp.code == "00"
        if original.key in self.reversed:
            assert resp.body["restored"] >= 0
        self.reversed.add(original.key)

    @precondition(lambda self: self.quotes)
    @rule(data=st.data())
    def agent_releases_a_quote(self, data: st.DataObject) -> None:
        """The agent gave the quote up (91 sent, 0110 not delivered): only a held quote's
        credit comes back, once; a used one is never touched."""
        qid, p = data.draw(st.sampled_from(self.quotes))
        inq = self.inquiry_of[qid]
        status, discount = self.conn.execute(
            "SELECT status, discount FROM quotes WHERE id = ?", (qid,)
        ).fetchone()
        before = self._balance(p)
        req = _release(inq, qid)
        first = self.releases.get(req.key)
        resp = self._do(req)
        assert resp.code == "00"
        after = self._balance(p)
        if first is not None:  # the agent repeats its release: the same answer, no effect
            assert resp == first and after == before
            return
        self.releases[req.key] = resp
        if status == "held":
            # the sweep may have found it expired first (maintenance on access)
            assert after - before in (discount, 0) and resp.body["released"] in (discount, 0)
        else:
            assert resp.body["released"] == 0 and after == before

    @rule(i=st.integers(0, 4), gross=AMOUNTS)
    def release_overtakes_its_inquiry(self, i: int, gross: int) -> None:
        """A hung backend carries out an inquiry after its release: it never holds."""
        p = PHONES[i]
        inq = request("inquiry", {"phone": p, "gross": gross})
        assert self._do(_release(inq, None)).code == "00"
        held = self.conn.execute("SELECT COUNT(*) FROM quotes").fetchone()[0]
        assert self._do(inq).code == "12"
        assert self.conn.execute("SELECT COUNT(*) FROM quotes").fetchone()[0] == held

    @precondition(lambda self: self.quotes)
    @rule(data=st.data(), amount=AMOUNTS)
    def advice_arrives_late(self, data: st.DataObject, amount: int) -> None:
        """The advice waited in an agent's journal past the hold's expiry."""
        self.clock.jump(seconds=301)
        self.advice_for_quote(data, True, amount)

    @rule(i=st.integers(0, 4), amount=AMOUNTS)
    def reversal_before_advice(self, i: int, amount: int) -> None:
        """The reversal overtakes its advice: both orders give one effect."""
        p = PHONES[i]
        req = advice(amount=amount, occurred_at=self.clock.iso(), phone=p)
        assert self._do(reversal(req, occurred_at=self.clock.iso())).code == "00"
        resp = self._do(req)
        if p in self.members:
            assert resp.code == "00" and resp.body["earned"] == 0
            self.advices.append(req)
            self.reversed.add(req.key)
            earned = self.conn.execute(
                "SELECT earned FROM purchases WHERE key = ?", (req.key,)
            ).fetchone()[0]
            if earned:
                self.approved_earning.add(req.key)

    @precondition(lambda self: self.sent)
    @rule(data=st.data())
    def repeat(self, data: st.DataObject) -> None:
        req, first = data.draw(st.sampled_from(self.sent))
        rows = self.conn.execute("SELECT COUNT(*) FROM ledger").fetchone()[0]
        # clock jumps and sweeps may add expiry rows, but the repeat itself adds none
        again = self.handler.handle(req)
        assert again == first
        assert self.conn.execute("SELECT COUNT(*) FROM ledger").fetchone()[0] == rows

    @rule(seconds=st.sampled_from([1, 30, 119, 121, 299, 301, 3600]))
    def wait_seconds(self, seconds: int) -> None:
        self.clock.jump(seconds=seconds)

    @rule(days=st.sampled_from([1, 30, 89, 91, 200, 364, 366]))
    def wait_days(self, days: int) -> None:
        self.clock.jump(days=days)

    @rule()
    def sweep(self) -> None:
        self.handler.sweep()
        now = store.ts(self.clock())
        assert (
            self.conn.execute(
                "SELECT COUNT(*) FROM quotes WHERE status = 'held' AND expires_at <= ?", (now,)
            ).fetchone()[0]
            == 0
        )

    @rule(i=st.integers(0, 4), j=st.integers(0, 4), amount=st.integers(1, 600_000),
          right=st.booleans(), twice=st.booleans())
    def transfer(self, i: int, j: int, amount: int, right: bool, twice: bool) -> None:
        """A member gives credit to another phone (a member or not yet): the rules refuse
        it, a wrong code leaves everything as it was, the right one moves it once."""
        sender = store.member_by_phone(self.conn, PHONES[i], club_id=1)
        if sender is None:
            return
        now, before = self.clock(), self._ledger_sum()
        try:
            tid = credit_transfer.start(self.conn, 1, sender.id, PHONES[j], amount, now,
                                        program=TRANSFER_PROGRAM, shop_name="")
        except TransferError:
            assert self._ledger_sum() == before
            return
        t = store_transfers.get(self.conn, tid)
        assert t is not None
        text = self.conn.execute("SELECT text FROM sms_outbox WHERE key = ?",
                                 (f"otp:{t.otp_id}",)).fetchone()[0]
        code = otp_token(text)
        code = code if right else str((int(code) + 1) % 10 ** len(code)).zfill(len(code))
        for _ in range(2 if twice else 1):
            try:
                made = credit_transfer.confirm(self.conn, tid, code, now, member_id=sender.id,
                                               program=TRANSFER_PROGRAM, shop_name="")
            except (CodeRefused, TransferError):
                assert not right
                continue
            assert right and made.amount == amount
            self.members.add(PHONES[j])
            out = self.conn.execute("SELECT COUNT(*) FROM ledger WHERE key LIKE ?",
                                    (f"transfer:{t.key}:%",)).fetchone()[0]
            assert out == 2  # one row each side, however often confirmed

    def _ledger_sum(self) -> int:
        return int(self.conn.execute("SELECT COALESCE(SUM(amount), 0) FROM ledger"
                                     ).fetchone()[0])


    @invariant()
    def ledger_invariants(self) -> None:
        for (mid,) in self.conn.execute("SELECT id FROM members").fetchall():
            ledger.check(self.conn, mid)  # balance >= 0, lots - holds == balance
            held = ledger.held(self.conn, mid)
            lots = self.conn.execute(
                "SELECT COALESCE(SUM(remaining), 0) FROM lots WHERE member_id = ?", (mid,)
            ).fetchone()[0]
            assert held <= lots  # holds never exceed the credit
        assert self.conn.execute("SELECT COUNT(*) FROM members WHERE debt < 0").fetchone()[0] == 0

    @invariant()
    def applied_once(self) -> None:
        earns = self.conn.execute("SELECT COUNT(*) FROM ledger WHERE kind = 'earn'").fetchone()[0]
        assert earns == len(self.approved_earning)
        purchases = self.conn.execute("SELECT COUNT(*) FROM purchases").fetchone()[0]
        assert purchases == len({a.key for a in self.advices})
        per_original = self.conn.execute(
            "SELECT MAX(n) FROM (SELECT COUNT(*) AS n FROM ledger WHERE kind = 'reversal' "
            "GROUP BY key) AS per_key"
        ).fetchone()[0]
        assert per_original in (None, 1)
        held_rows = self.conn.execute("SELECT COUNT(*) FROM ledger WHERE kind = 'hold'").fetchone()[
            0
        ]
        released = self.conn.execute(
            "SELECT COUNT(*) FROM ledger WHERE kind = 'release'"
        ).fetchone()[0]
        assert released <= held_rows
        moved = self.conn.execute(
            "SELECT COALESCE(SUM(amount), 0), COUNT(*) FROM ledger "
            "WHERE kind IN ('transfer_out', 'transfer_in')").fetchone()
        done = self.conn.execute("SELECT COUNT(*) FROM transfers WHERE status = 'done'"
                                 ).fetchone()[0]
        assert moved[0] == 0 and moved[1] == 2 * done  # a transfer creates no credit


def _release(inquiry: Request, quote_id: str | None) -> Request:
    return Request(
        type="release",
        id=f"release-{inquiry.id}",
        key=schema.release_key(inquiry.key),
        terminal_id=inquiry.terminal_id,
        merchant_id=inquiry.merchant_id,
        body={"inquiry_key": inquiry.key, "quote_id": quote_id, "reason": "undelivered"},
    )


SETTINGS = settings(
    max_examples=60,
    stateful_step_count=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)


def new_db_for(engine: str, request: pytest.FixtureRequest) -> NewDb:
    """A fresh database per run of a machine: a SQLite file, or on PostgreSQL one database
    for the test, emptied before each run."""
    if engine != "postgresql":
        return _sqlite_db
    url: str = request.getfixturevalue("pg_url")

    def new_db() -> tuple[str, Callable[[], None]]:
        wipe(url)
        return url, lambda: None

    return new_db


@pytest.mark.parametrize("engine", ENGINES)
def test_backend_ledger_machine(engine: str, request: pytest.FixtureRequest) -> None:
    """The same machine on each engine."""
    new_db = new_db_for(engine, request)
    run_state_machine_as_test(lambda: LedgerMachine(new_db), settings=SETTINGS)
