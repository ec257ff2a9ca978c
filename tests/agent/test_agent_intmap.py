"""Review of the journal: compact indexes, atomic reversal writes, first answer wins."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import agent.journal
from agent.journal import REVERSAL_WINDOW, Journal
from agent.storage import Positions

NOW = 1_800_000_000.0


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
    import os

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
    from agent.journal import JournalError
    from agent.storage import _line

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


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["put", "del", "get"]),
                          st.integers(0, 40) | st.integers(-(2**63) + 1, 2**63 - 1),
                          st.integers(0, 2**40)), max_size=300))
def test_intmap_behaves_like_a_dict(ops: list[tuple[str, int, int]]) -> None:
    from agent.intmap import IntMap

    model: dict[int, int] = {}
    m = IntMap()
    for op, key, value in ops:
        if op == "put":
            m[key] = value
            model[key] = value
        elif op == "del":
            if key in model:
                del m[key]
                del model[key]
            else:
                with pytest.raises(KeyError):
                    del m[key]
        assert m.get(key) == model.get(key) and (key in m) == (key in model)
        assert len(m) == len(model)
    assert all(m[k] == v for k, v in model.items())
