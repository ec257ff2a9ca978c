"""The simulator's link side over a real pseudo-terminal, faults included.

The far end is the real firmware_bridge LinkDriver on a SerialTransport with a
scripted responder: it checks the terminal's link behaviour (channel, fault wrapper,
traffic tap), not the agent's loyalty logic, which the scenario tests cover.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from firmware_bridge.transports import FdTransport
from terminal_sim.session import Session
from terminal_sim.terminal import TerminalConfig

from .fake_agent import KEY, FakeAgent, FarAgent

PAN = "6037991234567891"


@pytest.fixture
def line(far_agent: FarAgent) -> Iterator[tuple[Session, FakeAgent, list[tuple[str, str]]]]:
    pty, agent = far_agent()
    traffic: list[tuple[str, str]] = []
    session = Session(FdTransport(pty.master), TerminalConfig(mac_key=KEY, advice_attempts=4),
                      on_traffic=lambda d, t: traffic.append((d, t)), periodic_echo=False)
    session.start()
    try:
        yield session, agent, traffic
    finally:
        session.stop()


def test_clean_line_sale_and_traffic_log(line) -> None:
    session, _agent, traffic = line
    t = session.terminal
    assert t.sign_on().code == "00"
    sale = t.sale(120_000, PAN, "1234", phone="09121234567")
    assert sale.approved and sale.advice_answered and sale.discount == 10_000
    texts = [text for _d, text in traffic]
    assert any(text.startswith("0800") for d, text in traffic if d == "->")
    assert any(text.startswith("0230") for d, text in traffic if d == "<-")
    assert any("48[QI=Q1 GA=120000 DA=10000" in text for d, text in traffic if d == "<-")
    assert texts.count("ACK") >= 6


def test_every_line_fault_is_survived(line) -> None:
    session, _agent, traffic = line
    t = session.terminal
    session.set_faults({"corrupt": 1, "noise": 2, "drop_acks": 1, "stall": 1})
    assert t.sign_on().code == "00"
    sale = t.sale(120_000, PAN, "1234", phone="09121234567")
    assert sale.approved and sale.advice_answered
    stats = session.faulty.stats
    assert (stats.corrupted, stats.noisy, stats.acks_dropped, stats.stalled) == (1, 2, 1, 1)
    assert ("<-", "NAK") in traffic  # the corrupted frame was refused, then resent
    line = session.stats()
    assert line["bad_frames_sent"] == 1 and line["naks_received"] == 1
    assert line["acks_dropped"] == 1 and line["sent_0220"] >= 1


def test_lost_response_makes_the_terminal_repeat_the_advice(line) -> None:
    session, agent, _traffic = line
    session.set_faults({"lost_responses": 1})
    sale = session.terminal.sale(120_000, PAN, "1234", phone="09121234567")
    advices = [f for f in agent.seen if f["t"] == "0220"]
    assert len(advices) == 2 and sale.advice_answered
    assert advices[0]["11"] == advices[1]["11"] and advices[0]["7"] == advices[1]["7"]


def test_slow_terminal_and_clock_off(line) -> None:
    session, agent, _traffic = line
    session.set_faults({"slow_byte_ms": 2, "slow_ack_ms": 50, "clock_offset_s": -7200})
    assert session.terminal.enroll("09121234567").code == "00"
    sent = datetime.strptime(agent.seen[-1]["7"], "%m%d%H%M%S")
    behind = datetime.now(UTC).replace(tzinfo=None) - timedelta(hours=2)
    assert abs((sent.replace(year=behind.year) - behind).total_seconds()) < 120
    assert session.faulty.stats.corrupted == 0


def test_bad_fault_plan_changes_nothing(line) -> None:
    session, _agent, _traffic = line
    with pytest.raises(ValueError):
        session.set_faults({"corrupt": 3, "drop_acks": -1})
    with pytest.raises(ValueError):
        session.set_faults({"nonsense": 1})
    assert session.faults.corrupt == 0
