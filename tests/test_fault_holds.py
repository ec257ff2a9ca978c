"""Holds under faults, through the real processes (issue 10.1 and 10.2).

A terminal (the independent one of tests/agent/agent_terminal.py) sells to one member over
a real pseudo-terminal while the backend is hung (SIGSTOP), killed and restarted, and
resumed; the agent, Mosquitto and the backend are real processes. The invariant checked
from the terminal's own records against the database: the discounts given at the till
never exceed the credit the member had, and every approved advice redeemed exactly the
`DA` its terminal was given (no debt). On both engines: on PostgreSQL the hung backend
holds an open connection (and perhaps row locks) and the killed one's transaction is
rolled back by the server.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from backend import store
from demo.mosquitto import Mosquitto
from protocols import mqtt
from tests.agent.agent_terminal import (
    ACK,
    NAK,
    STX,
    TID,
    Terminal,
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
from tests.backend import engines

pytestmark = pytest.mark.slow
# the backend's database on each engine (tests/backend/engines.py)
db, pg_url, postgres_server = engines.db, engines.pg_url, engines.postgres_server

PHONE = "09121234567"
BACKLOG = 150


def query(target: str, sql: str, *args: object) -> list[tuple]:
    con = store.connect(target)
    try:
        return [tuple(row) for row in con.execute(sql, args).fetchall()]
    finally:
        con.close()


def inquiry(stan: int, gross: int) -> dict[str, str]:
    return {"t": "0100", "3": "310000", "4": f"{gross:012d}", **header(stan),
            "48": tlv({"PN": PHONE})}


def advice(stan: int, gross: int, net: int, qi: str | None, *, phone: str | None = None,
           bank: str = "00") -> dict[str, str]:
    items = {"GA": str(gross)}
    if qi:
        items["QI"] = qi
    if phone:
        items["PN"] = phone
    return {"t": "0220", "3": "000000", "4": f"{net:012d}", **header(stan),
            "37": f"{stan:012d}", "38": "A1B2C3", "39": bank, "48": tlv(items), "49": "364"}


class Till:
    """What the terminal itself knows: the discounts it gave on approved purchases."""

    def __init__(self, term: Terminal) -> None:
        self.term = term
        self.stan = 100
        self.given: list[tuple[str, int]] = []  # (QI, DA) of every approved purchase

    def next(self) -> int:
        self.stan += 1
        return self.stan

    def sell(self, gross: int) -> dict:
        """Inquiry, then the approved advice; the 0110 as the terminal saw it."""
        q = self.term.ask(inquiry(self.next(), gross), timeout=5)
        assert q["t"] == "0110", q
        if q["39"] == "00":
            qi, da = q["tlv"]["QI"], int(q["tlv"]["DA"])
            out = self.term.ask(advice(self.next(), gross, gross - da, qi))
            assert out["t"] == "0230" and out["39"] == "00"
            self.given.append((qi, da))
        else:  # 91: the customer pays the full amount, no discount
            assert q["39"] == "91"
            out = self.term.ask(advice(self.next(), gross, gross, None, phone=PHONE))
            assert out["39"] == "00"
        return q

    def queued(self) -> int:
        return int(status(self.term, self.next())["QD"])


def check_invariant(target: str, till: Till) -> None:
    """From the till's records against the database: every DA redeemed in full, no debt,
    balance = the ledger's sum, nothing left held."""
    [(mid, debt)] = query(target, "SELECT id, debt FROM members WHERE phone = ?", PHONE)
    for qi, da in till.given:
        rows = query(target, "SELECT redeemed FROM purchases WHERE quote_id = ?", qi)
        assert rows == [(da,)], (qi, da, rows)
    assert debt == 0, "a till gave a discount the member's credit did not cover"
    [(held,)] = query(target, "SELECT COUNT(*) FROM quotes WHERE member_id = ? "
                          "AND status = 'held'", mid)
    assert held == 0
    [(balance,)] = query(target, "SELECT COALESCE(SUM(amount), 0) FROM ledger "
                             "WHERE member_id = ?", mid)
    [(lots,)] = query(target, "SELECT COALESCE(SUM(remaining), 0) FROM lots "
                          "WHERE member_id = ?", mid)
    assert balance == lots >= 0


def nak_three_times(term: Terminal, message: bytes) -> None:
    """Send `message`, then refuse every answer the agent sends: the link gives up."""
    term.send_frame(message)
    refused = 0
    buf = b""
    deadline = time.monotonic() + 10
    while refused < 3:
        assert time.monotonic() < deadline, "the agent stopped sending the 0110"
        buf += term._read(0.5)
        start = buf.find(bytes([STX]))
        if start < 0 or len(buf) < start + 3:
            continue
        hi, lo = buf[start + 1], buf[start + 2]
        n = (hi >> 4) * 1000 + (hi & 15) * 100 + (lo >> 4) * 10 + (lo & 15)
        end = start + 3 + n + 2
        if len(buf) < end:
            continue
        assert buf[start:end] == frame(buf[start + 3 : start + 3 + n])
        os.write(term.master, bytes([NAK]))
        refused += 1
        buf = buf[end:]
    assert ACK not in buf


def test_fault_hung_backend_never_gives_the_same_credit_twice(
    tmp_path: Path, broker: Mosquitto, term: Terminal, db: str
) -> None:
    cfg = tmp_path / "backend.toml"
    cfg.write_text(f'[sms]\nsender = "file"\nfile = "{tmp_path / "sms.jsonl"}"\n')
    backend = start_backend(tmp_path, broker.address, db, "--config", str(cfg))
    # --advice-wait 0: advices are answered from the journal at once, the backlog is quick
    agent = start_agent(tmp_path, broker.address, term.path, "--advice-wait", "0")
    till = Till(term)
    try:
        wait_for(lambda: status(term, till.next())["ST"] == "ON", timeout=30)
        enrol = term.ask({"t": "0100", "3": "900000", **header(till.next()),
                          "48": tlv({"PN": PHONE})})
        assert enrol["39"] == "00"
        # 30,000 of credit: 3 % of a 1,000,000 purchase without a quote
        assert term.ask(advice(till.next(), 1_000_000, 1_000_000, None, phone=PHONE))["39"] == "00"
        wait_for(lambda: till.queued() == 0, timeout=30)

        # 10.1: I1 quoted, the backend hangs, A1 answered from the journal, the hung
        # backend is killed and restarted, the same member buys again at once
        q1 = term.ask(inquiry(till.next(), 100_000))
        assert q1["39"] == "00" and q1["tlv"]["DA"] == "30000"
        os.kill(backend.pid, signal.SIGSTOP)
        # a backlog journaled before A1 (customers who are not members), so that after
        # the restart A1 is forwarded only after I2 has reached the backend: the case in
        # which a new inquiry meets the held quote
        for n in range(BACKLOG):
            other = f"0912{9_000_000 + n:07d}"
            assert term.ask(advice(till.next(), 10_000, 10_000, None, phone=other))["39"] == "00"
        a1 = term.ask(advice(till.next(), 100_000, 70_000, q1["tlv"]["QI"]))
        assert a1["39"] == "00"
        till.given.append((q1["tlv"]["QI"], 30_000))
        os.kill(backend.pid, signal.SIGKILL)
        backend.wait(10)
        backend = start_backend(tmp_path, broker.address, db, "--config", str(cfg))
        wait_for(lambda: status(term, till.next())["ST"] == "ON", timeout=30)
        q2 = till.sell(100_000)
        assert till.queued() > 0, "A1 was forwarded before I2: the case was not reached"
        if q2["39"] == "00":
            # only what A1's own earning (3 % of 70,000) added can be free now
            assert int(q2["tlv"]["DA"]) <= 2_100
        wait_for(lambda: till.queued() == 0, timeout=30)
        check_invariant(db, till)

        # 10.2: an inquiry answered 91 because the backend hung; when the backend
        # resumes it carries the inquiry out, and the agent's release frees it again
        before = query(db, "SELECT COALESCE(SUM(amount), 0) FROM ledger l JOIN members m "
                           "ON m.id = l.member_id WHERE m.phone = ?", PHONE)[0][0]
        os.kill(backend.pid, signal.SIGSTOP)
        stan = till.next()
        started = time.monotonic()
        q3 = term.ask(inquiry(stan, 100_000), timeout=5)
        assert q3["39"] == "91" and time.monotonic() - started < 3.0
        os.kill(backend.pid, signal.SIGCONT)
        release = mqtt.release_key(mqtt.idempotency_key(TID, "0100", f"{stan:06d}",
                                                        q3["7"]))
        wait_for(lambda: query(db, "SELECT 1 FROM requests WHERE key = ?", release),
                 timeout=30)
        check_invariant(db, till)
        after = query(db, "SELECT COALESCE(SUM(amount), 0) FROM ledger l JOIN members m "
                          "ON m.id = l.member_id WHERE m.phone = ?", PHONE)[0][0]
        assert after == before  # nothing is held for the quote no terminal saw
        q4 = till.sell(10_000)  # and that credit is usable at once
        assert q4["39"] == "00" and int(q4["tlv"]["DA"]) == min(before, 5_000)

        # 10.2: the terminal NAKs the 0110 three times: the quote is released
        refused = inquiry(till.next(), 100_000)
        nak_three_times(term, encode(refused))
        release = mqtt.release_key(mqtt.idempotency_key(TID, "0100", refused["11"],
                                                        refused["7"]))
        wait_for(lambda: query(db, "SELECT 1 FROM requests WHERE key = ?", release),
                 timeout=30)
        [(released,)] = query(db, "SELECT body FROM requests WHERE key = ?", release)
        assert '"released":' in released and '"released":0' not in released
        check_invariant(db, till)
    finally:
        stop(agent)
        if backend.poll() is None:
            os.kill(backend.pid, signal.SIGCONT)
        stop(backend)
