"""Settings: TOML plus command line, every bad one named with exit 2 and nothing changed."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from agent.cli import main
from agent.config import SETTINGS, ConfigError, build, load_toml
from agent.forwarder import Backoff

REPO = Path(__file__).resolve().parents[2]
GOOD = {
    "listen": "127.0.0.1:7000",
    "broker": "127.0.0.1:1883",
    "terminal_id": "T0000001",
    "merchant_id": "M00000000000001",
    "mac_key": "00112233445566778899aabbccddeeff",
}


def test_sample_config_names_every_setting_and_is_valid(tmp_path: Path) -> None:
    sample = REPO / "config" / "agent.toml"
    text = sample.read_text()
    for name in SETTINGS:
        assert f"{name} =" in text, f"config/agent.toml does not describe {name}"
    settings = load_toml(sample)
    settings["journal"] = str(tmp_path / "j.log")
    cfg = build(settings)
    assert cfg.serial == "/dev/ttyUSB0" and cfg.baud == 115200 and len(cfg.mac_key) == 16
    assert "00112233" not in repr(cfg)


def test_command_line_wins_over_the_file(tmp_path: Path, capsys) -> None:
    from agent.cli import parser, settings_from

    conf = tmp_path / "a.toml"
    conf.write_text('baud = 9600\nterminal_id = "T0000009"\n')
    args = parser().parse_args(["run", "--config", str(conf), "--baud", "57600"])
    merged = settings_from(args)
    assert merged == {"baud": 57600, "terminal_id": "T0000009"}


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"mac_key": "0011"}, "mac_key"),
        ({"mac_key": "zz112233445566778899aabbccddeeff"}, "mac_key"),
        ({"listen": None, "serial": "/dev/null", "baud": 12345}, "baud"),
        ({"listen": "10.0.0.1:7000"}, "listen"),
        ({"listen": "127.0.0.1"}, "listen"),
        ({"serial": "/dev/null"}, "serial/listen"),
        ({"terminal_id": "T1"}, "terminal_id"),
        ({"merchant_id": "M1"}, "merchant_id"),
        ({"broker": "nohost"}, "broker"),
        ({"inquiry_budget": 3.0}, "inquiry_budget"),
        ({"advice_wait": 2.0}, "advice_wait"),
        ({"log_level": "LOUD"}, "log_level"),
        ({"broker_ca_file": "/nonexistent/ca.pem"}, "broker_ca_file"),
    ],
)
def test_bad_settings_are_named(tmp_path: Path, change: dict, named: str) -> None:
    settings = {**GOOD, "journal": str(tmp_path / "j.log"), **change}
    settings = {k: v for k, v in settings.items() if v is not None}
    with pytest.raises(ConfigError, match=named.replace("/", ".")):
        build(settings)
    assert not (tmp_path / "j.log").exists()


def args_for(tmp_path: Path, **over: str) -> list[str]:
    values = {**GOOD, "journal": str(tmp_path / "j.log"), **over}
    out = ["run"]
    for name, value in values.items():
        out += ["--" + name.replace("_", "-"), value]
    return out


def test_cli_exit_2_names_the_setting_and_changes_nothing(tmp_path: Path, capsys) -> None:
    assert main(args_for(tmp_path, mac_key="abc")) == 2
    assert "mac_key" in capsys.readouterr().err
    assert not (tmp_path / "j.log").exists()
    bad = tmp_path / "bad.toml"
    bad.write_text("baud = [")
    assert main(["run", "--config", str(bad)]) == 2
    err = capsys.readouterr().err
    assert str(bad) in err and "TOML" in err
    bad.write_text('colour = "blue"\n')
    assert main(["run", "--config", str(bad)]) == 2
    assert "colour" in capsys.readouterr().err


def test_corrupt_journal_exits_2_naming_it(tmp_path: Path) -> None:
    journal = tmp_path / "j.log"
    journal.write_bytes(b"garbage line\nmore garbage\n")
    proc = subprocess.run(
        [sys.executable, "-m", "agent", *args_for(tmp_path, listen="127.0.0.1:0")],
        capture_output=True, text=True, timeout=60, cwd=REPO,
    )
    assert proc.returncode == 2
    assert str(journal) in proc.stderr and "journal" in proc.stderr
    assert journal.read_bytes() == b"garbage line\nmore garbage\n"


def test_journal_that_is_a_folder_exits_2(tmp_path: Path) -> None:
    (tmp_path / "dir").mkdir()
    assert main(args_for(tmp_path, journal=str(tmp_path / "dir"))) == 2
    assert main(args_for(tmp_path, journal=str(tmp_path / "no" / "j.log"))) == 2
    assert not (tmp_path / "no").exists()


def test_backoff_doubles_to_its_cap_and_resets() -> None:
    b = Backoff(0.5, 3.0)
    assert [b.failure() for _ in range(5)] == [0.5, 1.0, 2.0, 3.0, 3.0]
    b.reset()
    assert b.failure() == 0.5
    with pytest.raises(ValueError):
        Backoff(0, 1)


def key_file(tmp_path: Path, text: str, mode: int) -> Path:
    path = tmp_path / "mac.key"
    path.write_text(text)
    path.chmod(mode)
    return path


def test_mac_key_file_is_read_and_the_key_never_echoed(tmp_path: Path, capsys) -> None:
    secret = "00112233445566778899aabbccddeeff"
    path = key_file(tmp_path, f"  {secret}\n", 0o600)
    settings = {**GOOD, "journal": str(tmp_path / "j.log"), "mac_key_file": str(path)}
    del settings["mac_key"]
    assert build(settings).mac_key == bytes.fromhex(secret)
    path.chmod(0o640)  # a service group may read it
    assert build(settings).mac_key == bytes.fromhex(secret)
    path.write_text("0011" + secret[4:-1] + "g\n")
    with pytest.raises(ConfigError, match="mac_key_file") as bad:
        build(settings)
    assert secret[4:-1] not in str(bad.value)


@pytest.mark.parametrize("mode", [0o644, 0o604, 0o602])
def test_world_accessible_mac_key_file_is_refused_with_exit_2(
    tmp_path: Path, capsys, mode: int
) -> None:
    path = key_file(tmp_path, "00112233445566778899aabbccddeeff\n", mode)
    argv = [a for a in args_for(tmp_path) if a not in ("--mac-key", GOOD["mac_key"])]
    assert main([*argv, "--mac-key-file", str(path)]) == 2
    err = capsys.readouterr().err
    assert "mac_key_file" in err and "chmod 600" in err and "00112233" not in err
    assert not (tmp_path / "j.log").exists()


def test_mac_key_and_mac_key_file_are_mutually_exclusive(tmp_path: Path, capsys) -> None:
    path = key_file(tmp_path, "00112233445566778899aabbccddeeff\n", 0o600)
    with pytest.raises(SystemExit) as exited:  # argparse: both on the command line
        main([*args_for(tmp_path), "--mac-key-file", str(path)])
    assert exited.value.code == 2
    assert "--mac-key" in capsys.readouterr().err
    both = {**GOOD, "journal": str(tmp_path / "j.log"), "mac_key_file": str(path)}
    with pytest.raises(ConfigError, match="mac_key/mac_key_file"):
        build(both)  # both in the TOML
    none = {k: v for k, v in both.items() if k not in ("mac_key", "mac_key_file")}
    with pytest.raises(ConfigError, match="mac_key/mac_key_file"):
        build(none)
    # A key on the command line replaces the file's key setting, whichever kind it is.
    from agent.cli import parser, settings_from

    conf = tmp_path / "a.toml"
    conf.write_text(f'mac_key_file = "{path}"\n')
    merged = settings_from(parser().parse_args(
        ["run", "--config", str(conf), "--mac-key", GOOD["mac_key"]]))
    assert merged == {"mac_key": GOOD["mac_key"]}


def test_broker_password_file_is_private_and_exclusive(tmp_path: Path, capsys) -> None:
    secret = tmp_path / "broker.pass"
    secret.write_text("s3cret-pass\n")
    secret.chmod(0o600)
    settings = {**GOOD, "journal": str(tmp_path / "j.log"),
                "broker_username": "T0000001", "broker_password_file": str(secret)}
    cfg = build(settings)
    assert cfg.broker_password == "s3cret-pass" and "s3cret" not in repr(cfg)
    with pytest.raises(ConfigError, match="broker_password/broker_password_file"):
        build({**settings, "broker_password": "other"})
    secret.chmod(0o644)
    assert main([*args_for(tmp_path), "--broker-password-file", str(secret)]) == 2
    err = capsys.readouterr().err
    assert "broker_password_file" in err and "s3cret" not in err
    with pytest.raises(SystemExit):
        main([*args_for(tmp_path), "--broker-password", "x", "--broker-password-file", "y"])
