"""Helpers shared by the proto tests: a gateway/client pair joined by a memory pipe."""

from __future__ import annotations

from typing import Any

from tunnelgate.proto import events as ev
from tunnelgate.proto.frames import Frame, FrameDecoder, FrameType, encode_frame
from tunnelgate.proto.mux import Connection, Role


def make_pair(**options: Any) -> tuple[Connection, Connection]:
    """A (gateway, client) pair built with the same options."""
    return Connection(Role.GATEWAY, **options), Connection(Role.CLIENT, **options)


def transfer(src: Connection, dst: Connection) -> list[ev.Event]:
    """Deliver everything `src` queued to `dst`; return what `dst` reports."""
    return dst.receive_data(src.data_to_send())


def settle(a: Connection, b: Connection, limit: int = 100) -> tuple[list[ev.Event], list[ev.Event]]:
    """Pump both ways until neither side has anything to send; (events at a, events at b)."""
    at_a: list[ev.Event] = []
    at_b: list[ev.Event] = []
    for _ in range(limit):
        if not (a.has_data_to_send or b.has_data_to_send):
            return at_a, at_b
        at_b += transfer(a, b)
        at_a += transfer(b, a)
    raise AssertionError("the connections never went quiet")


def parse(wire: bytes) -> list[Frame]:
    """Decode `wire` into frames with private `bytes` payloads."""
    frames = FrameDecoder(max_payload=2**32 - 1).feed(wire)
    return [Frame(f.type, f.flags, f.stream_id, bytes(f.payload)) for f in frames]


def frame(ftype: int, stream_id: int, payload: bytes = b"", flags: int = 0) -> bytes:
    return encode_frame(ftype, stream_id, payload, flags)


def drain_frames(conn: Connection) -> list[Frame]:
    return parse(conn.data_to_send())


def data_bytes(frames: list[Frame], stream_id: int) -> bytes:
    return b"".join(
        bytes(f.payload) for f in frames if f.type == FrameType.DATA and f.stream_id == stream_id
    )


def received(events: list[ev.Event], stream_id: int) -> bytes:
    return b"".join(
        e.data for e in events if isinstance(e, ev.DataReceived) and e.stream_id == stream_id
    )
