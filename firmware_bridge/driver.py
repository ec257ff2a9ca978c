"""LinkDriver: runs a `Link` over any transport, the same interface for serial and TCP.

Two threads per driver (see docs/link.md for why threads): the I/O thread reads, feeds
the link, writes ACK/NAKs and retransmissions, and is never blocked by the application;
the dispatch thread calls `on_message` for each delivered frame, in order, so that an
`on_message` that answers with `driver.send()` (which blocks until the answer is ACKed)
cannot stall the ACKs it is waiting for.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable

from firmware_bridge.link import Acked, Delivered, Failed, Link, LinkDown, Rejected
from firmware_bridge.transports import Transport, TransportClosed, TransportError
from protocols.framing import ACK

__all__ = ["LinkDown", "LinkDriver", "MessageHandler"]

log = logging.getLogger(__name__)

MessageHandler = Callable[[bytes, "LinkDriver"], None]
#: Longest the I/O thread sleeps in one read: bounds how late a timer is noticed after a
#: send() from another thread changed the deadlines.
MAX_WAIT = 0.02
_ACK = bytes((ACK,))


class _Waiter:
    __slots__ = ("done", "error", "refused")

    def __init__(self) -> None:
        self.done = threading.Event()
        self.error: str | None = None
        self.refused = False


class LinkDriver:
    """One terminal link over one transport.

    `on_message(message, driver)` is called in the driver's dispatch thread for every
    frame that has been ACKed. `send(message)` may be called from any thread, including
    from inside `on_message`; it returns once the peer ACKed and raises `LinkDown` when
    the third transmission failed or the driver stopped.
    """

    def __init__(
        self,
        transport: Transport,
        on_message: MessageHandler,
        *,
        name: str = "",
        on_close: Callable[[LinkDriver], None] | None = None,
        link: Link | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.transport = transport
        self.on_message = on_message
        self.name = name or repr(transport)
        self.on_close = on_close
        self.link = link or Link(byte_time=getattr(transport, "byte_time", 0.0))
        self._clock = clock
        self._lock = threading.Lock()  # guards the link and the transport's write side
        self._waiters: dict[int, _Waiter] = {}
        self._inbox: queue.Queue[bytes | None] = queue.Queue()
        self._stopping = threading.Event()
        self._closed = threading.Event()
        self._io_thread: threading.Thread | None = None
        self._dispatch_thread: threading.Thread | None = None

    def __repr__(self) -> str:
        return f"LinkDriver({self.name})"

    # -- lifecycle --------------------------------------------------------------------

    def start(self) -> LinkDriver:
        if self._io_thread is not None:
            raise RuntimeError("driver already started")
        self.transport.open()
        self._io_thread = threading.Thread(
            target=self._io_loop, name=f"link-io {self.name}", daemon=True
        )
        self._dispatch_thread = threading.Thread(
            target=self._dispatch_loop, name=f"link-dispatch {self.name}", daemon=True
        )
        self._dispatch_thread.start()
        self._io_thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Stop both threads, close the transport; pending sends raise LinkDown."""
        self._stopping.set()
        current = threading.current_thread()
        if self._io_thread is not None and self._io_thread is not current:
            self._io_thread.join(timeout)
        if self._dispatch_thread is not None and self._dispatch_thread is not current:
            self._dispatch_thread.join(timeout)
        if self._io_thread is None:
            self._shutdown("driver stopped")

    @property
    def running(self) -> bool:
        """True until the driver stopped or its transport closed."""
        return self._io_thread is not None and not self._closed.is_set()

    def wait_closed(self, timeout: float | None = None) -> bool:
        return self._closed.wait(timeout)

    def __enter__(self) -> LinkDriver:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- sending ----------------------------------------------------------------------

    def send(self, message: bytes) -> None:
        """Send one message; blocks until ACKed. ValueError when it cannot be framed."""
        waiter = _Waiter()
        with self._lock:
            if self._closed.is_set() or self._stopping.is_set():
                raise LinkDown(f"{self.name}: link is closed")
            if self._io_thread is None:
                # Nothing would ever run the link's timers: the wait below would not end.
                raise LinkDown(f"{self.name}: driver not started")
            handle = self.link.send(message, self._clock())
            self._waiters[handle] = waiter
            # A closed transport: the I/O thread sees it on its next read and fails us.
            self._flush_locked()
        waiter.done.wait()  # the link resolves every frame: ACK, 3rd failure, or stop
        if waiter.error is not None:
            raise LinkDown(f"{self.name}: {waiter.error}", refused=waiter.refused)

    # -- internals --------------------------------------------------------------------

    def _flush_locked(self) -> tuple[list[bool], TransportClosed | None]:
        """Write every pending chunk. Returns whether each ACK among them was written,
        in order, and the `TransportClosed` that cut the writing short, if any."""
        acks: list[bool] = []
        closed: TransportClosed | None = None
        for chunk in self.link.outgoing():
            written = False
            if closed is None:
                try:
                    self.transport.write(chunk)
                    written = True
                except TransportClosed as exc:
                    closed = exc
                except TransportError as exc:
                    # Lost bytes: the link's timers retransmit or give up, as on a noisy line.
                    log.warning("%s: write failed: %s", self.name, exc)
            if chunk == _ACK:
                acks.append(written)
        return acks, closed

    def _handle_events(self, events: list[object], acks: list[bool] | None = None) -> None:
        """Act on the link's events; `acks` says which ACKs of this step were written."""
        written = iter(acks or ())
        for event in events:
            if isinstance(event, Delivered):
                # PROTOCOL.md 2.2: handed up only once ACKed. A frame whose ACK could not
                # be written is the sender's to repeat; taking it now would half-apply
                # a transaction that the sender reports failed.
                if next(written, True):
                    self._inbox.put(event.message)
                else:
                    log.warning("%s: frame not handed up: its ACK was not written", self.name)
            elif isinstance(event, Acked | Failed):
                waiter = self._waiters.pop(event.handle, None)
                if waiter is not None:
                    if isinstance(event, Failed):
                        log.warning("%s: link down for a frame: %s", self.name, event.reason)
                        waiter.error = event.reason
                        waiter.refused = event.refused
                    waiter.done.set()
            elif isinstance(event, Rejected):
                log.info(
                    "%s: received frame %s: %s",
                    self.name,
                    "NAKed" if event.nak else "dropped",
                    event.reason,
                )

    def _io_loop(self) -> None:
        reason = "driver stopped"
        try:
            while not self._stopping.is_set():
                with self._lock:
                    deadline = self.link.next_deadline()
                wait = MAX_WAIT
                if deadline is not None:
                    wait = min(MAX_WAIT, max(deadline - self._clock(), 0.0))
                before = self._clock()
                data = self.transport.read(wait)
                now = self._clock()
                if not data:
                    # Silence is only observed up to the end of the read's own wait: a
                    # thread preempted after the read must not count its lost CPU time
                    # as a quiet line (a false stall drop or retransmission).
                    now = min(now, before + wait)
                with self._lock:
                    if data:
                        self.link.receive_data(data, now)
                    else:
                        self.link.tick(now)
                    acks, closed = self._flush_locked()  # ACKs go out before delivery
                    events = list(self.link.events())
                self._handle_events(events, acks)
                if closed is not None:
                    raise closed
        except TransportClosed as exc:
            reason = f"transport closed: {exc}"
            if not self._stopping.is_set():
                log.info("%s: %s", self.name, reason)
        except Exception:
            reason = "driver crashed"
            log.exception("%s: link I/O thread failed", self.name)
        finally:
            self._shutdown(reason)

    def _shutdown(self, reason: str) -> None:
        with self._lock:
            if self._closed.is_set():
                return
            self._closed.set()
            self.link.abort(reason)
            events = list(self.link.events())
        self._handle_events(events)
        for waiter in list(self._waiters.values()):
            waiter.error = reason
            waiter.done.set()
        self._waiters.clear()
        self._inbox.put(None)
        try:
            self.transport.close()
        except Exception:
            log.exception("%s: closing the transport failed", self.name)
        if self.on_close is not None:
            try:
                self.on_close(self)
            except Exception:
                log.exception("%s: on_close failed", self.name)

    def _dispatch_loop(self) -> None:
        while True:
            message = self._inbox.get()
            if message is None:
                return
            try:
                self.on_message(message, self)
            except Exception:
                log.exception("%s: on_message failed", self.name)
