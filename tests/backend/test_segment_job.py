"""The nightly segment run (backend.segment_job), `loyalty-backend segment compute|list`
and the service's own run: once per Tehran day and club, one writer of many. Both engines."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from backend import segment_job, store, store_registry, store_segments
from backend.cli import main
from backend.daily_rules import day_number
from tests.backend.core_helpers import (
    TestAgent,
    request,
    start_backend,
    stop_process,
    wait_until,
)
from tests.backend.test_store_segments import TODAY, buy, member

# 23:00 UTC of Nov 30 is 02:30 of Dec 1 in Tehran: the run is Tehran's day
NIGHT = datetime(2026, 11, 30, 23, 0, tzinfo=UTC)


def test_tehran_day_of_the_run() -> None:
    assert segment_job.tehran_today(NIGHT) == TODAY


def test_once_per_day_and_club_even_from_two_connections(db: str) -> None:
    a, b = store.connect(db), store.connect(db)
    try:
        with store.transaction(a):
            other = store_registry.add_club(a, "دیگری", NIGHT).id
        m1 = member(a, 1, TODAY - timedelta(days=90))
        member(a, 2, TODAY - timedelta(days=90), club_id=other)
        buy(a, m1, TODAY - timedelta(days=2), 5000, key="k1")
        first = segment_job.run(a, NIGHT)
        assert set(first) == {1, other}
        assert sum(first[1].values()) == 1
        # the other process, the same Tehran day: nothing to do
        assert segment_job.run(b, NIGHT + timedelta(hours=12)) == {}
        # the next Tehran day: again
        assert set(segment_job.run(b, NIGHT + timedelta(days=1))) == {1, other}
        days = [r[0] for r in a.execute(
            "SELECT DISTINCT day FROM segment_counts WHERE club_id = 1 ORDER BY day")]
        assert days == [day_number(TODAY), day_number(TODAY + timedelta(days=1))]
        # forced (the CLI): runs although done today
        assert set(segment_job.run(a, NIGHT + timedelta(days=1), force=True)) == {1, other}
    finally:
        a.close()
        b.close()


def test_cli_segment_compute_and_list(db: str, capsys: pytest.CaptureFixture[str]) -> None:
    conn = store.connect(db)
    try:
        assert main(["segment", "list", "--db", db]) == 0
        assert "not computed yet" in capsys.readouterr().out
        today = segment_job.tehran_today(datetime.now(UTC))
        mid = member(conn, 1, today - timedelta(days=40))
        with store.transaction(conn):  # a month ago the member was new
            store_segments.compute(conn, 1, today - timedelta(days=31))
        assert main(["segment", "compute", "--db", db]) == 0
        out = capsys.readouterr().out
        assert "1 members scored" in out and "sleeping 1" in out
        assert store_segments.member_segment(conn, mid).computed_on == today
        assert main(["segment", "list", "--club", "فروشگاه", "--db", db]) == 0
        out = capsys.readouterr().out
        assert f"change since {today - timedelta(days=31)}" in out
        lines = {line.split()[0]: line.split()[1:] for line in out.splitlines()[1:]}
        assert lines["new"] == ["0", "-1"] and lines["sleeping"] == ["1", "+1"]
        assert main(["segment", "list", "--club", "nosuch", "--db", db]) == 2
    finally:
        conn.close()


@pytest.mark.timeout(180)
def test_service_scores_once_with_two_processes(broker, db: str, tmp_path: Path) -> None:
    cfg = tmp_path / "backend.toml"
    cfg.write_text(f'[sms]\nsender = "file"\nfile = "{tmp_path / "sms.jsonl"}"\n'
                   "[service]\nsweep_seconds = 0.2\n")
    agent = TestAgent(broker.address)
    procs = [start_backend(broker.address, db, name, "--config", str(cfg),
                           "--log-level", "INFO") for name in ("b1", "b2")]
    try:
        agent.wait_for(lambda: agent.status.get("b1") is True and agent.status.get("b2"))

        def scored() -> bool:
            conn = store.connect(db)
            try:
                return store_segments.computed_on(conn, 1) is not None
            finally:
                conn.close()

        wait_until(scored, 60)
        # several sweeps of both later, still one run
        agent.ask(request("enroll", {"phone": "09120000001", "referrer": None}))
    finally:
        codes = [stop_process(p) for p in procs]
        agent.close()
    assert codes == [0, 0]
    logs = "".join(p.stderr.read().decode() for p in procs if p.stderr)
    assert logs.count("segments: club 1 scored") == 1, logs[-3000:]
