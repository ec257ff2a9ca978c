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
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.journal = journal
        self.backend = backend
        self.backoff = backoff or Backoff()
        self.request_timeout = request_timeout
        self._monotonic = monotonic
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
        """Forward the oldest entry once: True sent, False failed, None nothing to send."""
        entry = self.journal.head()
        if entry is None:
            return None
        if not self.backend.online():
            return False
        reply = self.backend.request(
            entry.type, entry.key, entry.body, self._monotonic() + self.request_timeout
        )
        if reply is None or reply.code not in FINAL_CODES:
            log.warning("forward of %s %s failed (%s)", entry.type, _short(entry),
                        "no answer" if reply is None else reply.code)
            return False
        if reply.code != ResponseCode.APPROVED:
            log.error("backend refused %s %s: %s %s", entry.type, _short(entry), reply.code,
                      reply.message)
        self.journal.mark_forwarded(entry.doc_id, reply.code)
        with self._done:
            if entry.doc_id in self._waiting:
                self._results[entry.doc_id] = reply
                self._done.notify_all()
        log.info("forwarded %s %s: %s", entry.type, _short(entry), reply.code)
        return True

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
