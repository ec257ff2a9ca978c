"""`loyalty-backend`: the service (`run`) and the shop operator's commands.

Every operator command checks its arguments and the config before it opens the
database, and a problem is one line naming it with exit status 2 and no change made.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sqlite3
import sys
import threading
from collections.abc import Sequence
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path

import jdatetime

from backend import ledger, report, store
from backend.config import ConfigError, Settings, load
from backend.program import Offer, parse_hours, parse_weekdays
from protocols.identity import IdentityError, normalize_card, normalize_phone
from protocols.persian import TEHRAN, jalali

PROG = "loyalty-backend"


class UsageError(Exception):
    """A wrong argument or a state the command refuses; exit status 2."""


def parse_day(text: str) -> date:
    """A day as YYYY-MM-DD, Gregorian, or Jalali when the year is below 1700 (1405-09-02)."""
    try:
        y, m, d = (int(p) for p in text.replace("/", "-").split("-"))
        if y < 1700:
            return jdatetime.date(y, m, d).togregorian()
        return date(y, m, d)
    except (ValueError, TypeError):
        raise UsageError(f"{text!r} is not a date (YYYY-MM-DD, Gregorian or Jalali)") from None


def day_start(day: date) -> datetime:
    return datetime.combine(day, time(0), tzinfo=TEHRAN).astimezone(UTC)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=PROG, description="Loyalty club backend")
    sub = p.add_subparsers(dest="command", required=True)

    def common(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("--db", required=True, help="SQLite database file")
        sp.add_argument("--config", help="backend TOML file (config/backend.toml)")

    run = sub.add_parser("run", help="answer the agents' requests over MQTT")
    common(run)
    run.add_argument("--broker", help="HOST:PORT of the MQTT broker (or [mqtt] broker)")
    run.add_argument("--broker-username")
    run.add_argument("--broker-password")
    run.add_argument("--broker-ca", help="CA file: connect with TLS")
    run.add_argument("--instance", help="name in the presence topic (default host-pid)")
    run.add_argument("--log-level", default="INFO")

    member = sub.add_parser("member", help="a member's profile, tier, balance, recent ledger")
    common(member)
    member.add_argument("phone")
    member.add_argument("--birthday", help="set the birthday (YYYY-MM-DD or MM-DD; 'none' clears)")
    member.add_argument("--rows", type=int, default=20, help="ledger rows to show")

    rep = sub.add_parser("report", help="purchases, members, credit and SMS in a period")
    common(rep)
    rep.add_argument("--from", dest="since", help="first day (default: the beginning)")
    rep.add_argument("--to", dest="until", help="last day, inclusive (default: today)")

    offer = sub.add_parser("offer", help="extra cash-back offers")
    osub = offer.add_subparsers(dest="action", required=True)
    add = osub.add_parser("add", help="add an offer")
    common(add)
    add.add_argument("name")
    kind = add.add_mutually_exclusive_group(required=True)
    kind.add_argument("--percent", type=float, help="extra cash-back, percent of the amount")
    kind.add_argument("--amount", type=int, help="extra cash-back, fixed rials")
    add.add_argument("--until", required=True, help="expiry date, last day the offer runs")
    add.add_argument("--from", dest="start", help="first day (default: now)")
    add.add_argument("--weekdays", default="", help="e.g. sat,sun (default: every day)")
    add.add_argument("--hours", help="local hours FROM-TO, e.g. 10-14")
    add.add_argument("--min-purchase", type=int, default=0, help="minimum gross, rials")
    add.add_argument(
        "--target", default="everyone", help="everyone | birthday | tier:NAME | visits:N"
    )
    lst = osub.add_parser("list", help="list offers")
    common(lst)
    lst.add_argument("--all", action="store_true", help="include ended offers")
    end = osub.add_parser("end", help="end an offer now")
    common(end)
    end.add_argument("offer_id", type=int)

    card = sub.add_parser("card", help="loyalty cards")
    csub = card.add_subparsers(dest="action", required=True)
    cadd = csub.add_parser("add", help="link a card to a member")
    common(cadd)
    cadd.add_argument("phone")
    cadd.add_argument("card")
    crep = csub.add_parser("replace", help="replace a lost card; the credit stays")
    common(crep)
    crep.add_argument("old")
    crep.add_argument("new")

    adj = sub.add_parser("adjust", help="a manual credit adjustment (+ or -)")
    common(adj)
    adj.add_argument("phone")
    adj.add_argument("amount", type=int)
    adj.add_argument("--reason", required=True)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        settings = load(args.config)
        if args.command == "run":
            return _run(args, settings)
        if not Path(args.db).is_file():
            raise UsageError(f"{args.db}: no such database (start `{PROG} run` first)")
        handler = {
            "member": _member,
            "report": _report,
            "offer": _offer,
            "card": _card,
            "adjust": _adjust,
        }[args.command]
        return handler(args, settings)
    except (ConfigError, UsageError, store.StoreError) as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2


def _open(args: argparse.Namespace) -> sqlite3.Connection:
    return store.connect(args.db)


def _run(args: argparse.Namespace, settings: Settings) -> int:
    from backend.service import BackendService  # paho only where it is needed

    logging.basicConfig(
        level=getattr(logging, str(args.log_level).upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    broker = args.broker or settings.mqtt.broker
    if not broker:
        raise UsageError("--broker HOST:PORT is required (or [mqtt] broker in the config)")
    try:
        service = BackendService(
            args.db,
            settings,
            broker=broker,
            instance=args.instance,
            username=args.broker_username,
            password=args.broker_password,
            ca_file=args.broker_ca,
        )
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    done = threading.Event()

    def on_signal(signum: int, frame: object) -> None:
        done.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    service.start()
    print(f"{PROG}: running as {service.instance}, broker {broker}", flush=True)
    while not done.wait(1.0):
        pass
    service.stop()
    print(f"{PROG}: stopped", flush=True)
    return 0


def _phone(text: str) -> str:
    try:
        return normalize_phone(text)
    except IdentityError as exc:
        raise UsageError(f"phone {text!r}: {exc}") from None


def _card_number(text: str) -> str:
    try:
        return normalize_card(text)
    except IdentityError as exc:
        raise UsageError(f"card {text!r}: {exc}") from None


def _birthday(text: str) -> str | None:
    if text.lower() == "none":
        return None
    parts = text.split("-")
    try:
        if len(parts) == 2:
            date(2000, int(parts[0]), int(parts[1]))
            return f"{int(parts[0]):02d}-{int(parts[1]):02d}"
        return parse_day(text).isoformat()
    except (ValueError, UsageError):
        raise UsageError(f"birthday {text!r}: use YYYY-MM-DD or MM-DD") from None


def _fmt_time(value: int) -> str:
    when = store.from_ts(value)
    return f"{jalali(when)} ({when.astimezone(TEHRAN):%Y-%m-%d})"


def _member(args: argparse.Namespace, settings: Settings) -> int:
    phone = _phone(args.phone)
    birthday = _birthday(args.birthday) if args.birthday is not None else ...
    conn = _open(args)
    try:
        m = store.member_by_phone(conn, phone)
        if m is None:
            raise UsageError(f"{phone} is not a member")
        if birthday is not ...:
            with store.transaction(conn):
                store.set_birthday(conn, m.id, birthday)
            m = store.member_by_id(conn, m.id)
        bal = ledger.balance(conn, m.id)
        print(f"phone     {m.phone}")
        print(f"code      {m.code}")
        print(f"tier      {m.tier}")
        print(f"balance   {bal:,} rials")
        print(f"held      {ledger.held(conn, m.id):,} rials")
        if m.debt:
            print(f"debt      {m.debt:,} rials (taken from future earnings)")
        print(f"enrolled  {_fmt_time(m.enrolled_at)}")
        print(f"birthday  {m.birthday or '-'}")
        if m.referrer_id is not None:
            print(f"referrer  {store.member_by_id(conn, m.referrer_id).phone}")
        for number, active in store.cards_of(conn, m.id):
            print(f"card      {number} {'active' if active else 'replaced'}")
        visits, spend = conn.execute(
            "SELECT COUNT(*), COALESCE(SUM(amount), 0) FROM purchases WHERE member_id = ? "
            "AND approved = 1 AND reversed = 0",
            (m.id,),
        ).fetchone()
        print(f"purchases {visits}, {spend:,} rials in all")
        print("recent ledger:")
        for kind, amount, at, key in conn.execute(
            "SELECT kind, amount, at, key FROM ledger WHERE member_id = ? ORDER BY id DESC LIMIT ?",
            (m.id, args.rows),
        ):
            print(f"  {_fmt_time(at)}  {kind:<10} {amount:>+14,}  {key}")
    finally:
        conn.close()
    return 0


def _report(args: argparse.Namespace, settings: Settings) -> int:
    since = day_start(parse_day(args.since)) if args.since else None
    last = parse_day(args.until) if args.until else datetime.now(TEHRAN).date()
    until = day_start(last + timedelta(days=1))
    if since is not None and since >= until:
        raise UsageError("--from is after --to")
    conn = _open(args)
    try:
        figures = report.summary(conn, since=since, until=until)
    finally:
        conn.close()
    print(report.render(figures, since=since, until=until))
    return 0


def _offer(args: argparse.Namespace, settings: Settings) -> int:
    now = datetime.now(UTC)
    if args.action == "add":
        try:
            offer = Offer(
                name=args.name,
                percent=args.percent or 0.0,
                amount=args.amount or 0,
                start=parse_day(args.start) if args.start else None,
                until=parse_day(args.until),
                weekdays=parse_weekdays(args.weekdays),
                hours=parse_hours(args.hours) if args.hours else None,
                min_purchase=args.min_purchase,
                target=args.target,
            )
        except ValueError as exc:
            raise UsageError(str(exc)) from None
        if offer.until < now.astimezone(TEHRAN).date():
            raise UsageError(f"--until {offer.until} is already past")
        conn = _open(args)
        try:
            with store.transaction(conn):
                oid = store.add_offer(conn, offer, now)
        finally:
            conn.close()
        print(f"offer {oid} added: {_describe(offer)}")
        return 0
    conn = _open(args)
    try:
        if args.action == "list":
            found = store.offers(conn, include_ended=args.all)
            for o in found:
                print(f"{o.id:>4}  {_describe(o)}{'  (ended)' if o.ended else ''}")
            for o in settings.offers:
                print(f"cfg   {_describe(o)}")
            if not found and not settings.offers:
                print("no offers")
            return 0
        with store.transaction(conn):
            ok = store.end_offer(conn, args.offer_id, now)
        if not ok:
            raise UsageError(f"no running offer with id {args.offer_id}")
        print(f"offer {args.offer_id} ended")
        return 0
    finally:
        conn.close()


def _describe(o: Offer) -> str:
    from backend.program import WEEKDAYS

    what = f"+{o.percent:g}%" if o.percent else f"+{o.amount:,} rials"
    parts = [f"{o.name!r} {what}", f"until {o.until}"]
    if o.start:
        parts.append(f"from {o.start}")
    if o.weekdays:
        parts.append("on " + ",".join(WEEKDAYS[d] for d in sorted(o.weekdays)))
    if o.hours:
        parts.append(f"hours {o.hours[0]}-{o.hours[1]}")
    if o.min_purchase:
        parts.append(f"min {o.min_purchase:,}")
    parts.append(f"for {o.target}")
    return ", ".join(parts)


def _card(args: argparse.Namespace, settings: Settings) -> int:
    now = datetime.now(UTC)
    if args.action == "add":
        phone, number = _phone(args.phone), _card_number(args.card)
        conn = _open(args)
        try:
            with store.transaction(conn):
                m = store.member_by_phone(conn, phone)
                if m is None:
                    raise UsageError(f"{phone} is not a member")
                owner = store.card_owner(conn, number)
                if owner is not None:
                    raise UsageError(f"card {number} is already issued")
                store.link_card(conn, m.id, number, now)
        finally:
            conn.close()
        print(f"card {number} linked to {phone}")
        return 0
    old, new = _card_number(args.old), _card_number(args.new)
    conn = _open(args)
    try:
        with store.transaction(conn):
            owner = store.card_owner(conn, old)
            if owner is None or not owner[1]:
                raise UsageError(f"card {old} is not an active card")
            if store.card_owner(conn, new) is not None:
                raise UsageError(f"card {new} is already issued")
            store.link_card(conn, owner[0], new, now)
            store.retire_card(conn, old, new)
    finally:
        conn.close()
    print(f"card {old} replaced by {new}; the credit stays with the member")
    return 0


def _adjust(args: argparse.Namespace, settings: Settings) -> int:
    phone = _phone(args.phone)
    if args.amount == 0:
        raise UsageError("an adjustment of 0 changes nothing")
    now = datetime.now(UTC)
    conn = _open(args)
    try:
        with store.transaction(conn):
            m = store.member_by_phone(conn, phone)
            if m is None:
                raise UsageError(f"{phone} is not a member")
            key = f"adjustment:{m.id}:{now.timestamp():.6f}"
            if args.amount > 0:
                ledger.credit(
                    conn,
                    m.id,
                    "adjustment",
                    args.amount,
                    key,
                    earned_at=now,
                    expires_at=settings.program.credit_expiry(now),
                    ref=args.reason,
                )
            else:
                if -args.amount > ledger.balance(conn, m.id):
                    raise UsageError("the adjustment would make the balance negative")
                ledger.debit(conn, m.id, "adjustment", -args.amount, key, now, ref=args.reason)
            bal = ledger.balance(conn, m.id)
    finally:
        conn.close()
    print(f"{phone}: adjusted by {args.amount:+,}; balance {bal:,} rials")
    return 0
