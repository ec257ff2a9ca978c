"""The far end of the link, written independently of firmware_bridge: raw bytes only."""

from __future__ import annotations

import os
import select
import socket
import time

STX, ETX, ACK, NAK = 2, 3, 6, 0x15


def frame(message: bytes) -> bytes:
    """STX | LEN (BCD) | MESSAGE | ETX | LRC, computed here from PROTOCOL.md 2.1."""
    digits = f"{len(message):04d}"
    length = bytes([int(digits[0]) * 16 + int(digits[1]), int(digits[2]) * 16 + int(digits[3])])
    check = 0
    for b in length + message + bytes([ETX]):
        check ^= b
    return bytes([STX]) + length + message + bytes([ETX, check])


class RawEnd:
    """Reads and writes a pty master fd or a socket, with generous timeouts."""

    def __init__(self, fd: int | None = None, sock: socket.socket | None = None) -> None:
        self.fd = fd
        self.sock = sock
        self.buffer = b""

    def write(self, data: bytes) -> None:
        if self.sock is not None:
            self.sock.sendall(data)
        else:
            assert self.fd is not None
            os.write(self.fd, data)

    def _fill(self, timeout: float) -> bool:
        source = self.sock if self.sock is not None else self.fd
        ready, _, _ = select.select([source], [], [], timeout)
        if not ready:
            return False
        if self.sock is not None:
            data = self.sock.recv(4096)
        else:
            assert self.fd is not None
            data = os.read(self.fd, 4096)
        if not data:
            raise EOFError("far end closed")
        self.buffer += data
        return True

    def read(self, n: int, timeout: float = 5.0) -> bytes:
        deadline = time.monotonic() + timeout
        while len(self.buffer) < n:
            left = deadline - time.monotonic()
            if left <= 0 or not self._fill(left):
                raise TimeoutError(f"wanted {n} bytes, have {self.buffer!r}")
        out, self.buffer = self.buffer[:n], self.buffer[n:]
        return out

    def read_frame(self, timeout: float = 5.0) -> bytes:
        """The message of the next frame (its LRC checked), skipping nothing."""
        head = self.read(3, timeout)
        assert head[0] == STX, head
        size = int(f"{head[1]:02x}{head[2]:02x}")
        rest = self.read(size + 2, timeout)
        message, etx, check = rest[:size], rest[size], rest[size + 1]
        assert etx == ETX
        expected = 0
        for b in head[1:] + message + bytes([ETX]):
            expected ^= b
        assert check == expected
        return message

    def quiet(self, seconds: float) -> bytes:
        """Whatever arrives within `seconds` (expected: nothing)."""
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            if not self._fill(left):
                break
        out, self.buffer = self.buffer, b""
        return out
