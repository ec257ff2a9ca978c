"""Fixtures of the simulator's tests: a scripted agent answering over a real pty."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from firmware_bridge.driver import LinkDriver
from firmware_bridge.transports import PtyPair, SerialTransport, open_pty

from .fake_agent import FakeAgent, FarAgent


@pytest.fixture
def far_agent() -> Iterator[FarAgent]:
    """`far_agent(agent=None)`: a new pty whose slave end a LinkDriver serves with `agent`
    (a plain FakeAgent by default); the terminal side opens the master. Stopped after."""
    made: list[tuple[LinkDriver, PtyPair]] = []

    def make(agent: FakeAgent | None = None) -> tuple[PtyPair, FakeAgent]:
        pty, agent = open_pty(), agent or FakeAgent()

        def answer(message: bytes, driver: LinkDriver) -> None:
            raw = agent.exchange(message, "", "", 0)
            if raw is not None:
                driver.send(raw)

        made.append((LinkDriver(SerialTransport(pty.path), answer, name="far").start(), pty))
        return pty, agent

    try:
        yield make
    finally:
        for far, pty in made:
            far.stop()
            pty.close()
