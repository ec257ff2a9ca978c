"""Fixtures of the agent's tests: the terminal end of a real pseudo-terminal."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.agent.agent_terminal import Terminal


@pytest.fixture
def term() -> Iterator[Terminal]:
    """A pty whose slave path the agent opens as its serial port; closed afterwards."""
    t = Terminal()
    try:
        yield t
    finally:
        t.close()
