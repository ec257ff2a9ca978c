"""Store and forward: in journal order, exactly once at the backend, whatever fails."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent.forwarder import Backoff, Forwarder
from agent.journal import Journal
from protocols import mqtt


class FlakyBackend:
    """Applies each idempotency key once; the test decides what fails on each call."""

    def __init__(self, outcomes: list[str]) -> None:
        self.outcomes = outcomes
        self.applied: list[str] = []
        self.calls = 0
        self.up = True

    def online(self) -> bool:
        return self.up

    def request(self, type: str, key: str, body: dict[str, Any], deadline: float):
        outcome = self.outcomes[self.calls] if self.calls < len(self.outcomes) else "ok"
        self.calls += 1
        if outcome == "lost-request":
            return None
        if key not in self.applied:
            self.applied.append(key)
        if outcome == "lost-response":
            return None
        if outcome == "96":
            return mqtt.Response(type, "id", key, "96")
        body = {"earned": 1, "balance": 1} if type == "advice" else {"balance": 1}
        return mqtt.Response(type, "id", key, "00", body)


@settings(max_examples=80, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    kinds=st.lists(st.sampled_from(["advice", "reversal"]), min_size=1, max_size=12),
    outcomes=st.lists(st.sampled_from(["ok", "lost-request", "lost-response", "96"]),
                      max_size=40),
    restart_at=st.integers(0, 60),
)
def test_forwarding_is_ordered_and_exactly_once(
    tmp_path_factory: pytest.TempPathFactory, kinds: list[str], outcomes: list[str],
    restart_at: int,
) -> None:
    path = tmp_path_factory.mktemp("f") / "j.log"
    journal = Journal(path)
    keys = []
    for n, kind in enumerate(kinds):
        key = f"T0000001:{'0220' if kind == 'advice' else '0420'}:{n:06d}:1123194000"
        journal.record(key, "0220", 1.0, response=b"r", forward=(kind, {"n": n}))
        keys.append(key)
    backend = FlakyBackend(outcomes)
    forwarder = Forwarder(journal, backend)
    steps = 0
    while journal.queued():
        steps += 1
        assert steps < 200
        if steps == restart_at:  # the agent restarts: a new journal object, same file
            journal.close()
            journal = Journal(path)
            forwarder = Forwarder(journal, backend)
        forwarder.step()
    journal.close()
    assert backend.applied == keys
    assert Journal(path).queued() == 0


def test_offline_backend_is_not_asked_and_the_thread_catches_up(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "j.log")
    backend = FlakyBackend(["lost-request"] * 3)
    backend.up = False
    forwarder = Forwarder(journal, backend, backoff=Backoff(0.01, 0.05))
    journal.record("K1", "0220", 1.0, forward=("advice", {}))
    assert forwarder.step() is False and backend.calls == 0
    forwarder.start()
    try:
        backend.up = True
        forwarder.kick()
        deadline = time.monotonic() + 10
        while journal.queued() and time.monotonic() < deadline:
            time.sleep(0.01)
        assert journal.queued() == 0 and backend.applied == ["K1"]
        assert backend.calls == 4  # three failures, retried with backoff, then done
    finally:
        forwarder.stop()
    assert not any(t.name == "forwarder" and t.is_alive() for t in threading.enumerate())
    journal.close()
