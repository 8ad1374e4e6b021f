#!/usr/bin/env python3
"""The public request parser (http1/request.py), the gateway's first line of defence.

Input: byte 0 picks raw chunks (bit 0) and byte 1 the size of the pieces the bytes are fed
in (0: whole); the rest is what a client sends. Limits are small (1 KiB head, 16 fields)
so that they are reached. Checked: only HTTPError (400, 405, 431) escapes, and the parser
stays dead after it; how the bytes are cut changes neither the events nor whether they are
refused; a cut head or chunk line never holds more than the head limit; every head, as
sent to the local app (serialize_head), is parsed again to the same request.
"""

from __future__ import annotations

from fuzz_support import fuzz, instrumented

with instrumented():
    from tunnelgate.errors import HTTPError
    from tunnelgate.http1.request import (
        BodyData,
        RequestEvent,
        RequestHead,
        RequestParser,
        UpgradeData,
        serialize_head,
    )

MAX_HEAD = 1024
MAX_FIELDS = 16


def parse(stream: bytes, piece: int, raw_chunks: bool) -> tuple[list[RequestEvent], int | None]:
    """The events, merged across reads, and the status of the refusal (None: none)."""
    parser = RequestParser(MAX_HEAD, MAX_FIELDS, raw_chunks=raw_chunks)
    events: list[RequestEvent] = []
    size = piece or max(len(stream), 1)
    for at in range(0, len(stream), size):
        try:
            events += parser.feed(stream[at : at + size])
        except HTTPError as exc:
            assert exc.status in (400, 405, 431), f"refused with {exc.status}"
            try:
                parser.feed(b"x")
            except HTTPError:
                return merged(events), exc.status
            raise AssertionError("a refused parser took more bytes") from None
        if parser.head_pending:
            assert parser._framer.size <= MAX_HEAD, "a cut head held past the limit"
        assert len(parser._chunks._line) <= MAX_HEAD + 2, "a cut chunk line held past the limit"
    return merged(events), None


def merged(events: list[RequestEvent]) -> list[RequestEvent]:
    out: list[RequestEvent] = []
    for event in events:
        last = out[-1] if out else None
        if isinstance(event, BodyData) and isinstance(last, BodyData):
            out[-1] = BodyData(bytes(last.data) + bytes(event.data))
        elif isinstance(event, UpgradeData) and isinstance(last, UpgradeData):
            out[-1] = UpgradeData(bytes(last.data) + bytes(event.data))
        elif isinstance(event, (BodyData, UpgradeData)):
            out.append(type(event)(bytes(event.data)))
        else:
            out.append(event)
    return out


def forwarded(head: RequestHead) -> None:
    """The head the local app gets parses, and says what the public client said."""
    sent = serialize_head(head, client_ip="192.0.2.1", proto="https", public_host=b"a.example")
    events = RequestParser().feed(sent)
    again = events[0]
    assert isinstance(again, RequestHead), f"the forwarded head gave {again!r}"
    assert again.head_size == len(sent), "the forwarded head has bytes after it"
    assert (again.method, again.version) == (head.method, head.version)
    assert (again.chunked, again.content_length) == (head.chunked, head.content_length)
    assert (again.upgrade is None) == (head.upgrade is None), "the upgrade was lost or made"
    if head.host:
        assert again.host == head.host, f"host {head.host!r} was forwarded as {again.host!r}"


def test_one_input(data: bytes) -> None:
    if len(data) < 2:
        return
    raw_chunks, piece, stream = bool(data[0] & 1), data[1], data[2:]
    events, refused = parse(stream, 0, raw_chunks)
    cut_events, cut_refused = parse(stream, piece, raw_chunks)
    assert (refused is None) == (cut_refused is None), f"whole: {refused}, cut: {cut_refused}"
    if refused is None:
        assert events == cut_events, "the events depend on how the bytes were cut"
    for event in events:
        if isinstance(event, RequestHead):
            forwarded(event)


if __name__ == "__main__":
    fuzz(test_one_input)
