"""Frame layout and a streaming decoder.

Every frame is a 10-byte header followed by its payload:

    type:u8  flags:u8  stream_id:u32  length:u32  payload[length]

One WebSocket message carries one or more whole frames (senders batch the frames
made in one event-loop turn), but the decoder accepts any split of the byte stream.
"""

from __future__ import annotations

import struct
from enum import IntEnum
from typing import Final

from tunnelgate.errors import RemoteProtocolError
from tunnelgate.proto.codes import ErrorCode

HEADER: Final = struct.Struct("!BBII")
HEADER_SIZE: Final = HEADER.size
_U32: Final = struct.Struct("!I")
_U64: Final = struct.Struct("!Q")

FLAG_FIN: Final = 0x1


class FrameType(IntEnum):
    DATA = 0  # stream bytes; FIN flag half-closes the sender's side
    OPEN = 1  # opens a stream; payload is its metadata (see messages.OpenInfo)
    WINDOW = 2  # u32 credit increment for a stream
    RESET = 3  # u32 error code; both sides of the stream are closed
    BLOCKED = 4  # the sender has data but no credit (drives window growth)
    PING = 5  # u64 opaque, answered by PONG with the same value
    PONG = 6
    GOAWAY = 7  # u32 code + UTF-8 reason; no new streams, connection closing
    CONTROL = 8  # stream 0 only: a JSON control message (messages.py)


_KNOWN_TYPES: Final = frozenset(int(t) for t in FrameType)


class Frame:
    """A decoded frame. `payload` may be a view into the caller's buffer."""

    __slots__ = ("flags", "payload", "stream_id", "type")

    def __init__(self, type: int, flags: int, stream_id: int, payload: bytes | memoryview) -> None:
        self.type = type
        self.flags = flags
        self.stream_id = stream_id
        self.payload = payload

    def __repr__(self) -> str:
        return (
            f"<Frame {FrameType(self.type).name} sid={self.stream_id} flags={self.flags} "
            f"len={len(self.payload)}>"
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Frame):
            return NotImplemented
        return (self.type, self.flags, self.stream_id, bytes(self.payload)) == (
            other.type,
            other.flags,
            other.stream_id,
            bytes(other.payload),
        )

    __hash__ = None  # type: ignore[assignment]


def encode_header(type: int, flags: int, stream_id: int, length: int) -> bytes:
    return HEADER.pack(type, flags, stream_id, length)


def encode_frame(
    type: int, stream_id: int, payload: bytes | memoryview = b"", flags: int = 0
) -> bytes:
    return HEADER.pack(type, flags, stream_id, len(payload)) + bytes(payload)


def encode_u32(value: int) -> bytes:
    return _U32.pack(value)


def decode_u32(payload: bytes | memoryview, what: str) -> int:
    if len(payload) != 4:
        raise RemoteProtocolError(ErrorCode.FRAME_SIZE_ERROR, f"{what} payload must be 4 bytes")
    value: int = _U32.unpack(payload)[0]
    return value


def encode_u64(value: int) -> bytes:
    return _U64.pack(value)


def decode_u64(payload: bytes | memoryview, what: str) -> int:
    if len(payload) != 8:
        raise RemoteProtocolError(ErrorCode.FRAME_SIZE_ERROR, f"{what} payload must be 8 bytes")
    value: int = _U64.unpack(payload)[0]
    return value


# One empty view for every idle decoder: a memoryview object is 184 bytes, per tunnel.
_NO_BACKLOG: Final = memoryview(b"")


class FrameDecoder:
    """Turns a byte stream into frames, at most `max_frames` per call.

    Frames parsed straight out of the caller's buffer carry memoryview payloads that
    are valid only until the next `feed` (the transport reuses its read buffer); only
    an incomplete tail is copied and kept.

    A peer can pack hundreds of thousands of tiny frames into one message. Parsing stops
    after `max_frames` (0 = no limit) and keeps the rest as a backlog (`has_backlog`),
    which the next call, `feed(b"")` included, continues: the transport handles one
    slice per event-loop turn, so one connection's message never starves the others.
    """

    def __init__(self, max_payload: int, max_frames: int = 0) -> None:
        self._max_payload = max_payload
        self._max_frames = max_frames
        self._buffer = bytearray()  # an incomplete frame, accumulating
        self._backlog = _NO_BACKLOG  # whole frames left over; a view of our own bytes

    @property
    def buffered(self) -> int:
        return len(self._buffer) + len(self._backlog)

    @property
    def has_backlog(self) -> bool:
        """True if frames are left from the last call: call `feed(b"")` to go on."""
        return len(self._backlog) > 0

    def feed(self, data: bytes | bytearray | memoryview) -> list[Frame]:
        owned = True  # whether `view` is ours to keep (theirs is reused after the call)
        if self._backlog:
            view = self._backlog
            if data:  # more arrived while we worked through the backlog (rare)
                view = memoryview(bytes(view) + bytes(data))
        elif self._buffer:
            self._buffer += data
            if not self._starts_with_frame(self._buffer):
                # Copy nothing until a frame is complete: a peer dribbling a big frame
                # in tiny messages must not cost a copy of the whole buffer per message.
                return []
            # Parse out of a private copy so views stay valid after we trim the buffer.
            view = memoryview(bytes(self._buffer))
        else:
            view = memoryview(data)
            owned = False
        frames: list[Frame] = []
        pos = 0
        end = len(view)
        limit = self._max_frames
        unpack = HEADER.unpack_from
        while end - pos >= HEADER_SIZE:
            if limit and len(frames) >= limit:
                rest = view[pos:]
                self._backlog = rest if owned else memoryview(bytes(rest))
                self._buffer = bytearray()
                return frames
            ftype, flags, stream_id, length = unpack(view, pos)
            self._check_header(ftype, length)
            start = pos + HEADER_SIZE
            if end - start < length:
                break
            # `ftype` stays a plain int (an IntEnum member compares equal): building an
            # enum member per frame cost more than the rest of the header parse.
            frames.append(Frame(ftype, flags, stream_id, view[start : start + length]))
            pos = start + length
        self._backlog = _NO_BACKLOG
        self._buffer = bytearray(view[pos:]) if pos < end else bytearray()
        return frames

    def _check_header(self, ftype: int, length: int) -> None:
        if length > self._max_payload:
            raise RemoteProtocolError(
                ErrorCode.FRAME_SIZE_ERROR,
                f"frame of {length} bytes exceeds the {self._max_payload}-byte limit",
            )
        if ftype not in _KNOWN_TYPES:
            raise RemoteProtocolError(ErrorCode.PROTOCOL_ERROR, f"unknown frame type {ftype}")

    def _starts_with_frame(self, buffer: bytearray) -> bool:
        """True if `buffer` holds a whole first frame; checks its header as soon as it is in."""
        if len(buffer) < HEADER_SIZE:
            return False
        ftype, _, _, length = HEADER.unpack_from(buffer)
        self._check_header(ftype, length)
        return len(buffer) - HEADER_SIZE >= int(length)
