"""The agent as a subprocess on a real pseudo-terminal, a real Mosquitto and the real backend.

The terminal side is `agent_terminal` (pyiso8583 + framing written in the test).
"""

from __future__ import annotations

import os
import signal
import socket
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from demo.mosquitto import Mosquitto, free_port
from protocols import mqtt
from tests.agent.agent_terminal import (
    KEY_HEX,
    MID,
    REPO,
    TID,
    Listener,
    Terminal,
    decode,
    encode,
    frame,
    header,
    start_agent,
    start_backend,
    status,
    stop,
    tlv,
    wait_for,
)

pytestmark = pytest.mark.slow

PHONE = "09121234567"


def purchases(db: Path, key_part: str) -> int:
    if not db.exists():
        return 0
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
    try:
        return con.execute(
            "SELECT count(*) FROM purchases WHERE key LIKE ?", (f"%{key_part}%",)
        ).fetchone()[0]
    except sqlite3.OperationalError:
        return 0
    finally:
        con.close()


def advice_fields(stan: int, rrn: str, gross: int, amount: int, quote: str | None,
                  phone: str | None = None, at=None) -> dict[str, str]:
    items = {"GA": str(gross)}
    if quote:
        items["QI"] = quote
    if phone:
        items["PN"] = phone
    return {"t": "0220", "3": "000000", "4": f"{amount:012d}", **header(stan, at), "37": rrn,
            "38": "A1B2C3", "39": "00", "48": tlv(items), "49": "364"}


def online(term: Terminal, stan: int) -> bool:
    return status(term, stan)["ST"] == "ON"


def test_every_message_kind_mac_and_repeats(tmp_path: Path, broker: Mosquitto, term) -> None:
    backend = start_backend(tmp_path, broker.address)
    agent = start_agent(tmp_path, broker.address, term.path)
    try:
        # sign-on, echo: ST ON once the backend's presence is seen
        wait_for(lambda: online(term, 1), timeout=20)
        on = term.ask({"t": "0800", **header(2), "70": "001"})
        assert on["39"] == "00" and on["70"] == "001" and on["tlv"] == {"ST": "ON", "QD": "0"}
        # enrollment, with the phone in another form and Persian digits
        enr = term.ask({"t": "0100", "3": "900000", **header(3),
                        "48": tlv({"PN": "+98۹۱۲۱۲۳۴۵۶۷"})})
        assert enr["t"] == "0110" and enr["39"] == "00" and enr["tlv"]["NW"] == "1"
        # a wrong and a missing MAC: 63, nothing else
        inq = {"t": "0100", "3": "310000", "4": "000001500000", **header(4),
               "48": tlv({"PN": PHONE})}
        assert term.ask(inq, mac="wrong")["39"] == "63"
        assert term.ask(inq, mac="none")["39"] == "63"
        # an invalid phone: 14 without the backend
        bad = {**inq, **header(5), "48": tlv({"PN": "0912"})}
        assert term.ask(bad)["39"] == "14"
        # the inquiry
        quote = term.ask({**inq, **header(6)})
        assert quote["t"] == "0110" and quote["39"] == "00", quote
        assert quote["4"] == "000001500000" and quote["tlv"]["GA"] == "1500000"
        qi, net = quote["tlv"]["QI"], int(quote["tlv"]["NA"])
        # the purchase advice, then the same advice again
        adv = advice_fields(7, "000000000007", 1_500_000, net, qi)
        first = term.ask(adv)
        assert first["t"] == "0230" and first["39"] == "00" and first["37"] == "000000000007"
        again = term.ask(adv)
        assert again == first
        db = tmp_path / "backend.db"
        wait_for(lambda: purchases(db, f"{TID}:0220:000007:") == 1)
        # a reversal of an unknown original, then of the real one
        rev = {"t": "0420", "3": "000000", "4": f"{net:012d}", **header(99), "37": "000000000099",
               "48": tlv({"QI": qi})}
        assert term.ask(rev)["39"] == "12"
        rev = {**rev, **header(7), "37": "000000000007"}
        out = term.ask(rev)
        assert out["t"] == "0430" and out["39"] == "00"
        wait_for(lambda: status(term, 8)["QD"] == "0")
        # sign-off
        off = term.ask({"t": "0800", **header(9), "70": "002"})
        assert off["39"] == "00" and off["70"] == "002"
        assert purchases(db, f"{TID}:0220:000007:") == 1
    finally:
        stop(agent)
        stop(backend)
    assert agent.returncode == 0
    log = (tmp_path / "agent.log").read_text()
    assert PHONE not in log and "9121234567" not in log


def test_backend_down_then_kill_9_then_exactly_once(tmp_path: Path, broker: Mosquitto,
                                                   term) -> None:
    traffic = Listener(broker.port, [mqtt.request_topic(TID), mqtt.response_topic(TID)])
    backend = start_backend(tmp_path, broker.address)
    agent = start_agent(tmp_path, broker.address, term.path)
    db = tmp_path / "backend.db"
    try:
        wait_for(lambda: online(term, 1), timeout=20)
        enr = term.ask({"t": "0100", "3": "900000", **header(2), "48": tlv({"PN": PHONE})})
        assert enr["39"] == "00"
        # the backend hangs (its presence still says online): 91 after the budget, < 2.5 s
        os.kill(backend.pid, signal.SIGSTOP)
        try:
            hung = {"t": "0100", "3": "310000", "4": "000000100000", **header(30),
                    "48": tlv({"PN": PHONE})}
            sent = term.send_frame(encode(hung))
            raw, got = term.receive(timeout=5, stan=hung["11"])
            assert decode(raw)["39"] == "91"
            assert 1.5 < got - sent < 2.5
        finally:
            os.kill(backend.pid, signal.SIGCONT)
        stop(backend)
        wait_for(lambda: status(term, 3)["ST"] == "OF")
        # inquiry with the backend gone: 91 within 2.5 s of the request frame
        inq = {"t": "0100", "3": "310000", "4": "000000100000", **header(4),
               "48": tlv({"PN": PHONE})}
        sent = term.send_frame(encode(inq))
        raw, got = term.receive(timeout=5, stan=inq["11"])
        assert decode(raw)["39"] == "91"
        assert got - sent < 2.5
        # advices are still answered 00 and counted in QD
        for stan in (5, 6):
            out = term.ask(advice_fields(stan, f"{stan:012d}", 100_000, 100_000, None, PHONE))
            assert out["39"] == "00"
        assert status(term, 7)["QD"] == "2"
        # answered, then killed at once: the journal has it
        last = advice_fields(8, "000000000008", 200_000, 200_000, None, PHONE)
        out = term.ask(last)
        assert out["39"] == "00"
        os.kill(agent.pid, signal.SIGKILL)
        agent.wait(10)
        agent = start_agent(tmp_path, broker.address, term.path)
        # the first exchange waits until the restarted agent has its line open again
        assert wait_for(lambda: status(term, 9), timeout=20)["QD"] == "3"
        backend = start_backend(tmp_path, broker.address)
        wait_for(lambda: status(term, 10)["QD"] == "0", timeout=30)
        for stan in (5, 6, 8):
            assert purchases(db, f"{TID}:0220:{stan:06d}:") == 1
        # the repeated advice after all that: same answer, still once at the backend, also
        # once a later advice (forwarded after anything the repeat could have queued) is in
        assert term.ask(last) == out
        later = advice_fields(90, "000000000090", 100_000, 100_000, None, PHONE)
        assert term.ask(later)["39"] == "00"
        wait_for(lambda: purchases(db, f"{TID}:0220:000090:") == 1, timeout=30)
        assert purchases(db, f"{TID}:0220:000008:") == 1
        # killed while the forward is in flight (no waiting for EA): still exactly once
        stop(agent)
        agent = start_agent(tmp_path, broker.address, term.path, "--advice-wait", "0")
        wait_for(lambda: online(term, 11), timeout=20)
        racy = advice_fields(12, "000000000012", 300_000, 300_000, None, PHONE)
        assert term.ask(racy)["39"] == "00"
        os.kill(agent.pid, signal.SIGKILL)
        agent.wait(10)
        agent = start_agent(tmp_path, broker.address, term.path)
        wait_for(lambda: status(term, 13)["QD"] == "0", timeout=30)
        # every forward of it the broker took (before the kill, and again after the restart)
        # has been answered by the backend: only then is the count final
        wait_for(lambda: answered(traffic, ":0220:000012:"), timeout=30)
        assert purchases(db, f"{TID}:0220:000012:") == 1
    finally:
        stop(agent)
        stop(backend)
        traffic.close()


def answered(traffic: Listener, key_part: str) -> bool:
    """Whether every request whose key holds `key_part` has had its response routed."""
    asked = {mqtt.decode_request(p).id for p in traffic.payloads(mqtt.request_topic(TID))
             if key_part in mqtt.decode_request(p).key}
    replied = {mqtt.decode_response(p).id for p in traffic.payloads(mqtt.response_topic(TID))}
    return bool(asked) and asked <= replied


def test_broker_restart(tmp_path: Path, broker: Mosquitto, term) -> None:
    backend = start_backend(tmp_path, broker.address)
    agent = start_agent(tmp_path, broker.address, term.path)
    db = tmp_path / "backend.db"
    try:
        wait_for(lambda: online(term, 1), timeout=20)
        enr = term.ask({"t": "0100", "3": "900000", **header(2), "48": tlv({"PN": PHONE})})
        assert enr["39"] == "00" and enr["tlv"]["NW"] == "1"
        broker.stop()
        assert status(term, 3)["ST"] == "OF"
        enr = term.ask({"t": "0100", "3": "900000", **header(4), "48": tlv({"PN": PHONE})})
        assert enr["39"] == "91"
        out = term.ask(advice_fields(5, "000000000005", 100_000, 100_000, None, PHONE))
        assert out["39"] == "00"
        assert status(term, 6)["QD"] == "1"
        broker.start()
        wait_for(lambda: online(term, 7), timeout=30)
        enr = term.ask({"t": "0100", "3": "900000", **header(8), "48": tlv({"PN": PHONE})})
        assert enr["39"] == "00" and enr["tlv"]["NW"] == "0"
        wait_for(lambda: purchases(db, f"{TID}:0220:000005:") == 1, timeout=30)
        assert status(term, 9)["QD"] == "0"
    finally:
        stop(agent)
        stop(backend)


def test_presence_online_then_offline_on_sigterm_and_will_on_kill(tmp_path: Path,
                                                                  broker: Mosquitto,
                                                                  term) -> None:
    watcher = Listener(broker.port, [mqtt.terminal_status_topic(TID)])

    def seen() -> list[bool]:
        return [mqtt.decode_status(p) for _, p in list(watcher.got)]

    agent = start_agent(tmp_path, broker.address, term.path)
    try:
        wait_for(lambda: seen() and seen()[-1] is True)
        # broker up, but no backend
        assert wait_for(lambda: status(term, 1), timeout=20) == {"ST": "OF", "QD": "0"}
        stop(agent)
        assert agent.returncode == 0
        wait_for(lambda: seen()[-1] is False)
        agent = start_agent(tmp_path, broker.address, term.path)
        wait_for(lambda: seen()[-1] is True)
        os.kill(agent.pid, signal.SIGKILL)
        agent.wait(10)
        wait_for(lambda: seen()[-1] is False, timeout=60)  # the last will (keepalive 15 s)
    finally:
        stop(agent)
        watcher.close()


def test_listen_on_loopback_tcp(tmp_path: Path, broker: Mosquitto) -> None:
    """Android payment apps connect over loopback TCP: same frames, same ACK rules."""
    port = free_port()
    log = open(tmp_path / "agent.log", "ab")  # noqa: SIM115
    agent = subprocess.Popen(
        [sys.executable, "-m", "agent", "run", "--listen", f"127.0.0.1:{port}",
         "--broker", broker.address, "--terminal-id", TID, "--merchant-id", MID,
         "--mac-key", KEY_HEX, "--journal", str(tmp_path / "j.log")],
        stdout=log, stderr=log, stdin=subprocess.DEVNULL, cwd=REPO, start_new_session=True,
    )
    log.close()
    try:
        sock = wait_for(lambda: _connect(port), timeout=20)
        with sock:
            sock.settimeout(5)
            sock.sendall(frame(encode({"t": "0800", **header(1), "70": "001"})))
            data = b""
            while len(data) < 4 or len(data) < 6 + ((data[2] >> 4) * 1000 + (data[2] & 15) * 100
                                                   + (data[3] >> 4) * 10 + (data[3] & 15)):
                data += sock.recv(4096)
            assert data[0] == 0x06  # ACK first, then the response frame
            n = (data[2] >> 4) * 1000 + (data[2] & 15) * 100 + (data[3] >> 4) * 10 + (data[3] & 15)
            assert data[1:] == frame(data[4 : 4 + n])
            sock.sendall(b"\x06")
            out = decode(data[4 : 4 + n])
            assert out["t"] == "0810" and out["tlv"] == {"ST": "OF", "QD": "0"}
    finally:
        stop(agent)
    assert agent.returncode == 0


def _connect(port: int) -> socket.socket | None:
    try:
        return socket.create_connection(("127.0.0.1", port), timeout=1)
    except OSError:
        return None
