"""The nightly segment run: every club scored once per Tehran day, by one process of many.

Why here and not in the store: it is the I/O around store_segments (the clock, which
clubs, the lock). The service calls `run` from its sweep (every `sweep_seconds`); a club
already computed today costs one indexed read. The scoring happens outside the write
transaction (on SQLite the write lock is then held only for the bulk write); the write
takes the advisory lock "segments" and checks again, so of N processes that scored the
same club at the same time one writes and the others drop their result.
"""

from __future__ import annotations

import contextlib
from contextlib import AbstractContextManager
from datetime import date, datetime

from backend import engine, segments, store, store_registry, store_segments
from backend.engine import Connection
from protocols.persian import TEHRAN


def tehran_today(now: datetime) -> date:
    return now.astimezone(TEHRAN).date()


def run_club(conn: Connection, club_id: int, now: datetime, *, force: bool = False,
             write_lock: AbstractContextManager[object] | None = None) -> dict[str, int] | None:
    """Score one club as of now's Tehran day; its counts, or None when it was done
    today already (by this process or another) and `force` is not set. `write_lock`: the
    service's SQLite write turn, taken for the write only."""
    today = tehran_today(now)
    if not force and store_segments.computed_on(conn, club_id) == today:
        return None
    result = segments.segment_club(store_segments.aggregates(conn, club_id), today)
    with write_lock or contextlib.nullcontext(), store.transaction(conn):
        if not engine.try_exclusive(conn, "segments"):
            return None  # another process is writing this run
        if not force and store_segments.computed_on(conn, club_id) == today:
            return None
        store_segments.write(conn, club_id, today, result)
    return segments.counts(result)


def run(conn: Connection, now: datetime, *, club_id: int | None = None, force: bool = False,
        write_lock: AbstractContextManager[object] | None = None) -> dict[int, dict[str, int]]:
    """Every club (or one) not yet scored today: club id -> its counts, for those scored."""
    ids = [club_id] if club_id is not None else [c.id for c in store_registry.list_clubs(conn)]
    done: dict[int, dict[str, int]] = {}
    for cid in ids:
        counts = run_club(conn, cid, now, force=force, write_lock=write_lock)
        if counts is not None:
            done[cid] = counts
    return done
