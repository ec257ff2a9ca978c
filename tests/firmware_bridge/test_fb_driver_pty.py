"""LinkDriver over a real pseudo-terminal: the driver opens the slave path as a serial
port; the test plays the terminal on the master fd with raw bytes."""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator

import pytest

from firmware_bridge.driver import LinkDown, LinkDriver
from firmware_bridge.link import ACK_TIMEOUT, Link
from firmware_bridge.transports import SerialTransport, open_pty
from tests.firmware_bridge.rawend import ACK, NAK, RawEnd, frame

A, N = bytes([ACK]), bytes([NAK])


#: ACK wait for tests that are not about it: a test thread starved of CPU for a second
#: on 2 busy cores must not turn into a retransmission the test did not expect.
PATIENT = 30.0


class Harness:
    def __init__(self, answer: bool = False, ack_timeout: float = PATIENT) -> None:
        self.pty = open_pty()
        self.far = RawEnd(fd=self.pty.master)
        self.inbox: queue.Queue[bytes] = queue.Queue()
        self.answer = answer
        transport = SerialTransport(self.pty.path)
        link = Link(byte_time=transport.byte_time, ack_timeout=ack_timeout)
        self.driver = LinkDriver(transport, self._on_message, name="pty", link=link)

    def _on_message(self, message: bytes, driver: LinkDriver) -> None:
        self.inbox.put(message)
        if self.answer:
            driver.send(b"re:" + message)


def assert_next_is_a_new_frame(h: Harness) -> None:
    """The driver sends a new message: the far end's next bytes must be exactly its frame."""
    sender = threading.Thread(target=h.driver.send, args=(b"probe",))
    sender.start()
    assert h.far.read_frame() == b"probe"
    h.far.write(A)
    sender.join(5)
    assert not sender.is_alive()


@pytest.fixture
def harness() -> Iterator[Harness]:
    h = Harness()
    h.driver.start()
    try:
        yield h
    finally:
        h.driver.stop()
        h.pty.close()


def test_frame_is_acked_and_delivered(harness: Harness) -> None:
    harness.far.write(b"\x00noise" + frame(b"0800 sign-on"))
    assert harness.far.read(1) == A
    assert harness.inbox.get(timeout=5) == b"0800 sign-on"


def test_bad_lrc_is_naked(harness: Harness) -> None:
    bad = bytearray(frame(b"payload"))
    bad[-1] ^= 0x55
    harness.far.write(bytes(bad))
    assert harness.far.read(1) == N
    # The next frame is ACKed with the very next byte and is the first message handed up:
    # nothing else was sent, and the bad frame was never delivered.
    harness.far.write(frame(b"next"))
    assert harness.far.read(1) == A
    assert harness.inbox.get(timeout=5) == b"next"


def test_bad_len_is_naked_after_quiet(harness: Harness) -> None:
    harness.far.write(b"\x02\x0f\x0fsomething\x06\x03x")
    assert harness.far.read(1) == N
    harness.far.write(frame(b"retry"))
    assert harness.far.read(1) == A
    assert harness.inbox.get(timeout=5) == b"retry"


def test_send_blocks_until_acked(harness: Harness) -> None:
    done = threading.Event()

    def sender() -> None:
        harness.driver.send(b"0810 answer")
        done.set()

    t = threading.Thread(target=sender)
    t.start()
    assert harness.far.read_frame() == b"0810 answer"
    assert not done.wait(0.1)
    harness.far.write(A)
    assert done.wait(5)
    t.join(5)


def test_three_naks_raise_link_down(harness: Harness) -> None:
    errors: list[BaseException] = []

    def sender() -> None:
        try:
            harness.driver.send(b"doomed")
        except LinkDown as exc:
            errors.append(exc)

    t = threading.Thread(target=sender)
    t.start()
    for _ in range(3):
        assert harness.far.read_frame() == b"doomed"
        harness.far.write(N)
    t.join(5)
    assert len(errors) == 1
    # no fourth transmission, no ACK of a NAK: the next bytes are the next frame
    assert_next_is_a_new_frame(harness)


def test_silence_retransmits_then_link_down() -> None:
    h = Harness(ack_timeout=ACK_TIMEOUT)
    h.driver.start()
    try:
        with pytest.raises(LinkDown):
            h.driver.send(b"unanswered")
        frames = [h.far.read_frame(timeout=1) for _ in range(3)]
        assert frames == [b"unanswered"] * 3
        assert_next_is_a_new_frame(h)
    finally:
        h.driver.stop()
        h.pty.close()


def test_both_ends_talk_at_once(harness: Harness) -> None:
    done = threading.Event()
    t = threading.Thread(target=lambda: (harness.driver.send(b"agent says"), done.set()))
    t.start()
    assert harness.far.read_frame() == b"agent says"
    # instead of ACKing, the terminal sends its own frame first
    harness.far.write(frame(b"terminal says"))
    assert harness.far.read(1) == A
    assert harness.inbox.get(timeout=5) == b"terminal says"
    assert not done.is_set()
    harness.far.write(A)
    assert done.wait(5)
    t.join(5)


def test_on_message_may_answer_with_send() -> None:
    h = Harness(answer=True)
    h.driver.start()
    try:
        h.far.write(frame(b"0100 inquiry"))
        assert h.far.read(1) == A
        assert h.far.read_frame() == b"re:0100 inquiry"
        h.far.write(A)
        # the link is free again: a second exchange works the same way
        h.far.write(frame(b"0220 advice"))
        assert h.far.read(1) == A
        assert h.far.read_frame() == b"re:0220 advice"
        h.far.write(A)
        assert [h.inbox.get(timeout=5), h.inbox.get(timeout=5)] == [
            b"0100 inquiry",
            b"0220 advice",
        ]
    finally:
        h.driver.stop()
        h.pty.close()


def test_stop_fails_pending_send(harness: Harness) -> None:
    errors: list[BaseException] = []

    def sender() -> None:
        try:
            harness.driver.send(b"never acked")
        except LinkDown as exc:
            errors.append(exc)

    t = threading.Thread(target=sender)
    t.start()
    assert harness.far.read_frame() == b"never acked"
    harness.driver.stop()
    t.join(5)
    assert len(errors) == 1
    with pytest.raises(LinkDown):
        harness.driver.send(b"after stop")
