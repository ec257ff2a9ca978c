"""The journal's storage survives torn writes and kill -9; the journal's rules hold."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent.journal import DUPLICATE_WINDOW, REVERSAL_WINDOW, Journal, JournalError
from agent.storage import AppendLogStorage, StorageCorrupt, open_db

DAY = 24 * 3600.0


def test_tinydb_api_round_trips_through_the_log(tmp_path: Path) -> None:
    path = tmp_path / "j.log"
    db = open_db(path)
    t = db.table("x")
    a = t.insert({"n": 1})
    b = t.insert({"n": 2})
    t.update({"n": 3}, doc_ids=[a])
    t.remove(doc_ids=[b])
    t.insert({"n": 4, "text": "سلام"})
    from tinydb import Query

    t.update({"flag": True}, Query().n == 4)  # tinydb's generic whole-table path
    db.close()
    again = open_db(path).table("x")
    assert sorted((d["n"], d.get("flag")) for d in again.all()) == [(3, None), (4, True)]


def test_torn_last_line_is_dropped_and_cut_off(tmp_path: Path) -> None:
    path = tmp_path / "j.log"
    db = open_db(path)
    db.table("x").insert({"n": 1})
    db.close()
    good = path.read_bytes()
    path.write_bytes(good + b'0badc0de {"t":"x","i":"2","d":{"n"')
    db = open_db(path)
    assert [d["n"] for d in db.table("x").all()] == [1]
    assert path.read_bytes() == good
    db.table("x").insert({"n": 2})
    db.close()
    assert sorted(d["n"] for d in open_db(path).table("x").all()) == [1, 2]


def test_zero_filled_tail_after_power_loss_is_ignored(tmp_path: Path) -> None:
    path = tmp_path / "j.log"
    db = open_db(path)
    db.table("x").insert({"n": 1})
    db.close()
    with open(path, "ab") as f:
        f.write(b"\x00" * 300)
    assert [d["n"] for d in open_db(path).table("x").all()] == [1]


def test_damaged_record_in_the_middle_is_corruption(tmp_path: Path) -> None:
    path = tmp_path / "j.log"
    db = open_db(path)
    for n in range(3):
        db.table("x").insert({"n": n})
    db.close()
    lines = path.read_bytes().split(b"\n")
    lines[1] = lines[1].replace(b'"n":1', b'"n":7')  # CRC no longer matches
    path.write_bytes(b"\n".join(lines))
    with pytest.raises(StorageCorrupt):
        open_db(path)
    with pytest.raises(JournalError, match=str(path)):
        Journal(path)


def test_compaction_keeps_the_live_state_only(tmp_path: Path) -> None:
    path = tmp_path / "j.log"
    storage_db = open_db(path, compact_min=50)
    t = storage_db.table("x")
    for n in range(200):
        doc_id = t.insert({"n": n})
        if n % 2:
            t.remove(doc_ids=[doc_id])
    storage = storage_db.storage
    assert isinstance(storage, AppendLogStorage)
    assert storage.log_lines <= max(50, 2 * storage.live_count()) + 1
    assert not (tmp_path / "j.log.compact").exists()
    storage_db.close()
    assert sorted(d["n"] for d in open_db(path).table("x").all()) == list(range(0, 200, 2))


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    ops=st.lists(
        st.tuples(st.sampled_from(["put", "del"]), st.integers(0, 8), st.integers(0, 99)),
        max_size=30,
    ),
    cut=st.integers(0, 10_000),
)
def test_any_prefix_of_the_log_replays_to_a_prefix_of_the_changes(
    tmp_path_factory: pytest.TempPathFactory, ops: list[tuple[str, int, int]], cut: int
) -> None:
    """Whatever instant power is lost at, the file reads back as some prefix of changes."""
    path = tmp_path_factory.mktemp("p") / "j.log"
    storage = AppendLogStorage(path, compact_min=10_000)
    states: list[dict[str, int]] = [{}]
    state: dict[str, int] = {}
    for op, key, value in ops:
        if op == "put":
            storage.append([{"t": "x", "i": str(key), "d": {"v": value}}])
            state[str(key)] = value
        else:
            storage.append([{"t": "x", "i": str(key)}])
            state.pop(str(key), None)
        states.append(dict(state))
    storage.close()
    data = path.read_bytes()
    path.write_bytes(data[: cut % (len(data) + 1)])
    back = AppendLogStorage(path)
    got = {k: v["v"] for k, v in (back.read() or {}).get("x", {}).items()}
    back.close()
    assert got in states


KILLER = textwrap.dedent(
    """
    import os, sys
    from agent.journal import Journal
    j = Journal(sys.argv[1])
    n = 0
    while True:
        j.record(f"T0000001:0220:{n:06d}:1123194000", "0220", 1.0e9, response=b"ok",
                 forward=("advice", {"n": n}), stan=f"{n:06d}", rrn=f"{n:012d}")
        os.write(1, b"%d\\n" % n)
        n += 1
    """
)


def test_every_acknowledged_record_survives_kill_9(tmp_path: Path) -> None:
    path = tmp_path / "j.log"
    proc = subprocess.Popen(
        [sys.executable, "-c", KILLER, str(path)], stdout=subprocess.PIPE, start_new_session=True
    )
    assert proc.stdout is not None
    acked = -1
    for line in proc.stdout:
        acked = int(line)
        if acked >= 150:
            break
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(10)
    proc.stdout.close()
    j = Journal(path)
    assert j.queued() >= acked + 1
    keys = [p.key for p in j.pending()]
    assert keys[: acked + 1] == [f"T0000001:0220:{n:06d}:1123194000" for n in range(acked + 1)]


def test_journal_rules_duplicates_matching_forwarding_expiry(tmp_path: Path) -> None:
    path = tmp_path / "j.log"
    j = Journal(path)
    now = 1_800_000_000.0
    a = j.record("K:0220:1", "0220", now, response=b"\x01", forward=("advice", {"a": 1}),
                 stan="000001", rrn="R1")
    j.record("K:0100:2", "0100", now, response=b"\x02")
    r = j.record("K:0420:1", "0420", now + 5, response=b"\x03", forward=("reversal", {"r": 1}),
                 original=a)
    with pytest.raises(ValueError):
        j.record("K:0100:2", "0100", now, response=b"\x02")
    assert j.response_for("K:0220:1") == b"\x01"
    assert [p.doc_id for p in j.pending()] == [a, r]
    assert j.find_original("000001", "R1", now + REVERSAL_WINDOW - 1) is not None
    assert j.find_original("000001", "R1", now + REVERSAL_WINDOW + 1) is None
    assert j.find_original("000002", "R1", now) is None
    j.mark_forwarded(a, "00")
    assert j.head() is not None and j.head().doc_id == r
    j.close()

    j = Journal(path)  # everything above survives a restart
    assert j.queued() == 1 and j.response_for("K:0100:2") == b"\x02"
    orig = j.find_original("000001", "R1", now)
    assert orig is not None and orig[1]["reversed"] is True and orig[1]["fwd"] is None
    # After 24 h the inquiry's response goes; the advice stays for reversal matching; the
    # unforwarded reversal is never dropped.
    assert j.expire(now + DUPLICATE_WINDOW + 10) == 1
    assert j.response_for("K:0100:2") is None
    assert j.find_original("000001", "R1", now) is not None
    assert j.expire(now + REVERSAL_WINDOW + 10) == 1
    assert j.queued() == 1 and len(j) == 1
    j.close()


def test_journal_that_is_not_a_journal_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "j.log"
    path.write_text("hello, this is not a journal\nsecond line\n")
    with pytest.raises(JournalError, match="corrupt"):
        Journal(path)
    assert path.read_text() == "hello, this is not a journal\nsecond line\n"


def test_a_single_garbage_line_is_refused_and_left_alone(tmp_path: Path) -> None:
    path = tmp_path / "j.log"
    path.write_bytes(b"not a journal")
    with pytest.raises(JournalError, match="corrupt"):
        Journal(path)
    assert path.read_bytes() == b"not a journal"
