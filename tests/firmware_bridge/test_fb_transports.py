"""Transports: serial settings, pyserial URLs, and a USB adapter that goes away."""

from __future__ import annotations

import logging
import os
import queue
import socket
import threading
import time
from pathlib import Path

import pytest
import serial

from firmware_bridge.driver import LinkDriver
from firmware_bridge.transports import (
    BAUD_RATES,
    SerialTransport,
    TcpTransport,
    TransportClosed,
    TransportError,
    open_pty,
)
from tests.firmware_bridge.rawend import ACK, RawEnd, frame


@pytest.mark.parametrize("rate", [300, 4800, 14400, 230400, 0, True])
def test_refuses_baud_rate_naming_it(rate: int) -> None:
    with pytest.raises(ValueError, match=str(rate)):
        SerialTransport("loop://", rate)


def test_allowed_rates_and_byte_time() -> None:
    assert BAUD_RATES == (9600, 19200, 38400, 57600, 115200)
    assert SerialTransport("loop://").baudrate == 115200
    assert SerialTransport("loop://", 9600).byte_time == pytest.approx(10 / 9600)


def test_port_settings_8n1_no_flow_control() -> None:
    pair = open_pty()
    t = SerialTransport(pair.path, 57600)
    t.open()
    try:
        port = t._port
        assert port is not None
        assert (port.baudrate, port.bytesize, port.parity, port.stopbits) == (
            57600,
            serial.EIGHTBITS,
            serial.PARITY_NONE,
            serial.STOPBITS_ONE,
        )
        assert not (port.xonxoff or port.rtscts or port.dsrdtr)
    finally:
        t.close()
        pair.close()


def test_loop_url_reads_back_writes() -> None:
    t = SerialTransport("loop://")
    t.open()
    t.write(b"abc")
    got = b""
    deadline = time.monotonic() + 5
    while len(got) < 3 and time.monotonic() < deadline:
        got += t.read(0.05)
    assert got == b"abc"
    assert t.read(0.01) == b""
    t.close()
    with pytest.raises(TransportClosed):
        t.read(0.01)


def test_socket_url_through_pyserial() -> None:
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    t = SerialTransport(f"socket://127.0.0.1:{server.getsockname()[1]}")
    t.open()
    conn, _ = server.accept()
    try:
        conn.sendall(b"\x06hello")
        got = b""
        deadline = time.monotonic() + 5
        while len(got) < 6 and time.monotonic() < deadline:
            got += t.read(0.05)
        assert got == b"\x06hello"
        t.write(b"\x15")
        conn.settimeout(5)
        assert conn.recv(10) == b"\x15"
    finally:
        t.close()
        conn.close()
        server.close()


def test_bad_url_is_value_error() -> None:
    t = SerialTransport("nosuchscheme://x")
    with pytest.raises(ValueError):
        t.open()


def test_missing_device_is_retried_not_raised(tmp_path: Path) -> None:
    t = SerialTransport(str(tmp_path / "ttyUSB9"), reopen_initial=0.01, reopen_max=0.02)
    t.open()
    assert not t.is_open
    assert t.read(0.05) == b""
    with pytest.raises(TransportError):
        t.write(b"\x06")
    t.close()


def test_unplugged_adapter_is_reopened_with_backoff(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """/dev/ttyUSB0 modelled as a symlink to a pty slave: unplug = the pty goes away."""
    caplog.set_level(logging.WARNING, logger="firmware_bridge.transports")
    device = tmp_path / "ttyUSB0"
    first = open_pty()
    device.symlink_to(first.path)
    inbox: queue.Queue[bytes] = queue.Queue()
    transport = SerialTransport(str(device), reopen_initial=0.02, reopen_max=0.1)
    driver = LinkDriver(transport, lambda m, d: inbox.put(m), name="usb").start()
    try:
        far = RawEnd(fd=first.master)
        far.write(frame(b"before"))
        assert far.read(1) == bytes([ACK])
        assert inbox.get(timeout=5) == b"before"
        # unplug: both ends of the pty vanish and the device node disappears
        device.unlink()
        first.close()
        deadline = time.monotonic() + 5
        while transport.is_open and time.monotonic() < deadline:
            time.sleep(0.01)
        assert not transport.is_open
        # several failed reopen attempts, backing off, and the driver keeps running
        deadline = time.monotonic() + 10
        while transport.reopen_count < 3 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert transport.reopen_count >= 3
        assert driver.running
        # plug back in: a new device node under the same path
        second = open_pty()
        device.symlink_to(second.path)
        try:
            far = RawEnd(fd=second.master)
            deadline = time.monotonic() + 5
            while not transport.is_open and time.monotonic() < deadline:
                time.sleep(0.01)
            assert transport.is_open
            far.write(frame(b"after"))
            assert far.read(1) == bytes([ACK])
            assert inbox.get(timeout=5) == b"after"
            sender = threading.Thread(target=driver.send, args=(b"answer",))
            sender.start()
            assert far.read_frame() == b"answer"
            far.write(bytes([ACK]))
            sender.join(5)
            assert not sender.is_alive()
        finally:
            driver.stop()
            second.close()
    finally:
        driver.stop()
    messages = [r.getMessage() for r in caplog.records]
    assert any("device lost" in m for m in messages)
    delays = [float(m.rsplit(" ", 1)[1].rstrip("s")) for m in messages if "cannot open" in m]
    assert delays and delays[0] == pytest.approx(0.04)  # doubled from 0.02
    assert delays == sorted(delays) and max(delays) <= 0.1  # grows, capped
    assert any("reopened" in m for m in messages)


def test_tcp_transport_sets_nodelay_and_reports_close() -> None:
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    client = socket.create_connection(server.getsockname())
    conn, _ = server.accept()
    t = TcpTransport(conn)
    try:
        assert conn.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
        client.sendall(b"\x02")
        assert t.read(5) == b"\x02"
        assert t.read(0.01) == b""
        client.close()
        with pytest.raises(TransportClosed):
            t.read(5)
    finally:
        t.close()
        server.close()


def test_pty_pair_is_raw() -> None:
    pair = open_pty()
    try:
        os.write(pair.master, b"\r\n\x03\x04\x11\x13")
        got = b""
        deadline = time.monotonic() + 5
        while len(got) < 6 and time.monotonic() < deadline:
            got += os.read(pair.slave, 100)
        assert got == b"\r\n\x03\x04\x11\x13"
    finally:
        pair.close()


def test_late_write_failure_does_not_close_the_reopened_port() -> None:
    """The reader and a writer both hit the same unplug: the reader closes and reopens
    the device first, then the writer's failure on the old port arrives. It must not
    close the new port (before: the device was dropped again right after reopening)."""
    t = SerialTransport("loop://", reopen_initial=0.001, reopen_max=0.002)
    t.open()
    old = t._port
    assert old is not None

    def unplugged(*_: object) -> bytes:
        raise OSError(5, "Input/output error")

    def write_while_reader_reopens(data: bytes) -> int:
        assert t.read(0.01) == b""  # the reader sees the unplug...
        deadline = time.monotonic() + 5
        while not t.is_open and time.monotonic() < deadline:
            t.read(0.01)  # ...and reopens the device once it is back
        raise serial.SerialException("write failed: [Errno 5] Input/output error")

    old.read = unplugged  # type: ignore[method-assign]
    old.write = write_while_reader_reopens  # type: ignore[method-assign]
    try:
        with pytest.raises(TransportError):
            t.write(b"\x06")
        assert t.is_open and t._port is not old
        t.write(b"abc")
        got = b""
        deadline = time.monotonic() + 5
        while len(got) < 3 and time.monotonic() < deadline:
            got += t.read(0.05)
        assert got == b"abc"
    finally:
        t.close()
