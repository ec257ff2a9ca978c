"""The scenario format: bad files are refused with a message naming the problem."""

from __future__ import annotations

from pathlib import Path

import pytest

from terminal_sim.cli import main
from terminal_sim.scenario import ScenarioError, load, parse

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
