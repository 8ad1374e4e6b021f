#!/usr/bin/env python3
"""The tunnel connection core (proto/mux.py): frames and control messages where they
arrive, with streams, windows and the flood budget behind them.

Input: byte 0's bit 0 picks the side (gateway or client) and bit 1 whether two streams are
open first; byte 1 is the size of the pieces the bytes are fed in (0: whole); the rest is
what the peer sends. Small limits (4 streams, 1 KiB frames, 500-byte windows) so they are
reached. Checked: only RemoteProtocolError escapes, with a code fit for a GOAWAY; what the
core answers is whole frames our own decoder reads back.
"""

from __future__ import annotations

from fuzz_support import fuzz, instrumented

with instrumented():
    from tunnelgate.errors import RemoteProtocolError
    from tunnelgate.proto.codes import ErrorCode
    from tunnelgate.proto.frames import FrameDecoder
    from tunnelgate.proto.mux import Connection, Role

MAX_PAYLOAD = 1024


def test_one_input(data: bytes) -> None:
    if len(data) < 2:
        return
    role = Role.GATEWAY if data[0] & 1 else Role.CLIENT
    conn = Connection(role, initial_window=500, max_frame_payload=MAX_PAYLOAD, max_streams=4)
    if data[0] & 2:
        conn.open_stream(b"")
        conn.open_stream(b"")
    size = data[1] or max(len(data) - 2, 1)
    stream = data[2:]
    answers = FrameDecoder(16 * MAX_PAYLOAD)
    now = 0.0
    try:
        for at in range(0, len(stream), size):
            now += 0.01
            conn.receive_data(stream[at : at + size], now)
            while conn.has_backlog:
                conn.receive_data(b"", now)
            answers.feed(conn.data_to_send())
            assert answers.buffered == 0, "the core sent part of a frame"
    except RemoteProtocolError as exc:
        assert ErrorCode(exc.code) is not ErrorCode.NO_ERROR, "a protocol error with NO_ERROR"


if __name__ == "__main__":
    fuzz(test_one_input)
