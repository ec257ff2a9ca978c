"""The base of the simulator's Transport wrappers (faults, traffic tap): everything
passes through to the Transport inside unless a subclass changes it.
"""

from __future__ import annotations

from typing import Any


class TransportWrapper:
    """A Transport around another; `byte_time` is the inner one's (serial pacing)."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    @property
    def byte_time(self) -> float:
        return float(getattr(self.inner, "byte_time", 0.0))

    def open(self) -> None:
        self.inner.open()

    def close(self) -> None:
        self.inner.close()

    def read(self, timeout: float) -> bytes:
        return self.inner.read(timeout)

    def write(self, data: bytes) -> None:
        self.inner.write(data)
