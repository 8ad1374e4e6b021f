"""What `Connection.receive_data` reports. Events are past-tense nouns."""

from __future__ import annotations

from typing import ClassVar

from tunnelgate.event import Event as Event  # re-exported: events.Event is the base here too
from tunnelgate.proto.messages import ControlMessage


class StreamOpened(Event):
    __slots__ = ("metadata", "stream_id")
    fields: ClassVar[tuple[str, ...]] = ("metadata", "stream_id")

    def __init__(self, stream_id: int, metadata: bytes) -> None:
        self.stream_id = stream_id
        self.metadata = metadata


class DataReceived(Event):
    """Stream bytes. Acknowledge them (`acknowledge_data`) once consumed to return credit."""

    __slots__ = ("data", "stream_id")
    fields: ClassVar[tuple[str, ...]] = ("data", "stream_id")

    def __init__(self, stream_id: int, data: bytes) -> None:
        self.stream_id = stream_id
        self.data = data


class StreamEnded(Event):
    """The peer half-closed the stream: it will send no more data."""

    __slots__ = ("stream_id",)
    fields: ClassVar[tuple[str, ...]] = ("stream_id",)

    def __init__(self, stream_id: int) -> None:
        self.stream_id = stream_id


class StreamReset(Event):
    """The stream is gone, both directions. `code` is an ErrorCode value."""

    __slots__ = ("code", "stream_id")
    fields: ClassVar[tuple[str, ...]] = ("code", "stream_id")

    def __init__(self, stream_id: int, code: int) -> None:
        self.stream_id = stream_id
        self.code = code


class StreamWritable(Event):
    """Data held back for lack of credit has all been sent: the source may resume."""

    __slots__ = ("stream_id",)
    fields: ClassVar[tuple[str, ...]] = ("stream_id",)

    def __init__(self, stream_id: int) -> None:
        self.stream_id = stream_id


class ControlReceived(Event):
    __slots__ = ("message",)
    fields: ClassVar[tuple[str, ...]] = ("message",)

    def __init__(self, message: ControlMessage) -> None:
        self.message = message


class PongReceived(Event):
    __slots__ = ("value",)
    fields: ClassVar[tuple[str, ...]] = ("value",)

    def __init__(self, value: int) -> None:
        self.value = value


class GoAwayReceived(Event):
    """The peer is closing the connection; `code` NO_ERROR means a clean goodbye."""

    __slots__ = ("code", "reason")
    fields: ClassVar[tuple[str, ...]] = ("code", "reason")

    def __init__(self, code: int, reason: str) -> None:
        self.code = code
        self.reason = reason
