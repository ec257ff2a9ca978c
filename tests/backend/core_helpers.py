"""Helpers for the backend core's tests: requests, a fake clock, an MQTT test agent, the
SQL a call runs and its query plan."""

from __future__ import annotations

import itertools
import os
import queue
import select
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from demo.mosquitto import stop_process  # noqa: F401  (the tests import it from here)
from protocols import mqtt as schema
from protocols.identity import luhn_check_digit
from protocols.mqtt import Request, Response

MTI = {"enroll": "0100", "inquiry": "0100", "advice": "0220", "reversal": "0420"}
_stans = itertools.count(1)
ROOT = Path(__file__).resolve().parents[2]


class FakeClock:
    """A clock the test moves by hand."""

    def __init__(self, start: datetime | None = None) -> None:
        self.now = start or datetime(2026, 11, 23, 12, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def jump(self, **delta: float) -> None:
        self.now += timedelta(**delta)

    def iso(self) -> str:
        return self.now.isoformat().replace("+00:00", "Z")


def phone(n: int) -> str:
    return f"0912{n:07d}"


def card(n: int) -> str:
    partial = f"627412{n:09d}"
    return partial + luhn_check_digit(partial)


def request(
    type: str,
    body: dict[str, Any],
    *,
    tid: str = "T0000001",
    stan: int | None = None,
    sent: str = "1123120000",
) -> Request:
    s = next(_stans) if stan is None else stan
    return Request(
        type=type,
        id=f"{type}-{s}",
        key=schema.idempotency_key(tid, MTI[type], f"{s:06d}", sent),
        terminal_id=tid,
        merchant_id="M00000000000001",
        body=body,
    )


def advice(
    *,
    amount: int,
    gross: int | None = None,
    occurred_at: str,
    bank_code: str = "00",
    quote_id: str | None = None,
    phone: str | None = None,
    card: str | None = None,
    tid: str = "T0000001",
    stan: int | None = None,
) -> Request:
    s = next(_stans) if stan is None else stan
    body: dict[str, Any] = {
        "stan": f"{s:06d}",
        "transmitted_at": "1123120000",
        "local_date": "1123",
        "local_time": "153000",
        "occurred_at": occurred_at,
        "amount": amount,
        "gross": gross if gross is not None else amount,
        "rrn": f"{s:012d}",
        "auth_code": "A1B2C3",
        "bank_code": bank_code,
    }
    for name, value in (("quote_id", quote_id), ("phone", phone), ("card", card)):
        if value is not None:
            body[name] = value
    return request("advice", body, tid=tid, stan=s)


def reversal(original: Request, *, occurred_at: str, tid: str = "T0000001") -> Request:
    s = next(_stans)
    body = {
        "stan": original.body["stan"],
        "transmitted_at": "1123121000",
        "occurred_at": occurred_at,
        "amount": original.body["amount"],
        "rrn": original.body["rrn"],
        "original_key": original.key,
    }
    if original.body.get("quote_id"):
        body["quote_id"] = original.body["quote_id"]
    return request("reversal", body, tid=tid, stan=s)


def _nodelay(client: mqtt.Client, userdata: Any, sock: Any) -> None:
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class TestAgent:
    """Plays the agent's MQTT side: publishes requests, collects responses by id."""

    __test__ = False

    def __init__(
        self,
        address: str,
        tids: tuple[str, ...] = ("T0000001",),
        credentials: tuple[str, str] | None = None,
    ) -> None:
        host, port = address.rsplit(":", 1)
        self.responses: dict[str, list[Response]] = {}
        self.status: dict[str, bool] = {}
        self._cond = threading.Condition()
        self.raw: queue.Queue[bytes] = queue.Queue()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        self.client.on_socket_open = _nodelay
        self.client.on_message = self._on_message
        subscribed = threading.Event()
        self.client.on_subscribe = lambda *a: subscribed.set()
        if credentials:
            self.client.username_pw_set(*credentials)
        self.client.connect(host, int(port))
        self.client.loop_start()
        self.client.subscribe(
            [(schema.response_topic(t), 1) for t in tids] + [(schema.BACKEND_STATUS_FILTER, 1)]
        )
        assert subscribed.wait(10)

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        with self._cond:
            if msg.topic.startswith("loyalty/v1/backend/"):
                self.status[msg.topic.split("/")[3]] = schema.decode_status(msg.payload)
            else:
                self.raw.put(msg.payload)
                resp = schema.decode_response(msg.payload)
                self.responses.setdefault(resp.id, []).append(resp)
            self._cond.notify_all()

    def send(self, req: Request, *, tid: str | None = None) -> None:
        self.client.publish(schema.request_topic(tid or req.terminal_id), req.to_json(), qos=1)

    def wait_for(self, pred: Any, timeout: float = 30.0) -> None:
        with self._cond:
            assert self._cond.wait_for(pred, timeout), "timed out waiting"

    def ask(self, req: Request, timeout: float = 30.0) -> Response:
        before = len(self.responses.get(req.id, []))
        self.send(req)
        self.wait_for(lambda: len(self.responses.get(req.id, [])) > before, timeout)
        return self.responses[req.id][before]

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def start_backend(address: str, db: str | Path, instance: str, *extra: str) -> subprocess.Popen:
    """`loyalty-backend run` on `db`, whose test terminals are registered first."""
    from tests.backend.engines import register_test_terminals

    register_test_terminals(db)
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "backend",
            "run",
            "--broker",
            address,
            "--db",
            str(db),
            "--instance",
            instance,
            "--log-level",
            "WARNING",
            *extra,
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )


def wait_for_output(proc: subprocess.Popen, text: str, timeout: float = 30.0) -> str:
    """Read `proc`'s stderr (a pipe) until `text` appears; all read so far."""
    assert proc.stderr is not None
    fd, seen = proc.stderr.fileno(), b""
    deadline = time.monotonic() + timeout
    while text.encode() not in seen:
        left = deadline - time.monotonic()
        assert left > 0, f"{text!r} not in the output: {seen[-2000:]!r}"
        if select.select([fd], [], [], left)[0]:
            chunk = os.read(fd, 65536)
            assert chunk, f"the process ended without {text!r}: {seen[-2000:]!r}"
            seen += chunk
    return seen.decode(errors="replace")


def wait_until(pred: Any, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def traced(conn: sqlite3.Connection, call: Callable[[], Any]) -> tuple[Any, list[str]]:
    """What `call()` returns, and every statement it ran on `conn` (values filled in)."""
    ran: list[str] = []
    conn.set_trace_callback(ran.append)
    try:
        return call(), ran
    finally:
        conn.set_trace_callback(None)


def plan(conn: sqlite3.Connection, sql: str) -> str:
    return " | ".join(str(row[-1]) for row in conn.execute(f"EXPLAIN QUERY PLAN {sql}"))


class Recorder:
    """An SMS sender that keeps what it was given (phone, text, kind), thread-safe."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, str, str]] = []
        self.lock = threading.Lock()

    def send(self, phone: str, text: str, kind: str) -> None:
        with self.lock:
            self.sent.append((phone, text, kind))
