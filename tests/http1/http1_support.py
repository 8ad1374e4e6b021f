"""Helpers for the http1 tests: feeding in pieces, merging body events, catching refusals."""

from __future__ import annotations

from collections.abc import Iterable

import pytest

from tunnelgate.errors import HTTPError
from tunnelgate.http1.request import BodyData, RequestEvent, RequestParser, UpgradeData
from tunnelgate.http1.response import ResponseComplete, ResponseEvent, ResponseParser
from tunnelgate.limits import MAX_HEADER_BYTES, MAX_HEADER_COUNT


def feed_pieces(
    data: bytes, cuts: Iterable[int], parser: RequestParser | None = None
) -> list[RequestEvent]:
    """Feed data cut at the given offsets; return all events."""
    parser = parser or RequestParser()
    events: list[RequestEvent] = []
    start = 0
    for cut in [*sorted(set(cuts)), len(data)]:
        events += parser.feed(data[start:cut])
        start = cut
    return events


def bytewise(data: bytes, parser: RequestParser | None = None) -> list[RequestEvent]:
    return feed_pieces(data, range(len(data)), parser)


def merged(events: list[RequestEvent]) -> list[RequestEvent]:
    """Adjacent BodyData (and UpgradeData) events joined: how a read was cut does not matter."""
    out: list[RequestEvent] = []
    for event in events:
        previous = out[-1] if out else None
        if isinstance(event, BodyData) and isinstance(previous, BodyData):
            out[-1] = BodyData(previous.data + event.data)
        elif isinstance(event, UpgradeData) and isinstance(previous, UpgradeData):
            out[-1] = UpgradeData(previous.data + event.data)
        else:
            out.append(event)
    return out


def body_of(events: list[RequestEvent]) -> bytes:
    return b"".join(e.data for e in events if isinstance(e, BodyData))


def refusal(data: bytes, *, pieces: bool = False, **limits: int) -> HTTPError:
    """The HTTPError a request parser raises for data (fed whole or byte by byte)."""
    parser = RequestParser(
        max_header_bytes=limits.get("max_header_bytes", MAX_HEADER_BYTES),
        max_header_count=limits.get("max_header_count", MAX_HEADER_COUNT),
    )
    with pytest.raises(HTTPError) as info:
        feed_pieces(data, range(len(data)) if pieces else (), parser)
    return info.value


def feed_response(
    method: bytes, data: bytes, cuts: Iterable[int] = (), *, eof: bool = False
) -> tuple[list[ResponseEvent], int]:
    """Feed one response in pieces; return its events and how many bytes it consumed."""
    parser = ResponseParser()
    parser.expect(method)
    events: list[ResponseEvent] = []
    consumed = start = 0
    for cut in [*sorted(set(cuts)), len(data)]:
        piece = data[start:cut]
        start = cut
        if not piece:
            continue
        new = parser.feed(piece)
        events += new
        leftover = [e.leftover for e in new if isinstance(e, ResponseComplete)]
        consumed += len(piece) - (leftover[0] if leftover else 0)
        if leftover:
            break
    if eof:
        events += parser.feed_eof()
    return events, consumed


LAST_CHUNK = b"0\r\n\r\n"


def encode_chunk(data: bytes) -> list[bytes]:
    """One chunk, as pieces; empty data gives none (an empty chunk would end the body)."""
    if not data:
        return []
    return [b"%x\r\n" % len(data), data, b"\r\n"]
