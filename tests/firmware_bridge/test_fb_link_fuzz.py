"""Random bytes and random timings into the link: nothing escapes, nothing false is delivered."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from firmware_bridge.link import Acked, Delivered, Failed, Link, Rejected
from protocols.framing import ACK, NAK, build_frame

_messages = st.binary(min_size=1, max_size=40)
_chunk = st.one_of(
    st.binary(max_size=30),
    _messages.map(build_frame),
    st.sampled_from([bytes([ACK]), bytes([NAK]), b"\x02", b"\x02\x00\x05", b"\x02\x99\x99"]),
)
_action = st.one_of(
    st.tuples(st.just("rx"), _chunk, st.floats(0, 1.5)),
    st.tuples(st.just("send"), _messages, st.floats(0, 0.5)),
    st.tuples(st.just("tick"), st.just(b""), st.floats(0, 1.5)),
)


@given(st.lists(_action, max_size=40), st.data())
@settings(max_examples=200, deadline=None)
def test_random_input_and_timing(actions: list[tuple[str, bytes, float]], data) -> None:
    link = Link()
    now = 0.0
    received = b""
    sent_frames: set[bytes] = set()
    handles: set[int] = set()
    finished: set[int] = set()
    for kind, payload, dt in actions:
        now += dt
        if kind == "rx":
            if data.draw(st.booleans()):  # sometimes split the chunk in two reads
                cut = data.draw(st.integers(0, len(payload)))
                link.receive_data(payload[:cut], now)
                link.receive_data(payload[cut:], now)
            else:
                link.receive_data(payload, now)
            received += payload
        elif kind == "send":
            handles.add(link.send(payload, now))
            sent_frames.add(build_frame(payload))
        else:
            link.tick(now)
        out = link.outgoing()
        events = link.events()
        for chunk in out:
            assert chunk in (bytes([ACK]), bytes([NAK])) or chunk in sent_frames
        delivered = [e for e in events if isinstance(e, Delivered)]
        # one ACK per delivered frame, written in the same step, and only for real frames
        assert out.count(bytes([ACK])) == len(delivered)
        for event in delivered:
            assert build_frame(event.message) in received
        for event in events:
            assert isinstance(event, Delivered | Acked | Failed | Rejected)
            if isinstance(event, Acked | Failed):
                assert event.handle in handles and event.handle not in finished
                finished.add(event.handle)
        deadline = link.next_deadline()
        if kind != "send":  # send() runs no timers; every read or tick does
            assert deadline is None or deadline >= now
    # the timers always resolve: after a long quiet time nothing is left in flight
    for _ in range(3 * len(handles) + 2):
        now += 1.0
        link.tick(now)
    for event in link.events():
        if isinstance(event, Acked | Failed):
            finished.add(event.handle)
    assert finished == handles
    assert not link.busy and not link.receiving


_noise = st.binary(max_size=10).map(lambda b: bytes(x for x in b if x not in (2, ACK, NAK)))


@given(
    messages=st.lists(_messages, min_size=1, max_size=5),
    noise=st.lists(_noise, min_size=6, max_size=6),
    cuts=st.lists(st.tuples(st.integers(0, 500), st.floats(0, 0.199)), max_size=15),
)
@settings(max_examples=100, deadline=None)
def test_valid_frames_without_stall_are_all_delivered(
    messages: list[bytes], noise: list[bytes], cuts: list[tuple[int, float]]
) -> None:
    stream = b"".join(noise[i] + build_frame(m) for i, m in enumerate(messages)) + noise[-1]
    points = sorted({c % (len(stream) + 1) for c, _ in cuts})
    gaps = [g for _, g in cuts] + [0.0] * (len(points) + 1)
    link = Link()
    now = 0.0
    out: list[bytes] = []
    delivered = []
    for i, (a, b) in enumerate(zip([0, *points], [*points, len(stream)], strict=True)):
        now += gaps[i]
        link.receive_data(stream[a:b], now)
        out += link.outgoing()
        delivered += [e.message for e in link.events() if isinstance(e, Delivered)]
    assert delivered == messages
    assert out == [bytes([ACK])] * len(messages)
