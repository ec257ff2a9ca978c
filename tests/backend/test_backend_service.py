"""The backend service end to end: a real Mosquitto, real backend processes, a real SQLite
file or PostgreSQL database (`db`: the tests whose outcome goes through the engine, run
on both; routing, presence and broker access on SQLite only)."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest

from backend import store
from protocols import mqtt as schema
from tests.backend.core_helpers import (
    TestAgent,
    advice,
    phone,
    request,
    reversal,
    start_backend,
    stop_process,
    wait_for_output,
    wait_until,
)

pytestmark = pytest.mark.timeout(180)


def _now_iso() -> str:
    return schema.utc_now_iso()


def _rows(db: str | Path, sql: str, *args: object) -> list[tuple]:
    conn = store.connect(db)
    try:
        return [tuple(row) for row in conn.execute(sql, args).fetchall()]
    finally:
        conn.close()


def _sms_config(tmp_path: Path, extra: str = "") -> Path:
    """A config whose file sender writes into the test's folder (on PostgreSQL there is no
    database folder for the default file to go beside)."""
    cfg = tmp_path / "backend.toml"
    out = tmp_path / "sms-outbox.jsonl"
    cfg.write_text(f'[sms]\nsender = "file"\nfile = "{out}"\n{extra}')
    return cfg


def test_backend_service_purchase_flow(broker, db: str, tmp_path: Path) -> None:
    agent = TestAgent(broker.address)
    proc = start_backend(broker.address, db, "b1", "--config", str(_sms_config(tmp_path)))
    try:
        agent.wait_for(lambda: agent.status.get("b1") is True)
        p = phone(1)
        enrol = request("enroll", {"phone": p, "referrer": None})
        first = agent.ask(enrol)
        assert first.code == "00" and first.body["new"] is True
        assert first.body["display"] and first.body["receipt"]
        again = agent.ask(request("enroll", {"phone": p}))
        assert again.body["new"] is False
        assert again.body["member_code"] == first.body["member_code"]

        earn = agent.ask(advice(amount=2_000_000, occurred_at=_now_iso(), phone=p))
        assert earn.code == "00" and earn.body["earned"] == 60_000  # bronze 3 %

        inq = request("inquiry", {"phone": p, "gross": 100_000, "redeem": None, "otp": None})
        quote = agent.ask(inq)
        assert quote.code == "00"
        assert quote.body["discount"] == 50_000 and quote.body["net"] == 50_000
        assert quote.body["balance"] == 10_000 and quote.body["tier"] == "bronze"
        qid = quote.body["quote_id"]
        assert 1 <= len(qid) <= 32 and qid.isascii()

        # the same inquiry again (same key): same quote, no second hold
        assert agent.ask(inq).body == quote.body

        settle = advice(amount=50_000, gross=100_000, occurred_at=_now_iso(), quote_id=qid)
        settled = agent.ask(settle)
        assert settled.body == {
            "earned": 1_500,
            "balance": 11_500,
            "receipt": settled.body["receipt"],
        }
        # a redelivered advice: the same answer and one effect
        assert agent.ask(settle).body == settled.body

        undo = reversal(settle, occurred_at=_now_iso())
        rev = agent.ask(undo)
        assert rev.body == {"balance": 60_000, "restored": 50_000, "taken_back": 1_500}
        assert agent.ask(undo).body == rev.body

        unknown = agent.ask(request("inquiry", {"phone": phone(2), "gross": 1000}))
        assert unknown.code == "14" and unknown.body == {}
        zero = agent.ask(request("inquiry", {"phone": p, "gross": 0}))
        assert zero.code == "13"
        too_much = agent.ask(request("inquiry", {"phone": p, "gross": 1_000_000, "redeem": 70_000}))
        assert too_much.code == "51"

        kinds = _rows(db, "SELECT kind, COUNT(*) FROM ledger GROUP BY kind ORDER BY kind")
        assert dict(kinds) == {"earn": 2, "hold": 1, "redeem": 1, "release": 1, "reversal": 2}
        # the welcome SMS went through the outbox and the file sender
        sms_file = tmp_path / "sms-outbox.jsonl"
        wait_until(lambda: sms_file.exists() and "welcome" in sms_file.read_text())
        lines = [json.loads(x) for x in sms_file.read_text().splitlines()]
        assert lines[0]["phone"] == p and first.body["member_code"] in lines[0]["text"]
    finally:
        assert stop_process(proc) == 0
        agent.close()


def test_backend_service_refuses_foreign_terminal_and_malformed(broker, tmp_path: Path) -> None:
    db = tmp_path / "loyalty.db"
    agent = TestAgent(broker.address, ("T0000001", "T0000002"))
    proc = start_backend(broker.address, db, "b1")
    try:
        agent.wait_for(lambda: agent.status.get("b1") is True)
        spoofed = request("enroll", {"phone": phone(5)}, tid="T0000001")
        agent.send(spoofed, tid="T0000002")  # published on another terminal's topic
        agent.client.publish(schema.request_topic("T0000002"), b"{not json", qos=1)
        bad = json.loads(request("enroll", {"phone": phone(6)}, tid="T0000002").to_json())
        bad["body"]["phone"] = 12
        agent.client.publish(schema.request_topic("T0000002"), json.dumps(bad), qos=1)
        agent.wait_for(lambda: bad["id"] in agent.responses)
        assert agent.responses[bad["id"]][0].code == "30"
        ok = agent.ask(request("enroll", {"phone": phone(7)}, tid="T0000002"))
        assert ok.code == "00"
        assert spoofed.id not in agent.responses
        assert _rows(db, "SELECT phone FROM members") == [(phone(7),)]
    finally:
        stop_process(proc)
        agent.close()


def test_backend_two_processes_one_db_no_double_effects(broker, db: str, tmp_path: Path) -> None:
    agent = TestAgent(broker.address)
    cfg = str(_sms_config(tmp_path))
    procs = [start_backend(broker.address, db, f"b{i}", "--config", cfg) for i in (1, 2)]
    try:
        agent.wait_for(lambda: agent.status.get("b1") is True and agent.status.get("b2") is True)
        members = [phone(100 + i) for i in range(10)]
        for p in members:
            assert agent.ask(request("enroll", {"phone": p})).code == "00"
        advices = [
            advice(amount=100_000 * (i + 1), occurred_at=_now_iso(), phone=members[i % 10])
            for i in range(60)
        ]
        for a in advices:  # every advice delivered twice; the two backends share them
            agent.send(a)
            agent.send(a)
        agent.wait_for(lambda: all(len(agent.responses.get(a.id, [])) == 2 for a in advices), 60)
        for a in advices:
            first, second = agent.responses[a.id]
            assert first.code == "00" and first.body == second.body
        earns = _rows(db, "SELECT COUNT(*), SUM(amount) FROM ledger WHERE kind = 'earn'")
        assert earns == [(60, sum(a.body["amount"] * 3 // 100 for a in advices))]
        assert _rows(db, "SELECT COUNT(*) FROM members") == [(10,)]
    finally:
        for proc in procs:
            assert stop_process(proc) == 0
        agent.close()


def test_backend_presence_sigterm_and_last_will(broker, db: str, tmp_path: Path) -> None:
    """SIGTERM answers what is in flight (the group commit is finished): on both engines."""
    agent = TestAgent(broker.address)
    cfg = str(_sms_config(tmp_path))
    b1 = start_backend(broker.address, db, "b1", "--config", cfg)
    b2 = start_backend(broker.address, db, "b2", "--config", cfg)
    try:
        agent.wait_for(lambda: agent.status.get("b1") is True and agent.status.get("b2") is True)
        # requests in flight when SIGTERM arrives are still answered
        reqs = [request("enroll", {"phone": phone(300 + i)}) for i in range(20)]
        for r in reqs:
            agent.send(r)
        assert stop_process(b1) == 0
        agent.wait_for(lambda: agent.status.get("b1") is False)
        agent.wait_for(lambda: all(r.id in agent.responses for r in reqs), 60)
        # a killed backend: the broker publishes its last will
        stop_process(b2, signal.SIGKILL)
        agent.wait_for(lambda: agent.status.get("b2") is False, 60)
        # retained: a newcomer sees both offline
        late = TestAgent(broker.address)
        late.wait_for(lambda: late.status.get("b1") is False and late.status.get("b2") is False)
        late.close()
    finally:
        stop_process(b1)
        stop_process(b2)
        agent.close()


def test_backend_reconnects_after_broker_restart(broker, tmp_path: Path) -> None:
    db = tmp_path / "loyalty.db"
    proc = start_backend(broker.address, db, "b1")
    agent = TestAgent(broker.address)
    try:
        agent.wait_for(lambda: agent.status.get("b1") is True)
        agent.close()
        broker.restart(down_for=0.5)
        agent = TestAgent(broker.address)
        agent.wait_for(lambda: agent.status.get("b1") is True, 60)
        assert agent.ask(request("enroll", {"phone": phone(400)}), timeout=60).code == "00"
    finally:
        assert stop_process(proc) == 0
        agent.close()


def test_backend_with_password_and_acl(tmp_path: Path) -> None:
    """The agent engineer's broker: password file and ACL; credentials from flags and config."""
    from demo.mosquitto import Mosquitto

    acl = "user backend\ntopic readwrite loyalty/#\n\nuser tester\ntopic readwrite loyalty/#\n"
    with Mosquitto(tmp_path / "broker", users={"backend": "s3cret", "tester": "t"}, acl=acl) as b:
        agent = TestAgent(b.address, credentials=("tester", "t"))
        db = tmp_path / "loyalty.db"
        cfg = tmp_path / "backend.toml"
        cfg.write_text('[mqtt]\nusername = "backend"\npassword = "s3cret"\n')
        wrong = start_backend(
            b.address, db, "bad", "--broker-username", "backend", "--broker-password", "nope"
        )
        good = start_backend(b.address, db, "good", "--config", str(cfg))
        try:
            agent.wait_for(lambda: agent.status.get("good") is True)
            assert agent.ask(request("enroll", {"phone": phone(500)})).code == "00"
            # the wrong password was tried and refused: so "bad" never came online
            wait_for_output(wrong, "broker refused the connection")
            assert "bad" not in agent.status
        finally:
            assert stop_process(good) == 0
            stop_process(wrong)
            agent.close()


def test_backend_service_sweeps_expired_holds(broker, db: str, tmp_path: Path) -> None:
    """An expired hold is released by the backend itself, with no request for the member
    (on PostgreSQL the sweep runs under an advisory lock)."""
    cfg = _sms_config(tmp_path, "[program]\nhold_seconds = 1\n[service]\nsweep_seconds = 0.2\n")
    agent = TestAgent(broker.address)
    proc = start_backend(broker.address, db, "b1", "--config", str(cfg))
    try:
        agent.wait_for(lambda: agent.status.get("b1") is True)
        p = phone(600)
        agent.ask(request("enroll", {"phone": p}))
        agent.ask(advice(amount=1_000_000, occurred_at=_now_iso(), phone=p))
        quote = agent.ask(request("inquiry", {"phone": p, "gross": 40_000}))
        assert quote.body["balance"] == 10_000
        wait_until(
            lambda: (
                _rows(db, "SELECT status FROM quotes") == [("expired",)]
                and _rows(db, "SELECT SUM(amount) FROM ledger") == [(30_000,)]
            ),
            60,
        )
    finally:
        assert stop_process(proc) == 0
        agent.close()
