"""RFC 6455 pieces for tests: the handshake key, frame encoding and decoding, masking.

Written from the RFC for the test app and the raw test client; the gateway never uses it.
"""

from __future__ import annotations

import base64
import hashlib
import os
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

OP_CONTINUATION = 0x0
OP_TEXT = 0x1
OP_BINARY = 0x2
OP_CLOSE = 0x8
OP_PING = 0x9
OP_PONG = 0xA


@dataclass(frozen=True)
class Frame:
    fin: bool
    opcode: int
    payload: bytes
    masked: bool = False

    @property
    def close_code(self) -> int | None:
        if self.opcode != OP_CLOSE or len(self.payload) < 2:
            return None
        return int.from_bytes(self.payload[:2], "big")


def new_key() -> str:
    """A fresh Sec-WebSocket-Key."""
    return base64.b64encode(os.urandom(16)).decode("ascii")


def accept_key(key: str) -> str:
    """The Sec-WebSocket-Accept a server must answer to ``key``."""
    digest = hashlib.sha1(key.encode("ascii") + GUID).digest()
    return base64.b64encode(digest).decode("ascii")


def upgrade_request(path: str, host: str, key: str, extra: Sequence[tuple[str, str]] = ()) -> bytes:
    """The bytes of a client's WebSocket opening handshake."""
    lines = [
        f"GET {path} HTTP/1.1",
        f"Host: {host}",
        "Upgrade: websocket",
        "Connection: Upgrade",
        f"Sec-WebSocket-Key: {key}",
        "Sec-WebSocket-Version: 13",
    ]
    lines += [f"{name}: {value}" for name, value in extra]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def apply_mask(data: bytes, mask: bytes, offset: int = 0) -> bytes:
    """XOR ``data`` with the 4-byte ``mask``, as if it started ``offset`` bytes into a payload."""
    if not data:
        return b""
    shift = offset % 4
    rotated = mask[shift:] + mask[:shift]
    key = (rotated * (len(data) // 4 + 1))[: len(data)]
    value = int.from_bytes(data, "little") ^ int.from_bytes(key, "little")
    return value.to_bytes(len(data), "little")


def frame_header(fin: bool, opcode: int, length: int, mask: bytes | None = None) -> bytes:
    first = (0x80 if fin else 0) | opcode
    mask_bit = 0x80 if mask is not None else 0
    if length < 126:
        head = bytes([first, mask_bit | length])
    elif length < 1 << 16:
        head = bytes([first, mask_bit | 126]) + length.to_bytes(2, "big")
    else:
        head = bytes([first, mask_bit | 127]) + length.to_bytes(8, "big")
    return head + (mask or b"")


def encode_frame(opcode: int, payload: bytes, *, fin: bool = True, mask: bool = True) -> bytes:
    """One frame; clients mask (the default), servers do not."""
    if not mask:
        return frame_header(fin, opcode, len(payload)) + payload
    key = os.urandom(4)
    return frame_header(fin, opcode, len(payload), key) + apply_mask(payload, key)


def close_payload(code: int, reason: str = "") -> bytes:
    return code.to_bytes(2, "big") + reason.encode("utf-8")


@dataclass(frozen=True)
class FrameHead:
    fin: bool
    rsv: int
    opcode: int
    length: int
    mask: bytes | None


async def read_frame_head(read_exactly: Callable[[int], Awaitable[bytes]]) -> FrameHead:
    first, second = await read_exactly(2)
    length = second & 0x7F
    if length == 126:
        length = int.from_bytes(await read_exactly(2), "big")
    elif length == 127:
        length = int.from_bytes(await read_exactly(8), "big")
    mask = await read_exactly(4) if second & 0x80 else None
    return FrameHead(bool(first & 0x80), first & 0x70, first & 0x0F, length, mask)


async def read_frame(read_exactly: Callable[[int], Awaitable[bytes]]) -> Frame:
    """Read one whole frame (unmasking it if masked) with the given exact reader."""
    head = await read_frame_head(read_exactly)
    payload = await read_exactly(head.length) if head.length else b""
    if head.mask is not None:
        payload = apply_mask(payload, head.mask)
    return Frame(head.fin, head.opcode, payload, masked=head.mask is not None)
