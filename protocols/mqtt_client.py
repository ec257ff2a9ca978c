"""The paho-mqtt client as the agent and the backend both set it up.

paho 2.x (callback API version 2), MQTT v5, credentials and TLS when given, the retained
`offline` presence as last will, and TCP_NODELAY on every socket it opens: Nagle's
algorithm would otherwise hold each small request or reply back 40-90 ms on loopback.
This is the only module of `protocols` that touches the network library; `mqtt` stays pure.
"""

from __future__ import annotations

import logging
import socket
import ssl
import threading
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from protocols import mqtt

log = logging.getLogger(__name__)


def new_client(
    client_id: str,
    *,
    status_topic: str | None,
    username: str | None = None,
    password: str | None = None,
    ca_file: str | None = None,
    reconnect: tuple[float, float] = (1.0, 5.0),
) -> paho.Client:
    """A client not yet connected; `status_topic` gets `offline` (retained) as last will
    (None: no will, for a client with no presence, such as the broker administrator).
    `reconnect` is paho's (min, max) delay between reconnection attempts."""
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id=client_id,
                         protocol=paho.MQTTv5)
    if username:
        client.username_pw_set(username, password)
    if ca_file:
        client.tls_set(ca_certs=ca_file, tls_version=ssl.PROTOCOL_TLS_CLIENT)
    if status_topic is not None:
        client.will_set(status_topic, mqtt.encode_status(False), qos=1, retain=True)
    low, high = reconnect
    client.reconnect_delay_set(min_delay=low, max_delay=high)
    client.on_socket_open = _nodelay
    return client


def _nodelay(client: paho.Client, userdata: Any, sock: Any) -> None:
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    except (OSError, AttributeError) as exc:  # a websocket or a unix socket has no Nagle
        log.debug("TCP_NODELAY not set: %s", exc)


def probe_broker(
    host: str,
    port: int,
    *,
    client_id: str,
    username: str | None = None,
    password: str | None = None,
    ca_file: str | None = None,
    timeout: float = 5.0,
) -> str | None:
    """None when the broker takes these credentials within `timeout` s and a backend's
    retained presence says online; otherwise the reason, for a health check.

    Not `new_client`: its last will would announce an `offline` whenever this probe's
    connection dropped uncleanly. No will, no presence, publishes nothing.
    """
    connected, seen_online, refused = threading.Event(), threading.Event(), []
    client = paho.Client(CallbackAPIVersion.VERSION2, protocol=paho.MQTTv5, client_id=client_id)
    if username is not None:
        client.username_pw_set(username, password)
    if ca_file:
        client.tls_set(ca_certs=ca_file, tls_version=ssl.PROTOCOL_TLS_CLIENT)

    def on_connect(c: Any, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        if reason.is_failure:
            refused.append(str(reason))
        else:
            c.subscribe(mqtt.BACKEND_STATUS_FILTER, qos=1)
        connected.set()

    def on_message(c: Any, userdata: Any, msg: Any) -> None:
        try:
            if mqtt.decode_status(msg.payload):
                seen_online.set()
        except mqtt.SchemaError:
            pass

    client.on_connect, client.on_message = on_connect, on_message
    where = f"{host}:{port}"
    try:
        client.connect(host, port, keepalive=15)
    except (OSError, ValueError) as exc:
        return f"broker {where}: cannot connect: {exc}"
    client.loop_start()
    try:
        if not connected.wait(timeout):
            return f"broker {where}: no answer in {timeout} s"
        if refused:
            return f"broker {where}: refused the connection: {refused[0]}"
        if not seen_online.wait(timeout):
            return f"backend: no backend online on broker {where}"
        return None
    finally:
        client.disconnect()
        client.loop_stop()
