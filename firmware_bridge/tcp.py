"""TcpListener: the loopback TCP entry for Android payment apps (PROTOCOL.md 1).

Bound to a loopback address only: the link carries no authentication of its own beyond
the MAC, so it must not be reachable from the shop's network.
"""

from __future__ import annotations

import logging
import select
import socket
import threading
from collections.abc import Callable

from firmware_bridge.driver import LinkDriver, MessageHandler
from firmware_bridge.transports import TcpTransport
from protocols.address import check_loopback

log = logging.getLogger(__name__)

_ACCEPT_WAIT = 0.05


class TcpListener:
    """Accepts terminals on a loopback port; one `LinkDriver` per connection.

    `port=0` picks a free port; `.port` tells which after `start()`. `on_connect`
    (optional) is called with each new driver before it starts.
    """

    def __init__(
        self,
        host: str,
        port: int,
        on_message: MessageHandler,
        *,
        on_connect: Callable[[LinkDriver], None] | None = None,
    ) -> None:
        self.host = check_loopback(host)
        if not isinstance(port, int) or not 0 <= port <= 65535:
            raise ValueError(f"port {port!r} outside 0..65535")
        self._requested_port = port
        self.on_message = on_message
        self.on_connect = on_connect
        self._sock: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._drivers: list[LinkDriver] = []
        self.port = port

    def __repr__(self) -> str:
        return f"TcpListener({self.host}:{self.port})"

    @property
    def drivers(self) -> list[LinkDriver]:
        """The drivers of the connections open now."""
        with self._lock:
            return [d for d in self._drivers if d.running]

    def start(self) -> TcpListener:
        if self._sock is not None:
            raise RuntimeError("listener already started")
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((self.host, self._requested_port))
            sock.listen(16)
        except OSError:
            sock.close()
            raise
        self._sock = sock
        self.port = sock.getsockname()[1]
        self._thread = threading.Thread(
            target=self._accept_loop, name=f"link-listen {self.port}", daemon=True
        )
        self._thread.start()
        log.info("listening for terminals on %s:%d", self.host, self.port)
        return self

    def stop(self) -> None:
        """Stop accepting, stop every connection's driver, close the socket."""
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(5.0)
        if self._sock is not None:
            self._sock.close()
        with self._lock:
            drivers, self._drivers = self._drivers, []
        for driver in drivers:
            driver.stop()

    def __enter__(self) -> TcpListener:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _forget(self, driver: LinkDriver) -> None:
        with self._lock:
            if driver in self._drivers:
                self._drivers.remove(driver)
        log.info("terminal %s disconnected", driver.name)

    def _accept_loop(self) -> None:
        sock = self._sock
        assert sock is not None
        while not self._stopping.is_set():
            try:
                ready, _, _ = select.select([sock], [], [], _ACCEPT_WAIT)
                if not ready:
                    continue
                conn, peer = sock.accept()
            except OSError as exc:
                if self._stopping.is_set():
                    return
                log.warning("accept failed: %s", exc)
                continue
            try:
                transport = TcpTransport(conn)
                driver = LinkDriver(
                    transport,
                    self.on_message,
                    name=f"tcp {peer[0]}:{peer[1]}",
                    on_close=self._forget,
                )
                if self.on_connect is not None:
                    self.on_connect(driver)
                with self._lock:
                    if self._stopping.is_set():
                        conn.close()
                        return
                    self._drivers.append(driver)
                driver.start()
                log.info("terminal connected from %s:%d", peer[0], peer[1])
            except Exception:
                log.exception("could not start a link for %s", peer)
                conn.close()
