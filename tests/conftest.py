"""Fixtures shared by every layer's tests: a real Mosquitto on a free loopback port."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from demo.mosquitto import Mosquitto
from tests.agent.agent_terminal import Terminal


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Mosquitto]:
    """A fresh anonymous broker for one test, stopped by its own pid afterwards."""
    b = Mosquitto(tmp_path / "broker").start()
    try:
        yield b
    finally:
        b.stop()


@pytest.fixture
def term() -> Iterator[Terminal]:
    """A pty whose slave path the agent opens as its serial port; closed afterwards."""
    t = Terminal()
    try:
        yield t
    finally:
        t.close()
