"""The one version of every command: setup.cfg's `[metadata] version`.

Installed, it comes from the distribution's metadata; in a source checkout that was never
installed, from the setup.cfg beside the packages. Neither: it says so rather than guess.
"""

from __future__ import annotations

import configparser
from importlib import metadata
from pathlib import Path

DISTRIBUTION = "loyalty-pos"
_SETUP_CFG = Path(__file__).resolve().parent.parent / "setup.cfg"


def version() -> str:
    try:
        return metadata.version(DISTRIBUTION)
    except metadata.PackageNotFoundError:
        pass
    if _SETUP_CFG.is_file():
        cfg = configparser.ConfigParser()
        try:
            cfg.read(_SETUP_CFG, encoding="utf-8")
            if cfg.get("metadata", "name", fallback="") == DISTRIBUTION:
                return cfg.get("metadata", "version")
        except (configparser.Error, OSError):
            pass
    return "0+unknown"


def version_line(prog: str) -> str:
    """What `PROG --version` prints."""
    return f"{prog} {version()}"
