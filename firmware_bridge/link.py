"""The ACK/NAK link of PROTOCOL.md 2, as a sans-I/O state machine (in the manner of h11).

The `Link` is fed received bytes and the current time, and is asked what to write and
when it next wants to be woken. It never reads a clock or touches a socket, so every
timing rule is tested with a fake clock; `firmware_bridge.driver` runs it over a
transport. See docs/link.md for the choices made where PROTOCOL.md is silent.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from protocols.framing import ACK, NAK, BadFrame, Control, Frame, FrameDecoder, build_frame

ACK_TIMEOUT = 1.0
MAX_TRANSMISSIONS = 3
STALL_TIMEOUT = 0.2
#: After a bad frame whose end cannot be known (LEN unusable, ETX misplaced), the NAK
#: goes out once the line has been quiet this long: well inside the 100 ms budget, and
#: long enough not to answer in the middle of the bad frame's remaining bytes.
QUIET_GAP = 0.05


class LinkDown(Exception):
    """A frame was not ACKed after the last allowed transmission (PROTOCOL.md 2.2).

    `refused`: every transmission was answered NAK, so the peer certainly did not take
    the frame. After a silence it may have: its ACK may be what was lost."""

    def __init__(self, *args: object, refused: bool = False) -> None:
        super().__init__(*args)
        self.refused = refused


@dataclass(frozen=True, slots=True)
class Delivered:
    """A valid frame that has been ACKed (the ACK is already in `outgoing()`)."""

    message: bytes


@dataclass(frozen=True, slots=True)
class Acked:
    """The peer ACKed the frame `send()` returned `handle` for."""

    handle: int


@dataclass(frozen=True, slots=True)
class Failed:
    """The link is down for this frame: no ACK after the last transmission.

    `refused`: every transmission was NAKed (the peer never handed it up)."""

    handle: int
    reason: str
    refused: bool = False


@dataclass(frozen=True, slots=True)
class Rejected:
    """A received frame that was NAKed or dropped; for logs and tests."""

    reason: str
    nak: bool


LinkEvent = Delivered | Acked | Failed | Rejected


@dataclass(slots=True)
class _Outbound:
    handle: int
    frame: bytes
    transmissions: int = 0
    deadline: float = 0.0
    naks: int = 0


@dataclass(slots=True)
class LinkStats:
    """Counters for logs, tests and the benchmark."""

    delivered: int = 0
    acks_sent: int = 0
    naks_sent: int = 0
    dropped: int = 0
    sent: int = 0
    retransmissions: int = 0
    failed: int = 0
    stray_controls: int = 0


class Link:
    """One end of the terminal link; the same class serves the agent and the terminal.

    `byte_time` is the wire time of one byte (10 / baud on a serial line, 0 on TCP): the
    1 s wait for an ACK starts when the frame has left, not when it was queued.
    """

    def __init__(
        self,
        *,
        byte_time: float = 0.0,
        ack_timeout: float = ACK_TIMEOUT,
        max_transmissions: int = MAX_TRANSMISSIONS,
        stall_timeout: float = STALL_TIMEOUT,
        quiet_gap: float = QUIET_GAP,
    ) -> None:
        if byte_time < 0 or ack_timeout <= 0 or stall_timeout <= 0 or quiet_gap <= 0:
            raise ValueError("link timings must be positive")
        if max_transmissions < 1:
            raise ValueError("max_transmissions must be at least 1")
        self.byte_time = byte_time
        self.ack_timeout = ack_timeout
        self.max_transmissions = max_transmissions
        self.stall_timeout = stall_timeout
        self.quiet_gap = quiet_gap
        self.stats = LinkStats()
        self._decoder = FrameDecoder()
        self._last_rx = 0.0
        self._queue: deque[_Outbound] = deque()
        self._in_flight: _Outbound | None = None
        self._next_handle = 1
        self._out: list[bytes] = []
        self._events: list[LinkEvent] = []
        self._pending_reason = ""

    # -- the driver's side -------------------------------------------------------------

    def send(self, message: bytes, now: float) -> int:
        """Queue a message; returns the handle that its `Acked`/`Failed` event will carry.

        ValueError (and nothing queued) when the message cannot be framed.
        """
        frame = build_frame(message)
        # No timers here: send() may run in another thread while an ACK sits unread.
        handle = self._next_handle
        self._next_handle += 1
        self._queue.append(_Outbound(handle, frame))
        if self._in_flight is None:
            self._start_next(now)
        return handle

    def receive_data(self, data: bytes, now: float) -> None:
        """Bytes read from the transport at time `now`; b"" means a read found nothing.

        Silence is only ever concluded from an empty read (b"" or `tick()`): bytes that
        waited in the OS buffer while the reader was starved of CPU still count as
        on time. The ACK wait is checked after the bytes, so an ACK read late counts.
        """
        if not data:
            self._expire(now)
            return
        self._last_rx = now
        for event in self._decoder.feed(data):
            if isinstance(event, Frame):
                self._out.append(bytes((ACK,)))
                self.stats.acks_sent += 1
                self.stats.delivered += 1
                self._events.append(Delivered(event.message))
            elif isinstance(event, BadFrame):
                if event.end_known:
                    self._nak(event.reason)
                else:  # the decoder swallows the rest; the NAK waits for a quiet line
                    self._pending_reason = event.reason
            elif isinstance(event, Control):
                self._control(event.byte, now)
        self._expire_ack(now)

    def tick(self, now: float) -> None:
        """A read found nothing by `now`: run the timers (stall, quiet gap, ACK wait)."""
        self._expire(now)

    def outgoing(self) -> list[bytes]:
        """Chunks to write, in order; each ACK/NAK is a chunk of its own."""
        out, self._out = self._out, []
        return out

    def events(self) -> list[LinkEvent]:
        """What happened since the last call. A `Delivered` comes after its ACK chunk."""
        events, self._events = self._events, []
        return events

    def next_deadline(self) -> float | None:
        """The time at which `tick()` must be called, or None when nothing is timed."""
        deadlines: list[float] = []
        if self._in_flight is not None:
            deadlines.append(self._in_flight.deadline)
        if self._decoder.skipping:
            deadlines.append(self._last_rx + self.quiet_gap)
        elif self._decoder.in_frame:
            deadlines.append(self._last_rx + self.stall_timeout)
        return min(deadlines) if deadlines else None

    def abort(self, reason: str = "link closed") -> None:
        """Fail every queued and in-flight frame (the transport is gone)."""
        pending = ([self._in_flight] if self._in_flight else []) + list(self._queue)
        self._in_flight = None
        self._queue.clear()
        for item in pending:
            self.stats.failed += 1
            # a frame never sent, or NAKed every time, was certainly not taken
            self._events.append(
                Failed(item.handle, reason, refused=item.naks == item.transmissions)
            )

    @property
    def busy(self) -> bool:
        """True while a frame is in flight or queued."""
        return self._in_flight is not None or bool(self._queue)

    @property
    def receiving(self) -> bool:
        """True while part of a received frame is buffered."""
        return self._decoder.in_frame

    # -- internals ------------------------------------------------------------------------

    def _nak(self, reason: str) -> None:
        self._out.append(bytes((NAK,)))
        self.stats.naks_sent += 1
        self._events.append(Rejected(reason, nak=True))

    def _expire(self, now: float) -> None:
        if self._decoder.skipping:
            if now - self._last_rx >= self.quiet_gap:
                self._decoder.reset()
                self._nak(self._pending_reason)
        elif self._decoder.in_frame and now - self._last_rx > self.stall_timeout:
            # PROTOCOL.md 2.1: a frame that stalls more than 200 ms is dropped silently.
            self._decoder.reset()
            self.stats.dropped += 1
            self._events.append(Rejected("inter-byte timeout", nak=False))
        self._expire_ack(now)

    def _expire_ack(self, now: float) -> None:
        flight = self._in_flight
        if flight is not None and now >= flight.deadline:
            self._retry_or_fail(now, "no ACK/NAK within the timeout")

    def _control(self, byte: int, now: float) -> None:
        flight = self._in_flight
        if flight is None:
            self.stats.stray_controls += 1
            return
        if byte == ACK:
            self._in_flight = None
            self._events.append(Acked(flight.handle))
            self._start_next(now)
        else:
            flight.naks += 1
            self._retry_or_fail(now, "NAK")

    def _retry_or_fail(self, now: float, why: str) -> None:
        flight = self._in_flight
        assert flight is not None
        if flight.transmissions >= self.max_transmissions:
            self._in_flight = None
            self.stats.failed += 1
            self._events.append(
                Failed(
                    flight.handle,
                    f"{why} after {flight.transmissions} transmissions",
                    refused=flight.naks == flight.transmissions,
                )
            )
            self._start_next(now)
        else:
            self.stats.retransmissions += 1
            self._transmit(flight, now)

    def _start_next(self, now: float) -> None:
        if self._queue:
            self._in_flight = self._queue.popleft()
            self._transmit(self._in_flight, now)

    def _transmit(self, item: _Outbound, now: float) -> None:
        item.transmissions += 1
        item.deadline = now + len(item.frame) * self.byte_time + self.ack_timeout
        self.stats.sent += 1
        self._out.append(item.frame)
