"""The multiplexed connection: stream ids, lifecycle, limits, connection frames."""

from __future__ import annotations

from typing import Any

import pytest
from proto_support import drain_frames, frame, make_pair, parse, settle, transfer

from tunnelgate.errors import LocalProtocolError, NoAvailableStreamIDError, RemoteProtocolError
from tunnelgate.proto import events as ev
from tunnelgate.proto.codes import ErrorCode
from tunnelgate.proto.frames import FLAG_FIN, Frame, FrameType, encode_u32, encode_u64
from tunnelgate.proto.messages import Register, Registered, encode_control
from tunnelgate.proto.mux import Connection, Role


def conn(role: Role, **options: Any) -> Connection:
    return Connection(role, **options)


# --- stream ids -----------------------------------------------------------------
@pytest.mark.parametrize(("role", "ids"), [(Role.GATEWAY, [2, 4, 6]), (Role.CLIENT, [1, 3, 5])])
def test_stream_ids_by_parity(role: Role, ids: list[int]) -> None:
    c = conn(role)
    assert [c.open_stream(b"m") for _ in ids] == ids
    opens = drain_frames(c)
    assert [(f.type, f.stream_id, bytes(f.payload)) for f in opens] == [
        (FrameType.OPEN, sid, b"m") for sid in ids
    ]


# (receiving role, ids already opened by the peer, the offending OPEN's id)
BAD_OPENS = [
    pytest.param(Role.GATEWAY, [], 2, id="gateway-gets-even"),
    pytest.param(Role.CLIENT, [], 1, id="client-gets-odd"),
    pytest.param(Role.GATEWAY, [5], 5, id="reused"),
    pytest.param(Role.GATEWAY, [5], 3, id="decreasing"),
    pytest.param(Role.CLIENT, [4], 2, id="decreasing-even"),
]


@pytest.mark.parametrize(("role", "before", "sid"), BAD_OPENS)
def test_open_with_wrong_parity_or_non_increasing_id(
    role: Role, before: list[int], sid: int
) -> None:
    c = conn(role)
    for prior in before:
        assert c.receive_data(frame(FrameType.OPEN, prior)) == [ev.StreamOpened(prior, b"")]
    with pytest.raises(RemoteProtocolError) as info:
        c.receive_data(frame(FrameType.OPEN, sid))
    assert info.value.code == ErrorCode.PROTOCOL_ERROR


def test_peer_ids_may_skip_but_not_go_back() -> None:
    gw = conn(Role.GATEWAY)
    assert gw.receive_data(frame(FrameType.OPEN, 1, b"a")) == [ev.StreamOpened(1, b"a")]
    assert gw.receive_data(frame(FrameType.OPEN, 9, b"b")) == [ev.StreamOpened(9, b"b")]
    with pytest.raises(RemoteProtocolError):
        gw.receive_data(frame(FrameType.OPEN, 7))


def test_open_metadata_is_bounded_locally() -> None:
    gw = conn(Role.GATEWAY)
    with pytest.raises(LocalProtocolError) as info:
        gw.open_stream(b"m" * (16 * 1024 + 1))
    assert info.value.code == ErrorCode.FRAME_SIZE_ERROR
    assert gw.open_streams == 0
    assert gw.open_stream(b"m" * 16 * 1024) == 2  # the failed call used no id


# --- stream-id exhaustion ------------------------------------------------------------
@pytest.mark.parametrize(("role", "last"), [(Role.GATEWAY, 2**32 - 2), (Role.CLIENT, 2**32 - 1)])
def test_running_out_of_stream_ids_is_a_distinct_error(role: Role, last: int) -> None:
    opener = conn(role, next_stream_id=last - 2)  # the test hook: two ids left
    peer = conn(Role.CLIENT if role is Role.GATEWAY else Role.GATEWAY)
    assert [opener.open_stream(b""), opener.open_stream(b"")] == [last - 2, last]
    with pytest.raises(NoAvailableStreamIDError) as info:
        opener.open_stream(b"")
    assert isinstance(info.value, LocalProtocolError)  # callers that refuse a request see one
    assert info.value.code == ErrorCode.REFUSED_STREAM
    with pytest.raises(NoAvailableStreamIDError):  # for good, unlike the stream cap
        opener.open_stream(b"")
    # The streams opened last work as any other, to the last id.
    opener.send_data(last, b"bye", end_stream=True)
    events = transfer(opener, peer)
    assert events[-2:] == [ev.DataReceived(last, b"bye"), ev.StreamEnded(last)]
    assert opener.open_streams == 2


def test_next_stream_id_must_have_the_sides_parity() -> None:
    with pytest.raises(ValueError, match="parity"):
        conn(Role.GATEWAY, next_stream_id=7)
    with pytest.raises(ValueError, match="parity"):
        conn(Role.CLIENT, next_stream_id=8)


# --- stream cap -----------------------------------------------------------------
def test_peer_over_max_streams_is_refused_and_told() -> None:
    gw, cl = make_pair(max_streams=2)
    cl.max_streams = 10  # the client does not know the gateway's cap
    assert [cl.open_stream(b"") for _ in range(3)] == [1, 3, 5]
    events = transfer(cl, gw)
    assert events == [ev.StreamOpened(1, b""), ev.StreamOpened(3, b"")]
    assert gw.open_streams == 2
    assert not gw.is_open(5)
    assert drain_frames(gw) == [Frame(FrameType.RESET, 0, 5, encode_u32(ErrorCode.REFUSED_STREAM))]
    # The opener's own RESET for it (sent before it saw ours) is not news.
    assert gw.receive_data(frame(FrameType.RESET, 5, encode_u32(ErrorCode.CANCEL))) == []


def test_refused_stream_reset_reaches_the_opener() -> None:
    gw, cl = make_pair(max_streams=1)
    cl.max_streams = 2
    cl.open_stream(b"")
    late = cl.open_stream(b"")
    transfer(cl, gw)
    assert transfer(gw, cl) == [ev.StreamReset(late, ErrorCode.REFUSED_STREAM)]
    assert (cl.open_streams, cl.is_open(late)) == (1, False)


def test_late_data_on_a_refused_stream_is_dropped() -> None:
    gw = conn(Role.GATEWAY, max_streams=1)
    gw.receive_data(frame(FrameType.OPEN, 1))
    gw.receive_data(frame(FrameType.OPEN, 3))
    gw.data_to_send()
    assert gw.receive_data(frame(FrameType.DATA, 3, b"late", FLAG_FIN)) == []
    assert gw.data_to_send() == b""


def test_local_open_over_max_streams_raises() -> None:
    gw = conn(Role.GATEWAY, max_streams=2)
    gw.open_stream(b"")
    gw.open_stream(b"")
    with pytest.raises(LocalProtocolError) as info:
        gw.open_stream(b"")
    assert info.value.code == ErrorCode.REFUSED_STREAM
    assert [f.stream_id for f in drain_frames(gw)] == [2, 4]


def test_closing_a_stream_frees_a_slot() -> None:
    gw = conn(Role.GATEWAY, max_streams=1)
    sid = gw.open_stream(b"")
    gw.reset_stream(sid)
    assert gw.open_stream(b"") == 4


def test_peer_streams_count_against_the_cap() -> None:
    gw = conn(Role.GATEWAY, max_streams=1)
    gw.receive_data(frame(FrameType.OPEN, 1))
    with pytest.raises(LocalProtocolError):
        gw.open_stream(b"")


# --- lifecycle ------------------------------------------------------------------
def test_half_close_both_ways_then_the_stream_is_gone() -> None:
    gw, cl = make_pair()
    sid = gw.open_stream(b"req")
    assert gw.send_data(sid, b"GET / HTTP/1.1\r\n\r\n", end_stream=True) is True
    assert transfer(gw, cl) == [
        ev.StreamOpened(sid, b"req"),
        ev.DataReceived(sid, b"GET / HTTP/1.1\r\n\r\n"),
        ev.StreamEnded(sid),
    ]
    # Half-closed: the gateway may not send, the client still may.
    assert (gw.is_open(sid), cl.is_open(sid)) == (True, True)
    with pytest.raises(LocalProtocolError) as info:
        gw.send_data(sid, b"more")
    assert info.value.code == ErrorCode.STREAM_CLOSED
    assert cl.send_data(sid, b"HTTP/1.1 200 OK\r\n") is True
    cl.end_stream(sid)
    assert not cl.is_open(sid)  # both sides ended, as the client sees it
    assert transfer(cl, gw) == [ev.DataReceived(sid, b"HTTP/1.1 200 OK\r\n"), ev.StreamEnded(sid)]
    assert not gw.is_open(sid)
    assert (gw.open_streams, cl.open_streams) == (0, 0)
    with pytest.raises(LocalProtocolError):
        cl.send_data(sid, b"x")


def test_remote_end_first_then_local_end_removes_the_stream() -> None:
    gw, cl = make_pair()
    sid = cl.open_stream(b"")
    cl.end_stream(sid)
    assert transfer(cl, gw) == [ev.StreamOpened(sid, b""), ev.StreamEnded(sid)]
    assert gw.is_open(sid)
    gw.send_data(sid, b"bye", end_stream=True)
    assert not gw.is_open(sid)
    assert transfer(gw, cl) == [ev.DataReceived(sid, b"bye"), ev.StreamEnded(sid)]
    assert not cl.is_open(sid)


def test_data_after_the_peers_fin_resets_the_stream() -> None:
    gw = conn(Role.GATEWAY)
    gw.receive_data(frame(FrameType.OPEN, 1) + frame(FrameType.DATA, 1, b"", FLAG_FIN))
    events = gw.receive_data(frame(FrameType.DATA, 1, b"oops"))
    assert events == [ev.StreamReset(1, ErrorCode.STREAM_CLOSED)]
    assert drain_frames(gw) == [Frame(FrameType.RESET, 0, 1, encode_u32(ErrorCode.STREAM_CLOSED))]
    assert not gw.is_open(1)


@pytest.mark.parametrize("resetter", ["gateway", "client"])
def test_reset_either_way_closes_both_sides(resetter: str) -> None:
    gw, cl = make_pair()
    sid = gw.open_stream(b"")
    transfer(gw, cl)
    a, b = (gw, cl) if resetter == "gateway" else (cl, gw)
    a.reset_stream(sid, ErrorCode.CONNECT_ERROR)
    assert not a.is_open(sid)
    assert transfer(a, b) == [ev.StreamReset(sid, ErrorCode.CONNECT_ERROR)]
    assert not b.is_open(sid)
    # Late traffic for the reset stream, both ways: dropped without a word.
    assert b.receive_data(frame(FrameType.DATA, sid, b"late", FLAG_FIN)) == []
    assert b.receive_data(frame(FrameType.WINDOW, sid, encode_u32(10))) == []
    assert b.receive_data(frame(FrameType.BLOCKED, sid)) == []
    assert b.receive_data(frame(FrameType.RESET, sid, encode_u32(0))) == []
    assert a.receive_data(frame(FrameType.DATA, sid, b"late")) == []
    assert (a.data_to_send(), b.data_to_send()) == (b"", b"")
    with pytest.raises(LocalProtocolError):
        a.send_data(sid, b"x")


def test_reset_drops_held_back_data() -> None:
    gw, cl = make_pair(initial_window=10)
    sid = gw.open_stream(b"")
    gw.send_data(sid, b"x" * 100)
    gw.reset_stream(sid)
    frames = parse(gw.data_to_send())
    assert [f.type for f in frames] == [
        FrameType.OPEN, FrameType.DATA, FrameType.BLOCKED, FrameType.RESET
    ]  # fmt: skip
    assert bytes(frames[-1].payload) == encode_u32(ErrorCode.CANCEL)  # the default code
    assert cl.receive_data(frames_bytes(frames))[-1] == ev.StreamReset(sid, ErrorCode.CANCEL)


def frames_bytes(frames: list[Frame]) -> bytes:
    return b"".join(frame(f.type, f.stream_id, bytes(f.payload), f.flags) for f in frames)


def test_reset_of_an_unknown_stream_sends_nothing() -> None:
    gw = conn(Role.GATEWAY)
    gw.reset_stream(2)
    assert gw.data_to_send() == b""


# (receiving role, frame type, stream id): never opened by anyone
NEVER_OPENED = [
    (role, ftype, sid)
    for role, sids in ((Role.GATEWAY, (1, 2)), (Role.CLIENT, (1, 2)))
    for ftype in (FrameType.DATA, FrameType.WINDOW, FrameType.RESET, FrameType.BLOCKED)
    for sid in sids
]


@pytest.mark.parametrize(("role", "ftype", "sid"), NEVER_OPENED)
def test_frames_for_a_never_opened_stream(role: Role, ftype: FrameType, sid: int) -> None:
    c = conn(role)
    payload = encode_u32(1) if ftype in (FrameType.WINDOW, FrameType.RESET) else b""
    with pytest.raises(RemoteProtocolError) as info:
        c.receive_data(frame(ftype, sid, payload))
    assert info.value.code == ErrorCode.PROTOCOL_ERROR


def test_data_beyond_the_highest_opened_id_is_never_opened() -> None:
    gw = conn(Role.GATEWAY)
    gw.receive_data(frame(FrameType.OPEN, 3))
    gw.receive_data(frame(FrameType.DATA, 1, b""))  # below: may have been refused or closed
    with pytest.raises(RemoteProtocolError):
        gw.receive_data(frame(FrameType.DATA, 5, b"x"))


@pytest.mark.parametrize(
    "ftype", [FrameType.DATA, FrameType.OPEN, FrameType.WINDOW, FrameType.RESET, FrameType.BLOCKED]
)
def test_stream_frames_on_stream_zero(ftype: FrameType) -> None:
    payload = encode_u32(1) if ftype in (FrameType.WINDOW, FrameType.RESET) else b""
    with pytest.raises(RemoteProtocolError) as info:
        conn(Role.CLIENT).receive_data(frame(ftype, 0, payload))
    assert info.value.code == ErrorCode.PROTOCOL_ERROR


@pytest.mark.parametrize(
    ("ftype", "payload"),
    [
        (FrameType.PING, encode_u64(1)),
        (FrameType.PONG, encode_u64(1)),
        (FrameType.GOAWAY, encode_u32(0)),
        (FrameType.CONTROL, b"{}"),
    ],
)
def test_connection_frames_on_a_stream(ftype: FrameType, payload: bytes) -> None:
    gw = conn(Role.GATEWAY)
    gw.receive_data(frame(FrameType.OPEN, 1))
    with pytest.raises(RemoteProtocolError) as info:
        gw.receive_data(frame(ftype, 1, payload))
    assert info.value.code == ErrorCode.PROTOCOL_ERROR


@pytest.mark.parametrize(
    ("ftype", "payload"),
    [
        (FrameType.WINDOW, b"\0\0\0"),
        (FrameType.RESET, b"\0\0\0\0\0"),
        (FrameType.PING, encode_u32(1)),
        (FrameType.PONG, b""),
        (FrameType.GOAWAY, b"\0\0\0"),
    ],
)
def test_wrong_payload_size(ftype: FrameType, payload: bytes) -> None:
    gw = conn(Role.GATEWAY)
    gw.receive_data(frame(FrameType.OPEN, 1))
    sid = 1 if ftype in (FrameType.WINDOW, FrameType.RESET) else 0
    with pytest.raises(RemoteProtocolError) as info:
        gw.receive_data(frame(ftype, sid, payload))
    assert info.value.code == ErrorCode.FRAME_SIZE_ERROR


# --- connection frames ----------------------------------------------------------
def test_ping_is_answered_with_a_pong_of_the_same_value() -> None:
    gw, cl = make_pair()
    gw.ping(2**64 - 2)
    assert transfer(gw, cl) == []  # answered by the core, nothing to report
    assert drain_frames(cl) == [Frame(FrameType.PONG, 0, 0, encode_u64(2**64 - 2))]
    cl.ping(7)
    cl.ping(8)
    at_cl, at_gw = settle(cl, gw)
    assert (at_cl, at_gw) == ([ev.PongReceived(7), ev.PongReceived(8)], [])


def test_control_messages_travel_on_stream_zero() -> None:
    gw, cl = make_pair()
    cl.send_control(Register(id=1, protocol="http", name="demo"))
    [sent] = parse(cl.data_to_send())
    assert (sent.type, sent.stream_id) == (FrameType.CONTROL, 0)
    assert gw.receive_data(frame(sent.type, 0, bytes(sent.payload))) == [
        ev.ControlReceived(Register(id=1, protocol="http", name="demo"))
    ]
    gw.send_control(Registered(id=1, url="http://demo.localhost:8080", name="demo"))
    assert transfer(gw, cl) == [
        ev.ControlReceived(Registered(id=1, url="http://demo.localhost:8080", name="demo"))
    ]


def test_control_message_over_the_limit_is_a_frame_size_error() -> None:
    big = encode_control(Registered(id=1, url="u" * 17_000))
    with pytest.raises(RemoteProtocolError) as info:
        conn(Role.CLIENT).receive_data(frame(FrameType.CONTROL, 0, big))
    assert info.value.code == ErrorCode.FRAME_SIZE_ERROR


def test_bad_control_message_is_a_protocol_error() -> None:
    with pytest.raises(RemoteProtocolError) as info:
        conn(Role.CLIENT).receive_data(frame(FrameType.CONTROL, 0, b"{nope"))
    assert info.value.code == ErrorCode.PROTOCOL_ERROR


def test_go_away_sent_refuses_new_streams_both_ways() -> None:
    gw, cl = make_pair()
    gw.go_away(ErrorCode.SHUTDOWN, "draining")
    assert (gw.go_away_sent, gw.go_away_received) == (True, False)
    with pytest.raises(LocalProtocolError) as info:
        gw.open_stream(b"")
    assert info.value.code == ErrorCode.REFUSED_STREAM
    assert transfer(gw, cl) == [ev.GoAwayReceived(ErrorCode.SHUTDOWN, "draining")]
    assert (cl.go_away_sent, cl.go_away_received) == (False, True)
    with pytest.raises(LocalProtocolError):
        cl.open_stream(b"")
    # A peer that opens anyway (it had not seen the GOAWAY yet) is refused.
    assert gw.receive_data(frame(FrameType.OPEN, 1)) == []
    assert drain_frames(gw) == [Frame(FrameType.RESET, 0, 1, encode_u32(ErrorCode.REFUSED_STREAM))]


def test_go_away_lets_open_streams_finish() -> None:
    gw, cl = make_pair()
    sid = gw.open_stream(b"")
    gw.go_away()
    transfer(gw, cl)
    cl.send_data(sid, b"reply", end_stream=True)
    assert transfer(cl, gw) == [ev.DataReceived(sid, b"reply"), ev.StreamEnded(sid)]


@pytest.mark.parametrize(
    ("code", "reason", "payload_reason", "want"),
    [
        (ErrorCode.NO_ERROR, "", b"", ""),
        (ErrorCode.KICKED, "bye \u00e9", "bye \u00e9".encode(), "bye \u00e9"),
        (ErrorCode.SHUTDOWN, "r" * 2000, b"r" * 1024, "r" * 1024),  # reason capped at 1 KiB
    ],
)
def test_go_away_frame(code: ErrorCode, reason: str, payload_reason: bytes, want: str) -> None:
    gw, cl = make_pair()
    cl.go_away(code, reason)
    wire = cl.data_to_send()
    assert wire == frame(FrameType.GOAWAY, 0, encode_u32(code) + payload_reason)
    assert gw.receive_data(wire) == [ev.GoAwayReceived(code, want)]


def test_go_away_reason_that_is_not_utf8_is_still_read() -> None:
    events = conn(Role.GATEWAY).receive_data(frame(FrameType.GOAWAY, 0, encode_u32(99) + b"\xff"))
    assert events == [ev.GoAwayReceived(99, "\ufffd")]


# --- output, introspection ------------------------------------------------------
def test_everything_queued_comes_out_as_one_batch_in_order() -> None:
    gw = conn(Role.GATEWAY)
    assert not gw.has_data_to_send
    sid = gw.open_stream(b"m")
    gw.send_data(sid, b"body")
    gw.ping(1)
    assert gw.has_data_to_send
    wire = gw.data_to_send()
    assert wire == (
        frame(FrameType.OPEN, 2, b"m")
        + frame(FrameType.DATA, 2, b"body")
        + frame(FrameType.PING, 0, encode_u64(1))
    )
    assert not gw.has_data_to_send
    assert gw.data_to_send() == b""


def test_data_from_several_streams_in_one_message() -> None:
    gw, cl = make_pair()
    a, b = gw.open_stream(b"a"), gw.open_stream(b"b")
    gw.send_data(b, b"to-b")
    gw.send_data(a, b"to-a", end_stream=True)
    at_gw, at_cl = settle(gw, cl)
    assert at_gw == []
    assert at_cl == [
        ev.StreamOpened(a, b"a"),
        ev.StreamOpened(b, b"b"),
        ev.DataReceived(b, b"to-b"),
        ev.DataReceived(a, b"to-a"),
        ev.StreamEnded(a),
    ]


def test_introspection_and_repr() -> None:
    gw, cl = make_pair(initial_window=100)
    sid = gw.open_stream(b"")
    assert (gw.open_streams, gw.is_open(sid), gw.is_writable(sid)) == (1, True, True)
    assert (gw.send_window(sid), gw.receive_window(sid)) == (100, 100)
    assert not gw.is_writable(99)
    assert repr(gw) == "<Connection gateway streams=1 buffered_out=10>"  # the OPEN frame
    assert repr(cl) == "<Connection client streams=0 buffered_out=0>"


def test_event_equality_and_repr() -> None:
    assert ev.DataReceived(1, b"x") == ev.DataReceived(1, b"x")
    assert ev.DataReceived(1, b"x") != ev.DataReceived(3, b"x")
    assert ev.StreamEnded(1) != ev.StreamWritable(1)
    assert repr(ev.StreamReset(3, 7)) == "StreamReset(code=7, stream_id=3)"


def test_received_data_outlives_the_callers_buffer() -> None:
    # The transport hands in views of a read buffer it reuses.
    gw = conn(Role.GATEWAY)
    buffer = bytearray(frame(FrameType.OPEN, 1, b"meta") + frame(FrameType.DATA, 1, b"body"))
    events = gw.receive_data(memoryview(buffer))
    buffer[:] = bytes(len(buffer))
    assert events == [ev.StreamOpened(1, b"meta"), ev.DataReceived(1, b"body")]
    assert all(type(e.data) is bytes for e in events if isinstance(e, ev.DataReceived))


def test_data_to_send_after_headroom_is_the_same_batch() -> None:
    gateway = Connection(Role.GATEWAY)
    sid = gateway.open_stream(b"meta")
    gateway.send_data(sid, b"payload", end_stream=True)
    twin = Connection(Role.GATEWAY)
    twin.send_data(twin.open_stream(b"meta"), b"payload", end_stream=True)
    batch = gateway.data_to_send_after(b"\x00" * 14, 1 << 20)
    assert isinstance(batch, bytearray)
    assert bytes(batch) == b"\x00" * 14 + twin.data_to_send()
    assert not gateway.has_data_to_send


def test_data_to_send_after_splits_at_the_limit_and_loses_nothing() -> None:
    gateway = Connection(Role.GATEWAY, initial_window=1 << 20)
    twin = Connection(Role.GATEWAY, initial_window=1 << 20)
    for conn in (gateway, twin):
        for i in range(8):
            sid = conn.open_stream(b"m")
            conn.send_data(sid, bytes([i]) * 100_000)
    batches = []
    while gateway.has_data_to_send:
        batch = gateway.data_to_send_after(b"HH", 250_000)
        assert batch[:2] == b"HH"
        assert len(batch) - 2 <= 250_000 + 100_010  # at most one frame past the limit
        batches.append(bytes(batch[2:]))
    assert len(batches) > 1
    assert gateway.bytes_to_send == 0
    assert b"".join(batches) == twin.data_to_send()
