"""The agent's MQTT client: requests to the backend matched to responses by request id.

QoS 1 over the client protocols.mqtt_client sets up (MQTT v5, TCP_NODELAY). It also keeps the
terminal's presence (retained `online`, last will `offline`) and tracks the backends'
retained presence, so the 0810 can say whether anyone would answer.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.reasoncodes import ReasonCode

from protocols import mqtt
from protocols.mqtt_client import new_client

log = logging.getLogger("agent.backend_client")


@dataclass(frozen=True, slots=True)
class BrokerSettings:
    host: str
    port: int
    username: str | None = None
    password: str | None = None
    ca_file: str | None = None
    keepalive: int = 15


class _Slot:
    __slots__ = ("event", "payload", "response")

    def __init__(self, payload: bytes) -> None:
        self.event = threading.Event()
        self.payload = payload
        self.response: mqtt.Response | None = None


class BackendClient:
    """Request/response over MQTT with a deadline; presence both ways."""

    def __init__(self, settings: BrokerSettings, terminal_id: str, merchant_id: str) -> None:
        self.settings = settings
        self.terminal_id = mqtt.check_terminal_id(terminal_id)
        self.merchant_id = merchant_id
        self._req_topic = mqtt.request_topic(terminal_id)
        self._resp_topic = mqtt.response_topic(terminal_id)
        self._status_topic = mqtt.terminal_status_topic(terminal_id)
        self._lock = threading.Lock()
        self._slots: dict[str, _Slot] = {}
        self._backends: dict[str, bool] = {}
        self._connected = threading.Event()
        self._subscribed = threading.Event()
        self._closing = False
        #: Called (in paho's thread) when a backend announces itself online.
        self.on_backend_up: Callable[[], None] | None = None
        client = new_client(
            f"loyalty-agent-{terminal_id}-{uuid.uuid4().hex[:8]}",
            status_topic=self._status_topic,
            username=settings.username,
            password=settings.password,
            ca_file=settings.ca_file,
            reconnect=(0.2, 5.0),
        )
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_subscribe = self._on_subscribe
        client.on_message = self._on_message
        self._client = client

    # --- life cycle ----------------------------------------------------------------
    def start(self) -> None:
        """Connect in the background; the agent works (offline) until the broker answers."""
        self._client.connect_async(self.settings.host, self.settings.port, self.settings.keepalive)
        self._client.loop_start()

    def stop(self) -> None:
        """Publish `offline` (a clean stop sends no last will), then disconnect."""
        self._closing = True
        if self._connected.is_set():
            try:
                info = self._client.publish(
                    self._status_topic, mqtt.encode_status(False), qos=1, retain=True
                )
                info.wait_for_publish(timeout=2.0)
            except (RuntimeError, ValueError) as exc:
                log.warning("could not publish offline: %s", exc)
        self._client.disconnect()
        self._client.loop_stop()

    def set_password(self, password: str | None) -> None:
        """A new broker password (SIGHUP); paho sends it on its next (re)connection."""
        if self.settings.username is not None:
            self._client.username_pw_set(self.settings.username, password)

    # --- state ---------------------------------------------------------------------
    def connected(self) -> bool:
        return self._subscribed.is_set()

    def online(self) -> bool:
        """Connected to the broker and at least one backend's retained presence is online."""
        with self._lock:
            return self._subscribed.is_set() and any(self._backends.values())

    # --- requests ------------------------------------------------------------------
    def request(
        self, type: str, key: str, body: dict[str, Any], deadline: float
    ) -> mqtt.Response | None:
        """The backend's response, or None if none came by `deadline` (time.monotonic)."""
        if not self._subscribed.is_set():
            return None
        req_id = uuid.uuid4().hex
        payload = mqtt.Request(
            type=type,
            id=req_id,
            key=key,
            terminal_id=self.terminal_id,
            merchant_id=self.merchant_id,
            body=body,
        ).to_json()
        slot = _Slot(payload)
        with self._lock:
            self._slots[req_id] = slot
        try:
            info = self._client.publish(self._req_topic, payload, qos=1)
            if info.rc != paho.MQTT_ERR_SUCCESS:
                return None
            slot.event.wait(max(0.0, deadline - time.monotonic()))
            return slot.response
        finally:
            with self._lock:
                self._slots.pop(req_id, None)

    # --- paho callbacks (paho's network thread) ------------------------------------
    def _on_connect(
        self, client: paho.Client, userdata: Any, flags: Any, reason: ReasonCode, props: Any
    ) -> None:
        if reason.is_failure:
            log.warning("broker refused the connection: %s", reason)
            return
        self._connected.set()
        log.info("connected to broker %s:%d", self.settings.host, self.settings.port)
        client.subscribe([(self._resp_topic, 1), (mqtt.BACKEND_STATUS_FILTER, 1)])
        client.publish(self._status_topic, mqtt.encode_status(True), qos=1, retain=True)

    def _on_subscribe(
        self, client: paho.Client, userdata: Any, mid: int, reasons: list, properties: Any
    ) -> None:
        failed = [r for r in reasons if getattr(r, "is_failure", False)]
        if failed:
            log.warning("subscription refused by the broker: %s", failed)
        self._subscribed.set()

    def _on_disconnect(
        self, client: paho.Client, userdata: Any, flags: Any, reason: ReasonCode, props: Any
    ) -> None:
        self._connected.clear()
        self._subscribed.clear()
        with self._lock:
            self._backends.clear()
        if not self._closing:
            log.warning("lost the broker (%s); reconnecting", reason)

    def _on_message(self, client: paho.Client, userdata: Any, msg: paho.MQTTMessage) -> None:
        if msg.topic == self._resp_topic:
            try:
                resp = mqtt.decode_response(msg.payload)
            except mqtt.SchemaError as exc:
                log.warning("dropped a malformed response: %s", exc)
                return
            with self._lock:
                slot = self._slots.get(resp.id)
            if slot is None:
                log.info("dropped a response nobody waits for (id %s)", resp.id)
                return
            slot.response = resp
            slot.event.set()
            return
        parts = msg.topic.split("/")
        if len(parts) == 5 and parts[2] == "backend" and parts[4] == "status":
            try:
                up = mqtt.decode_status(msg.payload)
            except mqtt.SchemaError as exc:
                log.warning("bad backend status on %s: %s", msg.topic, exc)
                up = False
            with self._lock:
                came_up = up and not self._backends.get(parts[3])
                self._backends[parts[3]] = up
                waiting = [slot.payload for slot in self._slots.values()] if came_up else []
            log.info("backend %s is %s", parts[3], "online" if up else "offline")
            # A request in flight when a backend came (back) up may have gone to the one
            # that died: send it again now instead of waiting out its deadline. Same id
            # and idempotency key, so the backend answers it once and a late second
            # answer is dropped here.
            for payload in waiting:
                client.publish(self._req_topic, payload, qos=1)
            if waiting:
                log.info("backend %s up: %d request(s) in flight sent again", parts[3],
                         len(waiting))
            if up and self.on_backend_up is not None:
                self.on_backend_up()
