"""The fault wrapper, byte for byte, on a recording transport (no line, no threads)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from protocols import framing
from terminal_sim.faults import FaultPlan, FaultyTransport


class Recorder:
    def __init__(self) -> None:
        self.writes: list[bytes] = []

    def open(self) -> None: ...
    def close(self) -> None: ...
    def read(self, timeout: float) -> bytes:
        return b""

    def write(self, data: bytes) -> None:
        self.writes.append(bytes(data))


messages = st.binary(min_size=1, max_size=300)


@settings(max_examples=100, deadline=None)
@given(messages, st.integers(min_value=0, max_value=7))
def test_corrupted_frame_is_always_refused_and_noise_never_frames(msg: bytes, seed: int) -> None:
    rec = Recorder()
    faulty = FaultyTransport(rec, FaultPlan(corrupt=1, noise=1), seed=seed)
    faulty.write(framing.build_frame(msg))
    faulty.write(framing.build_frame(msg))
    events = framing.FrameDecoder().feed(b"".join(rec.writes))
    assert [type(e) for e in events] == [framing.BadFrame, framing.Frame]
    assert events[1].message == msg
    assert faulty.stats.corrupted == 1 and faulty.stats.noisy == 1


def test_acks_dropped_counted_and_nak_untouched() -> None:
    rec = Recorder()
    faulty = FaultyTransport(rec, FaultPlan(drop_acks=1))
    for byte in (b"\x06", b"\x15", b"\x06"):
        faulty.write(byte)
    assert rec.writes == [b"\x15", b"\x06"] and faulty.stats.acks_dropped == 1


def test_stall_and_slow_split_the_frame_but_keep_its_bytes() -> None:
    rec = Recorder()
    frame = framing.build_frame(b"0800" + bytes(20))
    faulty = FaultyTransport(rec, FaultPlan(stall=1, stall_s=0.01))
    faulty.write(frame)
    assert len(rec.writes) == 2 and b"".join(rec.writes) == frame
    rec.writes.clear()
    faulty.plan.update({"slow_byte_ms": 0.1})
    faulty.write(frame)
    assert len(rec.writes) == len(frame) and b"".join(rec.writes) == frame
