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


def _due(conn: Connection, club_id: int, today: date, force: bool) -> bool:
    return force or store_segments.computed_on(conn, club_id) != today


def run(conn: Connection, now: datetime, *, club_id: int | None = None, force: bool = False,
        write_lock: AbstractContextManager[object] | None = None) -> dict[int, dict[str, int]]:
    """Every club (or one) not yet scored on now's Tehran day (`force`: even if it was):
    club id -> its counts, for the clubs this call scored and wrote. `write_lock`: the
    service's SQLite write turn, taken for the write only."""
    today = tehran_today(now)
    ids = [club_id] if club_id is not None else [c.id for c in store_registry.list_clubs(conn)]
    due = [cid for cid in ids if _due(conn, cid, today, force)]
    if not due:
        return {}
    rows = store_segments.aggregates_by_club(conn, due)  # one scan for all the clubs due
    done: dict[int, dict[str, int]] = {}
    for cid in due:
        result = segments.segment_club(rows.get(cid, []), today)
        with write_lock or contextlib.nullcontext(), store.transaction(conn):
            if not engine.try_exclusive(conn, "segments"):
                continue  # another process is writing this run
            if not _due(conn, cid, today, force):
                continue  # another process wrote it meanwhile
            store_segments.write(conn, cid, today, result)
        done[cid] = segments.counts(result)
    return done
