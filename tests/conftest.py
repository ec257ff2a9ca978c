"""Fixtures shared by every layer's tests: a real Mosquitto on a free loopback port."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from demo.mosquitto import Mosquitto


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Mosquitto]:
    """A fresh anonymous broker for one test, stopped by its own pid afterwards."""
    b = Mosquitto(tmp_path / "broker").start()
    try:
        yield b
    finally:
        b.stop()
