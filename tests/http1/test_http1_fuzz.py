"""Property tests: how reads are cut never matters, and no input raises anything but HTTPError."""

from __future__ import annotations

import itertools
from dataclasses import dataclass

from http1_support import body_of, encode_chunk, feed_pieces, merged
from hypothesis import given, settings
from hypothesis import strategies as st

from tunnelgate.errors import HTTPError
from tunnelgate.http1.request import (
    BodyData,
    RequestComplete,
    RequestHead,
    RequestParser,
)
from tunnelgate.http1.response import ResponseComplete, ResponseParser

FAST = settings(max_examples=200, deadline=None)

TCHAR = "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
RESERVED = {"host", "content-length", "transfer-encoding", "connection", "upgrade", "expect"}
names = st.text(TCHAR, min_size=1, max_size=12).filter(lambda n: n.lower() not in RESERVED)
# field-content: no OWS at either end (it is stripped), any VCHAR, SP or obs-text inside
vchar = st.sampled_from([bytes([c]) for c in [*range(0x21, 0x7F), 0x80, 0xA0, 0xFF]])
values = st.one_of(
    st.just(b""),
    st.builds(
        lambda first, middle, last: first + middle + last,
        vchar,
        st.lists(st.one_of(vchar, st.just(b" ")), max_size=10).map(b"".join),
        vchar,
    ),
)
targets = st.text("abcXYZ019-._~!$&'()*+,;=:@/?%", max_size=20).map(lambda t: b"/" + t.encode())
cuts = st.lists(st.integers(min_value=0, max_value=4000), max_size=8)


extensions = st.lists(
    st.tuples(st.text(TCHAR, min_size=1, max_size=5), st.text(TCHAR, max_size=5)), max_size=2
).map(lambda pairs: "".join(f";{k}={v}" if v else f";{k}" for k, v in pairs).encode())
trailers = st.lists(st.tuples(names, values), max_size=2).map(
    lambda fields: b"".join(n.encode() + b": " + v + b"\r\n" for n, v in fields)
)


def chunk_lines(size: int) -> st.SearchStrategy[bytes]:
    """A chunk-size line as clients write it: any case, leading zeros, extensions."""
    digits = st.sampled_from([b"%x" % size, b"%X" % size, b"00%x" % size])
    return st.builds(lambda d, e: d + e + b"\r\n", digits, extensions)


@dataclass
class Request:
    raw: bytes
    method: bytes
    target: bytes
    headers: list[tuple[bytes, bytes]]
    body: bytes


@st.composite
def requests(draw: st.DrawFn) -> Request:
    method = draw(st.sampled_from([b"GET", b"POST", b"PUT", b"PATCH", b"DELETE", b"OPTIONS"]))
    target = draw(targets)
    headers = [(b"Host", b"app.example")]
    headers += [(n.encode(), v) for n, v in draw(st.lists(st.tuples(names, values), max_size=6))]
    body = draw(st.binary(max_size=300))
    framing = draw(st.sampled_from(["length", "chunked"]))
    if framing == "length":
        headers.append((b"Content-Length", b"%d" % len(body)))
        encoded = body
    else:
        headers.append((b"Transfer-Encoding", b"chunked"))
        sizes = sorted({c % (len(body) + 1) for c in draw(cuts)} | {0, len(body)})
        parts = [body[a:b] for a, b in itertools.pairwise(sizes)]
        encoded = b"".join(draw(chunk_lines(len(p))) + p + b"\r\n" for p in parts if p)
        encoded += draw(chunk_lines(0)) + draw(trailers) + b"\r\n"
    ows = draw(st.sampled_from([b"", b" ", b"\t", b"  ", b" \t"]))
    # llhttp refuses a tab after `chunked` (RFC 9110 allows it; no client sends it)
    lines = b"".join(
        n + b":" + ows + v + (b" " if n == b"Transfer-Encoding" else ows) + b"\r\n"
        for n, v in headers
    )
    raw = method + b" " + target + b" HTTP/1.1\r\n" + lines + b"\r\n" + encoded
    return Request(raw, method, target, headers, body)


@FAST
@given(st.lists(requests(), min_size=1, max_size=3), cuts)
def test_cut_reads_give_the_same_requests(batch: list[Request], offsets: list[int]) -> None:
    stream = b"".join(r.raw for r in batch)
    whole = merged(RequestParser().feed(stream))
    pieces = merged(feed_pieces(stream, [o % (len(stream) + 1) for o in offsets]))
    assert pieces == whole
    heads = [e for e in whole if isinstance(e, RequestHead)]
    assert len(heads) == len(batch)
    assert sum(isinstance(e, RequestComplete) for e in whole) == len(batch)
    for head, request in zip(heads, batch, strict=True):
        assert (head.method, head.target, head.headers) == (
            request.method,
            request.target,
            request.headers,
        )
    # each body sits between its head and its completion
    position = 0
    for request in batch:
        start = whole.index(heads[batch.index(request)], position)
        end = whole.index(RequestComplete(), start)
        assert body_of(whole[start:end]) == request.body
        assert all(not isinstance(e, BodyData) or e.data for e in whole[start:end])
        position = end


def _request_must_only_refuse(stream: bytes, offsets: list[int]) -> None:
    parser = RequestParser(max_header_bytes=512, max_header_count=8)
    status = 0
    try:
        feed_pieces(stream, [o % (len(stream) + 1) for o in offsets], parser)
    except HTTPError as exc:
        status = exc.status
    assert status in (0, 400, 405, 431)


@FAST
@given(st.binary(max_size=600), cuts)
def test_any_bytes_only_refuse_requests(data: bytes, offsets: list[int]) -> None:
    _request_must_only_refuse(data, offsets)


@FAST
@given(requests(), st.integers(min_value=0), st.binary(min_size=1, max_size=20), cuts)
def test_corrupted_requests_only_refuse(
    request: Request, where: int, junk: bytes, offsets: list[int]
) -> None:
    at = where % (len(request.raw) + 1)
    _request_must_only_refuse(request.raw[:at] + junk + request.raw[at:], offsets)


RESPONSE_PREFIXES = [
    b"",
    b"HTTP/1.1 200 OK\r\n",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n",
    b"HTTP/1.1 100 Continue\r\n\r\n",
    b"HTTP/1.0 101 Switching\r\n\r\n",
]


@FAST
@given(
    st.sampled_from([b"GET", b"HEAD", b"POST", b"CONNECT"]),
    st.sampled_from(RESPONSE_PREFIXES),
    st.binary(max_size=400),
    cuts,
)
def test_any_bytes_only_refuse_responses(
    method: bytes, prefix: bytes, data: bytes, offsets: list[int]
) -> None:
    parser = ResponseParser(max_header_bytes=512, max_header_count=8)
    parser.expect(method)
    stream = prefix + data
    start = 0
    refused = (502, "bad_response")
    try:
        for cut in [*sorted({o % (len(stream) + 1) for o in offsets}), len(stream)]:
            parser.feed(stream[start:cut])
            start = cut
        parser.feed_eof()
    except HTTPError as exc:
        refused = (exc.status, exc.code)
    assert refused == (502, "bad_response")


@st.composite
def responses(draw: st.DrawFn) -> bytes:
    status = draw(st.sampled_from([200, 201, 302, 404, 500]))
    headers = b"".join(
        n.encode() + b": " + v + b"\r\n"
        for n, v in draw(st.lists(st.tuples(names, values), max_size=5))
    )
    body = draw(st.binary(max_size=300))
    if draw(st.booleans()):
        return b"HTTP/1.1 %d X\r\n%sContent-Length: %d\r\n\r\n%s" % (
            status,
            headers,
            len(body),
            body,
        )
    sizes = sorted({c % (len(body) + 1) for c in draw(cuts)} | {0, len(body)})
    chunks = b"".join(b"".join(encode_chunk(body[a:b])) for a, b in itertools.pairwise(sizes))
    return b"HTTP/1.1 %d X\r\n%sTransfer-Encoding: chunked\r\n\r\n%s0\r\n\r\n" % (
        status,
        headers,
        chunks,
    )


@FAST
@given(st.lists(responses(), min_size=1, max_size=3), st.binary(max_size=10), cuts)
def test_cut_reads_find_each_response_end(
    batch: list[bytes], junk: bytes, offsets: list[int]
) -> None:
    """Keep-alive reuse: each response ends exactly where it should, however it is cut."""
    parser = ResponseParser()
    stream = b"".join(batch) + junk
    ends = [sum(len(r) for r in batch[: i + 1]) for i in range(len(batch))]
    found: list[int] = []
    parser.expect(b"GET")
    position = 0
    bounds = sorted({o % (len(stream) + 1) for o in offsets} | set(ends) | {len(stream)})
    for cut in bounds:
        piece = stream[position:cut]
        if piece and len(found) < len(batch):
            for event in parser.feed(piece):
                if isinstance(event, ResponseComplete):
                    found.append(cut - event.leftover)
                    if len(found) < len(batch):
                        parser.expect(b"GET")
        position = cut
    assert found == ends
