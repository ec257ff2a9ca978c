"""LinkDriver over a scripted transport and a fake clock: what the I/O thread concludes
when it loses the CPU, and a send() on a driver that was never started."""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable

import pytest

from firmware_bridge.driver import LinkDown, LinkDriver
from firmware_bridge.link import Link
from firmware_bridge.transports import TransportClosed, TransportError
from protocols.framing import ACK, build_frame

A = bytes([ACK])


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


class Scripted:
    """Reads follow a script; a step `float` is an empty read after which the thread
    "lost the CPU" for that long (the clock jumps), as on 2 busy cores."""

    byte_time = 0.0

    def __init__(
        self,
        clock: Callable[[], float],
        script: list[bytes | float],
        *,
        after_writes: int = 0,
        failing_writes: int = 0,
        closed_at_write: int = 0,
    ) -> None:
        self.clock = clock
        self.script = script
        self.after_writes = after_writes  # hold the script until this many writes
        self.failing_writes = failing_writes  # the first writes are lost (device away)
        self.closed_at_write = closed_at_write  # this write finds the connection gone
        self.writes: list[bytes] = []

    def open(self) -> None:
        pass

    def read(self, timeout: float) -> bytes:
        time.sleep(0.001)
        if not self.script or len(self.writes) < self.after_writes:
            return b""
        step = self.script.pop(0)
        if isinstance(step, float):
            assert isinstance(self.clock, Clock)
            self.clock.t += timeout + step
            return b""
        return step

    def write(self, data: bytes) -> None:
        self.writes.append(bytes(data))
        if len(self.writes) == self.closed_at_write:
            raise TransportClosed("TCP 127.0.0.1:5000: closed by peer")
        if len(self.writes) <= self.failing_writes:
            raise TransportError("serial /dev/ttyUSB0 is away (reopening)")

    def close(self) -> None:
        pass


def test_ack_read_after_a_preempted_empty_read_is_no_retransmission() -> None:
    clock = Clock()
    transport = Scripted(clock, [5.0, A], after_writes=1)
    driver = LinkDriver(transport, lambda m, d: None, clock=clock).start()
    try:
        driver.send(b"answer")
        assert transport.writes == [build_frame(b"answer")]
        assert driver.link.stats.retransmissions == 0
    finally:
        driver.stop()


def test_frame_completed_after_a_preempted_empty_read_is_delivered() -> None:
    clock = Clock()
    frame = build_frame(b"0800 sign-on")
    inbox: queue.Queue[bytes] = queue.Queue()
    transport = Scripted(clock, [frame[:5], 5.0, frame[5:]], after_writes=0)
    driver = LinkDriver(transport, lambda m, d: inbox.put(m), clock=clock).start()
    try:
        assert inbox.get(timeout=10) == b"0800 sign-on"
        assert transport.writes == [A]
    finally:
        driver.stop()


def test_send_on_a_driver_never_started_is_link_down_not_a_hang() -> None:
    driver = LinkDriver(Scripted(Clock(), [], after_writes=0), lambda m, d: None)
    outcome: list[BaseException | None] = []

    def sender() -> None:
        try:
            driver.send(b"x")
            outcome.append(None)
        except BaseException as exc:
            outcome.append(exc)

    t = threading.Thread(target=sender, daemon=True)
    t.start()
    t.join(10)
    assert len(outcome) == 1 and isinstance(outcome[0], LinkDown)


def test_on_message_raising_is_logged_and_the_link_goes_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.ERROR, logger="firmware_bridge.driver")
    inbox: queue.Queue[bytes] = queue.Queue()

    def on_message(message: bytes, driver: LinkDriver) -> None:
        if message == b"first":
            raise RuntimeError("application bug")
        inbox.put(message)

    transport = Scripted(Clock(), [build_frame(b"first"), build_frame(b"second")])
    driver = LinkDriver(transport, on_message, clock=Clock()).start()
    try:
        assert inbox.get(timeout=10) == b"second"
        assert transport.writes == [A, A] and driver.running
    finally:
        driver.stop()
    assert any("on_message failed" in r.getMessage() for r in caplog.records)


def test_a_lost_write_is_retransmitted_by_the_link() -> None:
    """A write that fails (serial device away) is bytes lost on the line: the link's
    ACK timer sends the frame again, and send() returns once that one is ACKed."""
    transport = Scripted(time.monotonic, [A], after_writes=2, failing_writes=1)
    driver = LinkDriver(transport, lambda m, d: None, link=Link(ack_timeout=0.05)).start()
    try:
        driver.send(b"advice")
        assert transport.writes == [build_frame(b"advice")] * 2
    finally:
        driver.stop()


def test_frame_whose_ack_was_not_written_is_not_handed_up() -> None:
    """PROTOCOL.md 2.2: a frame reaches the application only once ACKed. If the ACK is
    lost in the write, the sender repeats the frame; it must be taken once, not twice
    (and not at all if the sender gives up: its transaction failed)."""
    inbox: queue.Queue[bytes] = queue.Queue()
    script: list[bytes | float] = [build_frame(b"x"), build_frame(b"x"), build_frame(b"end")]
    transport = Scripted(Clock(), script, failing_writes=1)
    driver = LinkDriver(transport, lambda m, d: inbox.put(m), clock=Clock()).start()
    try:
        got = [inbox.get(timeout=10)]
        if got[0] != b"end":
            got.append(inbox.get(timeout=10))
        assert got == [b"x", b"end"]
        assert transport.writes == [A, A, A]
    finally:
        driver.stop()


def test_frames_acked_before_the_connection_dropped_are_still_handed_up() -> None:
    inbox: queue.Queue[bytes] = queue.Queue()
    script: list[bytes | float] = [build_frame(b"acked") + build_frame(b"not acked")]
    transport = Scripted(Clock(), script, closed_at_write=2)
    driver = LinkDriver(transport, lambda m, d: inbox.put(m), clock=Clock()).start()
    assert driver.wait_closed(10)
    driver.stop()
    assert inbox.get(timeout=10) == b"acked"
    assert inbox.empty()
