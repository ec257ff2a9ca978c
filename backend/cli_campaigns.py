"""`loyalty-backend campaign add|list|show|cancel`: SMS campaigns for scripts.

`add` prints the reach, the SMS parts and the cost before anything is queued, and with
`--dry-run` queues nothing; otherwise the campaign and its outbox rows are written in one
transaction (the SMS worker sends them from the scheduled time, within the marketing
rules). Running the same `add` again returns the first campaign and queues nothing twice.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from datetime import UTC, date, datetime, time

from backend import store, store_campaigns, store_marketing
from backend.engine import Connection
from backend.occasions import OccasionError, parse_jalali
from backend.store import transaction
from backend.store_campaigns import CampaignError, Filter
from protocols.persian import TEHRAN


def parse_when(text: str) -> datetime:
    """ISO (`2026-03-25T10:00`, Tehran time unless it has an offset) or Jalali
    (`1405/01/05` or `1405/01/05 10:00`, Tehran time; a day alone is its 10:00)."""
    text = text.strip()
    if "/" in text:
        day, _, clock = text.partition(" ")
        try:
            d = parse_jalali(day)
            t = time.fromisoformat(clock) if clock else time(10)
        except (OccasionError, ValueError) as exc:
            raise CampaignError(f"not a time: {text!r} ({exc})") from None
        return datetime.combine(d, t, TEHRAN)
    try:
        at = datetime.fromisoformat(text)
    except ValueError:
        raise CampaignError(f"not a time (ISO or Jalali YYYY/MM/DD [HH:MM]): {text!r}"
                            ) from None
    return at if at.tzinfo is not None else at.replace(tzinfo=TEHRAN)


def _day(text: str) -> date:
    return parse_when(text).astimezone(TEHRAN).date()


def add_parser(sub: argparse._SubParsersAction,
               common: Callable[[argparse.ArgumentParser], None]) -> None:
    camp = sub.add_parser("campaign", help="SMS campaigns to a segment or a filter")
    csub = camp.add_subparsers(dest="action", required=True)
    add = csub.add_parser("add", help="estimate, then schedule or send a campaign")
    common(add)
    add.add_argument("--club", help="the club (default: the only one)")
    add.add_argument("--text", required=True, help="the SMS ({name}, {shop}, {tier})")
    add.add_argument("--segment", help="new, active, loyal, champion, at_risk, ...")
    add.add_argument("--tier")
    add.add_argument("--visited-before", help="last visit before this day (or never)")
    add.add_argument("--visited-after", help="last visit on or after this day")
    add.add_argument("--min-spend", type=int, help="rials spent at least")
    add.add_argument("--branch", help="has bought in this branch")
    add.add_argument("--at", help="when (ISO or Jalali, Tehran time; default now)")
    add.add_argument("--holdout", type=float, default=0.10, help="share sent nothing")
    add.add_argument("--price-per-part", type=int, help="rials per SMS part (default: the "
                     "club's, `club marketing NAME --sms-price`)")
    add.add_argument("--dry-run", action="store_true", help="estimate only, queue nothing")
    lst = csub.add_parser("list", help="the club's campaigns")
    common(lst)
    lst.add_argument("--club", help="the club (default: the only one)")
    for name, what in (("show", "a campaign's counts and effect"),
                       ("cancel", "stop what is not sent yet")):
        sp = csub.add_parser(name, help=what)
        common(sp)
        sp.add_argument("id", type=int)


def run(args: argparse.Namespace, settings: object) -> int:
    from backend.cli_registry import UsageError, club_of

    conn = store.connect(args.db)
    now = datetime.now(UTC)
    try:
        try:
            if args.action == "add":
                return _add(conn, args, club_of(conn, args.club).id, now)
            if args.action == "list":
                club = club_of(conn, args.club)
                for c in store_campaigns.list_campaigns(conn, club.id):
                    with transaction(conn):
                        status = store_campaigns.status(conn, c.id, now)
                    n = store_campaigns.counts(conn, c.id)
                    when = c.scheduled_at.astimezone(TEHRAN)
                    print(f"{c.id:>5} {status:<10} {when:%Y-%m-%d %H:%M}"
                          f" sent {n['sent']} pending {n['pending']} failed {n['failed']}"
                          f"  {c.filter.describe()}: {c.text}")
                return 0
            if args.action == "show":
                return _show(conn, args.id, now)
            with transaction(conn):
                stopped = store_campaigns.cancel(conn, args.id, now)
            print(f"campaign {args.id} cancelled: {stopped} SMS not sent stopped")
            return 0
        except CampaignError as exc:
            raise UsageError(str(exc)) from None
    finally:
        conn.close()


def _add(conn: Connection, args: argparse.Namespace, club_id: int,
         now: datetime) -> int:
    f = Filter(
        tier=args.tier, segment=args.segment,
        visited_before=_day(args.visited_before) if args.visited_before else None,
        visited_after=_day(args.visited_after) if args.visited_after else None,
        min_spend=args.min_spend, branch=args.branch,
    )
    at = parse_when(args.at) if args.at else None
    price = (store_marketing.sms_price(conn, club_id) if args.price_per_part is None
             else args.price_per_part)
    p = store_campaigns.preview(conn, club_id, args.text, f, holdout=args.holdout,
                                price_per_part=price)
    e = p.estimate
    print(f"reach: {p.targeted} members ({p.held_out} held out, {e.members} to send); "
          f"parts: {e.parts} ({e.max_parts} per SMS at most); cost: {e.cost} rials")
    if args.dry_run:
        print("dry run: nothing queued")
        return 0
    with transaction(conn):
        c, new = store_campaigns.add(conn, club_id, args.text, f, at=at, now=now,
                                     holdout=args.holdout, price_per_part=price)
        # the same campaign again queues nothing (not even members new to its filter)
        queued, held = (store_campaigns.enqueue(conn, c.id, now) if new else
                        (0, len(store_campaigns.holdout_members(conn, c.id))))
    what = "added" if new else "exists already"
    print(f"campaign {c.id} {what}: {queued} SMS queued now, {held} held out, from "
          f"{c.scheduled_at.astimezone(TEHRAN):%Y-%m-%d %H:%M} Tehran")
    return 0


def _show(conn: Connection, campaign_id: int, now: datetime) -> int:
    with transaction(conn):
        status = store_campaigns.status(conn, campaign_id, now)
    c = store_campaigns.get(conn, campaign_id)
    n = store_campaigns.counts(conn, campaign_id)
    print(f"campaign {c.id}: {status}, from {c.scheduled_at.astimezone(TEHRAN):%Y-%m-%d %H:%M}"
          f" Tehran; {c.filter.describe()}; hold-out {c.holdout:.0%}")
    print(f"text: {c.text}")
    print(f"sent {n['sent']}, pending {n['pending']}, failed {n['failed']}")
    for w in store_campaigns.effect(conn, campaign_id):
        r, h = w.reached, w.holdout
        print(f"{w.days} days: reached {r.buyers}/{r.members} bought ({r.sales} rials), "
              f"hold-out {h.buyers}/{h.members} ({h.sales} rials), "
              f"uplift {w.uplift * 100:+.1f} points, {w.incremental_sales} rials brought")
    return 0
