"""One version for every command: protocols.version.VERSION, which setup.cfg reads, so the
installed metadata says the same as the code."""

from __future__ import annotations

import configparser
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest

from protocols import version as v

REPO = Path(__file__).resolve().parents[2]


def test_setup_cfg_reads_the_version_from_the_code() -> None:
    cfg = configparser.ConfigParser()
    cfg.read(REPO / "setup.cfg", encoding="utf-8")
    assert cfg.get("metadata", "version") == "attr: protocols.version.VERSION"


def test_the_installed_metadata_says_the_same() -> None:
    assert metadata.version("loyalty-pos") == v.VERSION == v.version()


def setup_cfg_version() -> str:
    return v.VERSION


@pytest.mark.parametrize(("module", "prog"), [("backend", "loyalty-backend"),
                                              ("agent", "loyalty-agent"),
                                              ("terminal_sim", "loyalty-sim"),
                                              ("demo.main", "loyalty-demo")])
def test_every_command_says_its_version(module: str, prog: str) -> None:
    done = subprocess.run([sys.executable, "-m", module, "--version"], capture_output=True,
                          text=True, timeout=60, cwd=REPO)
    assert done.returncode == 0 and done.stdout == f"{prog} {setup_cfg_version()}\n", done
