"""Flood budgets (CVE-2019-9512..9518 and -2023-44487 shapes) and the per-call frame limit."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from proto_support import drain_frames, frame, make_pair, settle

from tunnelgate import limits
from tunnelgate.errors import RemoteProtocolError
from tunnelgate.proto import events as ev
from tunnelgate.proto.codes import ErrorCode
from tunnelgate.proto.flood import FloodBudget
from tunnelgate.proto.frames import FLAG_FIN, Frame, FrameDecoder, FrameType, encode_u32, encode_u64
from tunnelgate.proto.mux import Connection, Role

PING = frame(FrameType.PING, 0, encode_u64(7))
FrameMaker = Callable[[int], bytes]  # stream id -> the bytes of one frame


def calm(exc: pytest.ExceptionInfo[RemoteProtocolError]) -> bool:
    return exc.value.code == ErrorCode.ENHANCE_YOUR_CALM


# --- the bucket ---------------------------------------------------------------------
def test_budget_allows_its_burst_then_refuses() -> None:
    budget = FloodBudget(burst=3, rate=1.0)
    for _ in range(3):
        budget.spend(10.0, "PING")
    with pytest.raises(RemoteProtocolError) as info:
        budget.spend(10.0, "PING")
    assert calm(info)
    assert "PING" in str(info.value)


def test_budget_refills_with_time_up_to_its_burst() -> None:
    budget = FloodBudget(burst=2, rate=4.0)
    budget.spend(1.0, "x")
    budget.spend(1.0, "x")
    budget.spend(1.25, "x")  # a quarter second at 4/s is one token
    with pytest.raises(RemoteProtocolError):
        budget.spend(1.25, "x")
    quiet = FloodBudget(burst=2, rate=4.0)
    quiet.spend(1.0, "x")
    quiet.spend(1000.0, "x")  # a long quiet time refills only to the burst
    quiet.spend(1000.0, "x")
    with pytest.raises(RemoteProtocolError):
        quiet.spend(1000.0, "x")


def test_budget_earned_by_our_own_work() -> None:
    budget = FloodBudget(burst=10, rate=0.0)
    for _ in range(10):
        budget.spend(0.0, "x")
    budget.earn(2)
    budget.spend(0.0, "x")
    budget.spend(0.0, "x")
    with pytest.raises(RemoteProtocolError):
        budget.spend(0.0, "x")


def test_earned_tokens_may_pass_the_burst_up_to_their_cap_time_does_not() -> None:
    budget = FloodBudget(burst=10, rate=100.0, earn_cap=5)
    budget.earn(100)
    assert budget.tokens == 15
    budget.spend(1.0, "x")
    budget.spend(2.0, "x")  # a second at 100/s: refilled only up to the burst
    assert budget.tokens == 13


# --- the mux charges what makes work without moving data ------------------------------
def test_ping_flood_is_refused_after_the_burst() -> None:
    gw = Connection(Role.GATEWAY)
    gw.receive_data(PING * limits.FLOOD_BURST, now=5.0)  # the allowance is answered
    assert len(drain_frames(gw)) == limits.FLOOD_BURST
    with pytest.raises(RemoteProtocolError) as info:
        gw.receive_data(PING, now=5.0)
    assert calm(info)


def test_honest_heartbeats_never_run_out() -> None:
    gw = Connection(Role.GATEWAY)
    for tick in range(5 * limits.FLOOD_BURST):  # one PING (and PONG) a second, for hours
        gw.receive_data(PING + frame(FrameType.PONG, 0, encode_u64(tick)), now=1.0 + tick)
    assert gw.replies == 5 * limits.FLOOD_BURST


def test_replies_are_counted() -> None:
    gw = Connection(Role.GATEWAY, peer_may_open=False)
    gw.receive_data(PING + PING + frame(FrameType.OPEN, 1), now=1.0)
    assert gw.replies == 3
    assert [(f.type, f.stream_id) for f in drain_frames(gw)] == [
        (FrameType.PONG, 0),
        (FrameType.PONG, 0),
        (FrameType.RESET, 1),
    ]


def test_refused_open_flood_is_charged() -> None:
    gw = Connection(Role.GATEWAY, peer_may_open=False)
    opens = b"".join(frame(FrameType.OPEN, sid) for sid in range(1, 2 * limits.FLOOD_BURST, 2))
    events = gw.receive_data(opens, now=1.0)
    assert events == []  # never reported: refused in the core
    refusals = drain_frames(gw)
    assert {(f.type, bytes(f.payload)) for f in refusals} == {
        (FrameType.RESET, encode_u32(ErrorCode.REFUSED_STREAM))
    }
    with pytest.raises(RemoteProtocolError) as info:
        gw.receive_data(frame(FrameType.OPEN, 2 * limits.FLOOD_BURST + 1), now=1.0)
    assert calm(info)


@pytest.mark.parametrize(
    "shape",
    [
        pytest.param(lambda sid: frame(FrameType.DATA, sid), id="empty-data"),
        pytest.param(lambda sid: frame(FrameType.WINDOW, sid, encode_u32(1)), id="tiny-window"),
        pytest.param(lambda sid: frame(FrameType.BLOCKED, sid), id="blocked-with-credit"),
    ],
)
def test_frames_that_move_nothing_on_a_live_stream_are_charged(
    shape: Callable[[int], bytes],
) -> None:
    gw, cl = make_pair()
    sid = gw.open_stream(b"m")
    settle(gw, cl)
    wire = b"".join(
        shape(sid) for _ in range(limits.FLOOD_BURST + 2 * limits.FLOOD_EARN_PER_STREAM)
    )
    with pytest.raises(RemoteProtocolError) as info:
        gw.receive_data(wire, now=1.0)
    assert calm(info)


@pytest.mark.parametrize(
    "shape",
    [
        pytest.param(lambda sid: frame(FrameType.DATA, sid), id="empty-data"),
        pytest.param(lambda sid: frame(FrameType.WINDOW, sid, encode_u32(65536)), id="window"),
        pytest.param(lambda sid: frame(FrameType.RESET, sid, encode_u32(7)), id="reset"),
        pytest.param(lambda sid: frame(FrameType.BLOCKED, sid), id="blocked"),
    ],
)
def test_frames_for_a_closed_stream_are_charged(shape: FrameMaker) -> None:
    gw, cl = make_pair()
    sid = gw.open_stream(b"m")
    settle(gw, cl)
    gw.reset_stream(sid)
    settle(gw, cl)
    count = limits.FLOOD_BURST + 2 * limits.FLOOD_EARN_PER_STREAM + 1
    with pytest.raises(RemoteProtocolError) as info:
        gw.receive_data(b"".join(shape(sid) for _ in range(count)), now=1.0)
    assert calm(info)


def test_data_with_bytes_for_a_closed_stream_is_free() -> None:
    gw, cl = make_pair()
    sid = gw.open_stream(b"m")
    settle(gw, cl)
    gw.reset_stream(sid)
    settle(gw, cl)
    wire = frame(FrameType.DATA, sid, b"x") * (3 * limits.FLOOD_BURST)
    assert gw.receive_data(wire, now=1.0) == []  # it costs the peer as much as us


def test_control_flood_is_charged() -> None:
    gw = Connection(Role.GATEWAY)
    register = b'{"type":"register","id":1,"protocol":"http"}'
    wire = frame(FrameType.CONTROL, 0, register) * (limits.FLOOD_BURST + 1)
    with pytest.raises(RemoteProtocolError) as info:
        gw.receive_data(wire, now=1.0)
    assert calm(info)


def test_crossing_frames_after_many_resets_are_paid_for() -> None:
    """Streams we reset earn the frames that may cross their end: an honest peer whose
    in-flight WINDOW/BLOCKED/empty FIN crossed 2,000 resets is not called a flood."""
    gw, cl = make_pair(max_streams=4000)
    sids = [gw.open_stream(b"m") for _ in range(2000)]
    settle(gw, cl)
    for sid in sids:
        gw.reset_stream(sid)
    crossing = b"".join(
        frame(FrameType.WINDOW, sid, encode_u32(65536))
        + frame(FrameType.BLOCKED, sid)
        + frame(FrameType.DATA, sid, flags=FLAG_FIN)
        for sid in sids
    )
    gw.receive_data(crossing, now=1.0)


# --- the per-call frame limit -----------------------------------------------------------
def test_decoder_stops_at_its_frame_limit_and_goes_on_later() -> None:
    wire = b"".join(frame(FrameType.PING, 0, encode_u64(i)) for i in range(10))
    buffer = bytearray(wire)
    decoder = FrameDecoder(max_payload=1024, max_frames=4)
    first = [bytes(f.payload) for f in decoder.feed(memoryview(buffer))]
    buffer[:] = b"\xff" * len(buffer)  # the transport reuses its buffer after the call
    assert decoder.has_backlog
    second = [bytes(f.payload) for f in decoder.feed(b"")]
    third = [bytes(f.payload) for f in decoder.feed(b"")]
    assert not decoder.has_backlog
    assert decoder.feed(b"") == []
    assert [*first, *second, *third] == [encode_u64(i) for i in range(10)]
    assert [len(first), len(second), len(third)] == [4, 4, 2]


def test_decoder_backlog_keeps_a_split_tail_and_takes_more_data() -> None:
    frames = [frame(FrameType.DATA, 1, bytes([i]) * 5) for i in range(6)]
    wire = b"".join(frames)
    decoder = FrameDecoder(max_payload=1024, max_frames=2)
    got: list[Frame] = list(decoder.feed(wire[:-3]))  # the last frame arrives split
    while decoder.has_backlog:
        got += decoder.feed(b"")
    got += decoder.feed(wire[-3:])
    assert [bytes(f.payload) for f in got] == [bytes([i]) * 5 for i in range(6)]
    more = frame(FrameType.DATA, 1, b"late")
    decoder2 = FrameDecoder(max_payload=1024, max_frames=2)
    got2 = list(decoder2.feed(wire))
    got2 += decoder2.feed(more)  # new data while backlogged goes after the backlog
    while decoder2.has_backlog:
        got2 += decoder2.feed(b"")
    assert [bytes(f.payload) for f in got2][-1] == b"late"
    assert len(got2) == 7


def test_mux_handles_a_huge_message_in_slices() -> None:
    gw = Connection(Role.GATEWAY, max_frames_per_call=100)
    wire = b"".join(frame(FrameType.PONG, 0, encode_u64(i)) for i in range(250))
    events = gw.receive_data(wire, now=1.0)
    slices = [len(events)]
    while gw.has_backlog:
        slices.append(len(gw.receive_data(b"", now=1.0)))
    assert slices == [100, 100, 50]
    assert all(isinstance(e, ev.PongReceived) for e in events)
