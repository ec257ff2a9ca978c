"""The terminal side for the agent's end-to-end tests, written independently of the agent.

Encoding and decoding use the third-party `pyiso8583` with the field table of
PROTOCOL.md 3.1; framing, ACK/NAK and the MAC are done here from the text of the
protocol, so the agent is checked against code it does not share. Also: starting the
agent and the backend as subprocesses, each stopped by its own pid, and a paho client that
records what the broker routes (what the tests wait for instead of sleeping).
"""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import threading
import time
import tty
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import iso8583 as pyiso
import paho.mqtt.client as paho
from cryptography.hazmat.primitives.ciphers import algorithms
from cryptography.hazmat.primitives.cmac import CMAC
from paho.mqtt.enums import CallbackAPIVersion

from demo.mosquitto import stop_process

REPO = Path(__file__).resolve().parents[2]
KEY_HEX = "2b7e151628aed2a6abf7158809cf4f3c"
KEY = bytes.fromhex(KEY_HEX)
TID = "T0000001"
MID = "M00000000000001"
STX, ETX, ACK, NAK = 0x02, 0x03, 0x06, 0x15


def _f(enc: str, len_type: int, max_len: int) -> dict[str, Any]:
    return {"data_enc": enc, "len_enc": "ascii", "len_type": len_type, "max_len": max_len,
            "desc": ""}


SPEC: dict[str, dict[str, Any]] = {
    "h": _f("ascii", 0, 0),
    "t": _f("ascii", 0, 4),
    "p": _f("b", 0, 8),
    "1": _f("b", 0, 8),
    "2": _f("ascii", 2, 19),
    "3": _f("ascii", 0, 6),
    "4": _f("ascii", 0, 12),
    "7": _f("ascii", 0, 10),
    "11": _f("ascii", 0, 6),
    "12": _f("ascii", 0, 6),
    "13": _f("ascii", 0, 4),
    "37": _f("ascii", 0, 12),
    "38": _f("ascii", 0, 6),
    "39": _f("ascii", 0, 2),
    "41": _f("ascii", 0, 8),
    "42": _f("ascii", 0, 15),
    "48": _f("utf-8", 3, 999),
    "49": _f("ascii", 0, 3),
    "64": _f("b", 0, 8),
    "70": _f("ascii", 0, 3),
}


def cmac8(data: bytes, key: bytes = KEY) -> bytes:
    c = CMAC(algorithms.AES(key))
    c.update(data)
    return c.finalize()[:8]


def tlv(items: Mapping[str, str]) -> str:
    return "".join(f"{t}{len(v.encode()):03d}{v}" for t, v in items.items())


def untlv(value: str) -> dict[str, str]:
    raw, out, i = value.encode(), {}, 0
    while i < len(raw):
        tag, size = raw[i : i + 2].decode(), int(raw[i + 2 : i + 5])
        out[tag] = raw[i + 5 : i + 5 + size].decode()
        i += 5 + size
    return out


def encode(fields: dict[str, str], *, mac: str = "good") -> bytes:
    """A request in pyiso8583; `mac`: good, wrong or none (01xx/02xx/04xx get field 64)."""
    doc = dict(fields)
    if mac != "none" and doc["t"][:2] != "08":
        doc["64"] = "00" * 8
        raw, _ = pyiso.encode(dict(doc), SPEC)
        tag = cmac8(bytes(raw[:-8]))
        if mac == "wrong":
            tag = bytes([tag[0] ^ 0xFF]) + tag[1:]
        return bytes(raw[:-8]) + tag
    raw, _ = pyiso.encode(doc, SPEC)
    return bytes(raw)


def decode(raw: bytes) -> dict[str, Any]:
    doc, _ = pyiso.decode(bytearray(raw), SPEC)
    if doc["t"][:2] != "08":
        assert "64" in doc, "a 01xx/02xx/04xx response must carry a MAC"
        assert cmac8(raw[:-8]) == raw[-8:], "the response's MAC is wrong"
    else:
        assert "64" not in doc
    doc.pop("p", None)
    doc.pop("1", None)
    doc.pop("h", None)
    if "48" in doc:
        doc["tlv"] = untlv(doc["48"])
    return doc


def frame(message: bytes) -> bytes:
    n = len(message)
    body = bytes([(n // 1000) << 4 | (n // 100) % 10, ((n // 10) % 10) << 4 | n % 10])
    body += message + bytes([ETX])
    lrc = 0
    for b in body:
        lrc ^= b
    return bytes([STX]) + body + bytes([lrc])


def header(stan: int, at: datetime | None = None) -> dict[str, str]:
    at = at or datetime.now(UTC)
    return {"7": at.strftime("%m%d%H%M%S"), "11": f"{stan:06d}", "12": at.strftime("%H%M%S"),
            "13": at.strftime("%m%d"), "41": TID, "42": MID}


class Terminal:
    """The terminal end of a pseudo-terminal: frames out, ACKs in, and the reverse."""

    def __init__(self) -> None:
        self.master, self.slave = os.openpty()
        tty.setraw(self.master)
        tty.setraw(self.slave)
        self.path = os.ttyname(self.slave)
        self._buf = b""

    def close(self) -> None:
        os.close(self.master)
        os.close(self.slave)

    def _read(self, timeout: float) -> bytes:
        ready, _, _ = select.select([self.master], [], [], max(0.0, timeout))
        if not ready:
            return b""
        try:
            return os.read(self.master, 4096)
        except OSError:
            return b""

    def send_frame(self, message: bytes, timeout: float = 1.0) -> float:
        """Send until ACKed (3 tries); the time its last byte was written."""
        data = frame(message)
        for _ in range(3):
            self._buf = b""
            os.write(self.master, data)
            sent = time.perf_counter()
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                chunk = self._read(deadline - time.monotonic())
                if ACK in chunk:
                    rest = chunk[chunk.index(ACK) + 1 :]
                    self._buf = rest
                    return sent
                if NAK in chunk:
                    break
        raise AssertionError("the agent did not ACK the frame")

    def receive(self, timeout: float = 5.0, stan: str | None = None) -> tuple[bytes, float]:
        """The next message from the agent (ACKed), and when its last byte arrived.

        With `stan`, an answer to another request is ACKed and skipped: when a slow ACK
        made us send a request twice, the agent rightly answers both, and the second
        answer must not be read as the answer to the next request."""
        deadline = time.monotonic() + timeout
        buf = self._buf
        self._buf = b""
        while True:
            start = buf.find(bytes([STX]))
            if start >= 0 and len(buf) >= start + 3:
                hi, lo = buf[start + 1], buf[start + 2]
                n = (hi >> 4) * 1000 + (hi & 15) * 100 + (lo >> 4) * 10 + (lo & 15)
                end = start + 3 + n + 2
                if len(buf) >= end:
                    got = time.perf_counter()
                    whole = buf[start:end]
                    assert whole == frame(whole[3 : 3 + n]), "bad frame from the agent"
                    os.write(self.master, bytes([ACK]))
                    buf = buf[end:]
                    if stan is not None and decode(whole[3 : 3 + n]).get("11") != stan:
                        continue
                    self._buf = buf
                    return whole[3 : 3 + n], got
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("no frame from the agent")
            buf += self._read(min(left, 0.5))

    def ask(self, fields: dict[str, str], *, mac: str = "good", timeout: float = 5.0) -> dict:
        self.send_frame(encode(fields, mac=mac))
        raw, _ = self.receive(timeout, stan=fields.get("11"))
        return decode(raw)

    def timed(self, fields: dict[str, str]) -> tuple[dict, float]:
        sent = self.send_frame(encode(fields))
        raw, got = self.receive(stan=fields.get("11"))
        return decode(raw), got - sent


# --- the broker's side ---------------------------------------------------------------------
class Listener:
    """A paho client that records every message it is allowed to see, once subscribed."""

    def __init__(self, port: int, topics: list[str], user: str | None = None,
                 password: str | None = None) -> None:
        self.got: list[tuple[str, bytes]] = []
        self.ready = threading.Event()
        c = paho.Client(CallbackAPIVersion.VERSION2, protocol=paho.MQTTv5)
        if user is not None:
            c.username_pw_set(user, password)
        c.on_connect = lambda cl, u, f, rc, p: cl.subscribe([(t, 1) for t in topics])
        c.on_subscribe = lambda *a: self.ready.set()
        c.on_message = lambda cl, u, m: self.got.append((m.topic, m.payload))
        c.connect("127.0.0.1", port)
        c.loop_start()
        self.client = c
        assert self.ready.wait(10)

    def payloads(self, topic: str) -> list[bytes]:
        return [p for t, p in list(self.got) if t == topic]

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


# --- processes ---------------------------------------------------------------------------
def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def start_agent(
    tmp: Path, broker: str, serial: str, *extra: str, journal: Path | None = None
) -> subprocess.Popen:
    journal = journal or tmp / "journal.log"
    log = open(tmp / "agent.log", "ab")  # noqa: SIM115
    proc = subprocess.Popen(
        [sys.executable, "-m", "agent", "run", "--serial", serial, "--broker", broker,
         "--terminal-id", TID, "--merchant-id", MID, "--mac-key", KEY_HEX,
         "--journal", str(journal), "--retry-initial", "0.2", "--retry-max", "1",
         "--log-level", "DEBUG", *extra],
        stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=_env(), cwd=REPO,
        start_new_session=True,
    )
    log.close()
    return proc


def start_backend(tmp: Path, broker: str, db: Path | None = None) -> subprocess.Popen:
    from tests.backend.engines import register_test_terminals

    register_test_terminals(db or tmp / "backend.db")  # the agent's terminal, TID
    log = open(tmp / "backend.log", "ab")  # noqa: SIM115
    proc = subprocess.Popen(
        [sys.executable, "-m", "backend", "run", "--broker", broker,
         "--db", str(db or tmp / "backend.db")],
        stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=_env(), cwd=REPO,
        start_new_session=True,
    )
    log.close()
    return proc


def stop(proc: subprocess.Popen | None, sig: int = signal.SIGTERM, timeout: float = 10) -> None:
    stop_process(proc, sig, timeout)


def wait_for(predicate: Any, timeout: float = 15.0, step: float = 0.1) -> Any:
    """Poll `predicate` until true; a failed exchange on the way (agent still starting) retries."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            value = predicate()
        except (AssertionError, TimeoutError):
            if time.monotonic() > deadline:
                raise
            value = None
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(step)


def status(term: Terminal, stan: int) -> dict[str, str]:
    out = term.ask({"t": "0800", **header(stan), "70": "301"}, timeout=5)
    assert out["t"] == "0810" and out["39"] == "00"
    return out["tlv"]
