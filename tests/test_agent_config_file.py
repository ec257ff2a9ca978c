"""The agent configuration `terminal add --agent-config` writes, read by the agent's loader."""

from __future__ import annotations

import os
import stat
import tomllib
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent import config as agent_config
from backend.agent_config import AgentConfigError, render, toml_string, write_agent_config

ARGS = dict(
    terminal_id="T0000007",
    merchant_id="M00000000000007",
    broker="broker.example:8883",
    broker_username="T0000007",
    broker_password="Zq-3_secret_password_0123456789abcdef",
)


def test_the_written_file_is_private_and_the_agent_loads_it(tmp_path: Path) -> None:
    path = tmp_path / "agent.toml"
    journal = tmp_path / "journal.log"
    key = write_agent_config(path, **ARGS, journal=str(journal), serial="/dev/ttyS3")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert len(key) == 16
    cfg = agent_config.build(agent_config.load_toml(path))
    assert cfg.terminal_id == "T0000007"
    assert cfg.merchant_id == "M00000000000007"
    assert cfg.mac_key == key
    assert (cfg.broker_host, cfg.broker_port) == ("broker.example", 8883)
    assert cfg.broker_username == "T0000007"
    assert cfg.broker_password == ARGS["broker_password"]
    assert cfg.serial == "/dev/ttyS3" and cfg.journal == journal
    assert [p.name for p in tmp_path.iterdir()] == ["agent.toml"]  # no temporary left


def test_every_terminal_gets_a_fresh_key(tmp_path: Path) -> None:
    keys = {write_agent_config(tmp_path / f"a{i}.toml", **ARGS) for i in range(5)}
    assert len(keys) == 5


def test_an_existing_file_is_never_replaced(tmp_path: Path) -> None:
    path = tmp_path / "agent.toml"
    path.write_text("mac_key = 'the key already in the terminal'\n")
    with pytest.raises(AgentConfigError, match="already exists"):
        write_agent_config(path, **ARGS)
    assert path.read_text() == "mac_key = 'the key already in the terminal'\n"
    assert [p.name for p in tmp_path.iterdir()] == ["agent.toml"]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"terminal_id": "T1"}, "terminal id"),
        ({"merchant_id": "M1"}, "merchant id"),
        ({"broker": "no-port"}, "broker"),
        ({"broker_password": ""}, "password"),
    ],
)
def test_bad_values_write_nothing(tmp_path: Path, change: dict, message: str) -> None:
    with pytest.raises(AgentConfigError, match=message):
        write_agent_config(tmp_path / "agent.toml", **{**ARGS, **change})
    assert list(tmp_path.iterdir()) == []


def test_a_missing_folder_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(AgentConfigError, match="cannot write"):
        write_agent_config(tmp_path / "nowhere" / "agent.toml", **ARGS)


@given(st.text())
def test_toml_strings_read_back(value: str) -> None:
    assert tomllib.loads(f"x = {toml_string(value)}\n") == {"x": value}


def test_rendered_text_names_only_agent_settings() -> None:
    text = render(**ARGS, mac_key=os.urandom(16), broker_ca_file="/etc/ca.pem")
    assert set(tomllib.loads(text)) <= set(agent_config.SETTINGS)
