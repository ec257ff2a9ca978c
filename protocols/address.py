"""`HOST:PORT` as operators write it (broker, listen, connect), IPv6 as `[::1]:1883`.

One parser so that every command line and config file accepts the same forms and says the
same thing about a bad one. Whether the host must be loopback is the caller's rule.
"""

from __future__ import annotations

import ipaddress


def parse_host_port(text: str, *, port_zero: bool = False) -> tuple[str, int]:
    """(host, port) of `HOST:PORT` or `[IPv6]:PORT`; the host without brackets.

    `port_zero` admits port 0 ("any free port", for a listening socket).
    """
    if not isinstance(text, str) or not text:
        raise _bad(text, "empty")
    if text.startswith("["):
        inside, sep, port = text[1:].partition("]:")
        if not sep:
            raise _bad(text, "an IPv6 address is written [::1]:PORT")
        try:
            ipaddress.IPv6Address(inside)
        except ValueError:
            raise _bad(text, f"{inside!r} in brackets is not an IPv6 address") from None
        host = inside
    else:
        host, sep, port = text.rpartition(":")
        if not sep or not host:
            raise _bad(text, "no host or no port")
        if ":" in host:
            raise _bad(text, "write an IPv6 address in brackets, as [::1]:1883")
        if any(c.isspace() for c in host):
            raise _bad(text, "the host holds white space")
    if not (port.isascii() and port.isdigit()) or len(port) > 5:
        raise _bad(text, f"port {port!r} is not a number")
    number = int(port)
    if not (0 if port_zero else 1) <= number <= 65535:
        raise _bad(text, f"port {number} is not in {0 if port_zero else 1}..65535")
    return host, number


def check_loopback(host: str) -> str:
    """The host itself if it is a loopback address (`localhost` gives 127.0.0.1);
    ValueError otherwise. For what must not be reachable from the network unless the
    operator says so: the agent's terminal port, every service's metrics."""
    if host == "localhost":
        return "127.0.0.1"
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        raise ValueError(f"listen host {host!r} is not an IP address") from None
    if not address.is_loopback:
        raise ValueError(f"listen host {host!r} is not a loopback address")
    return host


def _bad(text: object, why: str) -> ValueError:
    return ValueError(f"{text!r} is not HOST:PORT: {why}")
