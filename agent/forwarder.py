"""Store and forward: journaled advices and reversals go to the backend in journal order.

One thread sends the oldest pending entry, waits for its response, marks it forwarded,
and only then moves on, so a reversal never overtakes its advice. While the backend is
away it retries the same entry (same idempotency key, so the backend applies it once)
with exponential backoff (protocols.backoff).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from agent.handler import BackendPort
from agent.journal import Journal, Pending
from protocols import mqtt
from protocols.backoff import Backoff
from protocols.response_codes import ResponseCode

log = logging.getLogger("agent.forwarder")

#: How long a release is worth sending: far past any hold's expiry (300 s by default).
RELEASE_TTL = 3600.0

#: Codes after which sending the same request again cannot change the answer.
FINAL_CODES = frozenset(mqtt.RESPONSE_CODES) - {ResponseCode.MALFUNCTION}


class Forwarder:
    """The forwarding thread (see module docstring)."""

    def __init__(
        self,
        journal: Journal,
        backend: BackendPort,
        *,
        backoff: Backoff | None = None,
        request_timeout: float = 5.0,
        release_ttl: float = RELEASE_TTL,
        monotonic: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.journal = journal
        self.backend = backend
        self.backoff = backoff or Backoff()
        self.request_timeout = request_timeout
        self.release_ttl = release_ttl
        self._monotonic = monotonic
        self._wall = wall
        self._deferred: set[int] = set()  # releases that failed: tried after the rest
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._done = threading.Condition()
        self._results: dict[int, mqtt.Response] = {}
        self._waiting: set[int] = set()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="forwarder", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def kick(self) -> None:
        """Something new is in the journal, or the backend came back: try now."""
        self._wake.set()

    def wait_result(self, doc_id: int, deadline: float) -> mqtt.Response | None:
        """The backend's answer to entry `doc_id` if it comes by `deadline` (monotonic)."""
        with self._done:
            self._waiting.add(doc_id)
        self.kick()
        with self._done:
            try:
                while doc_id not in self._results:
                    left = deadline - self._monotonic()
                    if left <= 0:
                        return None
                    self._done.wait(left)
                return self._results.pop(doc_id)
            finally:
                self._waiting.discard(doc_id)
                self._results.pop(doc_id, None)

    def step(self) -> bool | None:
        """Forward the oldest entry once: True sent, False failed, None nothing to send.

        Advices and reversals go strictly in journal order. A release needs no order
        with them (it ends only a quote no terminal used: an advice that overtook it
        would have settled that quote first), so one that failed steps aside and is
        tried again once nothing else waits: a backend that cannot answer it never
        holds up the advices behind it. A release older than `release_ttl` is dropped:
        the hold it was for has expired by then."""
        entry = self.journal.head(skip=self._deferred) or self.journal.head()
        if entry is None:
            self._deferred.clear()
            return None
        if entry.type == "release" and self._wall() - entry.at > self.release_ttl:
            log.warning("release %s given up after %.0f s: its hold has expired anyway",
                        entry.key, self.release_ttl)
            self._done_with(entry, "expired")
            return True
        if not self.backend.online():
            return False
        reply = self.backend.request(
            entry.type, entry.key, entry.body, self._monotonic() + self.request_timeout
        )
        if reply is None or reply.code not in FINAL_CODES:
            log.warning("forward of %s %s failed (%s)", entry.type, _short(entry),
                        "no answer" if reply is None else reply.code)
            if entry.type == "release":
                self._deferred.add(entry.doc_id)
            return False
        if reply.code != ResponseCode.APPROVED:
            log.error("backend refused %s %s: %s %s", entry.type, _short(entry), reply.code,
                      reply.message)
        self._done_with(entry, reply.code)
        with self._done:
            if entry.doc_id in self._waiting:
                self._results[entry.doc_id] = reply
                self._done.notify_all()
        log.info("forwarded %s %s: %s", entry.type, _short(entry), reply.code)
        return True

    def _done_with(self, entry: Pending, code: str) -> None:
        self.journal.mark_forwarded(entry.doc_id, code)
        self._deferred.discard(entry.doc_id)

    def _run(self) -> None:
        delay: float | None = None
        while not self._stop.is_set():
            try:
                outcome = self.step()
            except Exception:
                log.exception("forwarder step failed")
                outcome = False
            if outcome is True:
                self.backoff.reset()
                continue
            if outcome is None:
                self.backoff.reset()
                delay = None  # wait for a kick
            else:
                delay = self.backoff.failure()
            self._wake.wait(delay)
            self._wake.clear()


def _short(entry: Pending) -> str:
    return f"stan {entry.body.get('stan')}"
