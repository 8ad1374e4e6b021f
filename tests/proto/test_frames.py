"""Frame layout, the streaming decoder and its limits."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from tunnelgate.errors import RemoteProtocolError
from tunnelgate.proto.codes import ErrorCode
from tunnelgate.proto.frames import (
    FLAG_FIN,
    HEADER_SIZE,
    Frame,
    FrameDecoder,
    FrameType,
    decode_u32,
    decode_u64,
    encode_frame,
    encode_header,
    encode_u32,
    encode_u64,
)
from tunnelgate.proto.messages import OpenInfo, Registered, encode_control

# (type, flags, stream id, payload, the exact bytes on the wire)
EVERY_FRAME_TYPE = [
    pytest.param(
        FrameType.DATA, FLAG_FIN, 3, b"hi",
        bytes.fromhex("00 01 00000003 00000002") + b"hi",
        id="DATA+FIN",
    ),
    pytest.param(
        FrameType.OPEN, 0, 2, OpenInfo(7, "1.2.3.4:5", method=b"GET", target=b"/").encode(),
        bytes.fromhex("01 00 00000002 00000017 00000007 01 00 09 03 0001") + b"1.2.3.4:5GET/",
        id="OPEN",
    ),
    pytest.param(
        FrameType.WINDOW, 0, 4, encode_u32(65536),
        bytes.fromhex("02 00 00000004 00000004 00010000"),
        id="WINDOW",
    ),
    pytest.param(
        FrameType.RESET, 0, 5, encode_u32(ErrorCode.CANCEL),
        bytes.fromhex("03 00 00000005 00000004 00000007"),
        id="RESET",
    ),
    pytest.param(
        FrameType.BLOCKED, 0, 6, b"",
        bytes.fromhex("04 00 00000006 00000000"),
        id="BLOCKED",
    ),
    pytest.param(
        FrameType.PING, 0, 0, encode_u64(2**64 - 1),
        bytes.fromhex("05 00 00000000 00000008 ffffffffffffffff"),
        id="PING",
    ),
    pytest.param(
        FrameType.PONG, 0, 0, encode_u64(1),
        bytes.fromhex("06 00 00000000 00000008 0000000000000001"),
        id="PONG",
    ),
    pytest.param(
        FrameType.GOAWAY, 0, 0, encode_u32(ErrorCode.SHUTDOWN) + b"bye",
        bytes.fromhex("07 00 00000000 00000007 0000000b") + b"bye",
        id="GOAWAY",
    ),
    pytest.param(
        FrameType.CONTROL, 0, 0, encode_control(Registered(1, "http://a.localhost", name="a")),
        bytes.fromhex("08 00 00000000 0000004e")
        + b'{"id":1,"url":"http://a.localhost","name":"a","port":null,"type":"registered"}',
        id="CONTROL",
    ),
]  # fmt: skip


@pytest.mark.parametrize(("ftype", "flags", "sid", "payload", "wire"), EVERY_FRAME_TYPE)
def test_encode_is_the_documented_layout(
    ftype: FrameType, flags: int, sid: int, payload: bytes, wire: bytes
) -> None:
    assert encode_frame(ftype, sid, payload, flags) == wire
    assert encode_header(ftype, flags, sid, len(payload)) == wire[:HEADER_SIZE]


@pytest.mark.parametrize(("ftype", "flags", "sid", "payload", "wire"), EVERY_FRAME_TYPE)
def test_decode_every_frame_type(
    ftype: FrameType, flags: int, sid: int, payload: bytes, wire: bytes
) -> None:
    decoder = FrameDecoder(max_payload=1024)
    [decoded] = decoder.feed(wire)
    assert decoded.type == ftype
    assert (decoded.flags, decoded.stream_id, bytes(decoded.payload)) == (flags, sid, payload)
    assert decoder.buffered == 0


def test_header_is_ten_bytes() -> None:
    assert HEADER_SIZE == 10


def test_many_frames_in_one_message() -> None:
    frames = [
        Frame(FrameType.DATA, 0, 1, b"a" * 100),
        Frame(FrameType.BLOCKED, 0, 1, b""),
        Frame(FrameType.DATA, FLAG_FIN, 1, b""),
        Frame(FrameType.PING, 0, 0, encode_u64(9)),
    ]
    wire = b"".join(encode_frame(f.type, f.stream_id, f.payload, f.flags) for f in frames)
    assert FrameDecoder(max_payload=1024).feed(wire) == frames


def test_byte_by_byte_gives_the_same_frames() -> None:
    wire = encode_frame(FrameType.DATA, 1, b"hello") + encode_frame(FrameType.RESET, 1, b"\0" * 4)
    decoder = FrameDecoder(max_payload=1024)
    got: list[Frame] = []
    for i in range(len(wire)):
        new = decoder.feed(wire[i : i + 1])
        # Nothing comes out before the frame's last byte.
        assert (len(new) == 1) == (i in (HEADER_SIZE + 4, len(wire) - 1))
        got += [Frame(f.type, f.flags, f.stream_id, bytes(f.payload)) for f in new]
    assert got == [
        Frame(FrameType.DATA, 0, 1, b"hello"),
        Frame(FrameType.RESET, 0, 1, b"\0" * 4),
    ]
    assert decoder.buffered == 0


def test_incomplete_tail_is_kept_and_counted() -> None:
    wire = encode_frame(FrameType.DATA, 1, b"x" * 50)
    decoder = FrameDecoder(max_payload=1024)
    assert decoder.feed(wire[:20]) == []
    assert decoder.buffered == 20
    assert decoder.feed(wire[20:]) == [Frame(FrameType.DATA, 0, 1, b"x" * 50)]
    assert decoder.buffered == 0


def test_tail_is_copied_not_borrowed_from_the_callers_buffer() -> None:
    # The transport reuses its read buffer: the decoder must copy what it keeps.
    first = encode_frame(FrameType.DATA, 1, b"one")
    second = encode_frame(FrameType.DATA, 1, b"two")
    buffer = bytearray(first + second[:12])
    decoder = FrameDecoder(max_payload=1024)
    [got] = decoder.feed(buffer)
    assert bytes(got.payload) == b"one"
    del got
    buffer[:] = b"\xff" * len(buffer)
    assert decoder.feed(second[12:]) == [Frame(FrameType.DATA, 0, 1, b"two")]


def test_frames_from_a_buffered_parse_survive_the_next_feed() -> None:
    wire = encode_frame(FrameType.DATA, 1, b"abc") + encode_frame(FrameType.DATA, 1, b"def")
    decoder = FrameDecoder(max_payload=1024)
    decoder.feed(wire[:5])
    frames = decoder.feed(wire[5:])
    decoder.feed(encode_frame(FrameType.DATA, 1, b"zzz")[:7])
    assert [bytes(f.payload) for f in frames] == [b"abc", b"def"]


@pytest.mark.parametrize("length", [0, 1, 1000, 1024])
def test_payload_up_to_the_limit_is_accepted(length: int) -> None:
    wire = encode_frame(FrameType.DATA, 1, b"z" * length)
    assert FrameDecoder(max_payload=1024).feed(wire) == [Frame(FrameType.DATA, 0, 1, b"z" * length)]


@pytest.mark.parametrize("length", [1025, 2**20, 2**32 - 1])
def test_oversize_frame_is_refused_as_soon_as_its_header_arrives(length: int) -> None:
    decoder = FrameDecoder(max_payload=1024)
    with pytest.raises(RemoteProtocolError) as info:
        decoder.feed(encode_header(FrameType.DATA, 0, 1, length))
    assert info.value.code == ErrorCode.FRAME_SIZE_ERROR


def test_oversize_header_split_across_feeds_is_refused() -> None:
    decoder = FrameDecoder(max_payload=1024)
    header = encode_header(FrameType.DATA, 0, 1, 1025)
    assert decoder.feed(header[:4]) == []
    with pytest.raises(RemoteProtocolError) as info:
        decoder.feed(header[4:])
    assert info.value.code == ErrorCode.FRAME_SIZE_ERROR


def test_oversize_frame_after_a_good_one_is_refused() -> None:
    decoder = FrameDecoder(max_payload=1024)
    wire = encode_frame(FrameType.DATA, 1, b"ok") + encode_header(FrameType.DATA, 0, 1, 5000)
    with pytest.raises(RemoteProtocolError) as info:
        decoder.feed(wire)
    assert info.value.code == ErrorCode.FRAME_SIZE_ERROR


@pytest.mark.parametrize("ftype", [9, 10, 0x7F, 0xFF])
def test_unknown_frame_type_is_a_protocol_error(ftype: int) -> None:
    wire = bytes([ftype]) + bytes.fromhex("00 00000000 00000000")
    with pytest.raises(RemoteProtocolError) as info:
        FrameDecoder(max_payload=1024).feed(wire)
    assert info.value.code == ErrorCode.PROTOCOL_ERROR


def test_unknown_frame_type_split_across_feeds() -> None:
    decoder = FrameDecoder(max_payload=1024)
    decoder.feed(encode_frame(FrameType.DATA, 1, b"x")[:3])
    decoder.feed(encode_frame(FrameType.DATA, 1, b"x")[3:])
    assert decoder.feed(b"\x09\x00\x00") == []
    with pytest.raises(RemoteProtocolError) as info:
        decoder.feed(bytes(7))
    assert info.value.code == ErrorCode.PROTOCOL_ERROR


def test_a_big_frame_dribbled_in_small_pieces_costs_linear_time() -> None:
    # Regression: every feed used to copy the whole buffered tail, so 1 MiB sent in
    # 16-byte messages cost ~32 GiB of copying. Linear work takes ~30 ms here.
    size = 2**20
    decoder = FrameDecoder(max_payload=size)
    decoder.feed(encode_header(FrameType.DATA, 0, 1, size))
    piece = b"p" * 16
    started = time.perf_counter()
    frames: list[Frame] = []
    for _ in range(size // len(piece)):
        frames += decoder.feed(piece)
    elapsed = time.perf_counter() - started
    assert [len(f.payload) for f in frames] == [size]
    assert elapsed < 2.0


@pytest.mark.parametrize(
    ("decode", "good", "value"),
    [
        (decode_u32, encode_u32(0xDEADBEEF), 0xDEADBEEF),
        (decode_u64, encode_u64(2**63 + 5), 2**63 + 5),
    ],
)
def test_fixed_size_payloads(decode: Callable[[bytes, str], int], good: bytes, value: int) -> None:
    assert decode(good, "X") == value
    for bad in (b"", good[:-1], good + b"\0"):
        with pytest.raises(RemoteProtocolError) as info:
            decode(bad, "X")
        assert info.value.code == ErrorCode.FRAME_SIZE_ERROR


def test_frame_equality_and_repr() -> None:
    a = Frame(FrameType.DATA, FLAG_FIN, 3, b"abc")
    assert a == Frame(FrameType.DATA, FLAG_FIN, 3, memoryview(b"abc"))
    assert a != Frame(FrameType.DATA, 0, 3, b"abc")
    assert a != Frame(FrameType.DATA, FLAG_FIN, 5, b"abc")
    assert a != Frame(FrameType.DATA, FLAG_FIN, 3, b"abd")
    assert repr(a) == "<Frame DATA sid=3 flags=1 len=3>"
