"""Broker security: password + ACL keep each terminal on its own topics; TLS with a CA file."""

from __future__ import annotations

import datetime as dt
import ipaddress
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import paho.mqtt.client as paho
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from paho.mqtt.enums import CallbackAPIVersion

from demo.mosquitto import Mosquitto
from protocols import mqtt
from tests.agent.agent_terminal import (
    TID,
    Terminal,
    header,
    start_agent,
    status,
    stop,
    tlv,
    wait_for,
)

pytestmark = pytest.mark.slow

OTHER = "T0000002"
USERS = {TID: "pw-one", OTHER: "pw-two", "backend": "pw-backend"}
ACL = (
    "pattern readwrite loyalty/v1/terminal/%u/#\n"
    "pattern read loyalty/v1/backend/+/status\n"
    "\n"
    "user backend\n"
    "topic readwrite loyalty/v1/#\n"
)


class Listener:
    """A paho client that records every message it is allowed to see."""

    def __init__(self, port: int, user: str, password: str, topics: list[str]) -> None:
        self.got: list[tuple[str, bytes]] = []
        self.ready = threading.Event()
        c = paho.Client(CallbackAPIVersion.VERSION2, protocol=paho.MQTTv5)
        c.username_pw_set(user, password)
        c.on_connect = lambda cl, u, f, rc, p: cl.subscribe([(t, 1) for t in topics])
        c.on_subscribe = lambda *a: self.ready.set()
        c.on_message = lambda cl, u, m: self.got.append((m.topic, m.payload))
        c.connect("127.0.0.1", port)
        c.loop_start()
        self.client = c
        assert self.ready.wait(10)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def secure_broker(tmp_path: Path) -> Iterator[Mosquitto]:
    b = Mosquitto(tmp_path / "broker", users=USERS, acl=ACL).start()
    try:
        yield b
    finally:
        b.stop()


def answer_requests(port: int) -> Listener:
    """A stand-in backend (with the backend's credentials) that enrolls everyone."""
    backend = Listener(port, "backend", USERS["backend"], [mqtt.REQUEST_FILTER])

    def on_message(cl: paho.Client, u: object, m: paho.MQTTMessage) -> None:
        backend.got.append((m.topic, m.payload))
        req = mqtt.decode_request(m.payload)
        body = {"member_code": "M1", "new": True, "balance": 0}
        resp = mqtt.Response(req.type, req.id, req.key, "00", body)
        cl.publish(mqtt.response_topic(mqtt.terminal_of_topic(m.topic)), resp.to_json(), qos=1)

    backend.client.on_message = on_message
    backend.client.publish(mqtt.backend_status_topic("b1"), mqtt.encode_status(True), qos=1,
                           retain=True).wait_for_publish(5)
    return backend


def enroll(term: Terminal, stan: int) -> dict:
    return term.ask({"t": "0100", "3": "900000", **header(stan),
                     "48": tlv({"PN": "09121234567"})}, timeout=8)


def test_one_terminal_can_neither_read_nor_answer_another(tmp_path: Path,
                                                           secure_broker: Mosquitto) -> None:
    port = secure_broker.port
    backend = answer_requests(port)
    spy = Listener(port, OTHER, USERS[OTHER], [f"loyalty/v1/terminal/{TID}/#",
                                                mqtt.REQUEST_FILTER, "loyalty/v1/terminal/#"])
    term = Terminal()
    agent = start_agent(tmp_path, secure_broker.address, term.path,
                        "--broker-username", TID, "--broker-password", USERS[TID])
    try:
        wait_for(lambda: status(term, 1)["ST"] == "ON", timeout=20)
        assert enroll(term, 2)["39"] == "00"
        assert any(t == mqtt.request_topic(TID) for t, _ in backend.got)
        # The other terminal's credentials saw none of it (not even the retained status) ...
        assert spy.got == []
        # ... and cannot answer for the backend: a forged response never reaches T0000001.
        watcher = Listener(port, "backend", USERS["backend"], [mqtt.response_topic(TID)])
        forged = mqtt.Response("enroll", "x" * 32, "k", "00",
                               {"member_code": "EVIL", "new": True, "balance": 9})
        spy.client.publish(mqtt.response_topic(TID), forged.to_json(), qos=1).wait_for_publish(5)
        spy.client.publish(mqtt.request_topic(TID), b"{}", qos=1).wait_for_publish(5)
        time.sleep(0.5)
        assert watcher.got == []
        assert not any(p == b"{}" for _, p in backend.got)
        watcher.close()
    finally:
        stop(agent)
        term.close()
        spy.close()
        backend.close()


def test_agent_with_another_terminals_login_gets_nothing(tmp_path: Path,
                                                         secure_broker: Mosquitto) -> None:
    backend = answer_requests(secure_broker.port)
    term = Terminal()
    agent = start_agent(tmp_path, secure_broker.address, term.path,
                        "--broker-username", OTHER, "--broker-password", USERS[OTHER])
    try:
        time.sleep(1.0)
        assert enroll(term, 1)["39"] == "91"  # its requests go nowhere
        assert not any(t == mqtt.request_topic(TID) for t, _ in backend.got)
    finally:
        stop(agent)
        term.close()
        backend.close()


def _certs(folder: Path) -> tuple[Path, Path, Path]:
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test CA")])
    ca = (
        x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
        .public_key(ca_key.public_key()).serial_number(1)
        .not_valid_before(now - dt.timedelta(hours=1)).not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
        .issuer_name(ca_name).public_key(key.public_key()).serial_number(2)
        .not_valid_before(now - dt.timedelta(hours=1)).not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(
            ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    paths = folder / "ca.pem", folder / "server.pem", folder / "server.key"
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.TraditionalOpenSSL,
                                           serialization.NoEncryption()))
    return paths


def test_tls_with_a_ca_file(tmp_path: Path) -> None:
    certs = _certs(tmp_path)
    broker = Mosquitto(tmp_path / "broker", tls=certs).start()
    backend = answer_requests(broker.port)  # the backend stand-in on the plain port
    term = Terminal()
    agent = start_agent(tmp_path, f"127.0.0.1:{broker.tls_port}", term.path,
                        "--broker-ca-file", str(certs[0]))
    try:
        wait_for(lambda: status(term, 1)["ST"] == "ON", timeout=20)
        assert enroll(term, 2)["39"] == "00"
    finally:
        stop(agent)
        term.close()
        backend.close()
        broker.stop()
