"""The shipped scenario files against the real agent, backend and Mosquitto (processes,
stopped by pid), the `loyalty-sim run` command itself, and the demo run once.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from demo.mosquitto import free_port, wait_for_port
from demo.stack import MAC_KEY, Stack, stop_process
from protocols.identity import mask_phone
from terminal_sim.scenario import Outcome, Runner, backend_command, load

HERE = Path(__file__).parent
SCENARIOS = sorted((Path(__file__).parents[2] / "terminal_sim" / "scenarios").glob("*.toml"))
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    config = (HERE / "backend.toml").read_text(encoding="utf-8")
    s = Stack(tmp_path_factory.mktemp("stack"), config).start()
    try:
        yield s
    finally:
        s.stop()


def test_scenarios_are_shipped() -> None:
    assert {p.stem for p in SCENARIOS} >= {"messages", "faults"}


@pytest.mark.parametrize("path", SCENARIOS, ids=lambda p: p.stem)
def test_scenario_against_real_agent_and_backend(stack: Stack, path: Path) -> None:
    scenario = load(path)
    interval = float(scenario.terminal.get("echo_interval", 60))
    session = stack.session(config=stack.config(echo_interval=interval))
    try:
        stack.wait_ready(session)
        outcomes = Runner(session.terminal, session.set_faults, stack.outbox,
                          stats=session.stats,
                          backend=backend_command(stack.db, stack.config_file)).run(scenario)
    finally:
        session.stop()
        stack.sessions.remove(session)
    failed = [f"{o.step.name}: {o.failures}" for o in outcomes if not o.ok]
    assert not failed, "\n".join(failed)
    assert len(outcomes) == len(scenario.steps)


def test_a_failed_expectation_is_reported() -> None:
    from terminal_sim.scenario import Step, check

    assert check({"code": "00", "earned_min": 10}, {"code": "00", "earned": 5}) == [
        "earned_min: expected 10, got 5"]
    assert check({"nothing": 1}, {"code": "00"})[0].startswith("nothing:")
    step = Step("echo", {}, {"code": "00"}, {}, "echo")
    assert not Outcome(step, {"code": "91"}, check(step.expect, {"code": "91"})).ok


def test_loyalty_sim_run_command_over_tcp(stack: Stack, tmp_path: Path) -> None:
    """`python -m terminal_sim run` against an agent listening on loopback TCP."""
    port = free_port()
    agent = stack.spawn_agent("agent-tcp", ["--listen", f"127.0.0.1:{port}"], "T0000002",
                              tmp_path / "journal.sqlite")
    try:
        wait_for_port("127.0.0.1", port, timeout=30)
        base = [sys.executable, "-m", "terminal_sim", "run"]
        line = ["--connect", f"127.0.0.1:{port}", "--terminal-id", "T0000002",
                "--mac-key", MAC_KEY]
        ok = subprocess.run([*base, str(SCENARIOS[0].parent / "faults.toml"), *line],
                            capture_output=True, text=True, timeout=120)
        assert ok.returncode == 0, ok.stdout + ok.stderr
        assert "0 failed" in ok.stdout
        bad = tmp_path / "bad.toml"
        bad.write_text('[[step]]\ndo = "echo"\nexpect = { code = "12" }\n', encoding="utf-8")
        failing = subprocess.run([*base, str(bad), *line], capture_output=True, text=True,
                                 timeout=60)
        assert failing.returncode == 1 and "FAIL" in failing.stdout
        broken = tmp_path / "broken.toml"
        broken.write_text('[[step]]\ndo = "fly"\n', encoding="utf-8")
        refused = subprocess.run([*base, str(broken), *line], capture_output=True, text=True,
                                 timeout=60)
        assert refused.returncode == 2 and "unknown action" in refused.stderr
    finally:
        stop_process(agent)


def test_demo_runs_a_whole_day(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "demo.main", "--workdir", str(tmp_path)],
                          capture_output=True, text=True, timeout=170)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    out = done.stdout
    # the end-of-day report is the owner's: Persian labels by default
    for text in ("summary of the day", "members and tiers", "اعتبار داده\u200cشده",
                 "اعتبار خرج\u200cشده", "SMS sent", "advices forwarded", "silver",
                 "forwarded every journaled purchase", str(tmp_path)):
        assert text in out, text
    assert (tmp_path / "loyalty.sqlite").exists() and (tmp_path / "sms-outbox.jsonl").exists()
    # the loyalty card swipe: linked by the operator, then its credit off the bill
    swipe = out.split("swipes his loyalty card", 1)[1].split("\n[", 4)
    assert re.search(r"discount [1-9][0-9,]*  charged", swipe[1]), swipe[:3]
    assert re.search(r"purchase advice \(0220\) answered 00: the club recorded it; "
                     r"earned [1-9]", swipe[2]), swipe[:3]
    # the summary lists members as the club stores them, not as typed
    assert re.search(r"Sara +09123456789 +silver", out), out[-1500:]
    # the SMS carry links to the members' pages, served by the panel the demo starts
    assert re.search(r"a member's own page \(the link of their last SMS\): "
                     r"http://127\.0\.0\.1:[0-9]+/m/[A-Za-z0-9_-]{22}\n", out), out[-1500:]
    # a gift card sold at the counter pays part of a purchase, and the day's report says so
    gift = out.split("pays with the gift card", 1)[1].split("\n[", 3)
    assert "discount 500,000  charged 300,000" in gift[1], gift[:3]
    assert re.search(r"answered 00: the club settled the gift card's part: gift card "
                     r"998[0-9]{3}\*{6}[0-9]{4}, batch 1: value 500000 rials.* balance 0", gift[2])
    # Reza replies "لغو" to the occasion's SMS: the worker turns his consent off, and the
    # campaign sent after it, to every member, does not queue his SMS
    assert "Reza answers the SMS with «لغو»" in out and "Reza's marketing consent is off" in out
    assert re.search(r"Reza replied «لغو»: marketing consent is now off; campaign [0-9]+, "
                     r"sent after the reply, skipped Reza \(2 SMS queued", out), out[-2500:]
    listed = out.split("gift cards (loyalty-backend giftcard list):\n", 1)[1].splitlines()
    assert listed[1].split()[3:6] == ["5", "1", "500000"], listed[:2]  # issued, sold, used


def test_demo_says_in_plain_words_what_the_protocol_says(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "demo.main", "--workdir", str(tmp_path),
                           "--no-receipts"], capture_output=True, text=True, timeout=170)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    out = done.stdout
    assert ("ST=OF QD=2: the backend is unreachable; 2 purchases are waiting in the "
            "agent's journal") in out, out
    # credit Sara did not earn by buying: the demo says where it came from
    assert re.search(r"Sara's credit rose from 52,500 to 72,500 rials without buying "
                     r"anything: the referral bonus \(20,000 rials\), because Reza, whom "
                     r"Sara referred, made a first purchase", out), out
    # every SMS as sent: its Persian text, the phone masked
    records = [json.loads(line) for line in
               (tmp_path / "sms-outbox.jsonl").read_text(encoding="utf-8").splitlines()]
    assert {r["kind"] for r in records} >= {"welcome", "purchase", "otp"}
    for r in records:
        block = "\n".join([f"SMS to {mask_phone(r['phone'])} ({r['kind']}), as sent:",
                           *(f"      > {line}" for line in r["text"].splitlines())])
        assert block in out, block
    assert not re.search(r"SMS to 09[0-9]{9}", out)
    # the owner's campaign to the silver members and the coming occasion's message, as
    # sent; Sara (silver) has the campaign's, so her occasion SMS waits for tomorrow
    by_kind = {k: [r for r in records if r["kind"] == k] for k in ("campaign", "occasion")}
    assert [r["phone"] for r in by_kind["campaign"]] == ["09123456789"], by_kind
    assert sorted(r["phone"] for r in by_kind["occasion"]) == ["09131112233", "09351234567"]
    assert "نقره" in by_kind["campaign"][0]["text"] and "{" not in by_kind["campaign"][0]["text"]
    assert re.search(r"reach: 1 members \(0 held out, 1 to send\); parts: [1-9]", out), out
    assert re.search(r"\n +1 done .* sent 1 pending 0 failed 0  tier=silver", out), out
    assert "Sara's waits for tomorrow morning" in out
    # the end-of-day report is the operator's own command, whatever language it speaks
    report = subprocess.run([sys.executable, "-m", "backend", "report", "--db",
                             str(tmp_path / "loyalty.sqlite"), "--config",
                             str(tmp_path / "backend.toml")],
                            capture_output=True, text=True, timeout=60)
    assert report.returncode == 0, report.stderr
    section = out.split("end-of-day report (loyalty-backend report):\n", 1)[1]
    assert section.startswith(report.stdout.rstrip()), (section[:800], report.stdout)
