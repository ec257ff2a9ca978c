"""A Transport wrapper that reports the link traffic, frames decoded, for the UI and logs."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from protocols import framing, iso8583

ACK, NAK = framing.ACK, framing.NAK


def describe_message(message: bytes) -> str:
    """`0100 stan=000001 3=310000 4=... 39=00 48=...` for one ISO 8583 message."""
    try:
        fields = iso8583.decode(message)
    except ValueError as exc:
        return f"undecodable ({exc}): {message[:24].hex()}"
    parts = [str(fields.get("t", "????"))]
    for key in ("11", "3", "70", "4", "39", "37", "48"):
        if key in fields:
            value = str(fields[key]).replace("\n", "⏎")
            parts.append(f"{key}={value[:80]}")
    return " ".join(parts)


class TrafficTap:
    """Calls `report(direction, text)` for every frame, ACK, NAK and bad frame seen."""

    def __init__(self, inner: Any, report: Callable[[str, str], None]) -> None:
        self.inner = inner
        self.report = report
        self._rx = framing.FrameDecoder()
        self._tx = framing.FrameDecoder()

    @property
    def byte_time(self) -> float:
        return float(getattr(self.inner, "byte_time", 0.0))

    def open(self) -> None:
        self.inner.open()

    def close(self) -> None:
        self.inner.close()

    def read(self, timeout: float) -> bytes:
        data = self.inner.read(timeout)
        if data:
            self._show("<-", self._rx.feed(data))
        return data

    def write(self, data: bytes) -> None:
        self._show("->", self._tx.feed(data))  # before: the answer may be read first
        self.inner.write(data)

    def _show(self, direction: str, events: list) -> None:
        for ev in events:
            if isinstance(ev, framing.Frame):
                self.report(direction, describe_message(ev.message))
            elif isinstance(ev, framing.Control):
                self.report(direction, "ACK" if ev.byte == ACK else "NAK")
            elif isinstance(ev, framing.BadFrame):
                self.report(direction, f"bad frame: {ev.reason}")
