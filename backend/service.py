"""The MQTT service: requests from the shared subscription, answers after a durable commit.

One worker thread owns the database connection and commits requests in groups (group
commit): everything that arrived while the previous group was committing goes into the
next transaction, and replies are published only after that commit. The paho network
thread only queues messages, so it never waits for the disk. Engine upkeep lives here:
SQLite's WAL checkpoints (a thread of their own, and a catch-up on the request
connection now and then); PostgreSQL needs none.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import queue
import socket
import threading
import time
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from backend import automsg, engine, store
from backend.config import Settings
from backend.handlers import Clock, Handler, utc_now
from backend.sms.senders import Sender, make_sender, receive_seconds
from backend.sms.worker import SmsWorker
from protocols import mqtt as schema
from protocols.address import parse_host_port
from protocols.mqtt_client import new_client
from protocols.response_codes import ResponseCode

if TYPE_CHECKING:
    from backend.metrics import BackendMetrics

log = logging.getLogger(__name__)
_STOP = object()
#: How often the request connection finishes a checkpoint itself (see Handler).
WAL_RESTART_SECONDS = 2.0


@dataclass
class Stats:
    handled: int = 0
    dropped: int = 0
    batches: int = 0
    latencies: list[float] = field(default_factory=list)  # seconds, receipt to publish


class BackendService:
    """`start()`, then `stop()` (or SIGTERM through the CLI): finishes what it has begun."""

    def __init__(
        self,
        db: str | Path,
        settings: Settings,
        *,
        broker: str,
        instance: str | None = None,
        username: str | None = None,
        password: str | None = None,
        ca_file: str | None = None,
        clock: Clock = utc_now,
        sender: Sender | None = None,
        record_latency: bool = False,
        metrics: BackendMetrics | None = None,
    ) -> None:
        self.target = engine.parse_target(db)
        self.settings = settings
        try:
            self.host, self.port = parse_host_port(broker)
        except ValueError as exc:
            raise ValueError(f"broker: {exc}") from None
        self.instance = (
            instance or settings.mqtt.instance or f"{socket.gethostname()}-{os.getpid()}"
        )
        schema.backend_status_topic(self.instance)  # topic-safe, or ValueError now
        self.username = username if username is not None else settings.mqtt.username
        self.password = password if password is not None else settings.mqtt.password
        self.ca_file = ca_file if ca_file is not None else settings.mqtt.ca_file
        self.clock = clock
        self.record_latency = record_latency
        self.metrics = metrics  # backend.metrics: counted once per group, read when scraped
        self.stats = Stats()
        self.connected = threading.Event()
        # paho's thread puts, the worker takes: the C queue, no Condition per message
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._worker: threading.Thread | None = None
        self._stopped = threading.Event()
        self._client = self._make_client()
        sqlite_path = self.target.path
        base = sqlite_path.resolve().parent if sqlite_path is not None else Path.cwd()
        # On SQLite the worker's and the SMS worker's write transactions, and those of the
        # other backend processes on the same file, take turns on this lock rather than
        # meet in SQLite, whose busy handler sleeps for milliseconds (store.WriteLock). On
        # PostgreSQL they lock rows, not the database: no lock between them.
        self._write_lock: Any = (
            store.WriteLock(sqlite_path) if sqlite_path else contextlib.nullcontext()
        )
        self._next_wal_restart = time.monotonic() + WAL_RESTART_SECONDS
        self._sms = SmsWorker(
            self.target,
            sender if sender is not None else make_sender(settings.sms, base_dir=base),
            write_lock=self._write_lock,
            per_club=True,
            base_dir=base,
            receive_interval=receive_seconds(settings.sms),
        )

    # --- MQTT ----------------------------------------------------------------------------

    def _make_client(self) -> mqtt.Client:
        client = new_client(
            f"loyalty-backend-{self.instance}",
            status_topic=schema.backend_status_topic(self.instance),
            username=self.username,
            password=self.password,
            ca_file=self.ca_file,
            batched=True,
        )
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        client.max_queued_messages_set(0)
        # No cap on replies awaiting the broker's PUBACK: the broker acknowledges a QoS 1
        # message at once, and with a cap paho scans every unacknowledged reply on each
        # PUBACK (tens of microseconds per reply with hundreds of terminals waiting).
        client.max_inflight_messages_set(0)
        return client

    def _on_connect(
        self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, properties: Any = None
    ) -> None:
        if reason.is_failure:
            log.error("broker refused the connection: %s", reason)
            return
        client.subscribe(schema.SHARED_REQUEST_FILTER, qos=1)
        client.publish(
            schema.backend_status_topic(self.instance),
            schema.encode_status(True),
            qos=1,
            retain=True,
        )
        self.connected.set()
        log.info("connected to %s:%s as %s", self.host, self.port, self.instance)

    def _on_disconnect(
        self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, properties: Any = None
    ) -> None:
        self.connected.clear()
        if not self._stopped.is_set():
            log.warning("lost the broker (%s); reconnecting", reason)

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        self._queue.put((time.perf_counter(), msg.topic, msg.payload))

    def set_password(self, password: str | None) -> None:
        """The broker password for the next connection (SIGHUP re-read its file)."""
        self.password = password
        if self.username:
            self._client.username_pw_set(self.username, password)

    # --- lifecycle -----------------------------------------------------------------------

    def start(self) -> BackendService:
        # schema problems surface here, before MQTT; checkpoints run on their own thread
        self._handler = self._make_handler()
        self._checkpointer: store.Checkpointer | None = None
        if self.target.path is not None:
            self._checkpointer = store.Checkpointer(
                self.target.path, interval=self.settings.service.checkpoint_seconds
            ).start()
        self._worker = threading.Thread(target=self._work, name="backend-worker", daemon=True)
        self._worker.start()
        self._sms.start()
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = 0
        self._client.connect_async(
            self.host,
            self.port,
            keepalive=self.settings.mqtt.keepalive,
            clean_start=True,
            properties=props,
        )
        self._client.loop_start()
        return self

    def _make_handler(self) -> Handler:
        return Handler(
            store.connect(self.target, autocheckpoint=False, shop_name=self.settings.shop_name),
            self.settings.program,
            offers=self.settings.offers,
            clock=self.clock,
            response_retention=timedelta(days=self.settings.service.requests_retention_days),
        )

    def _after_commit(self) -> None:
        """With checkpoints on another thread (store.Checkpointer) the WAL never restarts
        while requests keep coming: the request connection checkpoints the little that is
        left now and then, after a commit, so that its next transaction starts the WAL over."""
        if self.target.path is None or time.monotonic() < self._next_wal_restart:
            return
        self._next_wal_restart = time.monotonic() + WAL_RESTART_SECONDS
        try:
            store.catch_up_checkpoint(self._handler.conn)
        except engine.DatabaseError as exc:
            log.warning("WAL checkpoint failed: %s", exc)

    def _reconnect(self) -> None:
        """A PostgreSQL connection that failed (server restarted, network): a new one."""
        if self.target.path is not None:
            return
        try:
            self._handler.conn.close()
        except engine.DatabaseError:
            pass
        try:
            self._handler = self._make_handler()
        except store.StoreError as exc:
            log.error("cannot reconnect to the database: %s", exc)

    def stop(self, timeout: float = 10.0) -> None:
        """Stop taking requests, answer those already received, publish offline, leave."""
        if self._stopped.is_set():
            return
        self._stopped.set()
        if self.connected.is_set():
            self._client.unsubscribe(schema.SHARED_REQUEST_FILTER)
            time.sleep(0.05)  # let a message already on the wire arrive
        self._queue.put(_STOP)
        if self._worker is not None:
            self._worker.join(timeout)
        self._sms.stop()
        if self._checkpointer is not None:
            self._checkpointer.stop()
        if self.connected.is_set():
            info = self._client.publish(
                schema.backend_status_topic(self.instance),
                schema.encode_status(False),
                qos=1,
                retain=True,
            )
            try:
                info.wait_for_publish(timeout=3)
            except (RuntimeError, ValueError):
                pass
        self._client.disconnect()
        self._client.loop_stop()
        self._handler.conn.close()
        if isinstance(self._write_lock, store.WriteLock):
            self._write_lock.close()
        log.info(
            "stopped: %d requests answered in %d transactions, %d dropped",
            self.stats.handled,
            self.stats.batches,
            self.stats.dropped,
        )

    # --- the worker ----------------------------------------------------------------------

    def _work(self) -> None:
        sweep_every = self.settings.service.sweep_seconds
        next_sweep = time.monotonic()
        stopping = False
        while not stopping:
            if time.monotonic() >= next_sweep:
                self._sweep()
                next_sweep = time.monotonic() + sweep_every
            try:
                item = self._queue.get(timeout=max(0.01, next_sweep - time.monotonic()))
            except queue.Empty:
                continue
            items = []
            while True:
                if item is _STOP:
                    stopping = True
                else:
                    items.append(item)
                if len(items) >= self.settings.service.batch_max:
                    break
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
            if items:
                self._process(items)
        # anything queued after the stop marker still gets its answer
        rest = []
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if item is not _STOP:
                rest.append(item)
        if rest:
            self._process(rest)

    def _sweep(self) -> None:
        try:
            with self._write_lock:
                self._handler.refresh_registry()
            with self._write_lock:
                holds, expired = self._handler.sweep()
            if holds or expired:
                log.info("sweep: released %d expired holds, expired %d rials", holds, expired)
            with self._write_lock:
                pruned = self._handler.prune_responses()
            if pruned:
                log.info("sweep: forgot %d stored responses past their retention", pruned)
            self._segments()
            # once per Tehran day per club, whichever process gets there first
            automsg.run_due(self._handler.conn, self.clock(), write_lock=self._write_lock)
        except engine.DatabaseError:
            log.exception("sweep failed")
            self._reconnect()

    def _segments(self) -> None:
        """The nightly segment run (once per Tehran day and club, one process of N)."""
        from backend import segment_job

        try:
            done = segment_job.run(self._handler.conn, self.clock(),
                                   write_lock=self._write_lock)
        except ValueError:  # bad data (a date after today): logged, the requests go on
            log.exception("segments: the nightly run failed")
            return
        for club_id, counts in done.items():
            log.info("segments: club %d scored, %s", club_id,
                     ", ".join(f"{k} {v}" for k, v in counts.items()))

    def _process(self, items: list[tuple[float, str, bytes]]) -> None:
        reqs: list[schema.Request] = []
        started: list[float] = []
        for t0, topic, payload in items:
            req = self._decode(topic, payload)
            if req is not None:
                reqs.append(req)
                started.append(t0)
        if not reqs:
            return
        t_commit = time.perf_counter()
        try:
            with self._write_lock:
                responses = self._handler.handle_batch(reqs)
                commit_seconds = time.perf_counter() - t_commit
                # still our write turn: no other process's write keeps the WAL from restarting
                self._after_commit()
        except engine.DatabaseError:
            log.exception("a batch of %d requests failed", len(reqs))
            failed = ResponseCode.MALFUNCTION
            responses = [schema.refusal(r, failed, "database error") for r in reqs]
            commit_seconds = time.perf_counter() - t_commit
            self._reconnect()
        self.stats.batches += 1
        if self.metrics is not None:  # before the answers go: counted once an agent has one
            self.metrics.group(reqs, responses, started, commit_seconds, time.perf_counter())
        for req, resp, t0 in zip(reqs, responses, started, strict=True):
            self._client.publish(schema.response_topic(req.terminal_id), resp.to_json(), qos=1)
            self.stats.handled += 1
            if self.record_latency:
                self.stats.latencies.append(time.perf_counter() - t0)

    def _decode(self, topic: str, payload: bytes) -> schema.Request | None:
        try:
            tid = schema.terminal_of_topic(topic)
        except schema.SchemaError:
            self.stats.dropped += 1
            log.warning("dropped a message on %r: not a terminal topic", topic)
            return None
        try:
            req = schema.decode_request(payload)
        except schema.SchemaError as exc:
            self._refuse_malformed(tid, payload, str(exc))
            return None
        if req.terminal_id != tid:
            self.stats.dropped += 1
            log.warning(
                "dropped request %s: terminal_id %r differs from topic %r",
                req.id,
                req.terminal_id,
                tid,
            )
            return None
        return req

    def _refuse_malformed(self, tid: str, payload: bytes, reason: str) -> None:
        """Answer 30 when the envelope is readable enough to address a reply, else drop."""
        self.stats.dropped += 1
        log.warning("malformed request on terminal %s: %s", tid, reason)
        try:
            doc = json.loads(payload)
            resp = schema.Response(
                type=doc["type"],
                id=doc["id"],
                key=doc["key"],
                code=ResponseCode.FORMAT_ERROR,
                message=reason[:200],
            )
            data = resp.to_json()
        except (ValueError, KeyError, TypeError, schema.SchemaError):
            return
        if doc.get("terminal_id") not in (None, tid):
            return
        if self.metrics is not None:
            self.metrics.refused(str(resp.type), resp.code)
        self._client.publish(schema.response_topic(tid), data, qos=1)
