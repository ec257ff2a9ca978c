"""Fixtures of the agent's tests: the terminal end of a real pseudo-terminal, and the
handler on a real journal with a fake backend port."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.handler import Handler
from agent.journal import Journal
from tests.agent.test_agent_handler import KEY, MID, TID, Clock, FakeBackend


@pytest.fixture
def parts(tmp_path: Path) -> Iterator[tuple[Handler, Journal, FakeBackend]]:
    """(handler, journal, backend): the handler as pure logic, its clock standing still."""
    journal = Journal(tmp_path / "journal.log")
    backend = FakeBackend()
    handler = Handler(
        journal=journal, backend=backend, mac_key=KEY, terminal_id=TID, merchant_id=MID,
        monotonic=Clock(), wall=lambda: 1_800_000_000.0,
    )
    yield handler, journal, backend
    journal.close()
