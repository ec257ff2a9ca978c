"""`loyalty-demo`: the whole system on this machine, playing a shop's day.

Mosquitto, the backend and the agent run as processes in a temporary folder; the
simulated terminal talks to the agent over a pseudo-terminal pair. Everything started
here is stopped here, by pid.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from demo.day import (
    AFTERNOON_OFFLINE,
    BACKEND_CONFIG,
    BACKEND_DOWN,
    EVENING,
    MORNING,
    POOR_CARD,
    Visit,
)
from demo.mosquitto import BrokerError, find_mosquitto
from demo.stack import Stack, StackError
from protocols.identity import normalize_phone
from protocols.response_codes import ResponseCode
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
        if show_receipts:
            self.t.printer.on_print = self.print_receipt

    def say(self, text: str) -> None:
        print(f"[{time.monotonic() - self.started:5.1f}s] {text}", file=self.out, flush=True)

    def print_receipt(self, receipt: Receipt) -> None:
        box = "\n".join(f"    | {line}" for line in receipt.lines)
        print(f"    +{'-' * 34}\n{box}\n    +{'-' * 34}", file=self.out, flush=True)

    def visit(self, v: Visit) -> None:
        self.say(f"{v.who}: {v.note}")
        if v.enroll:
            ex = self.t.enroll(v.phone or "", v.referrer)
            r = ex.response
            if r is None or r.code != ResponseCode.APPROVED:
                raise StackError(f"enrolment of {v.who} failed: {r or ex.note}")
            # as the club stores it, not as typed (Sara types Persian digits)
            self.members[v.who] = normalize_phone(v.phone or "")
            self.say(f"  enrolled: member code {r.member_code}, credit {r.balance:,} rials")
            return
        if v.give_card:
            text = backend_command(self.stack, "card", "add", v.phone or "", v.give_card)
            self.say(f"  {text.strip()}")
            return
        mark = self.stack.outbox.stat().st_size if self.stack.outbox.exists() else 0

        def otp() -> str | None:
            code = otp_from_outbox(self.stack.outbox, mark, timeout=15)
            self.say(f"  customer reads the one-time code from the SMS: {code}")
            return code

        sale = self.t.sale(v.amount, v.pan, v.pin, phone=v.phone, card=v.card,
                           otp_provider=otp)
        inq = sale.inquiry.response if sale.inquiry else None
        if inq is not None and inq.code == ResponseCode.BACKEND_UNREACHABLE:
            self.say("  loyalty backend unreachable (91): full amount charged, no discount")
        line = (f"  gross {sale.gross:,}  discount {sale.discount:,}  charged {sale.amount:,}"
                f"  bank {sale.authorisation.code} ({sale.authorisation.reason})")
        self.say(line)
        if sale.advice is not None:
            self.advices += 1
            adv = sale.advice.response
            if adv is None:
                raise StackError(f"the advice for {v.who} was not answered")
            extra = f", earned {adv.earned:,}" if adv.earned is not None else ""
            self.say(f"  purchase advice answered {adv.code}{extra}")
        if not sale.approved:
            self.declined += 1
        if v.reverse and sale.approved:
            ex = self.t.reverse(sale)
            self.reversals += 1
            self.say(f"  reversal answered {ex.code}")
            if ex.code != ResponseCode.APPROVED:
                raise StackError(f"the reversal for {v.who} was answered {ex.code}")

    def echo(self) -> tuple[str | None, int | None]:
        r = self.t.echo().response
        return (None, None) if r is None else (r.status, r.queued)


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


def tier_of(stack: Stack, phone: str) -> str:
    for line in backend_command(stack, "member", phone).splitlines():
        if line.startswith("tier"):
            return line.split(None, 1)[1].strip()
    return "?"


def play(stack: Stack, out: Any, show_receipts: bool) -> Day:
    stack.start_broker()
    print(f"Mosquitto on {stack.broker.address if stack.broker else '?'}", file=out)
    stack.start_backend()
    stack.start_agent()
    bank = BankHost()
    bank.open_account(POOR_CARD, balance=100_000)
    session = stack.session(bank=bank, periodic_echo=False)
    day = Day(stack, session, out, show_receipts)
    assert stack.backend and stack.agent and stack.pty
    day.say(f"backend pid {stack.backend.pid}, agent pid {stack.agent.pid} "
            f"on the serial line {stack.pty.path}")
    stack.wait_ready(session)
    day.say("terminal signed on; the backend is online")
    for v in MORNING + AFTERNOON_OFFLINE:
        day.visit(v)
    day.say("-- the backend goes down in the middle of the day --")
    stack.stop_backend()
    time.sleep(0.5)
    for v in BACKEND_DOWN:
        day.visit(v)
    status, queued = day.echo()
    day.say(f"echo: backend {status}, {queued} advice(s) waiting in the agent's journal")
    day.say("-- the backend is started again --")
    stack.start_backend()
    left = stack.wait_forwarded(session, timeout=60)
    if left != 0:
        raise StackError(f"journaled advices not forwarded: {left} still queued")
    day.say("the agent forwarded every journaled advice (QD=0)")
    for v in EVENING:
        day.visit(v)
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
    print("backend report (members, credit issued and redeemed, SMS):", file=out)
    print(backend_command(stack, "report").rstrip(), file=out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="loyalty-demo", description=__doc__)
    parser.add_argument("--workdir", type=Path, help="folder to keep everything in "
                        "(default: a new temporary folder)")
    parser.add_argument("--no-receipts", action="store_true", help="do not print receipts")
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
    try:
        day = play(stack, out, not args.no_receipts)
        summary(stack, day, out)
    except (StackError, BrokerError, OSError) as exc:
        print(f"loyalty-demo: {exc}", file=sys.stderr)
        code = 1
    finally:
        stack.stop()
    took = time.monotonic() - started
    print(f"\nevery process stopped; {took:.0f} s in all. Logs, database, journal and SMS "
          f"outbox are in:\n  {workdir}", file=out)
    return code


if __name__ == "__main__":
    sys.exit(main())
