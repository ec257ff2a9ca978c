"""Prometheus metrics of one agent, read from the counters it keeps anyway.

Nothing here runs on the request path: a scrape reads the link's `LinkStats`, the
journal's sizes, the MQTT client's state and the handler's count of 91 answers, all of
which exist without metrics. Served with prometheus-client on a loopback address (the
config refuses any other unless told `--metrics-allow-remote`). prometheus-client is
imported only when metrics are served: ~2.5 MB resident an agent without them never pays.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from dataclasses import fields
from typing import TYPE_CHECKING

from firmware_bridge.driver import LinkDriver
from firmware_bridge.link import LinkStats
from protocols.metrics_endpoint import MetricsEndpoint
from protocols.version import version

if TYPE_CHECKING:
    from prometheus_client.core import Metric

    from agent.service import Agent

PREFIX = "loyalty_agent_"
#: Every metric the agent exports (the names without the _total a counter gets on the wire).
#: The alert rules and the dashboard use only these (a test checks).
METRICS = {
    "frames_received": "frames from the terminal delivered to the agent (ACKed)",
    "frames_sent": "frames sent to the terminal, first transmissions",
    "naks_sent": "NAKs the agent sent for bad frames",
    "retransmissions": "frames the agent sent again (no ACK in time, or a NAK)",
    "link_failures": "frames given up after the last retransmission",
    "link_up": "1 while the terminal's link is open",
    "journal_entries": "entries in the journal (answers kept for repeats, advices owed)",
    "journal_bytes": "size of the journal file",
    "advices_waiting": "advices and reversals not yet forwarded (the 0810's QD)",
    "oldest_advice_age_seconds": "age of the oldest advice or release waiting (0: none)",
    "broker_connected": "1 while connected and subscribed to the broker",
    "backend_reachable": "1 while a backend's retained presence says online",
    "unreachable_answers": "requests the agent answered 91 (backend did not answer in time)",
    "info": "version and terminal of this agent (always 1)",
}


class LinkTally:
    """Link counters summed over every connection the agent has had.

    A TCP terminal gets a new driver per connection; a closed one's counters are folded
    into a running total so the exported counters never go down.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._live: list[LinkDriver] = []
        self._closed = LinkStats()

    def add(self, driver: LinkDriver) -> None:
        with self._lock:
            self._fold()
            self._live.append(driver)

    def _fold(self) -> None:
        still = []
        for driver in self._live:
            if not driver.wait_closed(0):  # not yet started counts as alive
                still.append(driver)
            else:
                for f in fields(LinkStats):
                    setattr(self._closed, f.name, getattr(self._closed, f.name)
                            + getattr(driver.link.stats, f.name))
        self._live = still

    def totals(self) -> tuple[LinkStats, bool]:
        """The summed counters, and whether any link is up now."""
        with self._lock:
            self._fold()
            out = LinkStats(**{f.name: getattr(self._closed, f.name) for f in fields(LinkStats)})
            for driver in self._live:
                for f in fields(LinkStats):
                    setattr(out, f.name, getattr(out, f.name) + getattr(driver.link.stats, f.name))
            return out, any(d.running for d in self._live)


class AgentCollector:
    """A prometheus-client collector (duck-typed: `collect`) reading the agent's state."""

    def __init__(self, agent: Agent) -> None:
        self.agent = agent

    def collect(self) -> Iterator[Metric]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        agent = self.agent
        tid = agent.cfg.terminal_id
        labels = ["terminal"]

        def counter(name: str, value: float) -> CounterMetricFamily:
            m = CounterMetricFamily(PREFIX + name, METRICS[name], labels=labels)
            m.add_metric([tid], value)
            return m

        def gauge(name: str, value: float) -> GaugeMetricFamily:
            m = GaugeMetricFamily(PREFIX + name, METRICS[name], labels=labels)
            m.add_metric([tid], value)
            return m

        stats, up = agent.links.totals()
        yield counter("frames_received", stats.delivered)
        yield counter("frames_sent", stats.sent)
        yield counter("naks_sent", stats.naks_sent)
        yield counter("retransmissions", stats.retransmissions)
        yield counter("link_failures", stats.failed)
        yield gauge("link_up", 1 if up else 0)
        journal = agent.journal
        yield gauge("journal_entries", len(journal))
        try:
            size = os.path.getsize(journal.path)
        except OSError:
            size = 0
        yield gauge("journal_bytes", size)
        yield gauge("advices_waiting", journal.queued())
        yield gauge("oldest_advice_age_seconds", oldest_waiting_age(agent))
        yield gauge("broker_connected", 1 if agent.backend.connected() else 0)
        yield gauge("backend_reachable", 1 if agent.backend.online() else 0)
        yield counter("unreachable_answers", agent.handler.unreachable_answers)
        info = GaugeMetricFamily(PREFIX + "info", METRICS["info"],
                                 labels=["terminal", "version"])
        info.add_metric([tid, version()], 1)
        yield info


def oldest_waiting_age(agent: Agent) -> float:
    head = agent.journal.head()
    if head is None:
        return 0.0
    doc = agent.journal.get(head.doc_id)
    return max(0.0, time.time() - doc["at"]) if doc else 0.0


class MetricsServer(MetricsEndpoint):
    """The agent's endpoint, read from counters the agent keeps anyway."""

    def __init__(self, agent: Agent, host: str, port: int) -> None:
        super().__init__(AgentCollector(agent), host, port)
