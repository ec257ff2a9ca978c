"""Wires a Terminal to a real line: transport <- traffic tap <- faults <- link channel,
plus the periodic echo a real terminal sends while idle.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from protocols.address import parse_host_port
from terminal_sim.bank import BankHost
from terminal_sim.channel import LinkChannel
from terminal_sim.clock import Clock
from terminal_sim.faults import FaultPlan, FaultyTransport
from terminal_sim.printer import Printer
from terminal_sim.terminal import Terminal, TerminalConfig
from terminal_sim.traffic import TrafficTap

REQUEST_MTIS = ("0800", "0100", "0220", "0420")
_WIRE = tuple(f"{kind}_{d}" for kind in ("frames", "acks", "naks", "bad_frames")
              for d in ("sent", "received"))
_MESSAGES = (*(f"sent_{m}" for m in REQUEST_MTIS),
             *(f"received_{int(m) + 10:04d}" for m in REQUEST_MTIS))
_FAULTS = ("corrupted", "acks_dropped", "stalled", "noisy", "responses_lost",
           "repeats_answered_alike", "echoes")
#: Every figure `Session.stats` gives: a scenario's `expect` may name any of them.
LINE_FIGURES = frozenset((*_FAULTS, *_WIRE, *_MESSAGES, "pending"))


def open_transport(serial: str | None = None, connect: str | None = None,
                   baud: int = 115200) -> Any:
    """`--serial PATH_OR_URL` or `--connect 127.0.0.1:PORT`, as the CLI takes them."""
    if bool(serial) == bool(connect):
        raise ValueError("give exactly one of --serial and --connect")
    if serial:
        from firmware_bridge.transports import SerialTransport

        return SerialTransport(serial, baudrate=baud)
    try:
        host, port = parse_host_port(connect or "")
    except ValueError as exc:
        raise ValueError(f"--connect: {exc}") from None
    if host not in ("127.0.0.1", "localhost", "::1"):
        raise ValueError(f"--connect takes 127.0.0.1:PORT (loopback only), got {connect!r}")
    from firmware_bridge.transports import connect_tcp

    return connect_tcp(host, port)


@dataclass
class Session:
    """A running simulated terminal on one line."""

    transport: Any
    config: TerminalConfig = field(default_factory=TerminalConfig)
    faults: FaultPlan = field(default_factory=FaultPlan)
    bank: BankHost = field(default_factory=BankHost)
    on_traffic: Callable[[str, str], None] | None = None
    on_event: Callable[[str, str], None] | None = None
    periodic_echo: bool = True

    def __post_init__(self) -> None:
        # The tap sits under the faults, so it shows (and counts) what is really on the wire.
        self.tap = TrafficTap(self.transport, self.on_traffic)
        self.faulty = FaultyTransport(self.tap, self.faults)
        self.channel = LinkChannel(self.faulty, self.faults)
        self.clock = Clock(self.faults.clock_offset_s)
        self.terminal = Terminal(self.config, self.channel, clock=self.clock, bank=self.bank,
                                 printer=Printer(), on_event=self.on_event)
        # A real terminal keeps its STAN (and its bank its RRNs) across restarts; starting
        # from the time keeps a new session's 11/37 clear of the agent's recent ones.
        now = int(time.time())
        self.terminal.stan = now % 999_999
        if not self.bank.rrn_seed:
            self.bank.rrn_seed = now * 10 % 10**12
        self._stop = threading.Event()
        self._echo: threading.Thread | None = None

    def start(self) -> Session:
        self.channel.start()
        if self.periodic_echo:
            self._echo = threading.Thread(target=self._echo_loop, name="sim-echo", daemon=True)
            self._echo.start()
        return self

    def stats(self) -> dict[str, Any]:
        """Cumulative line figures a scenario may expect: faults applied, echoes sent,
        what went over the wire (`frames_sent`, `naks_received`, `sent_0220` ...).
        `pending` (advices still unanswered) is a level, the rest are counts."""
        st = self.faulty.stats
        wire = {name: self.tap.counts[name] for name in (*_WIRE, *_MESSAGES)}
        return {"corrupted": st.corrupted, "acks_dropped": st.acks_dropped,
                "stalled": st.stalled, "noisy": st.noisy,
                "responses_lost": self.channel.responses_lost,
                "repeats_answered_alike": self.channel.repeats_alike,
                "echoes": self.terminal.echoes, **wire,
                "pending": len(self.terminal.pending)}

    def set_faults(self, values: dict[str, Any]) -> None:
        self.faults.update(values)
        self.clock.offset_s = self.faults.clock_offset_s

    def _echo_loop(self) -> None:
        while not self._stop.wait(1.0):
            t = self.terminal
            if t.echo_due() and t._lock.acquire(blocking=False):
                try:
                    t.echo()
                finally:
                    t._lock.release()

    def stop(self) -> None:
        self._stop.set()
        if self._echo:
            self._echo.join(timeout=5)
        self.channel.stop()

    def __enter__(self) -> Session:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
