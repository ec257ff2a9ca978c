"""Sends what the outbox holds, in a thread of its own, on its own SQLite connection.

Safe with several backend processes on one database: each SMS is claimed atomically
(outbox.claim_due) before it is sent, and the claim is a lease, so an SMS a crashed
process was holding is sent by another one later. Temporary failures are retried with
exponential backoff (capped); permanent ones, and temporary ones after `max_attempts`,
are marked failed and logged with the phone masked and no gateway key.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import sqlite3
import threading
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from backend import engine, store_marketing, store_registry
from backend.store import transaction
from protocols.backoff import Backoff
from protocols.identity import mask_phone

from . import outbox
from .senders import DEFAULT_RECEIVE_SECONDS, Sender, SendError, make_sender

log = logging.getLogger(__name__)
#: Seconds a delivered SMS may wait to be recorded "sent" with the ones after it: every
#: write by this connection makes the ledger connection drop its page cache.
MARK_DELAY = 0.2


class SmsWorker:
    """Drains the outbox of the database `db` (a SQLite path or a PostgreSQL URL) through
    `sender`."""

    def __init__(
        self,
        db: str | Path | engine.Target,
        sender: Sender,
        *,
        poll_interval: float = 0.2,
        max_attempts: int = 8,
        base_delay: float = 10.0,
        max_delay: float = 1800.0,
        lease: float = 120.0,
        batch: int = 256,
        write_lock: contextlib.AbstractContextManager[object] | None = None,
        per_club: bool = False,
        base_dir: Path | None = None,
        receive_interval: float = DEFAULT_RECEIVE_SECONDS,
    ) -> None:
        if max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        if poll_interval <= 0:
            raise ValueError("poll_interval must be > 0")
        if lease <= 0 or batch < 1:
            raise ValueError("lease must be positive and batch at least 1")
        self.target = engine.parse_target(db)
        self.sender = sender
        self.poll_interval = poll_interval
        self.max_attempts = max_attempts
        # after the n-th failed try: base_delay, twice it, four times ... up to max_delay
        self.backoff = Backoff(base_delay, max_delay)
        # Longer than any send can take, or a slow send would be taken over and sent twice.
        self.lease = lease
        # Claiming several rows in one write transaction keeps the worker's share of
        # SQLite's single write lock small next to the ledger's.
        self.batch = batch
        # Shared with the ledger's writer in the same process: SQLite's busy handler
        # would make a request that meets our write lock sleep 1, 2, 5, 10 ... ms,
        # while waiting on this lock ends the moment our short transaction does.
        self._write: contextlib.AbstractContextManager[object] = (
            write_lock if write_lock is not None else contextlib.nullcontext()
        )
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        # Each club may have its own gateway (clubs.sms); `sender` is the provider's, for
        # the clubs without one. Read again when the registry's generation moves.
        self.per_club = per_club
        self.base_dir = base_dir or Path.cwd()
        self._generation = -1
        self._club_sms: dict[int, dict | None] = {}
        self._club_senders: dict[int, Sender | str] = {}
        # how often the gateways are asked for incoming SMS ("لغو" replies)
        self.receive_interval = receive_interval
        self._received_at = float("-inf")
        self._conn: engine.Connection | None = None
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def __repr__(self) -> str:
        return f"SmsWorker({str(self.target)!r}, {self.sender!r})"

    # --- lifecycle ------------------------------------------------------------------------

    def start(self) -> None:
        if self._thread is not None and self._thread.is_alive():
            return
        self._stopping.clear()
        self._thread = threading.Thread(target=self._loop, name="sms-worker", daemon=True)
        self._thread.start()

    def request_stop(self) -> None:
        """Ask the thread to stop after the SMS in hand; returns at once (signal handlers)."""
        self._stopping.set()

    def stop(self, timeout: float | None = None) -> None:
        """Stop after the SMS in hand (if any) has been sent and recorded."""
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def _loop(self) -> None:
        while not self._stopping.is_set():
            try:
                self.run_once()
                if time.monotonic() - self._received_at >= self.receive_interval:
                    self._received_at = time.monotonic()
                    self.receive_once()
            except Exception:
                log.exception("SMS worker pass failed; trying again")
            self._stopping.wait(self.poll_interval)

    # --- one pass -------------------------------------------------------------------------

    def _connection(self) -> engine.Connection:
        if self._conn is None:
            # The ledger's commits stay durable; ours need not be: a lost "sent" mark only
            # means one SMS sent twice.
            if self.target.path is None:
                conn: engine.Connection = engine.connect_postgresql(self.target)
                conn.execute("SET synchronous_commit = off")
            else:
                conn = sqlite3.connect(
                    self.target.path, timeout=30.0, isolation_level=None, check_same_thread=False
                )
                # each ledger commit fsyncs the WAL, which holds ours too
                conn.execute("PRAGMA synchronous=NORMAL")
                outbox.create_schema(conn)
            self._conn = conn
        return self._conn

    def _should_stop(self) -> bool:
        # Only a started worker is stopped; a direct run_once (tests, tools) runs to the end.
        return self._stopping.is_set() and self._thread is not None

    def run_once(self, now: datetime | None = None) -> int:
        """Send every SMS due at `now` (default: the clock); how many were sent."""
        sent = 0
        with self._lock:
            conn = self._connection()
            fixed = None if now is None else outbox.timestamp(now)
            if self.per_club:
                self._refresh_clubs(conn)
            while not self._should_stop():
                at = fixed if fixed is not None else time.time()
                with self._write:
                    batch = outbox.claim_due(
                        conn, owner=self.owner, now=at, lease=self.lease, limit=self.batch
                    )
                if not batch:
                    break
                # a local sender (the file) takes the batch at once, when no SMS of it goes
                # through a club's own gateway
                send_many = getattr(self.sender, "send_many", None)
                if (
                    send_many is not None
                    and getattr(self.sender, "sends_in_batches", False)
                    and not any(self._club_sms.get(s.club_id) for s in batch if s.club_id)
                ):
                    sent += self._deliver_many(conn, batch, send_many, fixed)
                    continue
                claimed_at = time.monotonic()
                # Deliveries are recorded together (one write transaction per group, not
                # per SMS, so the ledger's commits rarely wait for the lock), but at most
                # MARK_DELAY after the first of them: a crash re-sends only that few.
                sent_ids: list[int] = []
                first_sent = 0.0
                for i, sms in enumerate(batch):
                    # Hand the rest back rather than send on a claim that may lapse.
                    late = time.monotonic() - claimed_at > self.lease / 2
                    if i and (late or self._should_stop()):
                        with self._write:
                            outbox.release(conn, [s.id for s in batch[i:]], owner=self.owner)
                        break
                    if self._deliver(conn, sms, fixed):
                        sent += 1
                        if not sent_ids:
                            first_sent = time.monotonic()
                        sent_ids.append(sms.id)
                    if sent_ids and time.monotonic() - first_sent > MARK_DELAY:
                        self._mark_sent(conn, sent_ids, fixed)
                        sent_ids = []
                self._mark_sent(conn, sent_ids, fixed)
        return sent

    def receive_once(self, now: datetime | None = None) -> int:
        """Ask each gateway (the provider's, each club's own) for the SMS members sent to
        it and pass them to store_marketing.incoming_sms, each in a transaction of its
        own: a "لغو" reply turns that phone's marketing consent off before the next
        marketing SMS is claimed. How many stop replies there were."""
        at = now or datetime.now(UTC)
        stops = 0
        with self._lock:
            conn = self._connection()
            # the provider's line: every club of the phone; a club's own line: that club
            senders: list[tuple[Sender, int | None]] = [(self.sender, None)]
            if self.per_club:
                self._refresh_clubs(conn)
                for club_id, sms in self._club_sms.items():
                    if sms:
                        with contextlib.suppress(SendError):
                            senders.append((self.sender_for(club_id), club_id))
            for sender, club in senders:
                receive = getattr(sender, "receive", None)
                if receive is None:
                    continue
                try:
                    messages = receive()
                except SendError as exc:
                    log.warning("incoming SMS from %r not read: %s", sender, exc)
                    continue
                for m in messages:
                    try:
                        with self._write, transaction(conn):
                            stops += store_marketing.incoming_sms(conn, m.phone, m.text, at,
                                                                  club)
                    except ValueError:  # not a phone number this club knows the form of
                        log.warning("incoming SMS from an unreadable number ignored")
        if stops:
            log.info("incoming SMS: %d stop repl%s, marketing consent off", stops,
                     "y" if stops == 1 else "ies")
        return stops

    def _mark_sent(self, conn: engine.Connection, ids: list[int], now: float | None) -> None:
        done = now if now is not None else time.time()
        with self._write:
            marked = outbox.mark_sent_many(conn, ids, owner=self.owner, now=done)
        if marked != len(ids):
            log.warning("%d SMS were sent after their claim lapsed", len(ids) - marked)

    def _refresh_clubs(self, conn: engine.Connection) -> None:
        gen = store_registry.generation(conn)
        if gen != self._generation:
            self._club_sms = {c.id: c.sms for c in store_registry.list_clubs(conn)}
            self._club_senders = {}
            self._generation = gen

    def sender_for(self, club_id: int | None) -> Sender:
        """The club's own gateway, or the provider's; SendError (temporary) when the
        club's settings cannot be used here (an API key variable not set, say)."""
        if club_id is None or not self._club_sms.get(club_id):
            return self.sender
        found = self._club_senders.get(club_id)
        if found is None:
            try:
                found = make_sender(self._club_sms[club_id] or {}, base_dir=self.base_dir)
            except ValueError as exc:
                found = f"club {club_id}'s SMS settings: {exc}"
            self._club_senders[club_id] = found
        if isinstance(found, str):
            raise SendError(found, temporary=True)
        return found

    def _deliver_many(
        self, conn: engine.Connection, batch: list[outbox.Claimed], send_many: Any,
        now: float | None,
    ) -> int:  # fmt: skip
        """A sender that takes a batch in one go (`FileSender.send_many`): each SMS as
        `_deliver` would have ended it, the deliveries recorded in one transaction."""
        try:
            results = send_many([(sms.phone, sms.text, sms.kind) for sms in batch])
        except Exception as exc:  # a sender bug must not lose the SMS or stop the worker
            results = [exc] * len(batch)
        sent_ids = []
        for sms, result in zip(batch, results, strict=True):
            if result is None:
                sent_ids.append(sms.id)
            else:
                self._not_sent(conn, sms, result, now)
        self._mark_sent(conn, sent_ids, now)
        return len(sent_ids)

    def _deliver(self, conn: engine.Connection, sms: outbox.Claimed, now: float | None) -> bool:
        """Send one SMS; True when the gateway took it (the caller records it sent)."""
        try:
            self.sender_for(sms.club_id).send(sms.phone, sms.text, sms.kind)
        except Exception as exc:
            self._not_sent(conn, sms, exc, now)
            return False
        return True

    def _not_sent(
        self, conn: engine.Connection, sms: outbox.Claimed, exc: Exception, now: float | None
    ) -> None:
        """A failed try: again later with backoff, or failed for good."""
        if isinstance(exc, SendError):
            error, temporary = str(exc), exc.temporary
        else:  # a sender bug must not lose the SMS or stop the worker
            # Only the type: a foreign exception's text may hold a URL with a gateway key.
            error, temporary = f"sender raised {type(exc).__name__}", True
        done = now if now is not None else time.time()
        who = mask_phone(sms.phone)
        if temporary and sms.attempts < self.max_attempts:
            delay = self.backoff.delay(sms.attempts)
            with self._write:
                outbox.mark_retry(conn, sms.id, owner=self.owner, at=done + delay, error=error)
            log.warning(
                "SMS %d (%s) to %s not sent, try %d of %d; again in %.0f s: %s",
                sms.id, sms.kind, who, sms.attempts, self.max_attempts, delay, error,
            )  # fmt: skip
        else:
            with self._write:
                outbox.mark_failed(conn, sms.id, owner=self.owner, now=done, error=error)
            why = "permanent error" if not temporary else f"gave up after {sms.attempts} tries"
            log.error("SMS %d (%s) to %s failed, %s: %s", sms.id, sms.kind, who, why, error)
