"""Upgrades: the journal a previous version wrote is read by this one.

fixtures/journal_v1.log was written by a real agent process (fixtures/make_journal_v1.py)
that answered FRAMES with no backend: a sign-on, an inquiry answered 91 (a release owed),
two purchase advices and the reversal of one of them, all owed to the backend. This code
must open it, owe the same things in the same order, answer a repeated frame with the
very bytes it answered then, and forward each owed advice and reversal (a release older
than an hour is given up, as the current forwarder does).
"""

from __future__ import annotations

import shutil
import sqlite3
from datetime import UTC, datetime
from pathlib import Path

from agent.journal import Journal
from demo.mosquitto import Mosquitto
from tests.agent.agent_terminal import (
    Terminal,
    decode,
    encode,
    header,
    start_agent,
    start_backend,
    status,
    stop,
    tlv,
    wait_for,
)

FIXTURE = Path(__file__).resolve().parent / "fixtures" / "journal_v1.log"
AT = datetime(2026, 12, 1, 10, 0, 0, tzinfo=UTC)
PHONE = "09121234567"
OTHER = "09351234567"


def _advice(stan: int, rrn: str, amount: int, phone: str | None) -> dict[str, str]:
    items = {"GA": str(amount)}
    if phone:
        items["PN"] = phone
    return {"t": "0220", "3": "000000", "4": f"{amount:012d}", **header(stan, AT), "37": rrn,
            "38": "A1B2C3", "39": "00", "48": tlv(items), "49": "364"}


FRAMES: dict[str, dict[str, str]] = {
    "inquiry": {"t": "0100", "3": "310000", "4": "000001500000", **header(11, AT),
                "48": tlv({"PN": PHONE})},
    "advice_a": _advice(12, "000000000012", 1_500_000, PHONE),
    "advice_b": _advice(13, "000000000013", 700_000, OTHER),
    "reversal_b": {"t": "0420", "3": "000000", "4": f"{700_000:012d}", **header(13, AT),
                   "37": "000000000013", "48": tlv({"PN": OTHER})},
}


def test_the_old_journal_opens_with_its_entries_and_debts(tmp_path: Path) -> None:
    path = tmp_path / "journal.log"
    shutil.copy(FIXTURE, path)
    journal = Journal(path)
    try:
        assert len(journal) == 4
        assert [p.type for p in journal.pending()] == ["release", "advice", "advice", "reversal"]
        assert journal.queued() == 3  # the 0810's QD: advices and reversals, not releases
        advice = next(p for p in journal.pending() if p.type == "advice")
        assert advice.body["phone"] == PHONE and advice.body["amount"] == 1_500_000
        stored = journal.response_for(advice.key)
        assert stored is not None and decode(stored)["39"] == "00"
    finally:
        journal.close()
    assert FIXTURE.stat().st_size < 8000  # small, as kept in the repository


def test_the_new_agent_replays_answers_and_forwards_once(tmp_path: Path, broker: Mosquitto
                                                         ) -> None:
    path = tmp_path / "journal.log"
    shutil.copy(FIXTURE, path)
    old = Journal(path)
    answered = {name: old.response_for(key) for name, key in
                ((p.type + str(i), p.key) for i, p in enumerate(old.pending()))}
    old.close()
    term = Terminal()
    agent = start_agent(tmp_path, broker.address, term.path, journal=path)
    backend = None
    try:
        # the first exchange waits until the agent has its line open
        assert wait_for(lambda: status(term, 1), timeout=20)["QD"] == "3"
        # a repeated frame (the terminal did not hear the first answer): the same bytes
        term.send_frame(encode(FRAMES["advice_a"]))
        raw, _ = term.receive(stan=FRAMES["advice_a"]["11"])
        assert raw in answered.values()
        assert status(term, 2)["QD"] == "3"  # nothing new owed
        backend = start_backend(tmp_path, broker.address)
        wait_for(lambda: status(term, 3) == {"ST": "ON", "QD": "0"}, timeout=30)
        term.send_frame(encode(FRAMES["advice_a"]))  # and once more, after forwarding
        again, _ = term.receive(stan=FRAMES["advice_a"]["11"])
        assert again == raw
    finally:
        stop(agent)
        stop(backend)
        term.close()
    assert agent.returncode == 0
    con = sqlite3.connect(tmp_path / "backend.db")
    try:
        rows = con.execute("SELECT type FROM requests ORDER BY type").fetchall()
    finally:
        con.close()
    # every owed advice and reversal reached the backend (it keeps one answer per
    # idempotency key); the release was sent or, older than the forwarder's RELEASE_TTL
    # as this fixture soon is, given up: either way nothing is owed any more
    assert [t for (t,) in rows if t in ("advice", "reversal")] == ["advice", "advice",
                                                                    "reversal"], rows
    after = Journal(path)
    try:
        assert after.pending() == [] and after.queued() == 0
    finally:
        after.close()
