"""The journal's storage survives torn writes, kill -9 and failed appends; its index
(Positions) behaves like a dict; the journal's rules hold, also when key hashes collide."""

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

import agent.journal
from agent.journal import DUPLICATE_WINDOW, REVERSAL_WINDOW, Journal, JournalError
from agent.storage import AppendLogStorage, Positions, StorageCorrupt, _line, open_db

DAY = 24 * 3600.0
NOW = 1_800_000_000.0


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


def test_reversal_and_its_originals_flag_are_one_write(tmp_path: Path) -> None:
    """A power loss tearing the last line must not leave a reversal without its flag."""
    path = tmp_path / "j.log"
    j = Journal(path)
    a = j.record("K:0220:1", "0220", NOW, response=b"\x01", forward=("advice", {"a": 1}),
                 stan="000001", rrn="R1")
    before = path.stat().st_size
    j.record("K:0420:1", "0420", NOW + 5, response=b"\x02", forward=("reversal", {"r": 1}),
             original=a)
    j.close()
    data = path.read_bytes()
    lines = data[before:].splitlines(keepends=True)
    assert len(lines) == 2, "the reversal and the flag must go out in one append"
    # The second line torn in half by a power loss: the reversal stays, the flag is lost
    # from the log, and opening the journal must set it again.
    path.write_bytes(data[: before + len(lines[0])] + lines[1][:20])
    j = Journal(path)
    orig = j.find_original("000001", "R1", NOW)
    assert orig is not None and orig[1].get("reversed") is True
    assert j.response_for("K:0420:1") == b"\x02"
    j.close()
    j = Journal(path)  # the repair itself is durable
    orig = j.find_original("000001", "R1", NOW)
    assert orig is not None and orig[1].get("reversed") is True
    j.close()


def test_the_first_stored_response_wins(tmp_path: Path) -> None:
    j = Journal(tmp_path / "j.log")
    doc = j.record("K:0220:1", "0220", NOW, forward=("advice", {"a": 1}),
                   stan="000001", rrn="R1")
    assert j.set_response(doc, b"plain") == b"plain"
    assert j.set_response(doc, b"with EA") == b"plain"
    assert j.response_for("K:0220:1") == b"plain"
    j.close()


def test_hash_collisions_never_hide_or_confuse_entries(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(agent.journal, "_hash", lambda text: 7)  # every key collides
    path = tmp_path / "j.log"
    j = Journal(path)
    ids = {}
    for n in range(1, 6):
        ids[n] = j.record(f"K:0220:{n}", "0220", NOW + n, response=bytes([n]),
                          stan=f"{n:06d}", rrn=f"R{n}")
    inquiry = j.record("K:0100:9", "0100", NOW, response=b"\x09")
    for n in range(1, 6):
        assert j.response_for(f"K:0220:{n}") == bytes([n])
        found = j.find_original(f"{n:06d}", f"R{n}", NOW)
        assert found is not None and found[0] == ids[n]
    assert j.find("K:0220:77") is None and j.find_original("000001", "R2", NOW) is None
    with pytest.raises(ValueError):
        j.record("K:0220:3", "0220", NOW, response=b"\x00")
    assert j.expire(NOW + 24 * 3600 + 10) == 1  # the inquiry's response only
    assert j.find("K:0100:9") is None and j.get(inquiry) is None
    j.close()
    j = Journal(path)  # rebuilt from the file, still colliding
    for n in range(1, 6):
        assert j.response_for(f"K:0220:{n}") == bytes([n])
    assert j.expire(NOW + REVERSAL_WINDOW + 10) == 5
    assert len(j) == 0 and j.find("K:0220:1") is None
    j.close()


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.booleans(), st.integers(0, 200) | st.integers(10**6, 10**7),
                          st.integers(0, 2**40)), max_size=60),
       st.integers(1, 50))
def test_positions_behaves_like_a_dict(ops: list[tuple[bool, int, int]], base: int) -> None:
    model: dict[int, int] = {}
    pos = Positions(base)
    for put, doc_id, value in ops:
        if put:
            pos[doc_id] = value
            model[doc_id] = value
        elif doc_id in model:
            del pos[doc_id]
            del model[doc_id]
        else:
            with pytest.raises(KeyError):
                del pos[doc_id]
        assert len(pos) == len(model)
    assert list(pos) == sorted(model)
    assert {k: pos[k] for k in pos} == model
    assert all((k in pos) == (k in model) for k in range(-2, 210))


def test_a_failed_append_leaves_no_fragment_behind(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A write or fsync error (disk full, I/O error) must not poison the log."""
    path = tmp_path / "j.log"
    j = Journal(path)
    j.record("K:0220:1", "0220", NOW, response=b"\x01", stan="000001", rrn="R1")
    real_fsync = os.fsync

    def failing(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", failing)
    with pytest.raises(OSError):
        j.record("K:0220:2", "0220", NOW, response=b"\x02", stan="000002", rrn="R2")
    monkeypatch.setattr(os, "fsync", real_fsync)
    assert j.find("K:0220:2") is None
    j.record("K:0220:3", "0220", NOW, response=b"\x03", stan="000003", rrn="R3")
    assert j.response_for("K:0220:3") == b"\x03"  # read back from the right offset
    j.close()
    j = Journal(path)  # and the file opens: no fragment glued into its middle
    assert [j.response_for(f"K:0220:{n}") for n in (1, 2, 3)] == [b"\x01", None, b"\x03"]
    j.close()


def test_expiry_in_batches_stops_at_the_first_young_entry(tmp_path: Path) -> None:
    j = Journal(tmp_path / "j.log")
    day = 24 * 3600.0
    for n in range(5):  # old inquiries, an old advice, a pending one, then young ones
        j.record(f"K:0100:{n}", "0100", NOW + n, response=b"\x01")
    j.record("K:0220:1", "0220", NOW + 10, response=b"\x02", stan="000001", rrn="R1")
    j.record("K:0220:2", "0220", NOW + 11, response=b"\x03", forward=("advice", {}),
             stan="000002", rrn="R2")
    for n in range(5, 8):
        j.record(f"K:0100:{n}", "0100", NOW + 2 * day, response=b"\x01")
    assert j.expire(NOW + day + 100, batch=2) == 5
    assert [j.find(f"K:0100:{n}") is None for n in range(8)] == [True] * 5 + [False] * 3
    assert j.find_original("000001", "R1", NOW + day + 100) is not None
    assert j.queued() == 1 and len(j) == 5
    j.close()


def test_a_well_formed_record_that_is_no_document_is_corruption(tmp_path: Path) -> None:
    """CRC-valid but not a journal's record: a clear JournalError (exit 2), not a crash."""
    path = tmp_path / "j.log"
    data = _line({"t": "entries", "i": "1", "d": [1, 2]}) + _line({"t": "entries", "i": "2"})
    path.write_bytes(data)
    with pytest.raises(JournalError, match="corrupt"):
        Journal(path)
    assert path.read_bytes() == data
    last = _line({"t": "entries", "i": "1", "d": "text"})  # whole, so not a torn append
    path.write_bytes(last)
    with pytest.raises(JournalError, match="corrupt"):
        Journal(path)
    assert path.read_bytes() == last
