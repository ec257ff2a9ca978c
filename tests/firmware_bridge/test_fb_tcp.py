"""TcpListener and the terminal side over real loopback TCP, far ends in raw bytes."""

from __future__ import annotations

import queue
import socket
import threading
import time
from collections.abc import Iterator

import pytest

from firmware_bridge.driver import LinkDown, LinkDriver
from firmware_bridge.link import Link
from firmware_bridge.tcp import TcpListener
from firmware_bridge.transports import TcpTransport, connect_tcp
from tests.firmware_bridge.rawend import ACK, NAK, RawEnd, frame

A, N = bytes([ACK]), bytes([NAK])


def patient() -> Link:
    """A link whose ACK wait outlasts any CPU starvation of the test thread, for tests
    that check the exact bytes on the wire and are not about the 1 s timer."""
    return Link(ack_timeout=30.0)


@pytest.fixture
def listener() -> Iterator[tuple[TcpListener, queue.Queue[bytes]]]:
    inbox: queue.Queue[bytes] = queue.Queue()

    def echo(message: bytes, driver: LinkDriver) -> None:
        inbox.put(message)
        driver.send(b"re:" + message)

    lst = TcpListener("127.0.0.1", 0, echo).start()
    try:
        yield lst, inbox
    finally:
        lst.stop()


@pytest.fixture
def raw_agent() -> Iterator[tuple[TcpTransport, RawEnd]]:
    """The terminal's side connected with `connect_tcp` to an agent played in raw bytes."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    transport = connect_tcp("127.0.0.1", server.getsockname()[1])
    conn, _ = server.accept()
    try:
        yield transport, RawEnd(sock=conn)
    finally:
        conn.close()
        server.close()


def _client(port: int) -> RawEnd:
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    return RawEnd(sock=sock)


def test_port_zero_picks_a_free_port(listener) -> None:
    lst, _ = listener
    assert lst.port > 0 and lst.host == "127.0.0.1"


def test_exchange_with_raw_terminal(listener) -> None:
    lst, inbox = listener
    far = _client(lst.port)
    far.write(frame(b"0800"))
    assert far.read(1) == A
    assert far.read_frame() == b"re:0800"
    far.write(A)
    assert inbox.get(timeout=5) == b"0800"
    far.sock.close()


def test_several_terminals_at_once(listener) -> None:
    lst, _ = listener
    ends = [_client(lst.port) for _ in range(3)]
    for i, far in enumerate(ends):
        far.write(frame(f"T{i}".encode()))
    for i, far in enumerate(ends):
        assert far.read(1) == A
        assert far.read_frame() == f"re:T{i}".encode()
        far.write(A)
    assert len(lst.drivers) == 3
    for far in ends:
        far.sock.close()


def test_nak_then_ack_on_tcp(listener) -> None:
    lst, _ = listener
    far = _client(lst.port)
    far.write(frame(b"x"))
    assert far.read(1) == A
    assert far.read_frame() == b"re:x"
    far.write(N)  # ask for the answer again
    assert far.read_frame() == b"re:x"
    far.write(A)
    # no third copy: the next bytes are the ACK of the next frame, then its answer
    far.write(frame(b"y"))
    assert far.read(1) == A
    assert far.read_frame() == b"re:y"
    far.write(A)
    far.sock.close()


def test_stop_closes_connections() -> None:
    lst = TcpListener("127.0.0.1", 0, lambda m, d: None).start()
    far = _client(lst.port)
    far.write(frame(b"hello"))
    assert far.read(1) == A
    lst.stop()
    with pytest.raises(EOFError):
        far.quiet(5)
    assert lst.drivers == []


@pytest.mark.parametrize("host", ["0.0.0.0", "192.168.1.10", "example.com", "::"])
def test_refuses_non_loopback(host: str) -> None:
    with pytest.raises(ValueError, match=r"loopback|not an IP"):
        TcpListener(host, 0, lambda m, d: None)


def test_terminal_side_connect_tcp_against_raw_agent(raw_agent) -> None:
    transport, far = raw_agent
    inbox: queue.Queue[bytes] = queue.Queue()
    driver = LinkDriver(
        transport, lambda m, d: inbox.put(m), name="terminal", link=patient()
    ).start()
    try:
        result: list[object] = []
        t = threading.Thread(target=lambda: result.append(driver.send(b"0100")))
        t.start()
        assert far.read_frame() == b"0100"
        far.write(A + frame(b"0110"))  # ACK and the answer in one segment
        t.join(5)
        assert result == [None]
        assert far.read(1) == A
        assert inbox.get(timeout=5) == b"0110"
    finally:
        driver.stop()


def test_peer_closing_fails_pending_send(raw_agent) -> None:
    transport, far = raw_agent
    driver = LinkDriver(transport, lambda m, d: None).start()
    errors: list[BaseException] = []

    def sender() -> None:
        try:
            driver.send(b"pending")
        except LinkDown as exc:
            errors.append(exc)

    t = threading.Thread(target=sender)
    t.start()
    assert far.read_frame() == b"pending"
    assert far.sock is not None
    far.sock.close()
    t.join(5)
    assert len(errors) == 1
    assert driver.wait_closed(5) and not driver.running
    driver.stop()


class CountingLink(Link):
    """A real (patient) Link that counts the messages handed to it."""

    def __init__(self) -> None:
        super().__init__(ack_timeout=30.0)
        self.accepted = 0

    def send(self, message: bytes, now: float) -> int:
        handle = super().send(message, now)
        self.accepted += 1
        return handle


def test_concurrent_senders_one_frame_in_flight(raw_agent) -> None:
    """Many threads call send() at once: each frame goes out alone and waits its ACK."""
    inner, far = raw_agent
    link = CountingLink()
    driver = LinkDriver(inner, lambda m, d: None, link=link).start()
    errors: list[BaseException] = []

    def sender(i: int) -> None:
        try:
            driver.send(f"msg-{i}".encode())
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=sender, args=(i,)) for i in range(8)]
    try:
        for t in threads:
            t.start()
        deadline = time.monotonic() + 10
        while link.accepted < 8 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert link.accepted == 8  # every frame is queued: any could go out now
        seen = []
        for i in range(8):
            seen.append(far.read_frame())
            # nothing else while this one is unACKed: the next byte on the wire is the
            # driver's ACK of a frame we send now, not another frame of its own
            far.write(frame(f"probe-{i}".encode()))
            assert far.read(1) == A
            far.write(A)
        for t in threads:
            t.join(5)
        assert sorted(seen) == sorted(f"msg-{i}".encode() for i in range(8))
        assert errors == []
    finally:
        driver.stop()


def test_garbage_from_terminal_never_crashes_the_driver(listener) -> None:
    lst, inbox = listener
    far = _client(lst.port)
    junk = bytes(range(256)) * 4 + b"\x02\x00\x05ab" + b"\x02\x99\x99xyz"
    far.write(junk)
    answers = far.quiet(0.5)
    assert set(answers) <= {ACK, NAK}
    far.write(frame(b"still alive"))
    # possibly a NAK left over from the junk, then the ACK of our frame
    byte = far.read(1)
    while byte == N:
        byte = far.read(1)
    assert byte == A
    assert far.read_frame() == b"re:still alive"
    far.write(A)
    assert inbox.get(timeout=5) == b"still alive"
    far.sock.close()


class _Recording:
    """Wraps a transport and records every write() (as the simulator's fault layer does)."""

    def __init__(self, inner: TcpTransport) -> None:
        self.inner = inner
        self.byte_time = 0.0
        self.writes: list[bytes] = []

    def open(self) -> None:
        self.inner.open()

    def read(self, timeout: float) -> bytes:
        return self.inner.read(timeout)

    def write(self, data: bytes) -> None:
        self.writes.append(bytes(data))
        self.inner.write(data)

    def close(self) -> None:
        self.inner.close()


def test_ack_is_written_alone_and_before_delivery(raw_agent) -> None:
    inner, far = raw_agent
    transport = _Recording(inner)
    writes_seen: queue.Queue[list[bytes]] = queue.Queue()
    driver = LinkDriver(
        transport, lambda m, d: writes_seen.put(list(transport.writes)), link=patient()
    )
    driver.start()
    try:
        far.write(frame(b"one") + frame(b"two"))
        assert far.read(2) == A + A
        assert writes_seen.get(timeout=5)[:1] == [A]  # ACKed before on_message ran
        assert writes_seen.get(timeout=5)[:2] == [A, A]
        threading.Thread(target=driver.send, args=(b"mine",), daemon=True).start()
        assert far.read_frame() == b"mine"
        far.write(frame(b"three"))
        assert far.read(1) == A
        far.write(A)
        writes_seen.get(timeout=5)
        assert transport.writes == [A, A, frame(b"mine"), A]  # every ACK a write of its own
    finally:
        driver.stop()
