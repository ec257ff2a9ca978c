"""Prometheus metrics of the backend: plain counters on the request path, the rest at
scrape time.

The worker updates `BackendMetrics` once per group commit (one lock, a few additions per
request); histograms are kept as bucket counts, and turned into Prometheus's form only
when scraped. The gauges (open holds, the SMS outbox) are read from the database at
scrape time, on a connection of the collector's own, through store functions.
prometheus-client is imported only when metrics are served.
"""

from __future__ import annotations

import bisect
import logging
import threading
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

from backend import engine, store, store_ops
from backend.handlers import NOT_REGISTERED
from protocols.address import check_loopback, parse_host_port
from protocols.metrics_endpoint import MetricsEndpoint
from protocols.response_codes import ResponseCode
from protocols.version import version

if TYPE_CHECKING:
    from prometheus_client.core import Metric

log = logging.getLogger(__name__)

PREFIX = "loyalty_backend_"
#: Every metric the backend exports (a counter gets _total on the wire, as here).
METRICS = {
    "requests_total": "requests answered, by type and response code",
    "handling_seconds": "receipt of a request to its answer ready (committed), by type",
    "commit_seconds": "one group commit: the requests' transaction, durable",
    "group_commit_size": "requests per group commit",
    "open_holds": "quotes holding a member's credit, not yet settled nor released",
    "sms_outbox": "SMS in the outbox, by status",
    "unknown_terminals_total": "requests refused because their terminal is not registered "
    "(unknown, disabled, or another merchant id)",
    "info": "version of this backend (always 1)",
}
SECONDS_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
                   2.5, 5.0)
SIZE_BUCKETS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000)


def listen_address(text: str, *, allow_remote: bool = False) -> tuple[str, int]:
    """(host, port) of `--metrics`; a loopback host unless `allow_remote` (the agent's rule)."""
    host, port = parse_host_port(text, port_zero=True)
    if not allow_remote:
        try:
            host = check_loopback(host)
        except ValueError as exc:
            raise ValueError(f"metrics: {exc} (--metrics-allow-remote serves it to the "
                             "network)") from None
    return host, port


class Histogram:
    """Bucket counts (not cumulative) and a sum; Prometheus's cumulative form on demand."""

    __slots__ = ("bounds", "counts", "sum")

    def __init__(self, bounds: Sequence[float]) -> None:
        self.bounds = tuple(bounds)
        self.counts = [0] * (len(self.bounds) + 1)
        self.sum = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.bounds, value)] += 1
        self.sum += value

    def exposition(self) -> tuple[list[tuple[str, float]], float]:
        buckets, total = [], 0
        for bound, n in zip((*self.bounds, float("inf")), self.counts, strict=True):
            total += n
            buckets.append(("+Inf" if bound == float("inf") else repr(float(bound)), total))
        return buckets, self.sum


class BackendMetrics:
    """What the request path counts. `group` is called by the worker once per commit."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.requests: dict[tuple[str, str], int] = {}
        self.handling: dict[str, Histogram] = {}
        self.commit = Histogram(SECONDS_BUCKETS)
        self.group_size = Histogram(SIZE_BUCKETS)
        self.unknown_terminals = 0

    def group(self, reqs: Sequence[Any], responses: Sequence[Any], started: Sequence[float],
              commit_seconds: float, now: float) -> None:
        """One group commit: its requests and answers, when each arrived, the commit's time."""
        with self.lock:
            self.commit.observe(commit_seconds)
            self.group_size.observe(len(reqs))
            requests, handling = self.requests, self.handling
            for req, resp, t0 in zip(reqs, responses, started, strict=True):
                key = (req.type, resp.code)
                requests[key] = requests.get(key, 0) + 1
                if resp.message == NOT_REGISTERED and resp.code == ResponseCode.MALFUNCTION:
                    self.unknown_terminals += 1
                h = handling.get(req.type)
                if h is None:
                    h = handling[req.type] = Histogram(SECONDS_BUCKETS)
                h.observe(now - t0)

    def refused(self, type_: str, code: str) -> None:
        """An answer outside a group commit (a malformed request answered 30)."""
        with self.lock:
            self.requests[(type_, code)] = self.requests.get((type_, code), 0) + 1

    def snapshot(self) -> tuple[dict[tuple[str, str], int], dict[str, tuple[Any, float]],
                                tuple[Any, float], tuple[Any, float], int]:
        with self.lock:
            return (dict(self.requests),
                    {t: h.exposition() for t, h in self.handling.items()},
                    self.commit.exposition(), self.group_size.exposition(),
                    self.unknown_terminals)


class BackendCollector:
    """A prometheus-client collector (duck-typed: `collect`)."""

    def __init__(self, metrics: BackendMetrics, db: str | engine.Target) -> None:
        self.metrics = metrics
        self.target = engine.parse_target(db)
        self._conn: engine.Connection | None = None
        self._lock = threading.Lock()

    def _gauges(self) -> tuple[int, dict[str, int]] | None:
        """Open holds and the outbox by status; None when the database cannot be read (the
        scrape still answers, without them: `absent()` then tells)."""
        with self._lock:
            for attempt in (1, 2):
                try:
                    if self._conn is None:
                        self._conn = store.connect(self.target, create=False)
                    return store_ops.open_holds(self._conn), store_ops.outbox_by_status(self._conn)
                except (store.StoreError, *engine.DatabaseError) as exc:
                    if self._conn is not None:
                        try:
                            self._conn.close()
                        except engine.DatabaseError:
                            pass
                        self._conn = None
                    if attempt == 2:
                        log.warning("metrics: the database cannot be read: %s", exc)
        return None

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def collect(self) -> Iterator[Metric]:
        from prometheus_client.core import (
            CounterMetricFamily,
            GaugeMetricFamily,
            HistogramMetricFamily,
        )

        requests, handling, commit, size, unknown = self.metrics.snapshot()
        c = CounterMetricFamily(PREFIX + "requests", METRICS["requests_total"],
                                labels=["type", "code"])
        for (type_, code), n in sorted(requests.items()):
            c.add_metric([type_, str(code)], n)
        yield c
        h = HistogramMetricFamily(PREFIX + "handling_seconds", METRICS["handling_seconds"],
                                  labels=["type"])
        for type_, (buckets, total) in sorted(handling.items()):
            h.add_metric([type_], buckets, total)
        yield h
        yield HistogramMetricFamily(PREFIX + "commit_seconds", METRICS["commit_seconds"],
                                    buckets=commit[0], sum_value=commit[1])
        yield HistogramMetricFamily(PREFIX + "group_commit_size", METRICS["group_commit_size"],
                                    buckets=size[0], sum_value=size[1])
        # counted here, not summed from the unknown_terminals table: registering a terminal
        # deletes its row there, and a falling counter reads as a reset to Prometheus
        yield CounterMetricFamily(PREFIX + "unknown_terminals",
                                  METRICS["unknown_terminals_total"], value=unknown)
        gauges = self._gauges()
        if gauges is not None:
            holds, outbox = gauges
            yield GaugeMetricFamily(PREFIX + "open_holds", METRICS["open_holds"], value=holds)
            g = GaugeMetricFamily(PREFIX + "sms_outbox", METRICS["sms_outbox"],
                                  labels=["status"])
            for status, n in outbox.items():
                g.add_metric([status], n)
            yield g
        info = GaugeMetricFamily(PREFIX + "info", METRICS["info"], labels=["version"])
        info.add_metric([version()], 1)
        yield info


class MetricsServer(MetricsEndpoint):
    """The backend's endpoint; its collector keeps a database connection, closed at stop."""

    def __init__(self, metrics: BackendMetrics, db: str | engine.Target, host: str,
                 port: int) -> None:
        self.collector = BackendCollector(metrics, db)
        super().__init__(self.collector, host, port)

    def stop(self) -> None:
        super().stop()
        self.collector.close()
