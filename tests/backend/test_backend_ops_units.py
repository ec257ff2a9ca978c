"""The pure parts of the backend's operations: metrics' histograms and address rule, the
config keys of `run`, backup names, password-free URLs for pg_dump."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from backend import backup, engine
from backend.config import ConfigError, parse
from backend.metrics import SECONDS_BUCKETS, BackendMetrics, Histogram, listen_address
from protocols.mqtt import Request, Response


@given(st.lists(st.floats(min_value=0, max_value=100, allow_nan=False)))
def test_histogram_is_cumulative_and_counts_everything(values: list[float]) -> None:
    h = Histogram(SECONDS_BUCKETS)
    for v in values:
        h.observe(v)
    buckets, total = h.exposition()
    counts = [n for _, n in buckets]
    assert counts == sorted(counts)  # cumulative
    assert buckets[-1] == ("+Inf", len(values))
    for (le, n) in buckets[:-1]:
        assert n == sum(1 for v in values if v <= float(le))
    assert total == pytest.approx(sum(values))


def test_group_counts_by_type_and_code() -> None:
    m = BackendMetrics()
    reqs = [Request(type=t, id=str(i), key=f"k{i}", terminal_id="T0000001",
                    merchant_id="M00000000000001", body={})
            for i, t in enumerate(("inquiry", "inquiry", "advice"))]
    resps = [Response(type=r.type, id=r.id, key=r.key, code=c)
             for r, c in zip(reqs, ("00", "14", "00"), strict=True)]
    m.group(reqs, resps, [1.0, 1.0, 1.5], 0.002, 2.0)
    requests, handling, commit, size = m.snapshot()
    assert requests == {("inquiry", "00"): 1, ("inquiry", "14"): 1, ("advice", "00"): 1}
    assert handling["inquiry"][0][-1] == ("+Inf", 2) and handling["inquiry"][1] == 2.0
    assert commit[0][-1] == ("+Inf", 1) and size[1] == 3


def test_group_counts_unregistered_terminals() -> None:
    from backend.handlers import NOT_REGISTERED

    m = BackendMetrics()
    reqs = [Request(type="enroll", id=str(i), key=f"k{i}", terminal_id="X0000001",
                    merchant_id="M00000000000001", body={}) for i in range(3)]
    resps = [Response(type="enroll", id="0", key="k0", code="96", message=NOT_REGISTERED),
             Response(type="enroll", id="1", key="k1", code="96", message="internal error"),
             Response(type="enroll", id="2", key="k2", code="00")]
    m.group(reqs, resps, [1.0, 1.0, 1.0], 0.001, 1.5)
    assert m.unknown_terminals == 1  # the registry's refusal only, not every 96


@pytest.mark.parametrize("text", ["127.0.0.1:9740", "localhost:9740", "[::1]:0"])
def test_metrics_on_loopback(text: str) -> None:
    host, _ = listen_address(text)
    assert host in ("127.0.0.1", "::1")


@pytest.mark.parametrize("text", ["0.0.0.0:9740", "192.168.1.5:9740", "example.com:9740"])
def test_metrics_elsewhere_needs_allow_remote(text: str) -> None:
    with pytest.raises(ValueError, match="--metrics-allow-remote"):
        listen_address(text)
    assert listen_address(text, allow_remote=True)[1] == 9740


def test_config_keys_of_run() -> None:
    s = parse({"mqtt": {"password_file": "/etc/x"}, "log": {"format": "json", "file": "/l"},
               "metrics": {"listen": "127.0.0.1:9740"}})
    assert (s.mqtt.password_file, s.log_format, s.log_file, s.metrics) == (
        "/etc/x", "json", "/l", "127.0.0.1:9740")
    for doc, word in (
        ({"mqtt": {"password": "a", "password_file": "/x"}}, "only one"),
        ({"log": {"format": "xml"}}, "log.format"),
        ({"metrics": {"listen": "nowhere"}}, "metrics.listen"),
        ({"metrics": {"port": 1}}, "unknown setting"),
    ):
        with pytest.raises(ConfigError, match=word):
            parse(doc)


def test_backup_names_sort_by_time(tmp_path: Path) -> None:
    times = [datetime(2026, 12, 2, 3, 30, 0, 999_000, tzinfo=UTC),
             datetime(2026, 12, 2, 3, 30, 1, 0, tzinfo=UTC),
             datetime(2027, 1, 1, tzinfo=UTC)]
    names = [backup.backup_name("shop", t, ".sqlite") for t in times]
    assert names == sorted(names)
    assert names[0] == "shop-20261202T033000.999Z.sqlite"
    for n in reversed(names):
        (tmp_path / n).write_bytes(b"")
    (tmp_path / "shop-notes.sqlite").write_bytes(b"")
    assert [p.name for p in backup.backups_of(tmp_path, "shop")] == names
    assert [p.name for p in backup.prune(tmp_path, "shop", 1)] == names[:2]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([names[2], "shop-notes.sqlite"])


def test_split_password_leaves_no_password_in_the_url() -> None:
    for url in ("postgresql://u:s%3Acret@h:5432/db", "postgresql://u@h/db?password=s:cret",
                "postgresql://u:s:cret@h/db?sslmode=require"):
        bare, password = engine.split_password(url)
        assert password == "s:cret" and "cret" not in bare
        assert engine.parse_target(bare).is_postgresql
    assert engine.split_password("postgresql://u@h/db") == ("postgresql://u@h/db", None)


def test_prometheus_client_only_with_metrics() -> None:
    """`run` without --metrics never imports prometheus-client (memory, start-up time)."""
    import subprocess
    import sys

    code = ("import sys, backend.cli, backend.service, backend.cli_ops; "
            "assert 'prometheus_client' not in sys.modules; "
            "import backend.metrics; assert 'prometheus_client' not in sys.modules")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=Path(__file__).resolve().parents[2], timeout=60)
    assert done.returncode == 0, done.stderr
