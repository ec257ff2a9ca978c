"""firmware_bridge: the terminal link (PROTOCOL.md 1-2) over serial lines and loopback TCP."""

from firmware_bridge.driver import LinkDriver
from firmware_bridge.link import Link, LinkDown
from firmware_bridge.tcp import TcpListener
from firmware_bridge.transports import (
    FdTransport,
    SerialTransport,
    TcpTransport,
    Transport,
    TransportClosed,
    TransportError,
    connect_tcp,
    open_pty,
)

__all__ = [
    "FdTransport",
    "Link",
    "LinkDown",
    "LinkDriver",
    "SerialTransport",
    "TcpListener",
    "TcpTransport",
    "Transport",
    "TransportClosed",
    "TransportError",
    "connect_tcp",
    "open_pty",
]
