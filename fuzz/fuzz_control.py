#!/usr/bin/env python3
"""Control messages (JSON on stream 0) and stream-open metadata (proto/messages.py).

Input: byte 0 picks the decoder (even: decode_control, odd: OpenInfo.decode); the rest is
the payload. Checked: only RemoteProtocolError escapes; what decodes encodes and decodes
again to an equal value (the open target cut to MAX_OPEN_TARGET, as encode documents).
"""

from __future__ import annotations

from fuzz_support import fuzz, instrumented

with instrumented():
    from tunnelgate import limits
    from tunnelgate.errors import RemoteProtocolError
    from tunnelgate.proto.messages import OpenInfo, decode_control, encode_control


def control(payload: bytes) -> None:
    try:
        message = decode_control(payload)
    except RemoteProtocolError:
        return
    again = decode_control(encode_control(message))
    assert again == message, f"{message!r} came back as {again!r}"


def open_info(payload: bytes) -> None:
    try:
        info = OpenInfo.decode(payload)
    except RemoteProtocolError:
        return
    repr(info)
    again = OpenInfo.decode(info.encode())
    info.target = info.target[: limits.MAX_OPEN_TARGET]
    assert again == info, f"{info!r} came back as {again!r}"


def test_one_input(data: bytes) -> None:
    if not data:
        return
    (open_info if data[0] & 1 else control)(data[1:])


if __name__ == "__main__":
    fuzz(test_one_input)
