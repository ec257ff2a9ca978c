"""LRFM segments for a club of 100,000 members from 1,000,000 purchases.

    python benchmarks/segments.py [--members N] [--purchases N]

Prints, measured in the same run:
- one plain scan over the purchases (sum of the amounts), the reference;
- the per-member aggregate (count, sum, last date: what one SQL GROUP BY will give);
- scoring and naming every member (backend.segments.segment_club);
and the ratio of aggregate + segments to the scan. Goal (issue 15): under 10 s in all.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from datetime import date, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from backend.segments import MemberAggregate, counts, segment_club  # noqa: E402

TODAY = date(2026, 12, 1)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--members", type=int, default=100_000)
    ap.add_argument("--purchases", type=int, default=1_000_000)
    args = ap.parse_args()
    rnd = random.Random(15)
    days = [TODAY - timedelta(days=d) for d in range(730)]
    enrolled = [rnd.randrange(730) for _ in range(args.members)]
    # (member, day index back from today, amount); Pareto-ish: a few members buy a lot
    purchases = []
    for _ in range(args.purchases):
        m = min(int(rnd.paretovariate(1.2)) - 1, args.members - 1) if rnd.random() < 0.3 \
            else rnd.randrange(args.members)
        back = rnd.randrange(enrolled[m] + 1)
        purchases.append((m, back, rnd.randrange(10_000, 5_000_000, 1000)))

    t0 = time.perf_counter()
    total = 0
    for _m, _back, amount in purchases:
        total += amount
    scan = time.perf_counter() - t0

    t0 = time.perf_counter()
    n = [0] * args.members
    spend = [0] * args.members
    last = [10**9] * args.members
    for m, back, amount in purchases:
        n[m] += 1
        spend[m] += amount
        if back < last[m]:
            last[m] = back
    aggs = [
        MemberAggregate(i, days[enrolled[i]], days[last[i]] if n[i] else None, n[i], spend[i])
        for i in range(args.members)
    ]
    aggregate = time.perf_counter() - t0

    t0 = time.perf_counter()
    result = segment_club(aggs, TODAY)
    scoring = time.perf_counter() - t0

    whole = aggregate + scoring
    print(f"{args.members:,} members, {args.purchases:,} purchases (sum {total:,} rials)")
    print(f"plain scan of the purchases    {scan:7.3f} s   (reference)")
    print(f"per-member aggregate (Python)  {aggregate:7.3f} s")
    print(f"scores and segments            {scoring:7.3f} s")
    print(f"aggregate + segments           {whole:7.3f} s   = {whole / scan:.1f} x the scan"
          f"   (goal < 10 s)")
    print("members per segment:", counts(result))


if __name__ == "__main__":
    main()
