"""The scenario format: bad files are refused with a message naming the problem."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from firmware_bridge.transports import FdTransport, open_pty
from terminal_sim.cli import main
from terminal_sim.scenario import ScenarioError, line_delta, load, parse
from terminal_sim.session import LINE_FIGURES, Session
from terminal_sim.terminal import TerminalConfig

SCENARIOS = Path(__file__).parents[2] / "terminal_sim" / "scenarios"


@pytest.mark.parametrize("doc, words", [
    ({}, "at least one"),
    ({"step": [{"expect": {}}]}, "do ="),
    ({"step": [{"do": "fly"}]}, "unknown action"),
    ({"step": [{"do": "sale"}]}, "amount"),
    ({"step": [{"do": "sale", "amount": 5, "colour": "red"}]}, "unknown keys"),
    ({"step": [{"do": "enroll"}]}, "phone"),
    ({"step": [{"do": "reverse"}]}, "sale"),
    ({"step": [{"do": "echo", "faults": {"corrupt": -1}}]}, ">= 0"),
    ({"step": [{"do": "echo", "faults": {"gremlins": 1}}]}, "unknown fault"),
    ({"steps": []}, "unknown top-level"),
    ({"step": [{"do": "link_card", "phone": "0912"}]}, "card"),
    ({"step": [{"do": "echo", "settle_s": -1}]}, "settle_s"),
    ({"step": [{"do": "echo", "expect": "00"}]}, "tables"),
    ({"faults": 3, "step": [{"do": "echo"}]}, r"\[faults\] must be a table"),
    ({"terminal": {"mac_key": "zz"}, "step": [{"do": "echo"}]}, "mac_key"),
    ({"terminal": {"colour": 1}, "step": [{"do": "echo"}]}, "unknown key"),
    ({"bank": {"card": [{"pan": "12"}]}, "step": [{"do": "echo"}]}, "16-19 digits"),
    ({"step": [{"do": "echo", "expect": {"colour": 1}}]}, r"step 1 \(echo\).*'colour'"),
    ({"step": [{"do": "echo"}, {"do": "sale", "amount": 5, "name": "big one",
                                "expect": {"earnd_min": 1}}]},
     r"step 2 'big one' \(sale\): expect key 'earnd_min' is not observed"),
    ({"step": [{"do": "echo", "expect": {"earned": 1}}]}, "'earned' is not observed by echo"),
    ({"step": [{"do": "sale", "amount": 5, "expect": {"earned_min": "1"}}]}, "needs a number"),
    ({"step": [{"do": "sale", "amount": 5, "expect": {"receipt_contains": 1}}]},
     "needs a string"),
])
def test_bad_scenarios_are_refused(doc: dict, words: str) -> None:
    with pytest.raises((ScenarioError, ValueError), match=words):
        parse(doc)


def test_shipped_scenarios_parse() -> None:
    for path in SCENARIOS.glob("*.toml"):
        scenario = load(path)
        assert scenario.steps and scenario.name


def test_unreadable_scenario_and_bad_options(tmp_path: Path, capsys) -> None:
    with pytest.raises(ScenarioError):
        load(tmp_path / "missing.toml")
    (tmp_path / "x.toml").write_text("not = [toml", encoding="utf-8")
    with pytest.raises(ScenarioError):
        load(tmp_path / "x.toml")
    assert main(["run", str(tmp_path / "x.toml"), "--connect", "127.0.0.1:1"]) == 2
    assert main(["run", str(SCENARIOS / "faults.toml"), "--connect", "10.0.0.1:80"]) == 2
    assert "loopback" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        main(["run", "s.toml", "--serial", "/dev/null", "--mac-key", "abc"])
    assert exc.value.code == 2


def test_demo_without_mosquitto_says_how_to_install(monkeypatch, capsys) -> None:
    import demo.main
    from demo.mosquitto import INSTALL_HINT, BrokerError

    def missing() -> str:
        raise BrokerError(INSTALL_HINT)

    monkeypatch.setattr(demo.main, "find_mosquitto", missing)
    assert demo.main.main([]) == 1
    assert "apt-get install -y mosquitto" in capsys.readouterr().err


def test_file_errors_name_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "typo.toml"
    bad.write_text('[[step]]\ndo = "sale"\namount = "lots"\n', encoding="utf-8")
    with pytest.raises(ScenarioError, match=r"typo\.toml: step 1 \(sale\): needs an integer"):
        load(bad)


def test_step_options_are_checked_before_the_line_is_opened(tmp_path: Path, capsys) -> None:
    """A scenario that links a card needs --backend-db; one reading OTPs needs --outbox."""
    path = SCENARIOS / "messages.toml"
    assert main(["run", str(path), "--connect", "127.0.0.1:1"]) == 2
    assert "--backend-db" in capsys.readouterr().err
    assert main(["run", str(path), "--connect", "127.0.0.1:1",
                 "--backend-db", str(tmp_path / "db")]) == 2
    assert "--outbox" in capsys.readouterr().err
    assert main(["run", str(SCENARIOS / "faults.toml"), "--serial", str(tmp_path / "no")]) == 2
    assert "no such serial device" in capsys.readouterr().err


def test_line_figures_are_per_step() -> None:
    before = {"frames_sent": 4, "naks_received": 1, "pending": 2}
    after = {"frames_sent": 6, "naks_received": 1, "pending": 1, "code": "00"}
    assert line_delta(before, after) == {"frames_sent": 2, "naks_received": 0, "pending": 1,
                                         "code": "00"}


def test_expect_keys_are_checked_before_anything_is_sent(tmp_path: Path, capsys) -> None:
    """Exit 2 naming the step and the key, before the line is even opened."""
    bad = tmp_path / "late.toml"
    bad.write_text('[[step]]\ndo = "echo"\n\n[[step]]\nname = "buy"\ndo = "sale"\n'
                   'amount = 5\nexpect = { bank = "00", discont = 1 }\n', encoding="utf-8")
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        listener.setblocking(False)
        port = listener.getsockname()[1]
        assert main(["run", str(bad), "--connect", f"127.0.0.1:{port}"]) == 2
        err = capsys.readouterr().err
        assert "step 2 'buy' (sale)" in err and "'discont'" in err, err
        with pytest.raises(BlockingIOError):  # main has returned: no connection was made
            listener.accept()


def test_every_line_figure_may_be_expected() -> None:
    """The names `expect` accepts are the names `Session.stats` gives."""
    pty = open_pty()
    try:
        session = Session(FdTransport(pty.master), TerminalConfig(), periodic_echo=False)
        assert set(session.stats()) == LINE_FIGURES
        assert parse({"step": [{"do": "echo", "expect": dict.fromkeys(LINE_FIGURES, 0)}]})
    finally:
        pty.close()
