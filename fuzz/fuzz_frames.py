#!/usr/bin/env python3
"""The frame decoder (proto/frames.py) against a ten-line reference decoder.

Input: byte 0 picks `max_frames` (0-3) and byte 1 the size of the pieces the stream is fed
in (0: whole); the rest is the stream. Checked: only RemoteProtocolError escapes; however
the stream is cut and sliced, the frames are the reference's, and re-encoded they are the
bytes they came from; the error comes exactly when the reference meets a bad header (the
frames before it in the same call are dropped: the connection is closed anyway); an idle
decoder holds less than one maximal frame.
"""

from __future__ import annotations

import struct

from fuzz_support import fuzz, instrumented

with instrumented():
    from tunnelgate.errors import RemoteProtocolError
    from tunnelgate.proto.frames import HEADER_SIZE, FrameDecoder, FrameType, encode_frame

MAX_PAYLOAD = 1024  # small, so that the size check is reached
_KNOWN = {int(t) for t in FrameType}
Plain = tuple[int, int, int, bytes]


def reference(stream: bytes) -> tuple[list[Plain], int, bool]:
    """The whole frames in `stream`, the bytes they span, and whether a bad header ends it."""
    frames: list[Plain] = []
    pos = 0
    while len(stream) - pos >= HEADER_SIZE:
        ftype, flags, sid, length = struct.unpack_from("!BBII", stream, pos)
        if length > MAX_PAYLOAD or ftype not in _KNOWN:
            return frames, pos, True
        if len(stream) - pos - HEADER_SIZE < length:
            break
        frames.append((ftype, flags, sid, stream[pos + HEADER_SIZE : pos + HEADER_SIZE + length]))
        pos += HEADER_SIZE + length
    return frames, pos, False


def decode(stream: bytes, piece: int, max_frames: int) -> tuple[list[Plain], bool]:
    decoder = FrameDecoder(MAX_PAYLOAD, max_frames)
    frames: list[Plain] = []
    size = piece or max(len(stream), 1)
    try:
        for at in range(0, len(stream), size):
            got = decoder.feed(bytearray(stream[at : at + size]))  # a buffer reused by callers
            while True:
                frames += [(f.type, f.flags, f.stream_id, bytes(f.payload)) for f in got]
                assert not max_frames or len(got) <= max_frames, "more frames than max_frames"
                if not decoder.has_backlog:
                    break
                got = decoder.feed(b"")
            assert decoder.buffered < HEADER_SIZE + MAX_PAYLOAD, "an idle decoder holds too much"
    except RemoteProtocolError:
        return frames, True
    return frames, False


def test_one_input(data: bytes) -> None:
    if len(data) < 2:
        return
    max_frames, piece, stream = data[0] % 4, data[1], data[2:]
    expected, span, bad = reference(stream)
    frames, failed = decode(stream, piece, max_frames)
    assert failed == bad, f"decoder failed={failed}, reference failed={bad}"
    if failed:  # the call that meets the bad header raises: its earlier frames are dropped
        assert frames == expected[: len(frames)], "the decoder and the reference disagree"
        return
    assert frames == expected, "the decoder and the reference disagree"
    wire = b"".join(encode_frame(t, sid, payload, flags) for t, flags, sid, payload in frames)
    assert wire == stream[:span], "re-encoded frames differ from their bytes"


if __name__ == "__main__":
    fuzz(test_one_input)
