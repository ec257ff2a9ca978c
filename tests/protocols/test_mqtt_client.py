"""protocols.mqtt_client against a real Mosquitto: TCP_NODELAY on, `offline` as last will."""

from __future__ import annotations

import queue
import socket
import threading
from typing import Any

from demo.mosquitto import Mosquitto
from protocols import mqtt
from protocols.mqtt_client import new_client

TOPIC = mqtt.terminal_status_topic("T0000001")


def _connected(client: Any, port: int) -> threading.Event:
    up = threading.Event()
    client.on_connect = lambda c, u, f, reason, p: up.set() if not reason.is_failure else None
    client.connect("127.0.0.1", port, 15)
    client.loop_start()
    return up


def test_client_turns_nagle_off_and_leaves_offline_as_its_will(broker: Mosquitto) -> None:
    client = new_client("test-client", status_topic=TOPIC)
    assert _connected(client, broker.port).wait(10)
    sock = client.socket()
    assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
    # the client vanishes without DISCONNECT: the broker publishes the will, retained
    client.loop_stop()
    sock.shutdown(socket.SHUT_RDWR)
    sock.close()
    seen: queue.Queue[tuple[bytes, bool]] = queue.Queue()
    watcher = new_client("test-watcher", status_topic=mqtt.terminal_status_topic("T0000009"))
    watcher.on_message = lambda c, u, msg: seen.put((msg.payload, msg.retain))
    up = _connected(watcher, broker.port)
    assert up.wait(10)
    watcher.subscribe(TOPIC, qos=1)
    try:
        payload, _retained = seen.get(timeout=10)
        assert mqtt.decode_status(payload) is False
    finally:
        watcher.disconnect()
        watcher.loop_stop()
