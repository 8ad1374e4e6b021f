"""Property tests: round trips, arbitrary splits, garbage, and a two-sided simulation."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule
from proto_support import parse

from tunnelgate.errors import RemoteProtocolError
from tunnelgate.proto import events as ev
from tunnelgate.proto.codes import ErrorCode
from tunnelgate.proto.frames import Frame, FrameDecoder, FrameType, encode_frame, encode_u32
from tunnelgate.proto.messages import Register, encode_control
from tunnelgate.proto.mux import Connection, Role

SETTINGS = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])

frames_st = st.builds(
    Frame,
    st.sampled_from(FrameType),
    st.integers(0, 255),
    st.integers(0, 2**32 - 1),
    st.binary(max_size=300),
)


def wire_of(frames: list[Frame]) -> bytes:
    return b"".join(encode_frame(f.type, f.stream_id, f.payload, f.flags) for f in frames)


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    return [data[a:b] for a, b in zip([0, *points], [*points, len(data)], strict=True)]


# --- (a) round trip -------------------------------------------------------------
@SETTINGS
@given(st.lists(frames_st, max_size=8))
def test_encode_decode_round_trip(frames: list[Frame]) -> None:
    decoder = FrameDecoder(max_payload=300)
    assert decoder.feed(wire_of(frames)) == frames
    assert decoder.buffered == 0


# --- (b) any split gives the same result ------------------------------------------
@SETTINGS
@given(st.lists(frames_st, max_size=8), st.lists(st.integers(0, 10_000), max_size=12))
def test_any_split_gives_the_same_frames(frames: list[Frame], cuts: list[int]) -> None:
    wire = wire_of(frames)
    decoder = FrameDecoder(max_payload=300)
    got: list[Frame] = []
    for piece in split(wire, cuts):
        got += [Frame(f.type, f.flags, f.stream_id, bytes(f.payload)) for f in decoder.feed(piece)]
    assert got == frames
    assert decoder.buffered == 0


# A client's side of a session, as operations it performs; the bytes it sends are then
# fed to two gateways, whole and in pieces.
@dataclass(frozen=True)
class Op:
    kind: str
    payload: bytes
    flag: bool
    number: int


op_st = st.builds(
    Op,
    st.sampled_from(["open", "data", "data", "data", "reset", "ping", "control"]),
    st.binary(max_size=700),
    st.booleans(),
    st.integers(0, 2**31),
)


def client_bytes(ops: list[Op]) -> bytes:
    client = Connection(Role.CLIENT, initial_window=2000, max_frame_payload=256)
    streams: list[int] = []
    for op in ops:
        if op.kind == "open":
            streams.append(client.open_stream(op.payload[:20]))
        elif op.kind == "data" and streams and client.is_writable(streams[-1]):
            client.send_data(streams[-1], op.payload, end_stream=op.flag)
            if op.flag:
                streams.pop()
        elif op.kind == "reset" and streams:
            client.reset_stream(streams.pop(), ErrorCode.CANCEL if op.flag else ErrorCode.KICKED)
        elif op.kind == "ping":
            client.ping(op.number)
        elif op.kind == "control":
            client.send_control(Register(id=op.number, protocol="http"))
    return client.data_to_send()


@SETTINGS
@given(st.lists(op_st, max_size=25), st.lists(st.integers(0, 100_000), max_size=20))
def test_any_split_gives_the_same_events_and_answers(ops: list[Op], cuts: list[int]) -> None:
    wire = client_bytes(ops)
    whole = Connection(Role.GATEWAY, initial_window=2000, max_frame_payload=256)
    pieces = Connection(Role.GATEWAY, initial_window=2000, max_frame_payload=256)
    want = whole.receive_data(wire)
    got: list[ev.Event] = []
    for piece in split(wire, cuts):
        got += pieces.receive_data(piece)
    assert got == want
    assert pieces.data_to_send() == whole.data_to_send()


# --- (c) garbage never raises anything but RemoteProtocolError ------------------
def feed_garbage(role: Role, prefix: bytes, chunks: list[bytes]) -> None:
    conn = Connection(role, initial_window=500, max_frame_payload=1024, max_streams=4)
    error: RemoteProtocolError | None = None
    try:
        conn.receive_data(prefix)
        for chunk in chunks:
            conn.receive_data(chunk)
            conn.data_to_send()
    except RemoteProtocolError as exc:  # anything else fails the test
        error = exc
    if error is not None:  # its code is a real one, fit for a GOAWAY
        assert ErrorCode(error.code) is not ErrorCode.NO_ERROR


roles = st.sampled_from(Role)
# A prefix that leaves streams open, so garbage reaches the stream handling.
prefixes = st.sampled_from([
    b"",
    encode_frame(FrameType.OPEN, 1) + encode_frame(FrameType.OPEN, 3),
    encode_frame(FrameType.OPEN, 2) + encode_frame(FrameType.OPEN, 4),
])  # fmt: skip


@SETTINGS
@given(roles, prefixes, st.lists(st.binary(max_size=64), max_size=8))
def test_random_bytes_only_raise_remote_protocol_error(
    role: Role, prefix: bytes, chunks: list[bytes]
) -> None:
    feed_garbage(role, prefix, chunks)


payloads = st.one_of(
    st.binary(max_size=40),
    st.integers(0, 2**32 - 1).map(encode_u32),
    st.integers(0, 2**64 - 1).map(lambda v: v.to_bytes(8, "big")),
    st.just(encode_control(Register(1, "http"))),
    st.sampled_from([b"{}", b"[" * 3000, b'{"type":"rejected","id":1}', b"\xff"]),
)
plausible_frames = st.builds(
    lambda t, f, s, p: encode_frame(FrameType(t), s, p, f) if t < 9 else bytes([t]) + p,
    st.integers(0, 9),
    st.sampled_from([0, 1, 255]),
    st.integers(0, 8),
    payloads,
)


@SETTINGS
@given(roles, prefixes, st.lists(plausible_frames, max_size=12))
def test_plausible_frames_only_raise_remote_protocol_error(
    role: Role, prefix: bytes, frames: list[bytes]
) -> None:
    feed_garbage(role, prefix, frames)


# --- (d) a gateway and a client over a memory pipe ------------------------------
WINDOW = 64
OPTIONS: dict[str, Any] = {
    "initial_window": WINDOW,
    "max_window": 4 * WINDOW,
    "max_connection_window": 5 * WINDOW,
    "max_streams": 6,
    "max_frame_payload": 48,
}


@dataclass
class Direction:
    """One direction of one stream."""

    sent: bytearray = field(default_factory=bytearray)
    received: bytearray = field(default_factory=bytearray)
    ended: bool = False  # the sender queued its FIN
    fin_seen: bool = False  # the receiver got StreamEnded


@dataclass
class StreamModel:
    opener: Role
    metadata: bytes
    dirs: dict[Role, Direction] = field(default_factory=lambda: {r: Direction() for r in Role})
    reset: bool = False
    seen_by_peer: bool = False


def other(role: Role) -> Role:
    return Role.CLIENT if role is Role.GATEWAY else Role.GATEWAY


class Simulation(RuleBasedStateMachine):
    """Random opens, sends, acknowledgements, resets and deliveries on both sides.

    Checked all along: every byte delivered is the next byte sent on that stream and
    direction; a receiver never holds more unacknowledged bytes than its window; a
    sender never spends more credit than the WINDOW frames it was given (counted on
    the wire, independently of the implementation); StreamWritable only after a
    refused write. At the end everything is drained and every stream not reset must
    have delivered all of its bytes, with its FIN if one was sent.
    """

    def __init__(self) -> None:
        super().__init__()
        self.conn = {r: Connection(r, **OPTIONS) for r in Role}
        self.pipe: dict[Role, list[bytes]] = {r: [] for r in Role}  # batches sent by r
        self.streams: dict[int, StreamModel] = {}
        self.unacked: dict[Role, dict[int, int]] = {r: {} for r in Role}
        self.held: dict[Role, set[int]] = {r: set() for r in Role}
        self.extra: dict[Role, dict[int, int]] = {r: {} for r in Role}  # writes while held
        self.pings: dict[Role, set[int]] = {r: set() for r in Role}
        self.pongs: dict[Role, set[int]] = {r: set() for r in Role}
        # Flow control seen on the wire: DATA bytes r sent, WINDOW credit r received.
        self.spent: dict[Role, dict[int, int]] = {r: {} for r in Role}
        self.credit: dict[Role, dict[int, int]] = {r: {} for r in Role}
        self.observer = {r: FrameDecoder(max_payload=2**20) for r in Role}

    # --- plumbing ----------------------------------------------------------
    def flush(self, side: Role) -> None:
        wire = self.conn[side].data_to_send()
        if not wire:
            return
        for f in self.observer[side].feed(wire):
            if f.type == FrameType.DATA:
                spent = self.spent[side].get(f.stream_id, 0) + len(f.payload)
                self.spent[side][f.stream_id] = spent
                assert spent <= WINDOW + self.credit[side].get(f.stream_id, 0)
        self.pipe[side].append(wire)

    def deliver_one(self, sender: Role, pieces: list[int]) -> None:
        receiver = other(sender)
        wire = self.pipe[sender].pop(0)
        for f in parse(wire):
            if f.type == FrameType.WINDOW:
                grant = int.from_bytes(f.payload)
                self.credit[receiver][f.stream_id] = (
                    self.credit[receiver].get(f.stream_id, 0) + grant
                )
        for piece in split(wire, pieces):
            for event in self.conn[receiver].receive_data(piece):
                self.on_event(receiver, event)
        self.flush(receiver)

    def on_event(self, side: Role, event: ev.Event) -> None:
        peer = other(side)
        conn = self.conn[side]
        if isinstance(event, ev.StreamOpened):
            model = self.streams[event.stream_id]
            assert model.opener is peer
            assert event.metadata == model.metadata
            model.seen_by_peer = True
        elif isinstance(event, ev.DataReceived):
            d = self.streams[event.stream_id].dirs[peer]
            assert not d.fin_seen
            d.received += event.data
            assert d.sent.startswith(d.received)
            unacked = self.unacked[side].get(event.stream_id, 0) + len(event.data)
            self.unacked[side][event.stream_id] = unacked
            if conn.is_open(event.stream_id):  # a FIN later in the batch may have closed it
                assert unacked <= conn.receive_window(event.stream_id)
        elif isinstance(event, ev.StreamEnded):
            d = self.streams[event.stream_id].dirs[peer]
            assert d.ended
            assert d.received == d.sent
            d.fin_seen = True
        elif isinstance(event, ev.StreamReset):
            assert event.code in (
                ErrorCode.CANCEL,
                ErrorCode.CONNECT_ERROR,
                ErrorCode.REFUSED_STREAM,
            )
            self.streams[event.stream_id].reset = True
            self.unacked[side].pop(event.stream_id, None)
            self.held[side].discard(event.stream_id)
            assert not conn.is_open(event.stream_id)
        elif isinstance(event, ev.StreamWritable):
            assert event.stream_id in self.held[side]
            self.held[side].discard(event.stream_id)
            self.extra[side].pop(event.stream_id, None)
        elif isinstance(event, ev.PongReceived):
            assert event.value in self.pings[side]
            self.pongs[side].add(event.value)
        else:
            raise AssertionError(f"unexpected {event!r}")

    def candidates(self, side: Role) -> list[int]:
        conn = self.conn[side]
        return sorted(
            sid
            for sid, m in self.streams.items()
            if conn.is_open(sid) and (m.opener is side or m.seen_by_peer)
        )

    # --- actions -----------------------------------------------------------
    def open_stream(self, side: Role, data: st.DataObject) -> None:
        conn = self.conn[side]
        if conn.open_streams >= conn.max_streams:
            return
        metadata = data.draw(st.binary(max_size=8))
        sid = conn.open_stream(metadata)
        self.streams[sid] = StreamModel(side, metadata)
        self.flush(side)

    def send(self, side: Role, data: st.DataObject) -> None:
        conn = self.conn[side]
        # A source may queue a little more after being told to stop (one more read).
        sids = [
            s
            for s in self.candidates(side)
            if self.extra[side].get(s, 0) < 2 and not self.streams[s].dirs[side].ended
        ]
        if not sids:
            return
        sid = data.draw(st.sampled_from(sids))
        d = self.streams[sid].dirs[side]
        # Sizes from hypothesis, contents pseudo-random so any reordering shows.
        size = data.draw(st.integers(0, 3 * WINDOW))
        payload = random.Random(f"{sid} {side} {len(d.sent)}").randbytes(size)
        end = data.draw(st.integers(0, 5)) == 0
        d.sent += payload
        d.ended = end
        if sid in self.held[side]:
            self.extra[side][sid] = self.extra[side].get(sid, 0) + 1
        if not conn.send_data(sid, payload, end_stream=end):
            self.held[side].add(sid)
        self.flush(side)

    def acknowledge(self, side: Role, data: st.DataObject) -> None:
        waiting = sorted(s for s, n in self.unacked[side].items() if n)
        if not waiting:
            return
        sid = data.draw(st.sampled_from(waiting))
        n = data.draw(st.integers(1, self.unacked[side][sid]))
        self.unacked[side][sid] -= n
        self.conn[side].acknowledge_data(sid, n)
        self.flush(side)

    def reset(self, side: Role, data: st.DataObject) -> None:
        sids = self.candidates(side)
        if not sids:
            return
        sid = data.draw(st.sampled_from(sids))
        code = data.draw(st.sampled_from([ErrorCode.CANCEL, ErrorCode.CONNECT_ERROR]))
        self.conn[side].reset_stream(sid, code)
        self.streams[sid].reset = True
        self.unacked[side].pop(sid, None)
        self.held[side].discard(sid)
        self.flush(side)

    def ping(self, side: Role, data: st.DataObject) -> None:
        value = data.draw(st.integers(0, 2**64 - 1))
        self.pings[side].add(value)
        self.conn[side].ping(value)
        self.flush(side)

    def deliver(self, side: Role, data: st.DataObject) -> None:
        if self.pipe[side]:
            self.deliver_one(side, data.draw(st.lists(st.integers(0, 10_000), max_size=3)))

    # One rule with weighted actions: uniform rule choice resets and pings far too often.
    ACTIONS = ("send",) * 4 + ("deliver",) * 4 + ("acknowledge",) * 3 + (
        "open_stream", "open_stream", "reset", "ping"
    )  # fmt: skip

    @rule(action=st.sampled_from(ACTIONS), side=st.sampled_from(Role), data=st.data())
    def step(self, action: str, side: Role, data: st.DataObject) -> None:
        getattr(self, action)(side, data)

    @invariant()
    def windows_hold(self) -> None:
        for side in Role:
            for sid, n in self.unacked[side].items():
                if self.conn[side].is_open(sid):
                    assert n <= self.conn[side].receive_window(sid)

    def teardown(self) -> None:
        # Consumers take everything, the pipes run dry: every stream must complete.
        for _ in range(1000):
            for side in Role:
                for sid, n in list(self.unacked[side].items()):
                    if n:
                        self.unacked[side][sid] = 0
                        self.conn[side].acknowledge_data(sid, n)
                self.flush(side)
            if not any(self.pipe.values()):
                break
            for sender in Role:
                while self.pipe[sender]:
                    self.deliver_one(sender, [])
        else:
            raise AssertionError("never drained")
        assert self.held == {Role.GATEWAY: set(), Role.CLIENT: set()}
        assert self.pongs == self.pings
        for sid, model in self.streams.items():
            if model.reset:
                continue
            for d in model.dirs.values():
                assert d.received == d.sent
                assert d.fin_seen == d.ended
            both_ended = all(d.ended for d in model.dirs.values())
            for side in Role:
                assert self.conn[side].is_open(sid) == (not both_ended)


Simulation.TestCase.settings = settings(
    max_examples=200,
    stateful_step_count=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
test_simulation = Simulation.TestCase
