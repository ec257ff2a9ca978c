"""`loyalty-demo`: the whole system on this machine, playing a shop's day.

Mosquitto, the backend and the agent run as processes in a temporary folder; the
simulated terminal talks to the agent over a pseudo-terminal pair. Everything started
here is stopped here, by pid.
"""

from __future__ import annotations

import argparse
import csv
import json
import sqlite3
import subprocess
import sys
import tempfile
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from backend.sms import outbox as sms_outbox
from demo import marketing as demo_marketing
from demo import panel as demo_panel
from demo.day import (
    AFTERNOON_OFFLINE,
    BACKEND_CONFIG,
    BACKEND_DOWN,
    EVENING,
    MORNING,
    POOR_CARD,
    Visit,
)
from demo.mosquitto import BrokerError, find_mosquitto, stop_process
from demo.stack import BACKEND_USER, Stack, StackError
from protocols.identity import mask_card, mask_phone, normalize_phone
from protocols.response_codes import ResponseCode
from protocols.version import version_line
from terminal_sim.bank import BankHost
from terminal_sim.printer import Receipt
from terminal_sim.scenario import backend_command as scenario_backend_command
from terminal_sim.scenario import otp_from_outbox
from terminal_sim.session import Session
from terminal_sim.terminal import Terminal


class Day:
    """Plays visits on one terminal and keeps the figures for the summary."""

    def __init__(self, stack: Stack, session: Session, out: Any, show_receipts: bool) -> None:
        self.stack, self.session, self.out = stack, session, out
        self.t: Terminal = session.terminal
        self.started = time.monotonic()
        self.advices = 0
        self.reversals = 0
        self.declined = 0
        self.members: dict[str, str] = {}
        #: Each member's credit as the club last told us (enrolment, 0230), in rials.
        self.balances: dict[str, int] = {}
        self.referred_by: dict[str, str] = {}
        self.bought: set[str] = set()
        self.backend_up = True
        self.sms_shown = 0  # bytes of the SMS outbox already shown
        self.gift_card: str | None = None  # the one sold today
        #: who replied "لغو", their phone, the campaign sent after it (demo.marketing)
        self.stop_reply: tuple[str, str, int] | None = None
        if show_receipts:
            self.t.printer.on_print = self.print_receipt

    def say(self, text: str) -> None:
        print(f"[{time.monotonic() - self.started:5.1f}s] {text}", file=self.out, flush=True)

    def print_receipt(self, receipt: Receipt) -> None:
        box = "\n".join(f"    | {line}" for line in receipt.lines)
        print(f"    +{'-' * 34}\n{box}\n    +{'-' * 34}", file=self.out, flush=True)

    def show_sms(self, wait: bool = True) -> None:
        """Each SMS the backend sent since the last call, as the customer reads it.

        With `wait`, first waits until the backend's outbox has nothing pending, so the
        SMS of the visit just played are shown with it.
        """
        if wait and self.backend_up:
            wait_sms_sent(self.stack.db)
        if not self.stack.outbox.exists():
            return
        data = self.stack.outbox.read_bytes()
        end = data.rfind(b"\n", self.sms_shown) + 1
        if end <= self.sms_shown:
            return
        for line in data[self.sms_shown:end].decode("utf-8").splitlines():
            try:
                sms = json.loads(line)
            except ValueError:
                continue
            self.say(f"  SMS to {mask_phone(str(sms.get('phone', '')))} "
                     f"({sms.get('kind', '?')}), as sent:")
            for text in str(sms.get("text", "")).splitlines():
                print(f"      > {text}", file=self.out, flush=True)
        self.sms_shown = end

    def visit(self, v: Visit) -> None:
        self.say(f"{v.who}: {v.note}")
        self._visit(v)
        self.show_sms()

    def _visit(self, v: Visit) -> None:
        if v.enroll:
            ex = self.t.enroll(v.phone or "", v.referrer)
            r = ex.response
            if r is None or r.code != ResponseCode.APPROVED:
                raise StackError(f"enrolment of {v.who} failed: {r or ex.note}")
            # as the club stores it, not as typed (Sara types Persian digits)
            self.members[v.who] = normalize_phone(v.phone or "")
            self.balances[v.who] = r.balance or 0
            if v.referrer:
                by = self.who(v.referrer)
                if by:
                    self.referred_by[v.who] = by
            self.say(f"  enrolled: member code {r.member_code}, credit {r.balance:,} rials")
            return
        if v.give_card:
            text = backend_command(self.stack, "card", "add", v.phone or "", v.give_card)
            self.say(f"  {text.strip()}")
            return
        if v.buy_gift_card:
            self.sell_gift_card(v.buy_gift_card)
            return
        card = v.card
        if v.pay_with_gift_card:
            if self.gift_card is None:
                raise StackError("no gift card was sold before it is used")
            card = self.gift_card
        mark = self.stack.outbox.stat().st_size if self.stack.outbox.exists() else 0

        def otp() -> str | None:
            code = otp_from_outbox(self.stack.outbox, mark, timeout=15)
            self.show_sms(wait=False)
            self.say(f"  customer reads the one-time code from the SMS: {code}")
            return code

        sale = self.t.sale(v.amount, v.pan, v.pin, phone=v.phone, card=card,
                           otp_provider=otp)
        inq = sale.inquiry.response if sale.inquiry else None
        if inq is not None and inq.code == ResponseCode.BACKEND_UNREACHABLE:
            self.say("  loyalty backend unreachable (91): full amount charged, no discount")
        auth = sale.authorisation
        outcome = "approved" if auth.approved else "declined"
        line = (f"  gross {sale.gross:,}  discount {sale.discount:,}  charged {sale.amount:,}"
                f"  bank {auth.code}: {outcome} ({auth.reason})")
        self.say(line)
        if sale.advice is not None:
            self.advices += 1
            adv = sale.advice.response
            if adv is None:
                raise StackError(f"the advice for {v.who} was not answered")
            words = self._advice_words(adv, gift=v.pay_with_gift_card)
            self.say(f"  purchase advice (0220) answered {adv.code}: {words}")
            if adv.balance is not None and v.who in self.members:
                self.balances[v.who] = adv.balance
        if not sale.approved:
            self.declined += 1
        elif (sale.advice is not None and sale.advice.code == ResponseCode.APPROVED
              and v.who in self.members):
            first = v.who not in self.bought
            self.bought.add(v.who)
            if first and self.backend_up and v.who in self.referred_by:
                self.explain_referral(v.who, self.referred_by[v.who])
        if v.reverse and sale.approved:
            ex = self.t.reverse(sale)
            self.reversals += 1
            code = ex.code if ex is not None else None
            self.say(f"  reversal (0420) answered {code}: "
                     + ("the club undid the purchase and the credit it earned"
                        if code == ResponseCode.APPROVED else "the reversal was not taken"))
            if code != ResponseCode.APPROVED:
                raise StackError(f"the reversal for {v.who} was answered {code}")

    def sell_gift_card(self, value: int) -> None:
        """The owner's commands: a batch of five cards, its printable CSV, one card sold."""
        printed = self.stack.workdir / "giftcards.csv"
        expires = (date.today() + timedelta(days=365)).isoformat()
        text = backend_command(self.stack, "giftcard", "issue", "--value", str(value),
                               "--count", "5", "--expires", expires, "--csv", str(printed))
        self.say(f"  {text.strip()}")
        with printed.open(encoding="ascii", newline="") as f:
            number = next(csv.DictReader(f))["number"]
        text = backend_command(self.stack, "giftcard", "sell", number)
        self.say(f"  card {mask_card(number)} from {printed.name}: {text.strip()}")
        self.gift_card = number

    def _advice_words(self, adv: Any, gift: bool = False) -> str:
        if not self.backend_up:
            return "taken by the agent, kept in its journal until the backend is back"
        if adv.code != ResponseCode.APPROVED:
            return "the club did not take it"
        if gift and self.gift_card:
            card = backend_command(self.stack, "giftcard", "show", self.gift_card)
            return f"the club settled the gift card's part: {card.splitlines()[0]}"
        if not adv.earned:
            return "the club recorded it; nothing earned (the held credit is released)"
        return (f"the club recorded it; earned {adv.earned:,} rials, "
                f"credit now {adv.balance or 0:,}")

    def who(self, phone: str) -> str | None:
        number = normalize_phone(phone)
        return next((w for w, p in self.members.items() if p == number), None)

    def explain_referral(self, newcomer: str, referrer: str) -> None:
        """Credit the referrer did not earn by buying: say where it came from."""
        before = self.balances.get(referrer, 0)
        now = balance_of(self.stack, self.members[referrer])
        if now is None or now <= before:
            return
        self.balances[referrer] = now
        self.say(f"  {referrer}'s credit rose from {before:,} to {now:,} rials without buying "
                 f"anything: the referral bonus ({now - before:,} rials), because "
                 f"{newcomer}, whom {referrer} referred, made a first purchase "
                 f"(پاداش معرفی: {newcomer} با معرفی {referrer} عضو شد و اولین خریدش را کرد)")

    def echo(self) -> tuple[str | None, int | None]:
        r = self.t.echo().response
        return (None, None) if r is None else (r.status, r.queued)


def wait_sms_sent(db: Path, timeout: float = 15.0) -> None:
    """Until the backend's SMS outbox has nothing pending (its own count of it)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            # mode=rw: never creates the file, the backend does that
            conn = sqlite3.connect(f"file:{db}?mode=rw", uri=True, timeout=5)
            try:
                # not what the marketing rules put off to tomorrow morning
                if sms_outbox.counts(conn, due_by=datetime.now(UTC))["pending"] == 0:
                    return
            finally:
                conn.close()
        except sqlite3.Error:
            pass
        time.sleep(0.05)


def status_words(status: str | None, queued: int | None) -> str:
    """ST and QD of an 0810 in plain words."""
    if status is None:
        return "the agent did not answer"
    backend = {"ON": "the backend is online", "OF": "the backend is unreachable"}.get(
        status, f"backend status {status}")
    waiting = ("nothing is waiting in the agent's journal" if not queued else
               f"{queued} purchase{'s are' if queued != 1 else ' is'} waiting "
               "in the agent's journal")
    return f"{backend}; {waiting}"


def backend_command(stack: Stack, *args: str) -> str:
    """An operator command on the demo's backend; its output (and errors, if it failed)."""
    _code, text = scenario_backend_command(stack.db, stack.config_file, stack.python)(
        list(args))
    return text


def sms_count(outbox: Path) -> dict[str, int]:
    counts: dict[str, int] = {}
    if outbox.exists():
        for line in outbox.read_text(encoding="utf-8").splitlines():
            try:
                kind = str(json.loads(line).get("kind", "other"))
            except ValueError:
                continue
            counts[kind] = counts.get(kind, 0) + 1
    return counts


def member_field(stack: Stack, phone: str, name: str) -> str | None:
    """One line of the operator's `member PHONE` profile (`tier`, `balance` ...)."""
    for line in backend_command(stack, "member", phone).splitlines():
        if line.startswith(name):
            return line.split(None, 1)[1].strip()
    return None


def tier_of(stack: Stack, phone: str) -> str:
    return member_field(stack, phone, "tier") or "?"


def balance_of(stack: Stack, phone: str) -> int | None:
    text = member_field(stack, phone, "balance") or ""
    digits = text.split()[0].replace(",", "") if text else ""
    return int(digits) if digits.isdigit() else None


def play(stack: Stack, out: Any, show_receipts: bool, public_url: str | None = None) -> Day:
    stack.start_broker()
    print(f"Mosquitto on {stack.broker.address if stack.broker else '?'}", file=out)
    stack.start_backend()
    if public_url:  # the SMS of the day carry links to the members' pages
        demo_panel.set_public_url(stack.db, public_url)
    stack.start_agent()
    bank = BankHost()
    bank.open_account(POOR_CARD, balance=100_000)
    session = stack.session(bank=bank, periodic_echo=False)
    day = Day(stack, session, out, show_receipts)
    assert stack.backend and stack.agent and stack.pty
    day.say(f"backend pid {stack.backend.pid}, agent pid {stack.agent.pid} "
            f"on the serial line {stack.pty.path}")
    stack.wait_ready(session)
    day.say("terminal signed on (0800 001 answered ST=ON): the backend is online")
    for v in MORNING + AFTERNOON_OFFLINE:
        day.visit(v)
    day.say("-- the backend goes down in the middle of the day --")
    stack.stop_backend()
    day.backend_up = False
    time.sleep(0.5)
    for v in BACKEND_DOWN:
        day.visit(v)
    status, queued = day.echo()
    day.say(f"echo (0800 301) answered ST={status} QD={queued}: {status_words(status, queued)}")
    day.say("-- the backend is started again --")
    stack.start_backend()
    left = stack.wait_forwarded(session, timeout=60)
    if left != 0:
        raise StackError(f"journaled advices not forwarded: {left} still queued")
    day.backend_up = True
    day.say(f"echo answered ST=ON QD=0: {status_words('ON', 0)}: the agent forwarded "
            "every journaled purchase to the backend")
    day.show_sms()
    for v in EVENING:
        day.visit(v)
    demo_marketing.play(day)
    day.say("sign-off")
    session.terminal.sign_off()
    return day


def summary(stack: Stack, day: Day, out: Any) -> None:
    print("\n=== summary of the day ===", file=out)
    print("members and tiers:", file=out)
    for who, phone in day.members.items():
        print(f"  {who:8} {phone:14} {tier_of(stack, phone)}", file=out)
    print(f"advices forwarded to the backend: {day.advices} purchase advices "
          f"({day.declined} of a declined payment), {day.reversals} reversal(s)", file=out)
    sms = sms_count(stack.outbox)
    detail = ", ".join(f"{k} {v}" for k, v in sorted(sms.items()))
    print(f"SMS sent (to {stack.outbox.name}): {sum(sms.values())} ({detail})", file=out)
    demo_marketing.summary(stack, out, day.stop_reply)
    print("gift cards (loyalty-backend giftcard list):", file=out)
    print(backend_command(stack, "giftcard", "list").rstrip(), file=out)
    # the operator's own command, so the shop owner reads what `loyalty-backend report` says
    print("end-of-day report (loyalty-backend report):", file=out)
    print(backend_command(stack, "report").rstrip(), file=out)


def member_link(outbox: Path, public_url: str) -> str | None:
    """The newest link to a member's page among the SMS of the day."""
    found = None
    if outbox.exists():
        for line in outbox.read_text(encoding="utf-8").splitlines():
            try:
                text = str(json.loads(line).get("text", ""))
            except ValueError:
                continue
            for word in text.split():
                if word.startswith(public_url + "/m/"):
                    found = word
    return found


def open_panel(stack: Stack, out: Any, port: int | None = None) -> subprocess.Popen:
    """The owner's web panel over the day's database: its address and a login."""
    password = demo_panel.add_owner(stack.db)
    assert stack.broker is not None
    secret = stack.workdir / f"broker-password-{BACKEND_USER}"
    login = (BACKEND_USER, secret.read_text().strip()) if secret.exists() else None
    config = demo_panel.write_config(stack.workdir, stack.config_file, stack.broker.address,
                                     login)
    port = port or demo_panel.free_port()
    proc = demo_panel.start_panel(stack.python, stack.db, config, stack.workdir, port)
    print(f"\nthe owner's web panel: http://127.0.0.1:{port}/dashboard\n"
          f"  log in as {demo_panel.OWNER!r} with the password {password!r}", file=out,
          flush=True)
    link = member_link(stack.outbox, f"http://127.0.0.1:{port}")
    if link:
        print(f"a member's own page (the link of their last SMS): {link}", file=out,
              flush=True)
    return proc


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="loyalty-demo", description=__doc__)
    parser.add_argument("--version", action="version", version=version_line("loyalty-demo"))
    parser.add_argument("--workdir", type=Path, help="folder to keep everything in "
                        "(default: a new temporary folder)")
    parser.add_argument("--no-receipts", action="store_true", help="do not print receipts")
    parser.add_argument("--serve", action="store_true", help="after the day, keep the broker, "
                        "backend, agent and panel running until Ctrl-C, to look around")
    args = parser.parse_args(argv)
    out = sys.stdout
    try:
        find_mosquitto()
    except BrokerError as exc:
        print(f"loyalty-demo: {exc}", file=sys.stderr)
        return 1
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="loyalty-demo-"))
    stack = Stack(workdir, BACKEND_CONFIG)
    started = time.monotonic()
    print(f"loyalty-demo: a shop's day, everything kept in {workdir}", file=out)
    code = 0
    panel = None
    try:
        port = demo_panel.free_port()  # known before the day: the SMS links name it
        day = play(stack, out, not args.no_receipts, f"http://127.0.0.1:{port}")
        summary(stack, day, out)
        panel = open_panel(stack, out, port)
        if args.serve:
            print("everything keeps running; press Ctrl-C to stop it all", file=out, flush=True)
            try:
                while stack.backend is not None and panel.poll() is None:
                    time.sleep(0.5)
            except KeyboardInterrupt:
                print("\nstopping ...", file=out)
    except (StackError, BrokerError, OSError, RuntimeError) as exc:
        print(f"loyalty-demo: {exc}", file=sys.stderr)
        code = 1
    finally:
        stop_process(panel)
        stack.stop()
    took = time.monotonic() - started
    print(f"\nevery process stopped; {took:.0f} s in all. Logs, database, journal and SMS "
          f"outbox are in:\n  {workdir}", file=out)
    return code


if __name__ == "__main__":
    sys.exit(main())
