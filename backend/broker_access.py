"""Who may use the broker: terminals' and the backend's logins, while the broker runs.

Connects as the dynamic security plugin's administrator and sends the commands of
backend/dynsec.py on `$CONTROL/dynamic-security/v1`, waiting for each answer. A
change made of several commands is taken back when one of them is refused, so a
refused change leaves the broker as it was.
"""

from __future__ import annotations

import threading
import uuid
from types import TracebackType
from typing import Any

import paho.mqtt.client as paho

from backend import dynsec
from protocols.address import parse_host_port
from protocols.mqtt_client import new_client

#: The plugin answers in microseconds; a broker that stays silent this long has none.
DEFAULT_TIMEOUT = 5.0


class BrokerAccessError(RuntimeError):
    """The broker cannot be administered: not reachable, admin refused, no plugin."""


class BrokerAccess:
    """`with BrokerAccess(broker, admin, password) as access: access.add_terminal(tid)`."""

    def __init__(
        self,
        broker: str,
        username: str,
        password: str,
        *,
        ca_file: str | None = None,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> None:
        try:
            self.host, self.port = parse_host_port(broker)
        except ValueError as exc:
            raise ValueError(f"broker: {exc}") from None
        self.username = username
        self.timeout = timeout
        self._lock = threading.Lock()
        self._waiting: dict[str, dynsec.Answer | None] = {}
        self._answered = threading.Condition(self._lock)
        self._connack = threading.Event()
        self._connack_reason: Any = None
        self._suback = threading.Event()
        self._suback_failed = False
        self._lost: Any = None
        client = new_client(
            f"loyalty-broker-admin-{uuid.uuid4().hex[:8]}",
            status_topic=None,
            username=username,
            password=password,
            ca_file=ca_file,
        )
        client.on_connect = self._on_connect
        client.on_subscribe = self._on_subscribe
        client.on_message = self._on_message
        client.on_disconnect = self._on_disconnect
        self._client = client
        self._open = False

    # --- connection ----------------------------------------------------------------
    def open(self) -> BrokerAccess:
        where = f"{self.host}:{self.port}"
        try:
            self._client.connect(self.host, self.port, keepalive=30)
        except OSError as exc:
            raise BrokerAccessError(f"cannot reach the broker at {where}: {exc}") from None
        self._client.loop_start()
        self._open = True
        try:
            if not self._connack.wait(self.timeout):
                raise BrokerAccessError(f"the broker at {where} did not answer the login")
            reason = self._connack_reason
            if reason.is_failure:
                raise BrokerAccessError(
                    f"the broker at {where} refused the administrator {self.username!r}: "
                    f"{reason} (wrong user name or password, or no dynamic security plugin)"
                )
            self._client.subscribe(dynsec.RESPONSE_TOPIC, qos=1)
            if not self._suback.wait(self.timeout):
                raise BrokerAccessError(f"the broker at {where} did not acknowledge a subscribe")
            if self._suback_failed:
                raise BrokerAccessError(
                    f"{self.username!r} may not read {dynsec.RESPONSE_TOPIC}: "
                    "not an administrator of the dynamic security plugin"
                )
        except BaseException:
            self.close()
            raise
        return self

    def close(self) -> None:
        if self._open:
            self._open = False
            self._client.disconnect()
            self._client.loop_stop()

    def __enter__(self) -> BrokerAccess:
        return self.open()

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # --- commands ------------------------------------------------------------------
    def run(self, commands: list[dynsec.Command]) -> list[dynsec.Answer]:
        """Send `commands` at once; their answers, in order. Refusals are in the answers."""
        payload, tags = dynsec.encode_commands(commands, uuid.uuid4().hex)
        with self._lock:
            for tag in tags:
                self._waiting[tag] = None
        try:
            self._client.publish(dynsec.CONTROL_TOPIC, payload, qos=1)
            with self._answered:
                done = self._answered.wait_for(
                    lambda: self._lost is not None
                    or all(self._waiting[t] is not None for t in tags),
                    self.timeout,
                )
                if self._lost is not None:
                    raise BrokerAccessError(f"lost the broker: {self._lost}")
                if not done:
                    raise BrokerAccessError(
                        f"no answer on {dynsec.RESPONSE_TOPIC} in {self.timeout:g} s: the broker "
                        "does not load the dynamic security plugin "
                        "(plugin .../mosquitto_dynamic_security.so in mosquitto.conf)"
                    )
                answers = [self._waiting[t] for t in tags]
        finally:
            with self._lock:
                for tag in tags:
                    self._waiting.pop(tag, None)
        return [a for a in answers if a is not None]

    def apply(self, commands: list[dynsec.Command]) -> list[dynsec.Answer]:
        """All of `commands`, or none: on a refusal, what they created is deleted again."""
        answers = self.run(commands)
        failures = [(a.command, a.error) for a in answers if a.error]
        if failures:
            undo = [
                u
                for cmd, a in zip(commands, answers, strict=True)
                if not a.error and (u := dynsec.undo(cmd)) is not None
            ]
            if undo:
                self.run(list(reversed(undo)))
            raise dynsec.DynsecError(failures)
        return answers

    # --- what the backend does ------------------------------------------------------
    def secure_defaults(self) -> None:
        """Refuse everything no role grants (a file made by `mosquitto_ctrl dynsec init`
        lets any client receive what it may subscribe to)."""
        self.apply(dynsec.set_default_access())

    def add_terminal(self, tid: str, password: str | None = None) -> str:
        """The terminal's login (user name = terminal id) and role; its password."""
        password = password or dynsec.new_password()
        self.apply(dynsec.create_terminal(tid, password))
        return password

    def remove_terminal(self, tid: str) -> None:
        self.apply(dynsec.delete_terminal(tid))

    def disable_terminal(self, tid: str) -> None:
        """Its logins are refused from now on and its open connection is closed."""
        self.apply(dynsec.disable_client(tid))

    def enable_terminal(self, tid: str) -> None:
        self.apply(dynsec.enable_client(tid))

    def set_password(self, username: str, password: str | None = None) -> str:
        """A new password for an existing login (a terminal's or the backend's)."""
        password = password or dynsec.new_password()
        self.apply(dynsec.set_client_password(username, password))
        return password

    def add_backend(self, username: str, password: str | None = None) -> str:
        password = password or dynsec.new_password()
        self.apply(dynsec.create_backend(username, password))
        return password

    def clients(self) -> list[dynsec.ClientInfo]:
        (answer,) = self.apply(dynsec.list_clients())
        return dynsec.clients_of(answer)

    def client(self, username: str) -> dynsec.ClientInfo:
        (answer,) = self.apply(dynsec.get_client(username))
        return dynsec.client_of(answer)

    # --- paho callbacks (paho's network thread) ------------------------------------
    def _on_connect(
        self, client: paho.Client, userdata: Any, flags: Any, reason: Any, props: Any
    ) -> None:
        self._connack_reason = reason
        self._connack.set()

    def _on_subscribe(
        self, client: paho.Client, userdata: Any, mid: int, reasons: list, props: Any
    ) -> None:
        self._suback_failed = any(getattr(r, "is_failure", False) for r in reasons)
        self._suback.set()

    def _on_message(self, client: paho.Client, userdata: Any, msg: paho.MQTTMessage) -> None:
        answers = dynsec.decode_responses(msg.payload)
        with self._answered:
            for a in answers:
                if a.correlation in self._waiting:
                    self._waiting[a.correlation] = a
            self._answered.notify_all()

    def _on_disconnect(
        self, client: paho.Client, userdata: Any, flags: Any, reason: Any, props: Any
    ) -> None:
        if not self._open:
            return
        with self._answered:
            self._lost = reason
            self._answered.notify_all()
        if not self._connack.is_set():
            self._connack_reason = reason
            self._connack.set()
