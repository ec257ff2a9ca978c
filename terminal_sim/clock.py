"""Time as the terminal sees it: UTC for field 7, Tehran local time for fields 12/13.

A terminal's clock may be off (a fault the simulator injects), so every reading goes
through a `Clock` with an offset rather than `datetime.now()` directly.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from protocols.persian import TEHRAN


@dataclass
class Clock:
    """Wall clock shifted by `offset_s` seconds (a terminal whose clock is off)."""

    offset_s: float = 0.0

    def now(self) -> datetime:
        return datetime.now(UTC) + timedelta(seconds=self.offset_s)

    def monotonic(self) -> float:
        return time.monotonic()


@dataclass
class FakeClock(Clock):
    """A clock tests move by hand."""

    at: datetime = datetime(2026, 11, 23, 19, 40, 0, tzinfo=UTC)
    mono: float = 1000.0

    def now(self) -> datetime:
        return self.at + timedelta(seconds=self.offset_s)

    def monotonic(self) -> float:
        return self.mono

    def advance(self, seconds: float) -> None:
        self.at += timedelta(seconds=seconds)
        self.mono += seconds


def transmission_time(at: datetime) -> str:
    """Field 7: MMDDhhmmss in UTC."""
    return at.astimezone(UTC).strftime("%m%d%H%M%S")


def local_time(at: datetime) -> tuple[str, str]:
    """Fields 12 (hhmmss) and 13 (MMDD) in Tehran time."""
    local = at.astimezone(TEHRAN)
    return local.strftime("%H%M%S"), local.strftime("%m%d")
