"""Wires the agent together: journal, MQTT client, forwarder, handler and the link.

This is the only module of the agent that owns threads and sockets at once; the
rules live in handler, journal and forwarder.
"""

from __future__ import annotations

import logging
import threading
import time

from agent import memory
from agent.backend_client import BackendClient, BrokerSettings
from agent.config import AgentConfig
from agent.forwarder import Forwarder
from agent.handler import Handler
from agent.journal import Journal
from agent.metrics import LinkTally, MetricsServer
from firmware_bridge.driver import LinkDown, LinkDriver
from firmware_bridge.tcp import TcpListener
from firmware_bridge.transports import SerialTransport
from protocols import messages
from protocols.backoff import Backoff

log = logging.getLogger("agent")

#: How often expired journal entries are dropped.
EXPIRE_EVERY = 3600.0
#: How often freed heap pages are handed back (a busy spell leaves them resident).
TRIM_EVERY = 60.0


class Agent:
    """One running agent for one terminal."""

    def __init__(self, cfg: AgentConfig) -> None:
        self.cfg = cfg
        self.journal = Journal(cfg.journal)  # JournalError: the caller exits 2
        self.journal.expire(time.time())
        self.backend = BackendClient(
            BrokerSettings(
                host=cfg.broker_host,
                port=cfg.broker_port,
                username=cfg.broker_username,
                password=cfg.broker_password,
                ca_file=cfg.broker_ca_file,
            ),
            cfg.terminal_id,
            cfg.merchant_id,
        )
        self.forwarder = Forwarder(
            self.journal,
            self.backend,
            backoff=Backoff(cfg.retry_initial, cfg.retry_max),
            request_timeout=cfg.forward_timeout,
        )
        self.backend.on_backend_up = self.forwarder.kick
        self.handler = Handler(
            journal=self.journal,
            backend=self.backend,
            mac_key=cfg.mac_key,
            terminal_id=cfg.terminal_id,
            merchant_id=cfg.merchant_id,
            forwarder=self.forwarder,
            inquiry_budget=cfg.inquiry_budget,
            advice_wait=cfg.advice_wait,
        )
        self.monotonic = time.monotonic
        self.driver: LinkDriver | None = None
        self.listener: TcpListener | None = None
        self.links = LinkTally()
        self.metrics: MetricsServer | None = None
        self._stop = threading.Event()

    def on_message(self, message: bytes, driver: LinkDriver) -> None:
        received = self.monotonic()
        response, commit = self.handler.answer(message, received)
        # Whether the terminal may have taken the answer: a quote is released only when
        # it certainly did not (docs/agent.md, "Releases"); after a silence it may have,
        # its ACKs lost, so the hold stays until the advice or its expiry.
        taken = True
        try:
            if response is not None:
                driver.send(response)
                late = self.monotonic() - received > messages.TERMINAL_INQUIRY_WAIT
                if commit is not None and late:
                    log.warning("0110 ACKed after the terminal stopped waiting for it")
                    taken = False
        except LinkDown as exc:
            log.warning("response not delivered: %s", exc)
            taken = not exc.refused
        except ValueError as exc:
            log.warning("response not sent: %s", exc)
            taken = False
        finally:
            if commit is not None:
                commit(taken)

    def start(self) -> None:
        self.backend.start()
        self.forwarder.start()
        cfg = self.cfg
        if cfg.metrics_host is not None and cfg.metrics_port is not None:
            self.metrics = MetricsServer(self, cfg.metrics_host, cfg.metrics_port)
            log.info("metrics on http://%s:%d/metrics", cfg.metrics_host, self.metrics.port)
        if cfg.serial:
            transport = SerialTransport(cfg.serial, cfg.baud)
            self.driver = LinkDriver(transport, self.on_message, name=cfg.serial)
            self.links.add(self.driver)
            self.driver.start()
            log.info("agent for terminal %s on %s at %d baud", cfg.terminal_id, cfg.serial,
                     cfg.baud)
        else:
            assert cfg.listen_host is not None and cfg.listen_port is not None
            self.listener = TcpListener(cfg.listen_host, cfg.listen_port, self.on_message,
                                        on_connect=self.links.add).start()
            log.info("agent for terminal %s listening on %s:%d", cfg.terminal_id,
                     cfg.listen_host, self.listener.port)

    def run_until_stopped(self) -> None:
        last_expire = last_trim = time.monotonic()
        while not self._stop.wait(5.0):
            if time.monotonic() - last_trim > TRIM_EVERY:
                last_trim = time.monotonic()
                memory.trim()
            if time.monotonic() - last_expire > EXPIRE_EVERY:
                last_expire = time.monotonic()
                try:
                    dropped = self.journal.expire(time.time())
                    if dropped:
                        log.info("journal: %d expired entries dropped", dropped)
                except Exception:
                    log.exception("journal expiry failed")

    def request_stop(self) -> None:
        self._stop.set()

    def stop(self) -> None:
        """Stop the link first (no new work), then forwarding, then say offline."""
        if self.driver is not None:
            self.driver.stop()
        if self.listener is not None:
            self.listener.stop()
        self.forwarder.stop()
        self.backend.stop()
        if self.metrics is not None:
            self.metrics.stop()
        self.journal.close()
        log.info("agent stopped")
