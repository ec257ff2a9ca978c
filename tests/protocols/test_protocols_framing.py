"""Link frames (PROTOCOL.md 2.1): building, and the incremental decoder."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocols.framing import (
    ACK,
    ETX,
    MAX_MESSAGE,
    NAK,
    STX,
    BadFrame,
    Control,
    Frame,
    FrameDecoder,
    build_frame,
    lrc,
)


def test_constants() -> None:
    assert (STX, ETX, ACK, NAK, MAX_MESSAGE) == (0x02, 0x03, 0x06, 0x15, 2048)


def test_known_frame() -> None:
    # LEN 0x00 0x03 (BCD 3); LRC = 0x00 ^ 0x03 ^ 'A' ^ 'B' ^ 'C' ^ 0x03 = 0x40
    assert build_frame(b"ABC") == b"\x02\x00\x03ABC\x03\x40"


def test_len_is_bcd() -> None:
    frame = build_frame(b"x" * 137)
    assert frame[1:3] == b"\x01\x37"
    assert build_frame(b"x" * 2048)[1:3] == b"\x20\x48"


@pytest.mark.parametrize("size", [0, 2049, 5000])
def test_build_refuses_length(size: int) -> None:
    with pytest.raises(ValueError, match=r"outside 1\.\.2048"):
        build_frame(b"x" * size)


def test_build_refuses_str() -> None:
    with pytest.raises(TypeError):
        build_frame("text")  # type: ignore[arg-type]


@given(st.binary(max_size=3000))
@settings(max_examples=100, deadline=None)
def test_lrc_is_xor(data: bytes) -> None:
    expected = 0
    for b in data:
        expected ^= b
    assert lrc(data) == expected


def test_one_byte_at_a_time() -> None:
    frame = build_frame(b"hello \x02\x03\x06\x15 world")
    decoder = FrameDecoder()
    events = []
    for i, b in enumerate(frame):
        events += decoder.feed(bytes([b]))
        assert decoder.in_frame == (i < len(frame) - 1)
    assert events == [Frame(b"hello \x02\x03\x06\x15 world")]


def test_noise_and_controls_outside_frames() -> None:
    decoder = FrameDecoder()
    data = b"\x00\xff\x03zz" + bytes([ACK]) + build_frame(b"a") + bytes([NAK]) + b"\x7f"
    assert decoder.feed(data) == [Control(ACK), Frame(b"a"), Control(NAK)]
    assert not decoder.in_frame


def test_two_frames_in_one_chunk_and_split() -> None:
    decoder = FrameDecoder()
    a, b = build_frame(b"first"), build_frame(b"second")
    assert decoder.feed(a + b[:4]) == [Frame(b"first")]
    assert decoder.in_frame
    assert decoder.feed(b[4:]) == [Frame(b"second")]


def test_lrc_wrong_is_bad_with_known_end() -> None:
    frame = bytearray(build_frame(b"abc"))
    frame[-1] ^= 0x01
    decoder = FrameDecoder()
    (event,) = decoder.feed(bytes(frame))
    assert isinstance(event, BadFrame) and "LRC" in event.reason and event.end_known
    assert not decoder.in_frame
    assert decoder.feed(build_frame(b"ok")) == [Frame(b"ok")]


@pytest.mark.parametrize(
    ("len_bytes", "reason"),
    [
        (b"\x0a\x00", "not BCD"),
        (b"\x00\xf1", "not BCD"),
        (b"\x00\x00", "outside"),
        (b"\x20\x49", "outside"),
        (b"\x99\x99", "outside"),
    ],
)
def test_bad_len_skips_until_reset(len_bytes: bytes, reason: str) -> None:
    decoder = FrameDecoder()
    events = decoder.feed(b"\x02" + len_bytes + b"\x06\x02\x00\x01a\x03a")
    assert len(events) == 1
    assert isinstance(events[0], BadFrame) and reason in events[0].reason
    assert not events[0].end_known
    # The rest of the bad frame is swallowed: no Control, no phantom frame.
    assert decoder.skipping and decoder.in_frame
    assert decoder.feed(bytes([ACK]) + build_frame(b"zz")) == []
    decoder.reset()
    assert not decoder.in_frame and not decoder.skipping
    assert decoder.feed(build_frame(b"zz")) == [Frame(b"zz")]


def test_etx_misplaced() -> None:
    decoder = FrameDecoder()
    events = decoder.feed(b"\x02\x00\x02ab")
    assert events == [] and decoder.in_frame
    (event,) = decoder.feed(b"X\x03\x06")  # 'X' where LEN puts ETX
    assert isinstance(event, BadFrame) and "ETX" in event.reason and not event.end_known
    assert decoder.skipping


def test_feed_refuses_text_and_keeps_state() -> None:
    decoder = FrameDecoder()
    frame = build_frame(b"abc")
    decoder.feed(frame[:3])
    with pytest.raises(TypeError):
        decoder.feed("\x02")  # type: ignore[arg-type]
    assert decoder.feed(frame[3:]) == [Frame(b"abc")]


def test_reset_drops_partial_frame() -> None:
    decoder = FrameDecoder()
    frame = build_frame(b"partial")
    decoder.feed(frame[:6])
    decoder.reset()
    assert not decoder.in_frame
    assert decoder.feed(frame[6:]) == []  # the tail alone is noise (no STX in it)
    assert decoder.feed(frame) == [Frame(b"partial")]


_noise = st.binary(max_size=20).map(lambda b: bytes(x for x in b if x not in (STX, ACK, NAK)))


@given(
    messages=st.lists(st.binary(min_size=1, max_size=300), min_size=1, max_size=6),
    noise=st.lists(_noise, min_size=7, max_size=7),
    cuts=st.lists(st.integers(min_value=0, max_value=4000), max_size=20),
)
@settings(max_examples=150, deadline=None)
def test_random_chunking_and_noise(
    messages: list[bytes], noise: list[bytes], cuts: list[int]
) -> None:
    stream = b"".join(noise[i] + build_frame(m) for i, m in enumerate(messages)) + noise[-1]
    points = sorted({c % (len(stream) + 1) for c in cuts})
    chunks = [stream[a:b] for a, b in zip([0, *points], [*points, len(stream)], strict=True)]
    decoder = FrameDecoder()
    events = []
    for chunk in chunks:
        events += decoder.feed(chunk)
    assert events == [Frame(m) for m in messages]
    assert not decoder.in_frame


@given(st.lists(st.binary(max_size=64), max_size=30), st.lists(st.booleans(), max_size=30))
@settings(max_examples=200, deadline=None)
def test_random_bytes_never_raise(chunks: list[bytes], resets: list[bool]) -> None:
    decoder = FrameDecoder()
    for i, chunk in enumerate(chunks):
        for event in decoder.feed(chunk):
            assert isinstance(event, Frame | BadFrame | Control)
            if isinstance(event, Frame):
                assert 1 <= len(event.message) <= MAX_MESSAGE
            if isinstance(event, Control):
                assert event.byte in (ACK, NAK)
        if i < len(resets) and resets[i]:
            decoder.reset()


@given(st.binary(min_size=1, max_size=MAX_MESSAGE), st.integers(0, 10_000), st.integers(0, 7))
@settings(max_examples=100, deadline=None)
def test_any_single_bit_flip_is_never_a_different_frame(message: bytes, pos: int, bit: int) -> None:
    frame = bytearray(build_frame(message))
    pos = 1 + pos % (len(frame) - 1)  # flip anything but STX
    frame[pos] ^= 1 << bit
    decoder = FrameDecoder()
    events = decoder.feed(bytes(frame)) + decoder.feed(b"\x00" * 8)
    assert all(not isinstance(e, Frame) for e in events)
