"""The alert rules parse, and they and the dashboard use only metrics the code exports.

The agent's names come from agent.metrics.METRICS, the backend's from
backend.metrics.METRICS, listed in docs/operations.md.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from agent.metrics import METRICS as AGENT_METRICS
from backend.metrics import METRICS as BACKEND_METRICS

yaml = pytest.importorskip("yaml")

REPO = Path(__file__).resolve().parents[2]
RULES = REPO / "deploy" / "prometheus" / "loyalty-alerts.yml"
DASHBOARD = REPO / "deploy" / "grafana" / "loyalty-fleet.json"
#: The backend's metric planned in issue 17 and not exported yet.
PLANNED_BACKEND_METRICS: dict[str, str] = {}
#: Series Prometheus makes itself.
BUILTIN = {"up"}
_SUFFIXES = ("_bucket", "_sum", "_count")


def exported() -> set[str]:
    names = set(PLANNED_BACKEND_METRICS) | BUILTIN
    for name in BACKEND_METRICS:
        names |= {"loyalty_backend_" + name + suffix for suffix in ("", *_SUFFIXES)}
    for name in AGENT_METRICS:
        names |= {"loyalty_agent_" + name, "loyalty_agent_" + name + "_total"}
    return names


def metric_names(expr: str) -> set[str]:
    """The series an expression reads: identifiers before `{`, `[`, an operator or the end,
    that are not functions, keywords, label names or strings."""
    expr = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)  # label values and strings
    expr = re.sub(r"\{[^}]*\}", "{}", expr)  # label matchers
    expr = re.sub(r"\[[^\]]*\]", "", expr)  # range selectors: [5m]
    expr = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "",
                  expr)
    out = set()
    for m in re.finditer(r"[A-Za-z_:][A-Za-z0-9_:]*", expr):
        rest = expr[m.end():].lstrip()
        word = m.group(0)
        if rest.startswith("(") or word in {"and", "or", "unless", "bool", "offset", "vector",
                                            "sum", "count", "max", "min", "avg", "e"}:
            continue
        if re.fullmatch(r"\d+[smhdwy]", word) or re.fullmatch(r"e\d+", word):
            continue
        out.add(word)
    return out


def rules() -> list[dict]:
    doc = yaml.safe_load(RULES.read_text(encoding="utf-8"))
    return [r for g in doc["groups"] for r in g["rules"]]


def test_rules_parse_and_are_complete() -> None:
    all_rules = rules()
    names = {r["alert"] for r in all_rules}
    assert len(names) == len(all_rules)
    # the four the issue names
    assert {"LoyaltyAgentOffline", "LoyaltyAgentJournalGrowing", "LoyaltyBackendSmsFailing",
            "LoyaltyBackendErrors"} <= names
    for r in all_rules:
        assert set(r) <= {"alert", "expr", "for", "labels", "annotations"}, r["alert"]
        assert r["labels"]["severity"] in {"critical", "warning", "info"}, r["alert"]
        assert r["annotations"]["summary"], r["alert"]
        assert "for" not in r or re.fullmatch(r"\d+[smh]", r["for"]), r["alert"]
        assert r["expr"].count("(") == r["expr"].count(")"), r["alert"]


def test_rules_use_only_exported_metrics() -> None:
    known = exported()
    for r in rules():
        used = metric_names(r["expr"])
        assert used, r["alert"]
        assert used <= known, (r["alert"], used - known)


def test_dashboard_uses_only_exported_metrics() -> None:
    dash = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    known = exported()
    exprs = [t["expr"] for p in dash["panels"] for t in p.get("targets", [])]
    assert len(exprs) >= 10
    for expr in exprs:
        used = metric_names(expr)
        assert used and used <= known, (expr, used - known)
    used_agent = set().union(*map(metric_names, exprs))
    # a fleet view shows every agent metric
    for name in AGENT_METRICS:
        assert {"loyalty_agent_" + name, "loyalty_agent_" + name + "_total"} & used_agent, name


def test_the_name_check_can_fail() -> None:
    assert metric_names('rate(loyalty_agent_frames_lost_total{terminal="x"}[5m]) > 0') == {
        "loyalty_agent_frames_lost_total"}
    assert "loyalty_agent_frames_lost_total" not in exported()
    assert metric_names("sum by (terminal) (up{job=\"a\"}) / 2e3") == {"up"}


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool not installed")
def test_promtool_checks_the_rules() -> None:
    done = subprocess.run(["promtool", "check", "rules", str(RULES)], capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
