"""One version for every command: setup.cfg's, through the installed metadata or, in a
checkout that was never installed, read from setup.cfg itself."""

from __future__ import annotations

import configparser
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest

from protocols import version as v

REPO = Path(__file__).resolve().parents[2]


def setup_cfg_version() -> str:
    cfg = configparser.ConfigParser()
    cfg.read(REPO / "setup.cfg", encoding="utf-8")
    return cfg.get("metadata", "version")


def test_version_is_setup_cfgs() -> None:
    assert v.version() == setup_cfg_version()


def test_a_checkout_without_metadata_reads_setup_cfg(monkeypatch: pytest.MonkeyPatch) -> None:
    def missing(name: str) -> str:
        raise metadata.PackageNotFoundError(name)

    monkeypatch.setattr(v.metadata, "version", missing)
    assert v.version() == setup_cfg_version()
    monkeypatch.setattr(v, "_SETUP_CFG", REPO / "no-such-setup.cfg")
    assert v.version() == "0+unknown"


@pytest.mark.parametrize(("module", "prog"), [("backend", "loyalty-backend"),
                                              ("agent", "loyalty-agent"),
                                              ("terminal_sim", "loyalty-sim"),
                                              ("demo.main", "loyalty-demo")])
def test_every_command_says_its_version(module: str, prog: str) -> None:
    done = subprocess.run([sys.executable, "-m", module, "--version"], capture_output=True,
                          text=True, timeout=60, cwd=REPO)
    assert done.returncode == 0 and done.stdout == f"{prog} {setup_cfg_version()}\n", done
