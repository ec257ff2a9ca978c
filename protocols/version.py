"""The one version of every command, written here and read by setup.cfg
(`version = attr: protocols.version.VERSION`), so the installed metadata and the code can
never disagree. A constant rather than `importlib.metadata`: that import alone costs the
agent 2.3 MB of its 40 MB budget (benchmarks/agent.py).
"""

from __future__ import annotations

VERSION = "0.1.0"


def version() -> str:
    return VERSION


def version_line(prog: str) -> str:
    """What `PROG --version` prints."""
    return f"{prog} {VERSION}"
