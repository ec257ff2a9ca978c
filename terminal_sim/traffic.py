"""A Transport wrapper that reports the link traffic, frames decoded, for the UI and logs,
and counts it, so a scenario can check what really went over the wire.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Any

from protocols import framing, iso8583, tlv
from terminal_sim.wrapper import TransportWrapper

ACK, NAK = framing.ACK, framing.NAK


def describe_message(message: bytes) -> str:
    """`0110 11=000002 3=310000 4=... 39=00 48[QI=... DA=20000 ...]` for one message."""
    try:
        fields = iso8583.decode(message)
    except ValueError as exc:
        return f"undecodable ({exc}): {message[:24].hex()}"
    parts = [str(fields.get("t", "????"))]
    for key in ("11", "3", "70", "4", "39", "37"):
        if key in fields:
            parts.append(f"{key}={fields[key]}")
    if "48" in fields:
        try:
            items = tlv.decode(str(fields["48"]))
            loyalty = " ".join(f"{tag}={value}" for tag, value in items.items())
        except ValueError:
            loyalty = str(fields["48"])
        parts.append(f"48[{loyalty.replace(chr(10), '⏎')[:120]}]")
    return " ".join(parts)


def _mti(message: bytes) -> str:
    head = message[:4]
    return head.decode("ascii") if head.isdigit() else "????"


class TrafficTap(TransportWrapper):
    """Calls `report(direction, text)` for every frame, ACK, NAK and bad frame seen.

    `counts` keeps, per direction (`sent`/`received`): `frames_*` (every transmission,
    a spoiled one included), `acks_*`, `naks_*`, `bad_frames_*`, and `*_MTI` per message
    type (e.g. `sent_0220`).
    """

    def __init__(self, inner: Any, report: Callable[[str, str], None] | None = None) -> None:
        super().__init__(inner)
        self.report = report
        self.counts: Counter[str] = Counter()
        self._rx = framing.FrameDecoder()
        self._tx = framing.FrameDecoder()

    def read(self, timeout: float) -> bytes:
        data = self.inner.read(timeout)
        if data:
            self._show("<-", "received", self._rx.feed(data))
        return data

    def write(self, data: bytes) -> None:
        self._show("->", "sent", self._tx.feed(data))  # before: the answer may be read first
        self.inner.write(data)

    def _show(self, arrow: str, direction: str, events: list) -> None:
        for ev in events:
            if isinstance(ev, framing.Frame):
                self.counts[f"frames_{direction}"] += 1
                self.counts[f"{direction}_{_mti(ev.message)}"] += 1
                text = describe_message(ev.message)
            elif isinstance(ev, framing.Control):
                kind = "ACK" if ev.byte == ACK else "NAK"
                self.counts[f"{kind.lower()}s_{direction}"] += 1
                text = kind
            elif isinstance(ev, framing.BadFrame):
                self.counts[f"frames_{direction}"] += 1
                self.counts[f"bad_frames_{direction}"] += 1
                text = f"bad frame: {ev.reason}"
            else:
                continue
            if self.report:
                self.report(arrow, text)
