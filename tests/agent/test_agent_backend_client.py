"""The agent's MQTT client on a real Mosquitto: a request lost in a backend that died is
sent again the moment a backend comes up (issue 10.1: the forwarder no longer waits out
its 5 s timeout while the credit's advice is stuck)."""

from __future__ import annotations

import threading
import time
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from agent.backend_client import BackendClient, BrokerSettings
from demo.mosquitto import Mosquitto
from protocols import mqtt

TID = "T0000001"
MID = "M00000000000001"


class FakeBackend:
    """Receives requests; answers only once `answering` is set."""

    def __init__(self, broker: Mosquitto) -> None:
        self.seen: list[mqtt.Request] = []
        self.answering = False
        self.cond = threading.Condition()
        self.client = paho.Client(CallbackAPIVersion.VERSION2, protocol=paho.MQTTv5)
        self.client.on_message = self._on_message
        subscribed = threading.Event()
        self.client.on_subscribe = lambda *a: subscribed.set()
        host, port = broker.address.rsplit(":", 1)
        self.client.connect(host, int(port))
        self.client.loop_start()
        self.client.subscribe(mqtt.request_topic(TID), qos=1)
        assert subscribed.wait(10)

    def _on_message(self, client: paho.Client, userdata: Any, msg: paho.MQTTMessage) -> None:
        req = mqtt.decode_request(msg.payload)
        with self.cond:
            self.seen.append(req)
            self.cond.notify_all()
        if self.answering:
            resp = mqtt.Response(req.type, req.id, req.key, "00", {"released": 0})
            client.publish(mqtt.response_topic(TID), resp.to_json(), qos=1)

    def announce(self, instance: str) -> None:
        self.client.publish(mqtt.backend_status_topic(instance), mqtt.encode_status(True),
                            qos=1, retain=True).wait_for_publish(5)

    def wait_seen(self, n: int) -> None:
        with self.cond:
            assert self.cond.wait_for(lambda: len(self.seen) >= n, 10), self.seen

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def test_agent_client_resends_in_flight_requests_when_a_backend_comes_up(
    broker: Mosquitto,
) -> None:
    backend = FakeBackend(broker)
    client = BackendClient(BrokerSettings("127.0.0.1", int(broker.address.rsplit(":", 1)[1])),
                           TID, MID)
    up = threading.Event()
    client.on_backend_up = up.set
    client.start()
    try:
        backend.announce("a")
        assert up.wait(10) and client.online()
        result: list[mqtt.Response | None] = []
        body = {"inquiry_key": f"{TID}:0100:000001:1123194000", "quote_id": None,
                "reason": "unanswered"}
        asked = time.monotonic()
        worker = threading.Thread(target=lambda: result.append(client.request(
            "release", f"{TID}:release:000001:1123194000", body, asked + 30)))
        worker.start()
        backend.wait_seen(1)  # delivered to backend "a", which never answers (it died)
        backend.answering = True
        backend.announce("b")  # another backend comes up
        worker.join(30)
        # answered before its own deadline: only the copy sent on "b"'s arrival was
        assert result and result[0] is not None and result[0].code == "00"
        first, second = backend.seen[0], backend.seen[1]
        assert (first.id, first.key) == (second.id, second.key)  # the same request again
    finally:
        client.stop()
        backend.close()
