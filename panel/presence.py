"""Terminals' presence for the terminals page: the agents' retained status messages.

Why the panel subscribes itself rather than reading something the backend records: the
broker already keeps each agent's last word (`loyalty/v1/terminal/{tid}/status`, retained,
and the agent's last will says "offline" when it dies), so a subscriber learns every
terminal's state the moment it connects and every change as it happens; nothing needs
writing to the database. The panel logs in with the backend's broker account, read from
the backend's configuration (`[panel] backend_config`, its `[mqtt]` table), which the
broker's access list lets read `loyalty/v1/terminal/+/status` (docs/mqtt.md) and nothing
the panel publishes: it publishes nothing, and has no last will.

The status message carries `status` and `at` only, not the agent's journal depth: the
page says so instead of guessing (the agent's own metrics endpoint has the depth).
"""

from __future__ import annotations

import json
import logging
import secrets
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from protocols import mqtt as schema
from protocols.address import parse_host_port
from protocols.mqtt_client import new_client

log = logging.getLogger("panel.presence")
STATUS_FILTER = f"{schema.PREFIX}/terminal/+/status"


@dataclass(frozen=True, slots=True)
class Presence:
    online: bool
    #: when the agent said it (the message's `at`), or None if it did not say
    said_at: datetime | None
    #: when the panel received it (a retained message: when the panel subscribed)
    received_at: datetime


class PresenceWatcher:
    """Keeps the latest presence of every terminal, from a paho client's own thread."""

    def __init__(self, broker: str, *, username: str | None = None,
                 password: str | None = None, ca_file: str | None = None) -> None:
        self.host, self.port = parse_host_port(broker)
        self._client = new_client(f"loyalty-panel-{secrets.token_hex(4)}", status_topic=None,
                                  username=username, password=password, ca_file=ca_file)
        self._client.on_connect = self._on_connect
        self._client.on_message = self._on_message
        self._lock = threading.Lock()
        self._seen: dict[str, Presence] = {}
        self.connected = threading.Event()
        self.broker = broker

    def start(self) -> PresenceWatcher:
        self._client.connect_async(self.host, self.port, keepalive=30)
        self._client.loop_start()
        return self

    def stop(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()

    def _on_connect(self, client: Any, userdata: Any, flags: Any, reason: Any,
                    properties: Any = None) -> None:
        if getattr(reason, "is_failure", False):
            log.warning("presence: the broker refused the panel: %s", reason)
            return
        client.subscribe(STATUS_FILTER, qos=1)
        self.connected.set()

    def _on_message(self, client: Any, userdata: Any, msg: Any) -> None:
        try:
            tid = schema.terminal_of_topic(msg.topic)
            online = schema.decode_status(msg.payload)
            said = None
            if msg.payload:
                at = json.loads(msg.payload).get("at")
                said = schema.parse_iso(at) if isinstance(at, str) else None
        except (schema.SchemaError, ValueError) as exc:
            log.warning("presence: bad status on %s: %s", msg.topic, exc)
            return
        with self._lock:
            self._seen[tid] = Presence(online, said, datetime.now(UTC))

    def get(self, terminal_id: str) -> Presence | None:
        with self._lock:
            return self._seen.get(terminal_id)

    def all(self) -> dict[str, Presence]:
        with self._lock:
            return dict(self._seen)
