"""`loyalty-backend segment compute|list`: the members' LRFM segments (docs/segments.md).

`compute` scores now (the service does it nightly by itself; this is for a first run,
a script, or after an import); `list` shows members per segment and the change since
the run a month before the latest.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from datetime import UTC, datetime

from backend import segment_job, store, store_registry, store_segments
from backend.segments import SEGMENTS


def add_parser(sub: argparse._SubParsersAction,
               common: Callable[[argparse.ArgumentParser], None]) -> None:
    seg = sub.add_parser("segment", help="members' LRFM segments (new, at_risk, ...)")
    ssub = seg.add_subparsers(dest="action", required=True)
    comp = ssub.add_parser("compute", help="score the members now (every club, or one)")
    common(comp)
    comp.add_argument("--club", help="only this club (default: every club)")
    lst = ssub.add_parser("list", help="members per segment and the change since a month ago")
    common(lst)
    lst.add_argument("--club", help="the club (default: the only one)")


def run(args: argparse.Namespace, settings: object) -> int:
    from backend.cli_registry import club_of

    conn = store.connect(args.db)
    try:
        if args.action == "compute":
            club_id = club_of(conn, args.club).id if args.club is not None else None
            done = segment_job.run(conn, datetime.now(UTC), club_id=club_id, force=True)
            names = {c.id: c.name for c in store_registry.list_clubs(conn)}
            for cid, counts in sorted(done.items()):
                total = sum(counts.values())
                print(f"{names.get(cid, cid)}: {total} members scored: "
                      + ", ".join(f"{k} {counts[k]}" for k in SEGMENTS))
            return 0
        club = club_of(conn, args.club)
        got = store_segments.counts_with_change(conn, club.id)
        if got.day is None:
            print(f"{club.name}: not computed yet (segment compute, or wait for the "
                  "service's nightly run)")
            return 0
        since = f"change since {got.month_ago}" if got.month_ago else "no run a month before"
        print(f"{club.name}: computed on {got.day}; {since}")
        for name in SEGMENTS:
            change = "" if got.change is None else f"{got.change[name]:+d}"
            print(f"{name:<10} {got.counts[name]:>8} {change:>8}".rstrip())
        return 0
    finally:
        conn.close()
