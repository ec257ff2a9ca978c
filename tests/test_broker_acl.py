"""Broker access with the dynamic security plugin, through the real parts: a Mosquitto
with the plugin, logins made by backend/broker_access.py, the real backend process and
the agent's real BackendClient. Each terminal's login reaches only its own topics, the
backend's login serves them all, and a disabled terminal is shut out at once.

A forbidden publish is proved dropped by a permitted probe sent after it on the same
connection: the broker routes one connection's messages in order, so once the probe is
seen, anything let through before it would have been seen first.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from agent.backend_client import BackendClient, BrokerSettings
from backend.broker_access import BrokerAccess
from demo.mosquitto import Mosquitto, stop_process
from protocols import mqtt
from tests.backend.core_helpers import start_backend, wait_until

pytestmark = pytest.mark.slow

ADMIN = ("admin", "admin-password-for-tests")
T1, T2 = "T0000001", "T0000002"
MID = "M00000000000001"
BACKEND_USER = "loyalty-backend"


class Client:
    """A bare paho client that records what it receives and the broker's answers."""

    def __init__(self, port: int, user: str, password: str) -> None:
        self.got: list[tuple[str, bytes]] = []
        self.subacks: dict[int, list] = {}
        self.disconnects: list[paho.ReasonCode] = []
        self._changed = threading.Condition()
        self._connack: list[paho.ReasonCode] = []
        c = paho.Client(CallbackAPIVersion.VERSION2, protocol=paho.MQTTv5)
        c.username_pw_set(user, password)
        c.on_connect = lambda cl, u, f, rc, p: self._note(self._connack.append, rc)
        c.on_subscribe = lambda cl, u, mid, rcs, p: self._note(self.subacks.__setitem__, mid,
                                                               list(rcs))
        c.on_message = lambda cl, u, m: self._note(self.got.append, (m.topic, m.payload))
        c.on_disconnect = lambda cl, u, f, rc, p: self._note(self.disconnects.append, rc)
        c.reconnect_delay_set(60, 60)  # one connection per Client: a test sees every drop
        self.client = c
        c.connect("127.0.0.1", port)
        c.loop_start()
        self.connack = self.wait(lambda: self._connack and self._connack[0])

    def _note(self, fn: object, *args: object) -> None:
        with self._changed:
            fn(*args)  # type: ignore[operator]
            self._changed.notify_all()

    def wait(self, pred: object, timeout: float = 15.0) -> object:
        with self._changed:
            value = self._changed.wait_for(pred, timeout)  # type: ignore[arg-type]
        assert value, "timed out"
        return value

    def subscribe(self, topic: str) -> list:
        _, mid = self.client.subscribe(topic, qos=1)
        return self.wait(lambda: self.subacks.get(mid))  # type: ignore[return-value]

    def publish(self, topic: str, payload: bytes, retain: bool = False) -> None:
        self.client.publish(topic, payload, qos=1, retain=retain).wait_for_publish(10)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def enroll_request(tid: str, stan: int) -> mqtt.Request:
    key = mqtt.idempotency_key(tid, "0100", f"{stan:06d}", "1201120000")
    return mqtt.Request("enroll", uuid.uuid4().hex, key, tid, MID,
                        {"phone": f"0912{stan:07d}"})


def enroll(agent: BackendClient, stan: int) -> mqtt.Response | None:
    req = enroll_request(agent.terminal_id, stan)
    return agent.request("enroll", req.key, req.body, time.monotonic() + 15)


@pytest.fixture
def fleet(tmp_path: Path) -> Iterator[tuple[Mosquitto, dict[str, str], BrokerAccess]]:
    """A dynsec broker, logins for the backend, two terminals and a test auditor, and
    the real backend process logged in as the backend."""
    broker = Mosquitto(tmp_path / "broker", dynsec=ADMIN).start()
    access = BrokerAccess(broker.address, *ADMIN).open()
    backend = None
    try:
        logins = {T1: access.add_terminal(T1), T2: access.add_terminal(T2),
                  BACKEND_USER: access.add_backend(BACKEND_USER)}
        # The auditor sees every loyalty message the broker routes (a test-only role).
        logins["auditor"] = "auditor-password-0123"
        access.apply([
            {"command": "createRole", "rolename": "auditor", "acls": [
                {"acltype": "subscribeLiteral", "topic": "loyalty/#", "allow": True},
                {"acltype": "publishClientReceive", "topic": "loyalty/#", "allow": True}]},
            {"command": "createClient", "username": "auditor",
             "password": logins["auditor"], "roles": [{"rolename": "auditor"}]},
        ])
        cfg = tmp_path / "backend.toml"
        fd = os.open(cfg, os.O_WRONLY | os.O_CREAT, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(f'[mqtt]\nusername = "{BACKEND_USER}"\n'
                    f'password = "{logins[BACKEND_USER]}"\n')
        backend = start_backend(broker.address, tmp_path / "loyalty.db", "b1",
                                "--config", str(cfg))
        yield broker, logins, access
    finally:
        if backend is not None:
            assert stop_process(backend) == 0
        access.close()
        broker.stop()


def agent_for(broker: Mosquitto, tid: str, user: str, password: str) -> BackendClient:
    agent = BackendClient(BrokerSettings("127.0.0.1", broker.port, user, password), tid, MID)
    agent.start()
    return agent


def test_each_terminal_reaches_only_its_own_topics(fleet: tuple) -> None:
    broker, logins, _ = fleet
    auditor = Client(broker.port, "auditor", logins["auditor"])
    assert not auditor.subscribe("loyalty/#")[0].is_failure
    one = agent_for(broker, T1, T1, logins[T1])
    two = agent_for(broker, T2, T2, logins[T2])
    impostor = Client(broker.port, T2, logins[T2])  # the second terminal's login
    try:
        wait_until(lambda: one.online() and two.online())
        # the backend's login serves every terminal
        assert enroll(one, 1).code == "00"
        assert enroll(two, 2).code == "00"

        # T2's login may not read T1's responses, nor anyone's, nor everything
        for topic in (mqtt.response_topic(T1), "loyalty/v1/terminal/+/resp", "loyalty/#",
                      mqtt.request_topic(T1), mqtt.SHARED_REQUEST_FILTER):
            (reason,) = impostor.subscribe(topic)
            assert reason.is_failure, topic
        assert not impostor.subscribe(mqtt.response_topic(T2))[0].is_failure
        assert enroll(one, 3).code == "00"  # answered on T1's topic, after those refusals

        # T2's login may not ask for T1, answer for the backend, or claim to be one
        forged_request = enroll_request(T1, 4).to_json()
        forged_answer = mqtt.Response("enroll", "f" * 32, "k", "00",
                                      {"member_code": "EVIL", "new": True, "balance": 9})
        impostor.publish(mqtt.request_topic(T1), forged_request)
        impostor.publish(mqtt.response_topic(T1), forged_answer.to_json())
        impostor.publish(mqtt.backend_status_topic("evil"), mqtt.encode_status(True),
                         retain=True)
        impostor.publish(mqtt.terminal_status_topic(T1), mqtt.encode_status(False))
        # the probe: T2's own request, on the same connection, after all of them
        probe = enroll_request(T2, 5)
        impostor.publish(mqtt.request_topic(T2), probe.to_json())
        impostor.wait(lambda: impostor.got)  # the backend has answered the probe

        answers = [mqtt.decode_response(p) for _, p in impostor.got]
        assert [(t, a.id) for (t, _), a in zip(impostor.got, answers, strict=True)] == [
            (mqtt.response_topic(T2), probe.id)]  # T1's answer (enroll 3) never came here
        assert answers[0].code == "00"
        auditor.wait(lambda: (mqtt.request_topic(T2), probe.to_json()) in auditor.got)
        seen = {t for t, _ in auditor.got}
        assert mqtt.backend_status_topic("evil") not in seen
        assert all(p != forged_request for _, p in auditor.got)  # the backend never got it
        assert all(b"EVIL" not in p for _, p in auditor.got)
        # T1 saw only its own two answers (the client drops unexpected ones; the auditor
        # saw every response routed on T1's topic)
        ones = [mqtt.decode_response(p).body["member_code"] for t, p in auditor.got
                if t == mqtt.response_topic(T1)]
        assert len(ones) == 2 and "EVIL" not in ones
    finally:
        impostor.close()
        one.stop()
        two.stop()
        auditor.close()


def test_an_agent_with_another_terminals_login_is_refused(fleet: tuple) -> None:
    """The agent configured as T1 but logged in as T2: its requests go nowhere."""
    broker, logins, _ = fleet
    auditor = Client(broker.port, "auditor", logins["auditor"])
    assert not auditor.subscribe("loyalty/#")[0].is_failure
    wrong = agent_for(broker, T1, T2, logins[T2])
    try:
        wait_until(wrong.online)  # backend presence is readable by every terminal
        req = enroll_request(T1, 10)
        assert wrong.request("enroll", req.key, req.body, time.monotonic()) is None
        probe = enroll_request(T2, 11)
        wrong._client.publish(mqtt.request_topic(T2), probe.to_json(), qos=1)  # same link
        auditor.wait(lambda: any(p == probe.to_json() for _, p in auditor.got))
        assert not any(t == mqtt.request_topic(T1) for t, _ in auditor.got)
    finally:
        wrong.stop()
        auditor.close()


def test_disabling_a_terminal_shuts_it_out_at_once(
    fleet: tuple, caplog: pytest.LogCaptureFixture
) -> None:
    broker, logins, access = fleet
    caplog.set_level(logging.WARNING, logger="agent.backend_client")
    one = agent_for(broker, T1, T1, logins[T1])
    two = agent_for(broker, T2, T2, logins[T2])
    try:
        wait_until(lambda: one.online() and two.online())
        assert enroll(one, 20).code == "00"
        access.disable_terminal(T1)
        # its open connection is closed by the broker ...
        wait_until(lambda: not one.connected())
        wait_until(lambda: "lost the broker (Administrative action)" in caplog.text)
        # ... and every new login refused, while the other terminal carries on
        refused = Client(broker.port, T1, logins[T1])
        assert str(refused.connack) == "Not authorized"
        refused.close()
        assert enroll(two, 21).code == "00"
        assert not one.connected()
        # enabled again, the agent's own reconnection gets back in
        access.enable_terminal(T1)
        wait_until(one.online)
        assert enroll(one, 22).code == "00"
    finally:
        one.stop()
        two.stop()
