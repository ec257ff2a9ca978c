"""Several backend processes on one broker and one PostgreSQL database.

Real processes (`python -m backend run`), a real Mosquitto (the shared subscription hands
each message to one of them) and a real PostgreSQL. A fifth of the requests are published
twice at once, so that two processes carry out the same request at the same moment: every
effect must happen once and both answers must be the same.
"""

from __future__ import annotations

import itertools
import json
import os
import random
import signal
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest

from protocols import mqtt as schema
from protocols.mqtt import Request, Response
from tests.backend.core_helpers import (
    ROOT,
    TestAgent,
    advice,
    phone,
    request,
    reversal,
    stop_process,
)
from tests.backend.engines import register_test_terminals

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]
TIDS = tuple(f"T{n:07d}" for n in range(1, 17))
PER_TYPE = int(os.environ.get("LOYALTY_TEST_PER_TYPE", "2000"))
_stans = itertools.count(500_000)


def _start(broker: str, db: str, instance: str, workdir: Path) -> subprocess.Popen:
    register_test_terminals(db)
    cfg = workdir / "backend.toml"
    if not cfg.exists():
        cfg.write_text(
            f'[sms]\nsender = "file"\nfile = "{workdir / "sms.jsonl"}"\n'
            "[service]\nsweep_seconds = 1\n",
            encoding="utf-8",
        )
    log = open(workdir / f"{instance}.log", "ab")  # noqa: SIM115
    try:
        return subprocess.Popen(
            [sys.executable, "-m", "backend", "run", "--broker", broker, "--db", db,
             "--instance", instance, "--config", str(cfg), "--log-level", "WARNING"],
            cwd=ROOT, env=dict(os.environ, PYTHONPATH=str(ROOT)), stdout=log, stderr=log,
            start_new_session=True,
        )  # fmt: skip
    finally:
        log.close()


def _req(type: str, body: dict, tid: str) -> Request:
    return request(type, body, tid=tid, stan=next(_stans) % 1_000_000)


class Fleet:
    """The terminals' side: sends a wave of requests, some twice at once, and waits for
    every answer."""

    def __init__(self, agent: TestAgent, rng: random.Random) -> None:
        self.agent = agent
        self.rng = rng
        self.doubled: list[Request] = []

    def wave(self, reqs: list[Request]) -> dict[str, Response]:
        counts = {}
        for r in reqs:
            twice = self.rng.random() < 0.2
            self.agent.send(r)
            if twice:
                self.agent.send(r)  # the next consumer of the share group gets it too
                self.doubled.append(r)
            counts[r.id] = 2 if twice else 1
        self.agent.wait_for(
            lambda: all(len(self.agent.responses.get(i, [])) >= n for i, n in counts.items()),
            timeout=300,
        )
        out = {}
        for r in reqs:
            got = self.agent.responses[r.id]
            for other in got[1:]:  # both processes answer the same
                assert (other.code, other.body) == (got[0].code, got[0].body), r
            out[r.key] = got[0]
        return out


def _wait_online(agent: TestAgent, names: list[str]) -> None:
    agent.wait_for(lambda: all(agent.status.get(n) is True for n in names), timeout=60)


def test_backend_four_processes_every_effect_once(broker, pg_url: str, tmp_path: Path) -> None:
    names = [f"b{i}" for i in range(1, 5)]
    procs = [_start(broker.address, pg_url, n, tmp_path) for n in names]
    agent = TestAgent(broker.address, tids=TIDS)
    rng = random.Random(12)
    fleet = Fleet(agent, rng)
    try:
        _wait_online(agent, names)
        phones = [phone(i) for i in range(PER_TYPE // 4)]
        # enrolment: each phone from four terminals at once, one member each
        enrolls = [
            _req("enroll", {"phone": p}, TIDS[(i + k) % len(TIDS)])
            for k in range(4)
            for i, p in enumerate(phones)
        ]
        answers = fleet.wave(enrolls)
        assert all(a.code == "00" for a in answers.values())
        earns = [
            advice(amount=rng.randint(100_000, 3_000_000), occurred_at=schema.utc_now_iso(),
                   phone=rng.choice(phones), tid=rng.choice(TIDS))
            for _ in range(PER_TYPE)
        ]  # fmt: skip
        answers |= fleet.wave(earns)
        inquiries = [
            _req("inquiry", {"phone": rng.choice(phones), "gross": rng.randint(10_000, 400_000)},
                 rng.choice(TIDS))
            for _ in range(PER_TYPE + PER_TYPE // 2)
        ]  # fmt: skip
        quoted = fleet.wave(inquiries)
        answers |= quoted
        settles, releases = [], []
        for i, inq in enumerate(inquiries):
            q = quoted[inq.key]
            assert q.code == "00", q
            if i < PER_TYPE // 2:
                gross = inq.body["gross"]
                settles.append(
                    advice(amount=gross - q.body["discount"], gross=gross,
                           occurred_at=schema.utc_now_iso(), quote_id=q.body["quote_id"],
                           tid=inq.terminal_id)
                )  # fmt: skip
            else:
                releases.append(
                    Request(type="release", id=f"release-{inq.id}",
                            key=schema.release_key(inq.key), terminal_id=inq.terminal_id,
                            merchant_id=inq.merchant_id,
                            body={"inquiry_key": inq.key, "quote_id": q.body["quote_id"],
                                  "reason": "undelivered"})
                )  # fmt: skip
        answers |= fleet.wave(settles + releases)
        advices = earns + settles
        reversals = [
            reversal(a, occurred_at=schema.utc_now_iso(), tid=a.terminal_id)
            for a in rng.sample(advices, PER_TYPE)
        ]
        answers |= fleet.wave(reversals)
        assert len(fleet.doubled) > PER_TYPE // 2
    finally:
        agent.close()
        for p in procs:
            stop_process(p)
    for p in procs:
        assert p.returncode == 0, (tmp_path / "b1.log").read_text()[-2000:]
    assert all(a.code == "00" for a in answers.values()), [
        a for a in answers.values() if a.code != "00"
    ][:3]
    with psycopg.connect(pg_url) as db:

        def one(sql: str, *args: object) -> object:
            return db.execute(sql, args).fetchone()[0]

        assert one("SELECT COUNT(*) FROM members") == len(phones)
        assert one("SELECT COUNT(*) FROM purchases") == len(advices)
        assert one("SELECT COUNT(*) FROM reversals WHERE applied = 1") == len(reversals)
        assert one("SELECT COUNT(*) FROM requests") == len(answers)
        ledger = {k: a for k, a in db.execute("SELECT key, amount FROM ledger").fetchall()}
        # every effect once, and as answered
        for a in advices:
            earned = answers[a.key].body["earned"]
            assert ledger.get(f"earn:{a.key}", 0) == earned or a.key in {
                r.body["original_key"] for r in reversals
            }
        for r in reversals:
            got = answers[r.key].body
            orig = r.body["original_key"]
            assert ledger.get(f"reversal-restore:{orig}", 0) == got["restored"]
            assert ledger.get(f"reversal-takeback:{orig}", 0) == -got["taken_back"]
        for rel in releases:
            qid = rel.body["quote_id"]
            assert ledger.get(f"release:{qid}", 0) == answers[rel.key].body["released"]
            assert (
                answers[rel.key].body["released"]
                == answers[rel.body["inquiry_key"]].body["discount"]
            )
        assert one("SELECT COUNT(*) FROM quotes WHERE status = 'held'") == 0
        # balances equal the ledger; lots minus holds equal the balance; none negative
        rows = db.execute(
            "SELECT m.id, COALESCE((SELECT SUM(amount) FROM ledger l WHERE l.member_id = m.id), 0),"
            " COALESCE((SELECT SUM(remaining) FROM lots o WHERE o.member_id = m.id), 0)"
            " FROM members m"
        ).fetchall()
        assert all(bal >= 0 and bal == lots for _, bal, lots in rows)
        # every SMS sent once (the outbox claimed with SKIP LOCKED by four workers)
        queued = one("SELECT COUNT(*) FROM sms_outbox")
    assert queued >= len(phones) + len(advices) - len(reversals)
    sent = (
        (tmp_path / "sms.jsonl").read_text(encoding="utf-8").splitlines()
        if (tmp_path / "sms.jsonl").exists()
        else []
    )
    with psycopg.connect(pg_url) as db:
        done = db.execute("SELECT COUNT(*) FROM sms_outbox WHERE status = 'sent'").fetchone()[0]
    assert len(sent) == done and all(json.loads(line)["phone"] for line in sent)


def test_backend_sigkill_mid_batch_loses_nothing(broker, pg_url: str, tmp_path: Path) -> None:
    """One of two processes is killed while it is committing; the agent repeats what was
    not answered, the other process answers it, and no effect is lost or doubled."""
    procs = {n: _start(broker.address, pg_url, n, tmp_path) for n in ("k1", "k2")}
    agent = TestAgent(broker.address, tids=TIDS)
    try:
        _wait_online(agent, list(procs))
        phones = [phone(i) for i in range(40)]
        for i, p in enumerate(phones):
            agent.ask(_req("enroll", {"phone": p}, TIDS[i % len(TIDS)]))
        buys = [
            advice(amount=1_000_000, occurred_at=schema.utc_now_iso(), phone=phones[i % 40],
                   tid=TIDS[i % len(TIDS)])
            for i in range(600)
        ]  # fmt: skip
        for b in buys:
            agent.send(b)
        # once answers are flowing, kill one process in the middle of its work
        agent.wait_for(lambda: sum(len(v) for v in agent.responses.values()) >= 140)
        procs["k1"].send_signal(signal.SIGKILL)
        procs["k1"].wait(10)
        agent.wait_for(lambda: agent.status.get("k1") is False, timeout=60)  # its last will
        # the agent repeats every request it has no answer for; k2 answers
        for b in buys:
            if not agent.responses.get(b.id):
                agent.send(b)
        agent.wait_for(lambda: all(agent.responses.get(b.id) for b in buys), timeout=120)
    finally:
        agent.close()
        for p in procs.values():
            stop_process(p)
    with psycopg.connect(pg_url) as db:
        assert db.execute("SELECT COUNT(*) FROM purchases").fetchone()[0] == len(buys)
        earned = db.execute("SELECT COUNT(*), SUM(amount) FROM ledger WHERE kind = 'earn'")
        n, total = earned.fetchone()
    assert n == len(buys)
    assert total == sum(agent.responses[b.id][0].body["earned"] for b in buys)
