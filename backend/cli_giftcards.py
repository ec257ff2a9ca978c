"""`loyalty-backend giftcard issue|list|show`: the owner's gift cards (issue 16).

Registered from backend/cli.py. `issue` writes the batch and, with --csv, the printable
CSV (number, value, expiry) for the card printer; the file is written only after the batch
committed, and an existing file is never overwritten (a second print run of the same
numbers is the owner's decision: `giftcard show --batch N --csv`). Card numbers are
masked in what is printed unless --unmasked is given (the CSV holds them in full: that
is what it is for).
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable
from datetime import UTC, date, datetime
from typing import Any

import jdatetime

from backend import giftcards, store, store_giftcards
from backend.cli import UsageError, parse_day
from backend.cli_registry import club_of
from backend.config import Settings
from protocols.identity import IdentityError, mask_card, normalize_card


def add_parser(sub: Any, common: Callable[[argparse.ArgumentParser], None]) -> None:
    gc = sub.add_parser("giftcard", help="gift cards: issue a batch, report, look one up")
    gsub = gc.add_subparsers(dest="action", required=True)
    issue = gsub.add_parser("issue", help="a new batch of gift cards")
    common(issue)
    issue.add_argument("--value", required=True, type=int, help="each card's value in rials")
    issue.add_argument("--expires", required=True,
                       help="last day of use, YYYY-MM-DD (Jalali when the year is below 1700)")
    issue.add_argument("--count", required=True, type=int, help="how many cards (1..100000)")
    issue.add_argument("--csv", help="write the printable CSV (number,value,expiry) here")
    lst = gsub.add_parser("list", help="per batch: issued, sold, used, expired, outstanding")
    common(lst)
    show = gsub.add_parser("show", help="a card: batch, value, expiry, balance, movements")
    common(show)
    show.add_argument("number", nargs="?", help="the card's 16 digits")
    show.add_argument("--batch", type=int, help="every card of this batch instead")
    show.add_argument("--csv", help="with --batch: write its printable CSV here")
    show.add_argument("--unmasked", action="store_true", help="print the numbers in full")
    sell = gsub.add_parser("sell", help="mark cards sold (the report's sold column)")
    common(sell)
    sell.add_argument("numbers", nargs="+", help="the cards' 16 digits")
    for sp in (issue, lst, show, sell):
        sp.add_argument("--club", help="the club (default: the only one)")


def _jalali(day: date) -> str:
    return jdatetime.date.fromgregorian(date=day).strftime("%Y/%m/%d")


def _write_csv(path: str, cards: list[giftcards.GiftCard]) -> None:
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise UsageError(f"{path} exists already; the CSV is never overwritten") from None
    with os.fdopen(fd, "w", encoding="ascii", newline="") as f:
        f.write(giftcards.printable_csv(cards))


def run(args: argparse.Namespace, settings: Settings) -> int:
    now = datetime.now(UTC)
    conn = store.connect(args.db)
    try:
        if args.action == "issue":
            return _issue(conn, args, now)
        if args.action == "list":
            return _list(conn, args, now)
        if args.action == "sell":
            return _sell(conn, args, now)
        return _show(conn, args, now)
    finally:
        conn.close()


def _issue(conn: Any, args: argparse.Namespace, now: datetime) -> int:
    expires = parse_day(args.expires.replace("/", "-"))
    if args.csv and os.path.exists(args.csv):
        raise UsageError(f"{args.csv} exists already; the CSV is never overwritten")
    try:
        with store.transaction(conn):
            club = club_of(conn, args.club)
            batch, cards = store_giftcards.issue(conn, club.id, args.value, expires,
                                                 args.count, now)
    except giftcards.GiftCardError as exc:
        raise UsageError(str(exc)) from None
    if args.csv:
        _write_csv(args.csv, cards)
    print(f"batch {batch.id} of {club.name}: {batch.count} cards of {batch.value} rials, "
          f"usable through {_jalali(expires)} ({expires.isoformat()})"
          + (f"; printable CSV in {args.csv}" if args.csv else ""))
    return 0


def _list(conn: Any, args: argparse.Namespace, now: datetime) -> int:
    club = club_of(conn, args.club)
    rows = store_giftcards.report(conn, club.id, now)
    if not rows:
        print(f"{club.name}: no gift cards issued")
        return 0
    print("batch  value  expires  issued  sold  used  expired  outstanding")
    for r in rows:
        b = r.batch
        print(f"{b.id}  {b.value}  {_jalali(b.expires_on)}  {r.issued}  {r.sold}  {r.used}  "
              f"{r.expired}  {r.outstanding}")
    return 0


def _sell(conn: Any, args: argparse.Namespace, now: datetime) -> int:
    """All or nothing: one number that is not a card of the club changes nothing."""
    with store.transaction(conn):
        club = club_of(conn, args.club)
        marked = 0
        for typed in args.numbers:
            number = _gift_number(conn, typed, club)
            marked += store_giftcards.mark_sold(conn, number, now)
    print(f"{marked} of {len(args.numbers)} cards marked sold (the rest were already)")
    return 0


def _gift_number(conn: Any, typed: str, club: Any) -> str:
    try:
        number = normalize_card(typed)
    except IdentityError as exc:
        raise UsageError(str(exc)) from None
    if not giftcards.is_gift_card(number) or store_giftcards.card(conn, number,
                                                                   club.id) is None:
        raise UsageError(f"{mask_card(number)} is not a gift card of {club.name}")
    return number


def _show(conn: Any, args: argparse.Namespace, now: datetime) -> int:
    club = club_of(conn, args.club)
    if args.batch is not None:
        if not any(b.id == args.batch for b in store_giftcards.batches(conn, club.id)):
            raise UsageError(f"no gift card batch {args.batch} in {club.name}")
        cards = store_giftcards.batch_cards(conn, args.batch)
        if args.csv:
            _write_csv(args.csv, cards)
        for c in cards:
            shown = c.number if args.unmasked else mask_card(c.number)
            print(f"{shown}  {giftcards.balance(store_giftcards.movements(conn, c.number))}")
        return 0
    if not args.number:
        raise UsageError("name a card NUMBER or a --batch")
    try:
        number = normalize_card(args.number)
    except IdentityError as exc:
        raise UsageError(str(exc)) from None
    card = store_giftcards.card(conn, number, club.id) if giftcards.is_gift_card(number) else None
    shown = number if args.unmasked else mask_card(number)
    if card is None:
        raise UsageError(f"{shown} is not a gift card of {club.name}")
    moves = store_giftcards.movements(conn, number)
    state = "expired" if card.expired(now) else "usable"
    print(f"gift card {shown}, batch {card.batch_id}: value {card.value} rials, "
          f"through {_jalali(card.expires_on)} ({state}); balance "
          f"{giftcards.balance(moves)} rials")
    for m in moves:
        print(f"  {m.kind:12} {m.amount:+d}  {m.ref}")
    return 0
