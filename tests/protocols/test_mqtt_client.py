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


def test_batching_client_carries_bursts_both_ways(broker: Mosquitto) -> None:
    """The backend's client against a plain paho one: a burst of QoS 1 requests in (read
    from few recv calls), a reply to each out (built by its own publish, one send per
    burst), every reply acknowledged by the broker and forgotten, nothing lost or doubled."""
    from protocols.mqtt_client import BatchingClient

    server = new_client("test-batching", status_topic=None, batched=True)
    assert isinstance(server, BatchingClient)
    server.max_inflight_messages_set(0)
    replies: list[Any] = []

    def answer(c: Any, u: Any, msg: Any) -> None:  # from paho's thread, as a reply would not be
        assert msg.qos == 1 and msg.properties is not None
        replies.append(c.publish(f"test/resp/{msg.payload.decode()}", msg.payload * 3, qos=1))

    server.on_message = answer
    assert _connected(server, broker.port).wait(10)
    server.subscribe("test/req/+", qos=1)
    got: queue.Queue[tuple[str, bytes, int]] = queue.Queue()
    peer = new_client("test-peer", status_topic=None)
    peer.on_message = lambda c, u, msg: got.put((msg.topic, msg.payload, msg.qos))
    assert _connected(peer, broker.port).wait(10)
    peer.subscribe("test/resp/+", qos=1)
    n = 500
    for i in range(n):
        peer.publish(f"test/req/{i}", str(i).encode(), qos=1)
    seen: dict[str, bytes] = {}
    try:
        while len(seen) < n:
            topic, payload, qos = got.get(timeout=20)
            assert qos == 1 and topic not in seen
            seen[topic] = payload
        assert seen == {f"test/resp/{i}": str(i).encode() * 3 for i in range(n)}
        for info in replies:
            info.wait_for_publish(timeout=10)  # the broker's PUBACK came back for each
        assert len(replies) == n and not server._out_messages
    finally:
        for c in (peer, server):
            c.disconnect()
            c.loop_stop()
