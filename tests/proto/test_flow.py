"""Credit flow control: the windows alone, then through a connected pair."""

from __future__ import annotations

from typing import Any

import pytest
from proto_support import (
    data_bytes,
    drain_frames,
    frame,
    make_pair,
    parse,
    received,
    settle,
    transfer,
)

from tunnelgate.errors import LocalProtocolError, RemoteProtocolError
from tunnelgate.proto import events as ev
from tunnelgate.proto.codes import ErrorCode
from tunnelgate.proto.flow import MAX_WINDOW_VALUE, ReceiveWindow, SendWindow
from tunnelgate.proto.frames import FrameType, encode_u32
from tunnelgate.proto.mux import Connection, Role

SMALL: dict[str, Any] = {
    "initial_window": 1000,
    "max_window": 8000,
    "max_connection_window": 100_000,
}


# --- the windows alone ----------------------------------------------------------
def test_send_window_spends_and_refuses_overspending() -> None:
    window = SendWindow(10)
    window.spend(4)
    window.spend(6)
    assert window.available == 0
    with pytest.raises(LocalProtocolError) as info:
        window.spend(1)
    assert info.value.code == ErrorCode.FLOW_CONTROL_ERROR
    window.grant(3)
    assert window.available == 3


@pytest.mark.parametrize(
    ("available", "increment", "code"),
    [
        (10, 0, ErrorCode.PROTOCOL_ERROR),
        (MAX_WINDOW_VALUE, 1, ErrorCode.FLOW_CONTROL_ERROR),
        (1, MAX_WINDOW_VALUE, ErrorCode.FLOW_CONTROL_ERROR),
    ],
)
def test_send_window_refuses_bad_grants(available: int, increment: int, code: int) -> None:
    window = SendWindow(available)
    with pytest.raises(RemoteProtocolError) as info:
        window.grant(increment)
    assert info.value.code == code
    assert window.available == available


def test_send_window_may_grow_to_exactly_the_maximum() -> None:
    window = SendWindow(1)
    window.grant(MAX_WINDOW_VALUE - 1)
    assert window.available == MAX_WINDOW_VALUE


def test_receive_window_refuses_data_beyond_credit() -> None:
    window = ReceiveWindow(100)
    window.receive(60)
    window.receive(40)
    with pytest.raises(RemoteProtocolError) as info:
        window.receive(1)
    assert info.value.code == ErrorCode.FLOW_CONTROL_ERROR


# (window size, acknowledgements in order, the credit each one returns)
ACK_BATCHES = [
    (100, [24, 1], [0, 25]),  # nothing until a quarter of the window is consumed
    (100, [25], [25]),
    (100, [100], [100]),
    (100, [10, 10, 10, 10, 60], [0, 0, 30, 0, 70]),
    (101, [25, 1], [0, 26]),  # a quarter of 101 is 25.25: 25 is not enough
]


@pytest.mark.parametrize(("size", "acks", "credits"), ACK_BATCHES)
def test_credit_is_returned_in_quarter_window_batches(
    size: int, acks: list[int], credits: list[int]
) -> None:
    window = ReceiveWindow(size)
    window.receive(size)
    assert [window.acknowledge(n) for n in acks] == credits
    assert window.credit + window.unconsumed + window.unreturned == window.size


def test_acknowledging_more_than_received_is_our_bug() -> None:
    window = ReceiveWindow(100)
    window.receive(10)
    with pytest.raises(LocalProtocolError):
        window.acknowledge(11)


# (size, unconsumed, unreturned, max size, budget) -> (credit sent, budget used, new size)
GROW = [
    pytest.param(100, 0, 0, 1000, 10_000, (100, 100, 200), id="doubles"),
    pytest.param(100, 0, 20, 1000, 10_000, (120, 100, 200), id="returns-held-credit-too"),
    pytest.param(600, 0, 0, 1000, 10_000, (400, 400, 1000), id="capped-by-max-window"),
    pytest.param(1000, 0, 0, 1000, 10_000, (0, 0, 1000), id="at-max-window"),
    pytest.param(100, 0, 0, 1000, 30, (30, 30, 130), id="capped-by-budget"),
    pytest.param(100, 0, 0, 1000, 0, (0, 0, 100), id="no-budget"),
    pytest.param(100, 0, 0, 1000, -50, (0, 0, 100), id="overdrawn-budget"),
    pytest.param(100, 50, 0, 1000, 10_000, (100, 100, 200), id="consumer-half-behind"),
    pytest.param(100, 51, 0, 1000, 10_000, (0, 0, 100), id="consumer-too-far-behind"),
]


@pytest.mark.parametrize(("size", "unconsumed", "unreturned", "max_size", "budget", "want"), GROW)
def test_grow(
    size: int,
    unconsumed: int,
    unreturned: int,
    max_size: int,
    budget: int,
    want: tuple[int, int, int],
) -> None:
    window = ReceiveWindow(size)
    window.receive(unconsumed + unreturned)
    window.acknowledge(unreturned) if unreturned * 4 < size else None
    window.unreturned, window.credit = unreturned, size - unconsumed - unreturned
    credit, used = window.grow(max_size, budget)
    assert (credit, used, window.size) == want
    assert window.credit + window.unconsumed + window.unreturned == window.size


# --- through a connection -----------------------------------------------------
def opened(**options: Any) -> tuple[Connection, Connection, int]:
    """A gateway-opened stream the client knows about."""
    gw, cl = make_pair(**options)
    sid = gw.open_stream(b"")
    assert transfer(gw, cl) == [ev.StreamOpened(sid, b"")]
    return gw, cl, sid


def test_sender_never_exceeds_the_window_and_holds_the_rest() -> None:
    gw, _cl, sid = opened(**SMALL)
    payload = bytes(range(256)) * 10  # 2560 bytes
    assert gw.send_data(sid, payload) is False
    assert gw.is_writable(sid) is False
    assert gw.send_window(sid) == 0
    frames = drain_frames(gw)
    assert data_bytes(frames, sid) == payload[:1000]
    assert [f.type for f in frames].count(FrameType.BLOCKED) == 1
    # More writes while held back: queued, no new DATA and no second BLOCKED.
    assert gw.send_data(sid, b"tail") is False
    assert drain_frames(gw) == []


def test_held_data_goes_out_as_credit_returns_then_stream_is_writable() -> None:
    gw, cl, sid = opened(**SMALL)
    payload = bytes(range(256)) * 10
    gw.send_data(sid, payload)
    got = b""
    writable_events = 0
    for _ in range(10):
        events = transfer(gw, cl)
        chunk = received(events, sid)
        got += chunk
        cl.acknowledge_data(sid, len(chunk))
        back = transfer(cl, gw)
        writable_events += back.count(ev.StreamWritable(sid))
        if writable_events:
            break
    got += received(transfer(gw, cl), sid)
    assert got == payload
    assert writable_events == 1
    assert gw.is_writable(sid)
    assert gw.send_data(sid, b"more") is True


def test_credit_returns_only_when_the_consumer_acknowledges() -> None:
    gw, cl, sid = opened(**SMALL)
    gw.send_data(sid, b"x" * 1000)
    assert received(transfer(gw, cl), sid) == b"x" * 1000
    assert cl.data_to_send() == b""  # receiving alone returns nothing
    cl.acknowledge_data(sid, 249)
    assert cl.data_to_send() == b""  # under a quarter window
    cl.acknowledge_data(sid, 1)
    assert cl.data_to_send() == frame(FrameType.WINDOW, sid, encode_u32(250))


def test_acknowledging_unknown_or_zero_is_a_no_op() -> None:
    _gw, cl, sid = opened(**SMALL)
    cl.acknowledge_data(sid, 0)
    cl.acknowledge_data(999, 10)
    assert cl.data_to_send() == b""


def test_stalled_consumer_stops_only_its_own_stream() -> None:
    gw, cl = make_pair(**SMALL)
    stalled, flowing = gw.open_stream(b""), gw.open_stream(b"")
    transfer(gw, cl)
    want = b"s" * 20_000
    got = {stalled: b"", flowing: b""}
    todo = {stalled: want, flowing: want}
    for _ in range(200):
        for sid in (stalled, flowing):
            if todo[sid] and gw.is_writable(sid):
                gw.send_data(sid, todo[sid][:500])
                todo[sid] = todo[sid][500:]
        events = transfer(gw, cl)
        for sid in got:
            got[sid] += received(events, sid)
        cl.acknowledge_data(flowing, len(received(events, flowing)))  # `stalled` never acks
        transfer(cl, gw)
    assert got[flowing] == want
    assert len(got[stalled]) == 1000  # exactly the initial window, BLOCKED or not
    assert cl.receive_window(stalled) == 1000  # and it never grew


def run_bulk(
    gw: Connection, cl: Connection, sids: list[int], rounds: int, acknowledge: bool = True
) -> dict[int, list[int]]:
    """Keep every stream window-bound for `rounds`; return each receive window seen."""
    sizes: dict[int, list[int]] = {sid: [cl.receive_window(sid)] for sid in sids}
    for _ in range(rounds):
        for sid in sids:
            if gw.is_writable(sid):
                gw.send_data(sid, b"b" * 50_000)
        events = transfer(gw, cl)
        for sid in sids:
            if acknowledge:
                cl.acknowledge_data(sid, len(received(events, sid)))
            sizes[sid].append(cl.receive_window(sid))
        transfer(cl, gw)
    return sizes


def test_window_doubles_while_blocked_up_to_max_window() -> None:
    gw, cl, sid = opened(**SMALL)
    sizes = run_bulk(gw, cl, [sid], rounds=20)[sid]
    assert set(sizes) <= {1000, 2000, 4000, 8000}  # only ever doubles
    assert sizes == sorted(sizes)  # never shrinks
    assert sizes[-1] == 8000
    assert gw.send_window(sid) <= 8000


def client_stream(**options: Any) -> Connection:
    """A gateway-side connection with client stream 1 open."""
    gw = Connection(Role.GATEWAY, **options)
    gw.receive_data(frame(FrameType.OPEN, 1))
    return gw


def window_frames(conn: Connection) -> list[int]:
    return [int.from_bytes(f.payload) for f in drain_frames(conn) if f.type == FrameType.WINDOW]


def test_each_blocked_doubles_an_idle_window_exactly() -> None:
    gw = client_stream(**SMALL)
    increments = []
    for _ in range(5):
        gw.receive_data(frame(FrameType.BLOCKED, 1))
        increments.append(window_frames(gw))
    assert increments == [[1000], [2000], [4000], [], []]
    assert gw.receive_window(1) == 8000


def test_blocked_behind_the_data_that_used_the_window_still_grows_it() -> None:
    # Regression: the sender puts BLOCKED right behind the DATA that used up its window,
    # in one message, before our consumer could take that data. A sender that gets
    # whole windows of credit back (a fast consumer acknowledging in big pieces) was
    # thus stuck at the initial window forever.
    gw = client_stream(**SMALL)
    gw.receive_data(frame(FrameType.DATA, 1, b"a" * 1000) + frame(FrameType.BLOCKED, 1))
    assert window_frames(gw) == []  # the consumer has not shown it keeps up yet
    gw.acknowledge_data(1, 1000)
    assert window_frames(gw) == [1000]
    gw.receive_data(frame(FrameType.DATA, 1, b"b" * 1000) + frame(FrameType.BLOCKED, 1))
    assert window_frames(gw) == [1000]  # growth 1000 -> 2000
    assert gw.receive_window(1) == 2000


def test_old_data_the_consumer_left_blocks_growth() -> None:
    gw = client_stream(**SMALL)
    gw.receive_data(frame(FrameType.DATA, 1, b"a" * 1000))
    gw.acknowledge_data(1, 1000)
    window_frames(gw)
    gw.receive_data(frame(FrameType.DATA, 1, b"b" * 501))  # never taken
    gw.receive_data(frame(FrameType.DATA, 1, b"c" * 499) + frame(FrameType.BLOCKED, 1))
    assert window_frames(gw) == []
    assert gw.receive_window(1) == 1000


def test_no_growth_while_the_consumer_is_behind() -> None:
    gw, cl, sid = opened(**SMALL)
    sizes = run_bulk(gw, cl, [sid], rounds=5, acknowledge=False)[sid]
    assert set(sizes) == {1000}


def test_growth_respects_the_connection_budget() -> None:
    gw, cl = make_pair(initial_window=1000, max_window=8000, max_connection_window=1500)
    first, second = gw.open_stream(b""), gw.open_stream(b"")
    transfer(gw, cl)
    run_bulk(gw, cl, [first, second], rounds=20)
    grown = cl.receive_window(first) + cl.receive_window(second) - 2000
    assert grown == 1500


def test_closing_a_grown_stream_returns_its_budget() -> None:
    gw, cl = make_pair(initial_window=1000, max_window=8000, max_connection_window=1000)
    first = gw.open_stream(b"")
    transfer(gw, cl)
    run_bulk(gw, cl, [first], rounds=10)
    assert cl.receive_window(first) == 2000  # the whole budget
    gw.reset_stream(first)
    second = gw.open_stream(b"")
    transfer(gw, cl)
    run_bulk(gw, cl, [second], rounds=10)
    assert cl.receive_window(second) == 2000


def test_blocked_for_a_finished_stream_grants_nothing() -> None:
    gw, cl, sid = opened(**SMALL)
    gw.send_data(sid, b"", end_stream=True)
    transfer(gw, cl)
    assert cl.receive_data(frame(FrameType.BLOCKED, sid)) == []
    assert cl.data_to_send() == b""


def test_no_window_update_once_the_peer_has_finished() -> None:
    gw, cl, sid = opened(**SMALL)
    gw.send_data(sid, b"y" * 1000, end_stream=True)
    transfer(gw, cl)
    cl.acknowledge_data(sid, 1000)
    assert cl.data_to_send() == b""


@pytest.mark.parametrize("chunks", [[1001], [600, 401], [1000, 1]])
def test_peer_exceeding_the_window_is_a_flow_control_error(chunks: list[int]) -> None:
    gw = Connection(Role.GATEWAY, **SMALL)
    gw.receive_data(frame(FrameType.OPEN, 1))
    *first, last = chunks
    for n in first:
        gw.receive_data(frame(FrameType.DATA, 1, b"d" * n))
    with pytest.raises(RemoteProtocolError) as info:
        gw.receive_data(frame(FrameType.DATA, 1, b"d" * last))
    assert info.value.code == ErrorCode.FLOW_CONTROL_ERROR


def test_peer_may_use_credit_it_was_given() -> None:
    gw = Connection(Role.GATEWAY, **SMALL)
    gw.receive_data(frame(FrameType.OPEN, 1))
    gw.receive_data(frame(FrameType.DATA, 1, b"d" * 1000))
    gw.acknowledge_data(1, 1000)
    assert parse(gw.data_to_send())[0].payload == encode_u32(1000)
    events = gw.receive_data(frame(FrameType.DATA, 1, b"e" * 1000))
    assert events == [ev.DataReceived(1, b"e" * 1000)]


@pytest.mark.parametrize(
    ("increment", "code"),
    [(0, ErrorCode.PROTOCOL_ERROR), (2**31, ErrorCode.FLOW_CONTROL_ERROR)],
)
def test_bad_window_increment_from_the_peer(increment: int, code: int) -> None:
    gw, _cl, sid = opened(**SMALL)
    with pytest.raises(RemoteProtocolError) as info:
        gw.receive_data(frame(FrameType.WINDOW, sid, encode_u32(increment)))
    assert info.value.code == code


def test_fin_waits_behind_held_data() -> None:
    gw, cl, sid = opened(**SMALL)
    assert gw.send_data(sid, b"f" * 1500, end_stream=True) is False
    events = transfer(gw, cl)
    assert ev.StreamEnded(sid) not in events
    with pytest.raises(LocalProtocolError) as info:
        gw.send_data(sid, b"late")  # the FIN is already queued
    assert info.value.code == ErrorCode.STREAM_CLOSED
    cl.acknowledge_data(sid, 1000)
    assert transfer(cl, gw) == [ev.StreamWritable(sid)]
    events = transfer(gw, cl)
    assert events == [ev.DataReceived(sid, b"f" * 500), ev.StreamEnded(sid)]


def test_end_stream_while_held_sends_fin_after_the_data() -> None:
    gw, cl, sid = opened(**SMALL)
    gw.send_data(sid, b"g" * 1200)
    gw.end_stream(sid)
    transfer(gw, cl)
    cl.acknowledge_data(sid, 1000)
    transfer(cl, gw)
    assert transfer(gw, cl) == [ev.DataReceived(sid, b"g" * 200), ev.StreamEnded(sid)]


def test_source_that_ignores_backpressure_is_stopped() -> None:
    gw, _cl, sid = opened(initial_window=100, max_pending=1000)
    gw.send_data(sid, b"h" * 600)  # 100 sent, 500 held
    gw.send_data(sid, b"h" * 500)  # exactly at the bound
    with pytest.raises(LocalProtocolError) as info:
        gw.send_data(sid, b"h")
    assert info.value.code == ErrorCode.INTERNAL_ERROR


def test_large_write_is_split_into_frames_of_max_payload() -> None:
    gw, _cl, sid = opened(initial_window=10_000, max_frame_payload=4096)
    gw.send_data(sid, b"L" * 10_000)
    frames = [f for f in drain_frames(gw) if f.type == FrameType.DATA]
    assert [len(f.payload) for f in frames] == [4096, 4096, 1808]


def test_fin_rides_on_the_last_data_frame() -> None:
    gw, _cl, sid = opened(**SMALL)
    gw.send_data(sid, b"abc", end_stream=True)
    [data] = drain_frames(gw)
    assert (data.type, bytes(data.payload), data.flags) == (FrameType.DATA, b"abc", 1)


def test_window_for_a_stream_with_nothing_held_is_silent() -> None:
    gw, _cl, sid = opened(**SMALL)
    assert gw.receive_data(frame(FrameType.WINDOW, sid, encode_u32(5))) == []
    assert gw.send_window(sid) == 1005


def test_writes_queued_while_held_go_out_in_order() -> None:
    gw, cl, sid = opened(initial_window=100)
    gw.send_data(sid, b"a" * 120)
    assert gw.send_data(sid, b"b" * 30) is False
    assert gw.send_data(sid, b"c" * 30, end_stream=True) is False
    got = received(transfer(gw, cl), sid)
    cl.acknowledge_data(sid, 100)
    assert transfer(cl, gw) == [ev.StreamWritable(sid)]
    events = transfer(gw, cl)
    got += received(events, sid)
    assert got == b"a" * 120 + b"b" * 30 + b"c" * 30
    assert events[-1] == ev.StreamEnded(sid)


def test_the_pending_bound_applies_afresh_after_a_flush() -> None:
    gw, cl, sid = opened(initial_window=100, max_pending=500)
    gw.send_data(sid, b"a" * 600)  # 100 sent, 500 held: at the bound
    transfer(gw, cl)
    cl.acknowledge_data(sid, 100)
    gw.receive_data(cl.data_to_send())  # 100 more goes out, 400 still held
    gw.send_data(sid, b"b" * 100)  # 500 held again: allowed
    with pytest.raises(LocalProtocolError):
        gw.send_data(sid, b"c")


def test_under_pressure_grown_windows_shrink_back_and_stop_growing() -> None:
    gw, cl = make_pair(initial_window=1000, max_window=8000, max_connection_window=100_000)
    sid = gw.open_stream(b"m")
    settle(gw, cl)
    # The client sends window-bound while the gateway consumes: the window grows.
    for _ in range(4):
        cl.send_data(sid, b"x" * cl.send_window(sid) + b"y")
        for event in transfer(cl, gw):
            if isinstance(event, ev.DataReceived):
                gw.acknowledge_data(sid, len(event.data))
        transfer(gw, cl)
    grown = gw.receive_window(sid)
    assert grown > 1000
    gw.constrained = True
    cl.send_data(sid, b"z" * cl.send_window(sid))
    for event in transfer(cl, gw):
        if isinstance(event, ev.DataReceived):
            gw.acknowledge_data(sid, len(event.data))
    settle(gw, cl)
    assert gw.receive_window(sid) == 1000  # back to the initial window, not below
    assert cl.send_window(sid) <= 1000  # the peer's credit follows
    cl.send_data(sid, b"w" * (cl.send_window(sid) + 10))  # blocked again: no growth now
    for event in transfer(cl, gw):
        if isinstance(event, ev.DataReceived):
            gw.acknowledge_data(sid, len(event.data))
    settle(gw, cl)
    assert gw.receive_window(sid) == 1000
