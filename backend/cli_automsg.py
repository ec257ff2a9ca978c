"""`loyalty-backend automsg list|set|off`: a club's automatic messages for scripts.

`set` checks the template for the message's kind (backend.automsg.check) before saving:
an unknown placeholder is refused and nothing changes.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

from backend import automsg, store, store_automsg
from backend.cli import UsageError
from backend.config import Settings
from backend.occasions import AutoMessage


def add_parsers(sub: Any, common: Callable[[argparse.ArgumentParser], None]) -> None:
    am = sub.add_parser("automsg", help="a club's automatic messages (birthday, occasions, ...)")
    asub = am.add_subparsers(dest="action", required=True)
    lst = asub.add_parser("list", help="the club's automatic messages")
    common(lst)
    st = asub.add_parser("set", help="create or change one, switched on")
    common(st)
    st.add_argument("key", help="birthday, anniversary, winback, tier_up, expiring, or "
                    "occasion:KEY (an occasion of backend/occasions.toml)")
    st.add_argument("--template", required=True, help="Persian text with {placeholders}")
    st.add_argument("--days", type=int, default=0, help="N: days without a visit (winback), "
                    "days before the credit expires (expiring)")
    st.add_argument("--offset", type=int, default=0, help="days to move the send date "
                    "(-1: the day before)")
    st.add_argument("--segment", help="only members of this segment (default: all)")
    st.add_argument("--gift", type=int, default=0, help="credit given with it, rials")
    st.add_argument("--gift-days", type=int, default=0, help="days the gift lasts")
    off = asub.add_parser("off", help="switch one off (kept, with its settings)")
    common(off)
    off.add_argument("key")
    for p in (lst, st, off):
        p.add_argument("--club", help="the club (default: the only one)")


def _message(args: argparse.Namespace) -> AutoMessage:
    try:
        return automsg.build(args.key, args.template, days=args.days,
                             offset_days=args.offset, segment=args.segment,
                             gift_credit=args.gift, gift_days=args.gift_days)
    except automsg.MessageError as exc:
        raise UsageError(f"automsg {args.key!r}: {exc}") from None


def run(args: argparse.Namespace, settings: Settings) -> int:
    from backend.cli_registry import club_of

    msg = _message(args) if args.action == "set" else None
    conn = store.connect(args.db)
    try:
        club = club_of(conn, args.club)
        if args.action == "list":
            for s in store_automsg.messages(conn, club.id):
                m = s.message
                extra = [f"days={m.days}"] if m.days else []
                extra += [f"offset={m.offset_days}"] if m.offset_days else []
                extra += [f"segment={m.segment}"] if m.segment else []
                extra += [f"gift={m.gift_credit:,} rials for {m.gift_days} days"] \
                    if m.gift_credit else []
                print(f"{m.key:<20} {'on ' if s.enabled else 'off'} {' '.join(extra)}")
                print(f"  {m.template}")
            return 0
        with store.transaction(conn):
            if msg is not None:
                store_automsg.save(conn, club.id, msg)
                print(f"club {club.name!r}: automatic message {msg.key} on")
            elif not store_automsg.set_enabled(conn, club.id, args.key, False):
                raise UsageError(f"club {club.name!r} has no automatic message {args.key!r}")
            else:
                print(f"club {club.name!r}: automatic message {args.key} off")
    finally:
        conn.close()
    return 0
