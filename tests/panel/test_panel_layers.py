"""The panel is the top layer: nothing below imports it, and it imports no agent or simulator."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def imported(package: str) -> set[tuple[str, str]]:
    found = set()
    for path in (ROOT / package).rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) and
                     node.level == 0 else [])
            found.update((str(path.relative_to(ROOT)), n.split(".")[0]) for n in names)
    return found


def test_nothing_below_imports_the_panel() -> None:
    for package in ("protocols", "firmware_bridge", "agent", "backend", "terminal_sim"):
        assert [p for p, top in imported(package) if top == "panel"] == []


def test_the_panel_imports_neither_agent_nor_simulator() -> None:
    tops = {top for _, top in imported("panel")}
    assert "panel" in tops and "protocols" in tops
    assert not tops & {"agent", "terminal_sim", "firmware_bridge", "demo"}
