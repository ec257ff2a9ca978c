"""Broker security: password + ACL keep each terminal on its own topics; TLS with a CA file."""

from __future__ import annotations

import datetime as dt
import ipaddress
import uuid
from collections.abc import Iterator
from pathlib import Path

import paho.mqtt.client as paho
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from demo.mosquitto import Mosquitto
from protocols import mqtt
from tests.agent.agent_terminal import (
    TID,
    Listener,
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


@pytest.fixture
def secure_broker(tmp_path: Path) -> Iterator[Mosquitto]:
    b = Mosquitto(tmp_path / "broker", users=USERS, acl=ACL).start()
    try:
        yield b
    finally:
        b.stop()


def answer_requests(port: int) -> Listener:
    """A stand-in backend (with the backend's credentials) that enrolls everyone."""
    backend = Listener(port, [mqtt.REQUEST_FILTER], "backend", USERS["backend"])

    def on_message(cl: paho.Client, u: object, m: paho.MQTTMessage) -> None:
        backend.got.append((m.topic, m.payload))
        try:
            req = mqtt.decode_request(m.payload)
        except mqtt.SchemaError:
            return  # garbage that got through is in `got`, for the test to see
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


def test_one_terminal_can_neither_read_nor_answer_another(
    tmp_path: Path, secure_broker: Mosquitto, term: Terminal
) -> None:
    port = secure_broker.port
    backend = answer_requests(port)
    spy = Listener(port, [f"loyalty/v1/terminal/{TID}/#", mqtt.REQUEST_FILTER,
                           "loyalty/v1/terminal/#"], OTHER, USERS[OTHER])
    agent = start_agent(tmp_path, secure_broker.address, term.path,
                        "--broker-username", TID, "--broker-password", USERS[TID])
    try:
        wait_for(lambda: status(term, 1)["ST"] == "ON", timeout=20)
        assert enroll(term, 2)["39"] == "00"
        assert any(t == mqtt.request_topic(TID) for t, _ in backend.got)
        # The other terminal's credentials cannot answer for the backend: a forged response
        # never reaches T0000001 (and they see none of its traffic: checked at the end).
        watcher = Listener(port, [mqtt.response_topic(TID)], "backend", USERS["backend"])
        forged = mqtt.Response("enroll", "x" * 32, "k", "00",
                               {"member_code": "EVIL", "new": True, "balance": 9})
        # Each publish is acknowledged (QoS 1) only after the broker has routed or refused it.
        spy.client.publish(mqtt.response_topic(TID), forged.to_json(), qos=1).wait_for_publish(5)
        spy.client.publish(mqtt.request_topic(TID), b"{}", qos=1).wait_for_publish(5)
        # A genuine round trip after them: once its response is seen, anything the broker
        # had let through before it would have been delivered first.
        assert enroll(term, 3)["39"] == "00"
        wait_for(lambda: watcher.got, timeout=10)
        assert [mqtt.decode_response(p).body["member_code"] for _, p in watcher.got] == ["M1"]
        assert not any(p == b"{}" for _, p in backend.got)
        assert sum(t == mqtt.request_topic(TID) for t, _ in backend.got) == 2
        watcher.close()
        # Not even the retained status: once the spy's own topic comes through, everything
        # the broker routed to it before is in `got`.
        probe = f"loyalty/v1/terminal/{OTHER}/probe"
        spy.client.publish(probe, b"probe", qos=1).wait_for_publish(5)
        wait_for(lambda: spy.got, timeout=10)
        assert {t for t, _ in spy.got} == {probe}
    finally:
        stop(agent)
        spy.close()
        backend.close()


def test_agent_with_another_terminals_login_gets_nothing(
    tmp_path: Path, secure_broker: Mosquitto, term: Terminal
) -> None:
    backend = answer_requests(secure_broker.port)
    agent = start_agent(tmp_path, secure_broker.address, term.path,
                        "--broker-username", OTHER, "--broker-password", USERS[OTHER])
    try:
        # Connected: it reads the backend's presence (allowed to every login) ...
        wait_for(lambda: status(term, 1)["ST"] == "ON", timeout=20)
        # ... but its request on T0000001's topic is refused by the broker.
        assert enroll(term, 2)["39"] == "91"
        # A request on that topic with T0000001's own login, after the refused one, reaches
        # the backend: the refused one would have been delivered before it.
        rightful = Listener(secure_broker.port, [mqtt.response_topic(TID)], TID, USERS[TID])
        try:
            key = mqtt.idempotency_key(TID, "0100", "000099", "0101120000")
            req = mqtt.Request("enroll", uuid.uuid4().hex, key, TID, "M00000000000001",
                               {"phone": "09121234567"})
            rightful.client.publish(mqtt.request_topic(TID), req.to_json(),
                                    qos=1).wait_for_publish(5)
            wait_for(lambda: rightful.got, timeout=10)  # the backend has answered it
        finally:
            rightful.close()
        assert [mqtt.decode_request(p).id for _, p in backend.got] == [req.id]
    finally:
        stop(agent)
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


def test_tls_with_a_ca_file(tmp_path: Path, term: Terminal) -> None:
    certs = _certs(tmp_path)
    broker = Mosquitto(tmp_path / "broker", tls=certs).start()
    backend = answer_requests(broker.port)  # the backend stand-in on the plain port
    agent = start_agent(tmp_path, f"127.0.0.1:{broker.tls_port}", term.path,
                        "--broker-ca-file", str(certs[0]))
    try:
        wait_for(lambda: status(term, 1)["ST"] == "ON", timeout=20)
        assert enroll(term, 2)["39"] == "00"
    finally:
        stop(agent)
        backend.close()
        broker.stop()
