"""Byte pipes under the link: a serial line (pyserial) or one loopback TCP connection.

A transport only moves bytes. `read(timeout)` returns what has arrived (b"" when the
timeout passed), `write(data)` sends one chunk. The driver writes each ACK/NAK with a
`write()` of its own, so a wrapper (the simulator's fault injection) sees them apart.
"""

from __future__ import annotations

import errno
import logging
import os
import select
import socket
import time
import tty
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import serial

from protocols.backoff import Backoff

log = logging.getLogger(__name__)

BAUD_RATES = (9600, 19200, 38400, 57600, 115200)
DEFAULT_BAUD = 115200
_READ_SIZE = 4096
#: Read timeout used for pyserial URL handlers that have no file descriptor to wait on
#: (loop://, rfc2217://); reads loop on it until the caller's timeout has passed.
_POLL_STEP = 0.005


class TransportError(OSError):
    """The bytes could not be moved right now (a serial device being reopened)."""


class TransportClosed(TransportError):
    """The transport is gone for good (peer closed the connection, or close() called)."""


@runtime_checkable
class Transport(Protocol):
    """What the driver needs of a byte pipe."""

    #: Wire time of one byte in seconds (0 when the pipe has no baud rate).
    byte_time: float

    def open(self) -> None: ...

    def read(self, timeout: float) -> bytes: ...

    def write(self, data: bytes) -> None: ...

    def close(self) -> None: ...


def check_baudrate(baudrate: int) -> int:
    """The rate itself, or ValueError naming it when PROTOCOL.md 1 does not allow it."""
    if isinstance(baudrate, bool) or baudrate not in BAUD_RATES:
        allowed = ", ".join(str(b) for b in BAUD_RATES)
        raise ValueError(f"baud rate {baudrate!r} not allowed (allowed: {allowed})")
    return baudrate


class SerialTransport:
    """A serial line through `serial.serial_for_url`: a device path or any pyserial URL.

    8N1, no flow control. When the device fails (a USB adapter unplugged: OSError or
    SerialException on read/write), the port is closed and reopened with exponential
    backoff; every attempt is logged and nothing is raised to the driver on read.
    Writes while the device is away raise `TransportError` (the link's retries and its
    LinkDown decide what that means for the frame).
    """

    def __init__(
        self,
        url: str,
        baudrate: int = DEFAULT_BAUD,
        *,
        reopen_initial: float = 0.1,
        reopen_max: float = 5.0,
    ) -> None:
        if not isinstance(url, str) or not url:
            raise ValueError("serial port path or URL is empty")
        self.url = url
        self.baudrate = check_baudrate(baudrate)
        self.byte_time = 10.0 / baudrate
        self._backoff = Backoff(reopen_initial, reopen_max)
        self._port: serial.SerialBase | None = None
        self._closed = False
        self._next_attempt = 0.0
        self._has_fd = False
        self.reopen_count = 0

    def __repr__(self) -> str:
        return f"SerialTransport({self.url!r}, {self.baudrate})"

    @property
    def is_open(self) -> bool:
        return self._port is not None

    def open(self) -> None:
        """Open the port; a device that is not there yet is retried later, not raised.

        A malformed URL or setting is a ValueError at once.
        """
        self._closed = False
        if self._port is not None:
            return
        error = self._try_open()
        if error is not None:
            self._retry_later(error)

    def _try_open(self) -> OSError | None:
        """None once open, or the error (SerialException is an OSError too)."""
        try:
            port = serial.serial_for_url(
                self.url,
                baudrate=self.baudrate,
                bytesize=serial.EIGHTBITS,
                parity=serial.PARITY_NONE,
                stopbits=serial.STOPBITS_ONE,
                xonxoff=False,
                rtscts=False,
                dsrdtr=False,
                timeout=0,
                write_timeout=2.0,
            )
        except OSError as exc:
            return exc
        try:
            port.fileno()
            self._has_fd = True
        except Exception:
            self._has_fd = False
            port.timeout = _POLL_STEP
        self._port = port
        if self.reopen_count or self._backoff.failures:
            log.warning("serial %s: reopened", self.url)
        self._backoff.reset()
        return None

    def _retry_later(self, error: OSError) -> None:
        delay = self._backoff.failure()
        self._next_attempt = time.monotonic() + delay
        log.warning("serial %s: cannot open (%s); retrying in %.2fs", self.url, error, delay)

    def _lost(self, port: serial.SerialBase, exc: BaseException) -> None:
        """Close `port`, the one that failed; nothing if it was already replaced (the
        reader and a writer thread can both see the same unplug, and the late one must
        not close the port the reader has meanwhile reopened)."""
        if self._port is not port:
            return
        log.warning("serial %s: device lost (%s); reopening with backoff", self.url, exc)
        self._port = None
        try:
            port.close()
        except Exception:
            pass
        self._backoff.reset()
        self._next_attempt = time.monotonic() + self._backoff.failure()

    def _reopen_when_due(self, timeout: float) -> bool:
        """Wait (at most `timeout`) for the next reopen attempt; True once open."""
        now = time.monotonic()
        if now < self._next_attempt:
            time.sleep(min(timeout, self._next_attempt - now))
            if time.monotonic() < self._next_attempt:
                return False
        self.reopen_count += 1
        error = self._try_open()
        if error is None:
            return True
        self._retry_later(error)
        return False

    def read(self, timeout: float) -> bytes:
        if self._closed:
            raise TransportClosed(f"serial {self.url} is closed")
        port = self._port
        if port is None:
            if not self._reopen_when_due(timeout):
                return b""
            port = self._port
            assert port is not None
            timeout = 0.0
        try:
            if self._has_fd:
                ready, _, _ = select.select([port.fileno()], [], [], max(timeout, 0.0))
                if not ready:
                    return b""
                return bytes(port.read(_READ_SIZE))
            deadline = time.monotonic() + max(timeout, 0.0)
            while True:
                first = port.read(1)
                if first:
                    waiting = port.in_waiting
                    return bytes(first + (port.read(waiting) if waiting else b""))
                if time.monotonic() >= deadline:
                    return b""
        except (OSError, serial.SerialException, TypeError, ValueError) as exc:
            # TypeError/ValueError: pyserial on a fd closed under it by another thread
            if self._closed:
                raise TransportClosed(f"serial {self.url} is closed") from None
            self._lost(port, exc)
            return b""

    def write(self, data: bytes) -> None:
        if self._closed:
            raise TransportClosed(f"serial {self.url} is closed")
        port = self._port
        if port is None:
            raise TransportError(f"serial {self.url} is away (reopening)")
        try:
            port.write(data)
        except serial.SerialTimeoutException as exc:
            # The far end is not draining (a pty nobody reads): not a lost device.
            raise TransportError(f"serial {self.url}: write timed out: {exc}") from None
        except (OSError, serial.SerialException) as exc:
            self._lost(port, exc)
            raise TransportError(f"serial {self.url}: write failed: {exc}") from None

    def close(self) -> None:
        self._closed = True
        port, self._port = self._port, None
        if port is not None:
            try:
                port.close()
            except Exception:
                pass


class TcpTransport:
    """One connected TCP socket (accepted by `TcpListener` or made by `connect_tcp`)."""

    byte_time = 0.0

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._closed = False
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.setblocking(True)
        try:
            host, port = sock.getpeername()[:2]
            self.peer = f"{host}:{port}"
        except OSError:
            self.peer = "?"

    def __repr__(self) -> str:
        return f"TcpTransport({self.peer})"

    def open(self) -> None:
        if self._closed:
            raise TransportClosed("TCP connection is closed")

    def fileno(self) -> int:
        return self._sock.fileno()

    def read(self, timeout: float) -> bytes:
        if self._closed:
            raise TransportClosed("TCP connection is closed")
        try:
            ready, _, _ = select.select([self._sock], [], [], max(timeout, 0.0))
            if not ready:
                return b""
            data = self._sock.recv(_READ_SIZE)
        except (OSError, ValueError) as exc:
            raise TransportClosed(f"TCP {self.peer}: {exc}") from None
        if not data:
            raise TransportClosed(f"TCP {self.peer}: closed by peer")
        return data

    def write(self, data: bytes) -> None:
        if self._closed:
            raise TransportClosed("TCP connection is closed")
        try:
            self._sock.sendall(data)
        except OSError as exc:
            raise TransportClosed(f"TCP {self.peer}: {exc}") from None

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            self._sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self._sock.close()


class FdTransport:
    """A raw file descriptor, typically the master side of a pseudo-terminal.

    Used by the simulator (the terminal's end of a pty whose slave path the agent
    opens) and by tests. EIO on a pty master means no slave has the line open: it reads
    as silence, like an unplugged cable, until the other end opens it again.
    """

    def __init__(self, fd: int, *, byte_time: float = 0.0, close_fd: bool = False) -> None:
        self.fd = fd
        self.byte_time = byte_time
        self._close_fd = close_fd
        self._closed = False

    def __repr__(self) -> str:
        return f"FdTransport({self.fd})"

    def open(self) -> None:
        if self._closed:
            raise TransportClosed("fd transport is closed")

    def read(self, timeout: float) -> bytes:
        if self._closed:
            raise TransportClosed("fd transport is closed")
        try:
            ready, _, _ = select.select([self.fd], [], [], max(timeout, 0.0))
            if not ready:
                return b""
            data = os.read(self.fd, _READ_SIZE)
        except OSError as exc:
            if exc.errno == errno.EIO:  # pty: the other side is not open (yet/any more)
                time.sleep(max(timeout, 0.0))
                return b""
            raise TransportClosed(f"fd {self.fd}: {exc}") from None
        except ValueError as exc:
            raise TransportClosed(f"fd {self.fd}: {exc}") from None
        if not data:
            raise TransportClosed(f"fd {self.fd}: end of file")
        return data

    def write(self, data: bytes) -> None:
        if self._closed:
            raise TransportClosed("fd transport is closed")
        view = memoryview(data)
        try:
            while view:
                written = os.write(self.fd, view)
                view = view[written:]
        except OSError as exc:
            raise TransportError(f"fd {self.fd}: write failed: {exc}") from None

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._close_fd:
            try:
                os.close(self.fd)
            except OSError:
                pass


@dataclass
class PtyPair:
    """A pseudo-terminal in raw mode: `path` is the slave's device path (what a serial
    port would be), `master` the fd of the other end. The slave fd is held open so the
    master never sees EIO while a transport closes and reopens the path."""

    master: int
    slave: int
    path: str

    def close(self) -> None:
        for fd in (self.master, self.slave):
            try:
                os.close(fd)
            except OSError:
                pass


def open_pty() -> PtyPair:
    """A new raw pseudo-terminal pair (no echo, no line editing, no CR/LF mapping)."""
    master, slave = os.openpty()
    tty.setraw(slave)
    return PtyPair(master, slave, os.ttyname(slave))


def connect_tcp(host: str, port: int, timeout: float = 5.0) -> TcpTransport:
    """The terminal side of the loopback link: connect to the agent's listener."""
    sock = socket.create_connection((host, port), timeout=timeout)
    return TcpTransport(sock)
