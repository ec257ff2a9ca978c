"""The terminal's Channel over the real link: a firmware_bridge LinkDriver underneath,
responses matched to requests by MTI and STAN, stale or repeated answers dropped.
"""

from __future__ import annotations

import queue
import threading
from typing import Any

from firmware_bridge.driver import LinkDriver
from firmware_bridge.link import LinkDown
from protocols import iso8583
from terminal_sim.faults import FaultPlan


class LinkChannel:
    """One request in flight at a time; waits for the response with the right 39-less key."""

    def __init__(self, transport: Any, faults: FaultPlan | None = None,
                 name: str = "terminal") -> None:
        self.faults = faults or FaultPlan()
        self.driver = LinkDriver(transport, self._on_message, name=name)
        self._waiting: tuple[str, str] | None = None
        self._answers: queue.Queue[bytes] = queue.Queue()
        self._lock = threading.Lock()
        self.unmatched = 0
        self.link_down = 0
        self.responses_lost = 0
        #: a repeated advice answered with the very bytes of the answer we "lost"
        self.repeats_alike = 0
        self._lost: dict[tuple[str, str], bytes] = {}

    def start(self) -> LinkChannel:
        self.driver.start()
        return self

    def stop(self) -> None:
        self.driver.stop()

    def _on_message(self, message: bytes, _driver: Any) -> None:
        try:
            fields = iso8583.decode(message)
        except ValueError:
            self.unmatched += 1
            return
        key = (str(fields.get("t")), str(fields.get("11", "")))
        with self._lock:
            if key == self._waiting:
                self._answers.put(message)
                return
        self.unmatched += 1  # an answer to a request we gave up on, or a duplicate

    def exchange(self, message: bytes, response_mti: str, stan: str,
                 timeout: float) -> bytes | None:
        with self._lock:
            self._waiting = (response_mti, stan)
            while not self._answers.empty():
                self._answers.get_nowait()
        try:
            try:
                self.driver.send(message)
            except LinkDown:
                self.link_down += 1
                return None
            try:
                answer = self._answers.get(timeout=timeout)
            except queue.Empty:
                return None
            key = (response_mti, stan)
            if key in self._lost and self._lost.pop(key) == answer:
                self.repeats_alike += 1  # PROTOCOL 3.6: the same response again
            if response_mti in ("0230", "0430") and self.faults.take("lost_responses"):
                self.responses_lost += 1
                self._lost[key] = answer
                # The response "never arrived": the terminal waits out its timer.
                try:
                    self._answers.get(timeout=timeout)
                except queue.Empty:
                    pass
                return None
            return answer
        finally:
            with self._lock:
                self._waiting = None
