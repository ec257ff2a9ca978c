"""The sans-I/O link state machine, every rule of PROTOCOL.md 2, with a fake clock."""

from __future__ import annotations

import pytest

from firmware_bridge.link import Acked, Delivered, Failed, Link, Rejected
from protocols.framing import ACK, NAK, build_frame

A = bytes([ACK])
N = bytes([NAK])


def test_valid_frame_is_acked_then_delivered() -> None:
    link = Link()
    link.receive_data(build_frame(b"hi"), 10.0)
    assert link.outgoing() == [A]
    assert link.events() == [Delivered(b"hi")]
    assert link.next_deadline() is None


def test_frame_split_over_reads_is_delivered_once_complete() -> None:
    link = Link()
    frame = build_frame(b"split")
    link.receive_data(frame[:4], 0.0)
    assert link.outgoing() == [] and link.events() == []
    assert link.next_deadline() == pytest.approx(0.2)
    link.receive_data(frame[4:], 0.15)
    assert link.outgoing() == [A]
    assert link.events() == [Delivered(b"split")]


def test_bad_lrc_is_naked_and_not_delivered() -> None:
    link = Link()
    frame = bytearray(build_frame(b"abc"))
    frame[-1] ^= 0xFF
    link.receive_data(bytes(frame), 0.0)
    assert link.outgoing() == [N]
    (event,) = link.events()
    assert isinstance(event, Rejected) and event.nak


def test_bad_len_naked_once_line_quiet() -> None:
    link = Link()
    link.receive_data(b"\x02\x0a\x00garbage\x06", 0.0)
    assert link.outgoing() == []  # not in the middle of the bad frame
    link.receive_data(b"more garbage", 0.03)
    assert link.next_deadline() == pytest.approx(0.08)
    link.tick(0.07)
    assert link.outgoing() == []
    link.tick(0.08)
    assert link.outgoing() == [N]
    assert [type(e) for e in link.events()] == [Rejected]
    # synchronised again: the retransmission is received normally
    link.receive_data(build_frame(b"again"), 0.1)
    assert link.outgoing() == [A]
    assert link.events() == [Delivered(b"again")]


def test_stall_over_200ms_drops_frame_silently() -> None:
    link = Link()
    frame = build_frame(b"stalled frame")
    link.receive_data(frame[:5], 1.0)
    link.tick(1.2)  # exactly 200 ms: not yet "more than"
    assert link.receiving
    link.tick(1.2001)
    assert not link.receiving
    assert link.outgoing() == []  # no ACK, no NAK
    (event,) = link.events()
    assert isinstance(event, Rejected) and not event.nak
    # the tail arriving late is noise, then a fresh frame is fine
    link.receive_data(frame[5:] + build_frame(b"next"), 1.3)
    assert link.outgoing() == [A]
    assert link.events() == [Delivered(b"next")]


def test_late_read_without_observed_silence_is_not_a_stall() -> None:
    """Bytes that waited in the OS buffer while the reader was starved are on time:
    silence is concluded only from an empty read (a tick)."""
    link = Link()
    frame = build_frame(b"abcdef")
    link.receive_data(frame[:4], 0.0)
    link.receive_data(frame[4:], 0.5)
    assert link.outgoing() == [A]
    assert link.events() == [Delivered(b"abcdef")]


def test_empty_read_is_a_tick() -> None:
    link = Link()
    frame = build_frame(b"abcdef")
    link.receive_data(frame[:4], 0.0)
    link.receive_data(b"", 0.25)
    assert not link.receiving
    link.receive_data(frame[4:], 0.3)
    assert link.outgoing() == []
    assert [type(e) for e in link.events()] == [Rejected]


def test_slow_but_steady_bytes_are_fine() -> None:
    link = Link()
    frame = build_frame(b"slow")
    for i, b in enumerate(frame):
        link.receive_data(bytes([b]), i * 0.19)
    assert link.outgoing() == [A]
    assert link.events() == [Delivered(b"slow")]


def test_noise_ignored_and_stray_control_not_answered() -> None:
    link = Link()
    link.receive_data(b"\x00\xffnoise\x03" + A + N, 0.0)
    assert link.outgoing() == [] and link.events() == []
    assert link.stats.stray_controls == 2
    assert link.next_deadline() is None


def test_send_acked() -> None:
    link = Link()
    handle = link.send(b"msg", 5.0)
    assert link.outgoing() == [build_frame(b"msg")]
    assert link.next_deadline() == pytest.approx(6.0)
    link.receive_data(A, 5.01)
    assert link.events() == [Acked(handle)]
    assert link.outgoing() == []  # an ACK is never acknowledged
    assert not link.busy


def test_three_transmissions_on_silence_then_failed() -> None:
    link = Link()
    frame = build_frame(b"lonely")
    handle = link.send(b"lonely", 0.0)
    assert link.outgoing() == [frame]
    link.tick(0.999)
    assert link.outgoing() == []
    link.tick(1.0)
    assert link.outgoing() == [frame]
    link.tick(2.0)
    assert link.outgoing() == [frame]
    assert link.events() == []
    link.tick(2.9)
    assert link.events() == []
    link.tick(3.0)
    assert link.outgoing() == []  # never a fourth transmission
    (event,) = link.events()
    assert isinstance(event, Failed) and event.handle == handle
    assert not event.refused  # silence: the peer may have taken it and lost its ACKs
    assert link.stats.sent == 3 and link.stats.retransmissions == 2
    assert link.next_deadline() is None


def test_nak_resends_at_once_and_third_nak_fails() -> None:
    link = Link()
    frame = build_frame(b"x")
    handle = link.send(b"x", 0.0)
    link.outgoing()
    link.receive_data(N, 0.1)
    assert link.outgoing() == [frame]
    assert link.next_deadline() == pytest.approx(1.1)
    link.receive_data(N, 0.2)
    assert link.outgoing() == [frame]
    link.receive_data(N, 0.3)
    assert link.outgoing() == []
    assert link.events() == [Failed(handle, "NAK after 3 transmissions", refused=True)]


def test_a_silence_among_naks_is_not_a_refusal() -> None:
    """Only a frame NAKed on every transmission was certainly not handed up."""
    link = Link()
    handle = link.send(b"x", 0.0)
    link.outgoing()
    link.receive_data(N, 0.1)
    link.outgoing()
    link.tick(1.2)  # the second transmission: no ACK, no NAK
    link.outgoing()
    link.receive_data(N, 1.3)
    assert link.events() == [Failed(handle, "NAK after 3 transmissions", refused=False)]


def test_ack_read_late_still_counts() -> None:
    link = Link()
    handle = link.send(b"first", 0.0)
    link.outgoing()
    link.send(b"second", 1.5)  # from another thread: no timers run here
    assert link.outgoing() == []
    assert link.next_deadline() == pytest.approx(1.0)  # overdue: the driver reads at once
    link.receive_data(A, 1.5)  # the ACK had been waiting in the buffer
    assert link.events() == [Acked(handle)]
    assert link.outgoing() == [build_frame(b"second")]
    assert link.stats.retransmissions == 0


def test_ack_timer_also_runs_when_only_noise_arrives() -> None:
    link = Link()
    link.send(b"x", 0.0)
    link.outgoing()
    link.receive_data(b"noise", 1.2)  # a line that is never silent still times out
    assert link.outgoing() == [build_frame(b"x")]


def test_ack_after_a_nak_succeeds() -> None:
    link = Link()
    handle = link.send(b"x", 0.0)
    link.receive_data(N, 0.1)
    link.receive_data(A, 0.2)
    assert link.events() == [Acked(handle)]
    assert link.stats.sent == 2


def test_queue_one_in_flight_in_order_and_each_gets_three_tries() -> None:
    link = Link()
    h1 = link.send(b"one", 0.0)
    h2 = link.send(b"two", 0.0)
    assert link.outgoing() == [build_frame(b"one")]  # two waits its turn
    for t in (1.0, 2.0, 3.0):
        link.tick(t)
    # "one" failed after its third try; "two" starts with a fresh count
    assert link.outgoing() == [build_frame(b"one"), build_frame(b"one"), build_frame(b"two")]
    assert [type(e) for e in link.events()] == [Failed]
    link.receive_data(A, 3.5)
    assert link.events() == [Acked(h2)]
    assert h1 != h2


def test_ack_wait_starts_after_wire_time() -> None:
    link = Link(byte_time=10 / 9600)
    link.send(b"x" * 2048, 0.0)
    link.outgoing()
    assert link.next_deadline() == pytest.approx(2053 * 10 / 9600 + 1.0)


def test_send_refuses_unframeable_message_and_changes_nothing() -> None:
    link = Link()
    with pytest.raises(ValueError):
        link.send(b"", 0.0)
    with pytest.raises(ValueError):
        link.send(b"x" * 2049, 0.0)
    assert link.outgoing() == [] and not link.busy and link.next_deadline() is None


def test_frame_received_while_waiting_for_our_ack() -> None:
    """Both ends talk at once: theirs is ACKed and delivered, ours keeps waiting."""
    link = Link()
    handle = link.send(b"ours", 0.0)
    link.outgoing()
    link.receive_data(build_frame(b"theirs"), 0.3)
    assert link.outgoing() == [A]
    assert link.events() == [Delivered(b"theirs")]
    assert link.next_deadline() == pytest.approx(1.0)  # our timer is unchanged
    link.receive_data(A, 0.4)
    assert link.events() == [Acked(handle)]


def test_their_ack_and_their_frame_in_one_chunk() -> None:
    link = Link()
    handle = link.send(b"ours", 0.0)
    link.outgoing()
    link.receive_data(build_frame(b"\x06\x15 inside") + A, 0.1)
    assert link.outgoing() == [A]
    assert link.events() == [Delivered(b"\x06\x15 inside"), Acked(handle)]


def test_duplicate_after_lost_ack_is_delivered_again() -> None:
    link = Link()
    frame = build_frame(b"advice")
    link.receive_data(frame, 0.0)
    assert link.outgoing() == [A]  # imagine this ACK lost on the wire
    link.receive_data(frame, 1.0)  # the sender retransmits
    assert link.outgoing() == [A]
    assert link.events() == [Delivered(b"advice"), Delivered(b"advice")]


def test_abort_fails_everything_pending() -> None:
    link = Link()
    h1 = link.send(b"a", 0.0)
    h2 = link.send(b"b", 0.0)
    link.abort("gone")
    # h1 went out once (it may have arrived); h2 never left the queue
    assert link.events() == [Failed(h1, "gone"), Failed(h2, "gone", refused=True)]
    assert not link.busy


@pytest.mark.parametrize(
    "kwargs",
    [{"ack_timeout": 0}, {"stall_timeout": -1}, {"max_transmissions": 0}, {"byte_time": -1}],
)
def test_bad_settings(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        Link(**kwargs)  # type: ignore[arg-type]
