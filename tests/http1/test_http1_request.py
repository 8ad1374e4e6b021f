"""RequestParser: events, pipelining, limits, and every request it must refuse."""

from __future__ import annotations

import httptools
import pytest
from http1_support import body_of, bytewise, feed_pieces, merged, refusal

from tunnelgate.errors import HTTPError
from tunnelgate.http1.request import (
    BodyData,
    RequestComplete,
    RequestHead,
    RequestParser,
    UpgradeData,
)
from tunnelgate.limits import MAX_HEADER_BYTES, MAX_HEADER_COUNT

GET = b"GET /a?b=c HTTP/1.1\r\nHost: Example.COM:8080\r\nAccept:  */* \t\r\n\r\n"
POST = b"POST /up HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello"
CHUNKED = (
    b"POST /c HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
    b'3;name=value;q="x y"\r\nabc\r\n'  # extensions are allowed and dropped
    b"A\r\n0123456789\r\n"
    b"0\r\nX-Trailer: dropped\r\n\r\n"  # trailers are consumed and dropped
)
UPGRADE = (
    b"GET /ws HTTP/1.1\r\nHost: a\r\nConnection: keep-alive, Upgrade\r\n"
    b"Upgrade: WebSocket\r\nSec-WebSocket-Key: x\r\n\r\n"
)


def test_head_fields() -> None:
    (head, done) = RequestParser().feed(GET)
    assert isinstance(head, RequestHead)
    assert done == RequestComplete()
    assert head.method == b"GET"
    assert head.target == b"/a?b=c"
    assert head.version == "1.1"
    assert head.headers == [(b"Host", b"Example.COM:8080"), (b"Accept", b"*/*")]  # OWS stripped
    assert head.host == b"example.com:8080"
    assert head.keep_alive is True
    assert head.upgrade is None
    assert head.expect_continue is False
    assert head.chunked is False
    assert head.content_length is None
    assert head.head_size == len(GET)


def test_content_length_body() -> None:
    events = RequestParser().feed(POST)
    assert events[1:] == [BodyData(b"hello"), RequestComplete()]
    assert events[0].content_length == 5  # type: ignore[union-attr]


def test_body_read_whole_is_not_copied() -> None:
    parser = RequestParser()
    parser.feed(POST[:-5])
    body = b"hello"
    (data, done) = parser.feed(body)
    assert isinstance(data, BodyData)
    assert data.data is body
    assert done == RequestComplete()


def test_chunked_body_drops_extensions_and_trailers() -> None:
    events = merged(RequestParser().feed(CHUNKED))
    assert events[1:] == [BodyData(b"abc0123456789"), RequestComplete()]
    head = events[0]
    assert isinstance(head, RequestHead)
    assert head.chunked
    assert head.content_length is None
    assert head.headers == [(b"Host", b"a"), (b"Transfer-Encoding", b"chunked")]


def test_body_on_get_is_passed() -> None:
    events = RequestParser().feed(b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\nhi")
    assert events[1:] == [BodyData(b"hi"), RequestComplete()]


def test_pipelined_requests_in_order() -> None:
    events = RequestParser().feed(GET + POST + CHUNKED + GET)
    kinds = [type(e).__name__ for e in merged(events)]
    assert kinds == [
        "RequestHead", "RequestComplete",
        "RequestHead", "BodyData", "RequestComplete",
        "RequestHead", "BodyData", "RequestComplete",
        "RequestHead", "RequestComplete",
    ]  # fmt: skip
    assert body_of(events) == b"hello" + b"abc0123456789"


def test_every_split_gives_the_same_events() -> None:
    stream = GET + POST + CHUNKED + UPGRADE + b"\x00opaque"
    whole = merged(RequestParser().feed(stream))
    for cut in range(len(stream) + 1):
        assert merged(feed_pieces(stream, [cut])) == whole, cut
    assert merged(bytewise(stream)) == whole


def test_upgrade_hands_over_the_rest() -> None:
    parser = RequestParser()
    events = parser.feed(UPGRADE + b"\x81\x00GET / HTTP/1.1\r\n")
    head = events[0]
    assert isinstance(head, RequestHead)
    assert head.upgrade == b"websocket"
    assert events[1:] == [RequestComplete(), UpgradeData(b"\x81\x00GET / HTTP/1.1\r\n")]
    assert parser.feed(b"\xff\x00") == [UpgradeData(b"\xff\x00")]


def test_upgrade_with_a_body_passes_it_as_opaque_bytes() -> None:
    events = RequestParser().feed(UPGRADE[:-2] + b"Content-Length: 3\r\n\r\nabc")
    assert events[0].content_length == 3  # type: ignore[union-attr]
    assert events[1:] == [RequestComplete(), UpgradeData(b"abc")]


def test_upgrade_needs_connection_upgrade() -> None:
    (head, _) = RequestParser().feed(b"GET / HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\n\r\n")
    assert head.upgrade is None  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("version", "connection", "keep_alive"),
    [
        (b"1.1", b"", True),
        (b"1.1", b"Connection: close\r\n", False),
        (b"1.1", b"Connection: Keep-Alive, Close\r\n", False),
        (b"1.0", b"", False),
        (b"1.0", b"Connection: keep-alive\r\n", True),
    ],
)
def test_keep_alive(version: bytes, connection: bytes, keep_alive: bool) -> None:
    raw = b"GET / HTTP/" + version + b"\r\nHost: a\r\n" + connection + b"\r\n"
    (head, _) = RequestParser().feed(raw)
    assert head.keep_alive is keep_alive  # type: ignore[union-attr]


def test_bytes_after_a_closing_request_are_ignored() -> None:
    parser = RequestParser()
    events = parser.feed(b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\nGET / HT")
    assert len(events) == 2
    assert parser.feed(b"garbage") == []


@pytest.mark.parametrize(
    ("version", "expected"),
    [(b"1.1", True), (b"1.0", False)],  # 1.0: RFC 9110 §10.1.1
)
def test_expect_continue(version: bytes, expected: bool) -> None:
    raw = (
        b"PUT / HTTP/"
        + version
        + b"\r\nHost: a\r\nExpect: 100-Continue\r\nContent-Length: 1\r\n\r\n"
    )
    (head,) = RequestParser().feed(raw)
    assert head.expect_continue is expected  # type: ignore[union-attr]


def test_absolute_form_target_names_the_host() -> None:
    (head, _) = RequestParser().feed(b"GET HTTP://Name.Example/p?q HTTP/1.1\r\nHost: other\r\n\r\n")
    assert head.target == b"HTTP://Name.Example/p?q"  # type: ignore[union-attr]
    assert head.host == b"name.example"  # type: ignore[union-attr]


def test_asterisk_form_for_options() -> None:
    (head, _) = RequestParser().feed(b"OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n")
    assert head.target == b"*"  # type: ignore[union-attr]


def test_http10_needs_no_host() -> None:
    (head, _) = RequestParser().feed(b"GET / HTTP/1.0\r\n\r\n")
    assert head.host == b""  # type: ignore[union-attr]
    assert head.version == "1.0"  # type: ignore[union-attr]


def test_blank_lines_before_a_request_are_skipped() -> None:
    # RFC 9112 §2.2; they count towards the head's size.
    (head, _) = RequestParser().feed(b"\r\n\r\n" + GET)
    assert head.head_size == len(GET) + 4  # type: ignore[union-attr]


def _head_of_size(size: int) -> bytes:
    base = b"GET / HTTP/1.1\r\nHost: a\r\nX: \r\n\r\n"
    return base.replace(b"X: ", b"X: " + b"v" * (size - len(base)))


@pytest.mark.parametrize("whole", [True, False])
def test_head_of_exactly_the_limit_is_accepted(whole: bool) -> None:
    raw = _head_of_size(1000)
    assert len(raw) == 1000
    events = (
        RequestParser(max_header_bytes=1000).feed(raw)
        if whole
        else bytewise(raw, RequestParser(max_header_bytes=1000))
    )
    assert events[0].head_size == 1000  # type: ignore[union-attr]


@pytest.mark.parametrize("pieces", [False, True])
def test_head_over_the_limit_is_431(pieces: bool) -> None:
    error = refusal(_head_of_size(1001), pieces=pieces, max_header_bytes=1000)
    assert (error.status, error.code) == (431, "header_too_large")


def test_unfinished_head_is_cut_off_at_the_limit() -> None:
    parser = RequestParser(max_header_bytes=1000)
    start = b"GET / HTTP/1.1\r\nX: "
    parser.feed(start)
    for _ in range(1000 - len(start) - 1):
        parser.feed(b"v")
    with pytest.raises(HTTPError) as info:
        parser.feed(b"v")
    assert info.value.status == 431
    assert parser._framer.size == 1000  # refused as soon as the limit is reached


def test_endless_blank_lines_hit_the_limit() -> None:
    parser = RequestParser(max_header_bytes=100)
    parser.feed(b"\r\n" * 49)
    with pytest.raises(HTTPError):
        parser.feed(b"\r\n")


def test_default_limits_come_from_limits_py() -> None:
    parser = RequestParser()
    assert parser._max_header_bytes == MAX_HEADER_BYTES
    assert parser._max_header_count == MAX_HEADER_COUNT


def test_header_count_limit() -> None:
    fields = b"".join(b"X-%d: v\r\n" % i for i in range(9))  # + Host = 10
    RequestParser(max_header_count=10).feed(b"GET / HTTP/1.1\r\nHost: a\r\n" + fields + b"\r\n")
    error = refusal(
        b"GET / HTTP/1.1\r\nHost: a\r\nY: 1\r\n" + fields + b"\r\n", max_header_count=10
    )
    assert (error.status, error.code) == (431, "too_many_headers")


def test_a_refused_parser_stays_dead() -> None:
    parser = RequestParser()
    with pytest.raises(HTTPError):
        parser.feed(b"GET / HTTP/1.1\r\n\r\n")
    with pytest.raises(HTTPError) as info:
        parser.feed(GET)
    assert (info.value.status, info.value.code) == (400, "bad_host")


def test_a_bad_request_after_a_good_one_refuses_the_feed() -> None:
    with pytest.raises(HTTPError):
        RequestParser().feed(GET + b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n")


# --- what must be refused -----------------------------------------------------------
# (request, status, code). Who refuses it: "llhttp" (strict mode, all leniencies off) or
# "ours" (a check in request.py, because llhttp lets it through; see the last test).
H = b"POST / HTTP/1.1\r\nHost: a\r\n"
TE = H + b"Transfer-Encoding: "
AMBIGUOUS = (400, "ambiguous_framing")
BAD = (400, "bad_request")
BAD_HOST = (400, "bad_host")
BAD_CHUNK = (400, "bad_chunk")


def chunked(body: bytes) -> bytes:
    return TE + b"chunked\r\n\r\n" + body


LLHTTP_REFUSES = {
    # RFC 9112 §6.3 rule 3 (nginx, node): both framings -> 400, in either order
    "cl+te": (H + b"Content-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n", AMBIGUOUS),
    "te+cl": (H + b"Transfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n", AMBIGUOUS),
    # RFC 9112 §6.3 rule 5 allows merging equal values; refusing all is simplest (node)
    "cl-duplicate-equal": (H + b"Content-Length: 3\r\nContent-Length: 3\r\n\r\nabc", AMBIGUOUS),
    "cl-conflicting": (H + b"Content-Length: 3\r\nContent-Length: 4\r\n\r\nabcd", AMBIGUOUS),
    "cl-list": (H + b"Content-Length: 3, 3\r\n\r\nabc", AMBIGUOUS),
    # RFC 9110 §8.6: Content-Length = 1*DIGIT
    "cl-plus": (H + b"Content-Length: +3\r\n\r\nabc", AMBIGUOUS),
    "cl-minus": (H + b"Content-Length: -3\r\n\r\nabc", AMBIGUOUS),
    "cl-hex": (H + b"Content-Length: 0x3\r\n\r\nabc", AMBIGUOUS),
    "cl-inner-space": (H + b"Content-Length: 3 4\r\n\r\nabc", AMBIGUOUS),
    "cl-empty": (H + b"Content-Length: \r\n\r\n", AMBIGUOUS),
    "cl-overflow": (H + b"Content-Length: 99999999999999999999999\r\n\r\n", AMBIGUOUS),
    # RFC 9112 §6.3 rule 4: chunked must be the final coding of a request
    "te-xchunked": (TE + b"xchunked\r\n\r\n", AMBIGUOUS),
    "te-chunked-identity": (TE + b"chunked, identity\r\n\r\n", AMBIGUOUS),
    "te-identity": (TE + b"identity\r\n\r\n", AMBIGUOUS),
    "te-chunked-chunked": (TE + b"chunked, chunked\r\n\r\n", AMBIGUOUS),
    "te-chunked-param": (TE + b"chunked;q=1\r\n\r\n", AMBIGUOUS),
    "te-empty": (TE + b"\r\n\r\n", AMBIGUOUS),
    "te-two-lines-chunked": (TE + b"chunked\r\nTransfer-Encoding: chunked\r\n\r\n", AMBIGUOUS),
    "te-nbsp": (TE + b"\xa0chunked\r\n\r\n0\r\n\r\n", AMBIGUOUS),
    "te-vertical-tab": (TE + b"chunked\x0b\r\n\r\n0\r\n\r\n", BAD),
    "te-space-before-colon": (H + b"Transfer-Encoding : chunked\r\n\r\n0\r\n\r\n", BAD),
    # RFC 9110 §5.1 / §5.5: field names are tokens, values have no CTL or NUL
    "name-bad-char": (b"GET / HTTP/1.1\r\nHo(st: a\r\n\r\n", BAD),
    "name-space": (b"GET / HTTP/1.1\r\nHost: a\r\nX Y: 1\r\n\r\n", BAD),
    "name-empty": (b"GET / HTTP/1.1\r\nHost: a\r\n: 1\r\n\r\n", BAD),
    "name-nul": (b"GET / HTTP/1.1\r\nHost: a\r\nX\x00: 1\r\n\r\n", BAD),
    "value-ctl": (b"GET / HTTP/1.1\r\nHost: a\r\nX: a\x01b\r\n\r\n", BAD),
    "value-del": (b"GET / HTTP/1.1\r\nHost: a\r\nX: a\x7fb\r\n\r\n", BAD),
    "value-nul": (b"GET / HTTP/1.1\r\nHost: a\r\nX: a\x00b\r\n\r\n", BAD),
    # RFC 9112 §5.2: obs-fold -> 400 (outside message/http)
    "obs-fold-space": (b"GET / HTTP/1.1\r\nHost: a\r\nX: a\r\n b\r\n\r\n", BAD),
    "obs-fold-tab": (b"GET / HTTP/1.1\r\nHost: a\r\nX: a\r\n\tb\r\n\r\n", BAD),
    "space-before-first-field": (b"GET / HTTP/1.1\r\n Host: a\r\n\r\n", BAD),
    # RFC 9112 §2.2: a bare CR is invalid; we do not take a bare LF as a line end either
    "bare-lf-everywhere": (b"GET / HTTP/1.1\nHost: a\n\n", BAD),
    "bare-lf-field": (b"GET / HTTP/1.1\r\nHost: a\nX: b\r\n\r\n", BAD),
    "bare-lf-end": (b"GET / HTTP/1.1\r\nHost: a\r\n\n", BAD),
    "bare-cr-field": (b"GET / HTTP/1.1\r\nHost: a\rX: b\r\n\r\n", BAD),
    "bare-cr-request-line": (b"GET / HTTP/1.1\rHost: a\r\n\r\n", BAD),
    # RFC 9112 §7.1: chunk = chunk-size [ chunk-ext ] CRLF chunk-data CRLF
    "chunk-size-bare-lf": (chunked(b"3\nabc\r\n0\r\n\r\n"), BAD_CHUNK),
    "chunk-size-bare-cr": (chunked(b"3\rabc\r\n0\r\n\r\n"), BAD_CHUNK),
    "chunk-data-bare-lf": (chunked(b"3\r\nabc\n0\r\n\r\n"), BAD_CHUNK),
    "chunk-data-too-long": (chunked(b"3\r\nabcd\r\n0\r\n\r\n"), BAD_CHUNK),
    "chunk-size-not-hex": (chunked(b"g\r\nabc\r\n0\r\n\r\n"), BAD_CHUNK),
    "chunk-size-negative": (chunked(b"-3\r\nabc\r\n0\r\n\r\n"), BAD_CHUNK),
    "chunk-size-0x": (chunked(b"0x3\r\nabc\r\n0\r\n\r\n"), BAD_CHUNK),
    "chunk-size-empty": (chunked(b"\r\nabc\r\n0\r\n\r\n"), BAD_CHUNK),
    "chunk-size-space": (chunked(b"3 \r\nabc\r\n0\r\n\r\n"), BAD_CHUNK),
    "chunk-size-overflow": (chunked(b"1" + b"0" * 16 + b"\r\n"), BAD_CHUNK),
    "chunk-ext-ctl": (chunked(b"3;a\x01\r\nabc\r\n0\r\n\r\n"), BAD_CHUNK),
    "trailer-bad-name": (chunked(b"0\r\nX Y: 1\r\n\r\n"), BAD_CHUNK),
    "trailer-bare-lf": (chunked(b"0\r\n\n"), BAD_CHUNK),
    # RFC 9112 §3: the request line
    "method-unknown": (b"FROB / HTTP/1.1\r\nHost: a\r\n\r\n", BAD),
    "method-lower-case": (b"get / HTTP/1.1\r\nHost: a\r\n\r\n", BAD),
    "version-1.2": (b"GET / HTTP/1.2\r\nHost: a\r\n\r\n", BAD),
    "version-lower-case": (b"GET / http/1.1\r\nHost: a\r\n\r\n", BAD),
    "target-space": (b"GET /a b HTTP/1.1\r\nHost: a\r\n\r\n", BAD),
    "target-ctl": (b"GET /\x01 HTTP/1.1\r\nHost: a\r\n\r\n", BAD),
    "target-non-ascii": (b"GET /\xc3\xa9 HTTP/1.1\r\nHost: a\r\n\r\n", BAD),
    "target-no-slash": (b"GET example.com/x HTTP/1.1\r\nHost: a\r\n\r\n", BAD),
    "h2-preface": (b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", BAD),
    "tls-client-hello": (bytes.fromhex("160301020001000001fc0303") + bytes(40), BAD),
}

OURS_REFUSES = {
    # llhttp takes these codings (chunked is final); only exactly `chunked` is safe, as
    # nginx and h11 accept. OWS (SP, HTAB) around the value is fine, see below.
    "te-gzip-chunked": (TE + b"gzip, chunked\r\n\r\n0\r\n\r\n", AMBIGUOUS),
    "te-leading-comma": (TE + b",chunked\r\n\r\n0\r\n\r\n", AMBIGUOUS),
    "te-two-lines": (TE + b"gzip\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", AMBIGUOUS),
    # RFC 9112 §6.1: Transfer-Encoding in HTTP/1.0 is faulty framing
    "te-http10": (b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", AMBIGUOUS),
    # RFC 9112 §3.2: no Host, several, or an invalid one -> 400
    "host-missing": (b"GET / HTTP/1.1\r\n\r\n", BAD_HOST),
    "host-duplicate": (b"GET / HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n", BAD_HOST),
    "host-duplicate-case": (b"GET / HTTP/1.1\r\nHost: a\r\nhOST: b\r\n\r\n", BAD_HOST),
    "host-space": (b"GET / HTTP/1.1\r\nHost: a b\r\n\r\n", BAD_HOST),
    "host-slash": (b"GET / HTTP/1.1\r\nHost: a/b\r\n\r\n", BAD_HOST),
    "host-userinfo": (b"GET / HTTP/1.1\r\nHost: u@a\r\n\r\n", BAD_HOST),
    # RFC 9112 §3: exactly one SP between the parts, and HTTP/1.x only
    "request-line-double-space": (b"GET  / HTTP/1.1\r\nHost: a\r\n\r\n", BAD),
    "version-rtsp": (b"GET / RTSP/1.0\r\nHost: a\r\n\r\n", BAD),
    "version-2.0": (b"GET / HTTP/2.0\r\nHost: a\r\n\r\n", BAD),
    "version-0.9": (b"GET / HTTP/0.9\r\nHost: a\r\n\r\n", BAD),
    "http09-request": (b"GET /\r\n\r\n", BAD),
    # absolute-form must be http(s) without userinfo; `*` is for OPTIONS (RFC 9112 §3.2)
    "target-ftp": (b"GET ftp://a/x HTTP/1.1\r\nHost: a\r\n\r\n", BAD),
    "target-userinfo": (b"GET http://u@a/x HTTP/1.1\r\nHost: a\r\n\r\n", BAD),
    "target-empty-authority": (b"GET http:///x HTTP/1.1\r\nHost: a\r\n\r\n", BAD),
    "target-star-get": (b"GET * HTTP/1.1\r\nHost: a\r\n\r\n", BAD),
    # RFC 9110 §7.8: Upgrade is ignored in 1.0; llhttp would switch anyway
    "upgrade-http10": (b"GET / HTTP/1.0\r\nConnection: upgrade\r\nUpgrade: ws\r\n\r\n", BAD),
    # a forward-proxy method on a reverse proxy (nginx: 405)
    "connect": (b"CONNECT a:443 HTTP/1.1\r\nHost: a:443\r\n\r\n", (405, "method_not_allowed")),
}


def _cases(table: dict[str, tuple[bytes, tuple[int, str]]]) -> list[object]:
    return [pytest.param(raw, expected, id=name) for name, (raw, expected) in table.items()]


@pytest.mark.parametrize(("raw", "expected"), _cases(LLHTTP_REFUSES) + _cases(OURS_REFUSES))
@pytest.mark.parametrize("pieces", [False, True], ids=["whole", "bytewise"])
def test_refused(raw: bytes, expected: tuple[int, str], pieces: bool) -> None:
    error = refusal(raw, pieces=pieces)
    assert (error.status, error.code) == expected, error


@pytest.mark.parametrize(("raw", "expected"), _cases(OURS_REFUSES))
def test_llhttp_alone_takes_what_we_refuse(raw: bytes, expected: tuple[int, str]) -> None:
    """Why each of our own checks exists: strict llhttp 9 parses the request."""

    class Nothing:
        pass

    try:
        httptools.HttpRequestParser(Nothing()).feed_data(raw)
    except httptools.HttpParserUpgrade:
        pass


@pytest.mark.parametrize(
    "value", [b"chunked", b"CHUNKED", b"Chunked", b"  chunked", b"\tchunked "], ids=repr
)
def test_transfer_encoding_chunked_with_ows_and_any_case(value: bytes) -> None:
    events = RequestParser().feed(TE + value + b"\r\n\r\n1\r\nx\r\n0\r\n\r\n")
    assert merged(events)[1:] == [BodyData(b"x"), RequestComplete()]


def test_chunk_line_too_long() -> None:
    error = refusal(chunked(b"1;" + b"a" * 200 + b"\r\nx\r\n0\r\n\r\n"), max_header_bytes=100)
    assert error.code == "bad_chunk"


def test_trailers_too_large() -> None:
    trailers = b"".join(b"T%d: %s\r\n" % (i, b"v" * 40) for i in range(5))
    error = refusal(chunked(b"0\r\n" + trailers + b"\r\n"), max_header_bytes=200)
    assert (error.status, error.code) == (431, "header_too_large")


def test_repr_elides_field_values() -> None:
    parser = RequestParser()
    (head, _) = parser.feed(b"GET /p HTTP/1.1\r\nHost: a\r\nCookie: secret=1\r\n\r\n")
    assert repr(head) == (
        "<RequestHead GET /p HTTP/1.1 host=a length=None headers=2 keep_alive=True upgrade=None>"
    )
    assert repr(parser) == "<RequestParser head>"


def test_chunks_of_one_read_make_one_body_event() -> None:
    parser = RequestParser()
    parser.feed(chunked(b""))
    events = parser.feed(b"1\r\na\r\n2;x\r\nbc\r\n" * 100 + b"0\r\n\r\n")
    assert events == [BodyData(b"abc" * 100), RequestComplete()]
    parser.feed(chunked(b"5\r\n"))
    data = b"hello"
    (body,) = parser.feed(data)
    assert isinstance(body, BodyData)
    assert body.data is data  # chunk data read whole is not copied


def test_head_pending_only_while_a_head_is_cut() -> None:
    parser = RequestParser()
    assert not parser.head_pending
    parser.feed(b"GET / HTTP/1.1\r\nHo")
    assert parser.head_pending
    parser.feed(b"st: a\r\n\r\n")
    assert not parser.head_pending


# --- raw_chunks: a chunked body passed on as it came ------------------------------------------
RAW_BODY = b"5;ext=1\r\nhello\r\n3\r\nabc\r\n0\r\nX-Trailer: t\r\nX-Two: 2\r\n\r\n"
RAW_REQUEST = b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n" + RAW_BODY


def test_raw_chunks_keep_extensions_and_trailers_byte_for_byte() -> None:
    events = merged(RequestParser(raw_chunks=True).feed(RAW_REQUEST + b"GET / HTTP/1.1\r\n"))
    assert isinstance(events[0], RequestHead)
    assert events[1:3] == [BodyData(RAW_BODY), RequestComplete()]


@pytest.mark.parametrize("split", range(1, len(RAW_BODY)))
def test_raw_chunks_survive_any_split(split: int) -> None:
    parser = RequestParser(raw_chunks=True)
    head_end = len(RAW_REQUEST) - len(RAW_BODY)
    events = parser.feed(RAW_REQUEST[: head_end + split])
    events += parser.feed(RAW_REQUEST[head_end + split :])
    assert body_of(events) == RAW_BODY
    assert events[-1] == RequestComplete()


def test_raw_chunks_are_still_validated() -> None:
    parser = RequestParser(raw_chunks=True)
    with pytest.raises(HTTPError) as info:
        parser.feed(b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\nabc\r\n")
    assert info.value.status == 400
