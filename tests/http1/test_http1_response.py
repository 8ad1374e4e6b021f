"""ResponseParser: where each response of the local app ends, and what it refuses."""

from __future__ import annotations

from collections.abc import Sequence

import pytest
from http1_support import feed_response

from tunnelgate.errors import HTTPError
from tunnelgate.http1.response import ResponseComplete, ResponseHead, ResponseParser

OK_LENGTH = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\nhello"
OK_CHUNKED = (
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
    b"5;ext=1\r\nhello\r\n1a\r\nabcdefghijklmnopqrstuvwxyz\r\n0\r\nX-Trailer: t\r\n\r\n"
)


def heads(events: Sequence[object]) -> list[ResponseHead]:
    return [e for e in events if isinstance(e, ResponseHead)]


def test_content_length() -> None:
    events, consumed = feed_response(b"GET", OK_LENGTH)
    (head, done) = events
    assert isinstance(head, ResponseHead)
    assert (head.status, head.reason, head.version) == (200, b"OK", "1.1")
    assert head.headers == [(b"Content-Type", b"text/plain"), (b"Content-Length", b"5")]
    assert (head.content_length, head.chunked, head.keep_alive) == (5, False, True)
    assert (head.interim, head.switching) == (False, False)
    assert done == ResponseComplete(0)
    assert consumed == len(OK_LENGTH)


def test_content_length_in_pieces_and_with_bytes_after() -> None:
    parser = ResponseParser()
    parser.expect(b"GET")
    assert len(parser.feed(OK_LENGTH[:-3])) == 1
    assert parser.feed(b"he") == []
    assert parser.feed(b"lEXTRA") == [ResponseComplete(5)]


def test_chunked_split_at_every_byte() -> None:
    data = OK_CHUNKED + b"after"
    whole, consumed = feed_response(b"GET", data)
    assert whole[-1] == ResponseComplete(5)
    assert consumed == len(OK_CHUNKED)
    assert heads(whole)[0].chunked
    for cut in range(1, len(data)):
        events, consumed = feed_response(b"GET", data, [cut])
        assert heads(events) == heads(whole), cut
        assert consumed == len(OK_CHUNKED), cut
    events, consumed = feed_response(b"GET", data, range(len(data)))
    assert consumed == len(OK_CHUNKED)


def test_close_delimited_body_ends_at_eof() -> None:
    parser = ResponseParser()
    parser.expect(b"GET")
    (head,) = parser.feed(b"HTTP/1.1 200 OK\r\n\r\nsome")
    assert isinstance(head, ResponseHead)
    assert head.keep_alive is False
    assert parser.feed(b" more") == []
    assert parser.feed_eof() == [ResponseComplete(0)]


def test_transfer_coding_other_than_chunked_is_close_delimited() -> None:
    # RFC 9112 §6.3 rule 4 (responses)
    events, _ = feed_response(
        b"GET", b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\nx", eof=True
    )
    assert heads(events)[0].chunked is False
    assert events[-1] == ResponseComplete(0)


@pytest.mark.parametrize(
    ("method", "status"),
    [(b"HEAD", 200), (b"GET", 204), (b"GET", 304), (b"HEAD", 404)],
)
def test_no_body(method: bytes, status: int) -> None:
    raw = b"HTTP/1.1 %d X\r\nContent-Length: 10\r\n\r\n" % status
    events, consumed = feed_response(method, raw + b"NEXT")
    assert events[-1] == ResponseComplete(4)
    assert heads(events)[0].keep_alive is True
    assert consumed == len(raw)


def test_head_response_without_length_keeps_the_connection() -> None:
    events, _ = feed_response(b"HEAD", b"HTTP/1.1 200 OK\r\n\r\n")
    assert heads(events)[0].keep_alive is True
    assert events[-1] == ResponseComplete(0)


def test_100_continue_then_200() -> None:
    data = (
        b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </s>\r\n\r\n" + OK_LENGTH
    )
    for cuts in ([], [10], [25], [26], [30], range(len(data))):
        events, consumed = feed_response(b"POST", data, cuts)
        (cont, hints, final) = heads(events)
        assert (cont.status, cont.interim) == (100, True)
        assert (hints.status, hints.interim) == (103, True)
        assert (final.status, final.interim) == (200, False)
        assert [e for e in events if isinstance(e, ResponseComplete)] == [ResponseComplete(0)]
        assert consumed == len(data)


def test_101_reports_the_rest_as_leftover_and_stops() -> None:
    parser = ResponseParser()
    parser.expect(b"GET")
    raw = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n"
    (head, done) = parser.feed(raw + b"\x81\x05hello")
    assert isinstance(head, ResponseHead)
    assert (head.status, head.switching, head.interim, head.keep_alive) == (101, True, False, False)
    assert done == ResponseComplete(7)
    assert parser.feed(b"HTTP/1.1 200 OK\r\n\r\n") == []  # opaque from now on
    assert parser.feed_eof() == []
    with pytest.raises(RuntimeError):
        parser.expect(b"GET")


def test_101_without_upgrade_fields_still_switches() -> None:
    head = b"HTTP/1.1 101 Switching\r\n\r\n"
    events, consumed = feed_response(b"GET", head + b"xyz")
    assert events[-1] == ResponseComplete(3)
    assert consumed == len(head)


def test_2xx_to_connect_is_a_tunnel() -> None:
    events, _ = feed_response(b"CONNECT", b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nraw")
    assert events[-1] == ResponseComplete(3)
    assert heads(events)[0].keep_alive is False


@pytest.mark.parametrize(
    ("raw", "keep_alive"),
    [
        (b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", True),
        (b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n", False),
        (b"HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n", False),
        (b"HTTP/1.0 200 OK\r\nConnection: Keep-Alive\r\nContent-Length: 0\r\n\r\n", True),
        (b"HTTP/1.1 200 OK\r\n\r\n", False),  # close-delimited
    ],
)
def test_keep_alive(raw: bytes, keep_alive: bool) -> None:
    events, _ = feed_response(b"GET", raw)
    assert heads(events)[0].keep_alive is keep_alive


def test_connection_reuse() -> None:
    parser = ResponseParser()
    for _ in range(3):
        parser.expect(b"GET")
        assert parser.feed(OK_LENGTH)[-1] == ResponseComplete(0)
        parser.expect(b"GET")
        assert parser.feed(OK_CHUNKED)[-1] == ResponseComplete(0)


def test_expect_during_a_response_is_a_bug() -> None:
    parser = ResponseParser()
    parser.expect(b"GET")
    parser.feed(OK_LENGTH[:10])
    with pytest.raises(RuntimeError):
        parser.expect(b"GET")


def _refusal(
    raw: bytes,
    method: bytes = b"GET",
    *,
    eof: bool = False,
    code: str = "bad_response",
    **limits: int,
) -> HTTPError:
    parser = ResponseParser(**limits)
    parser.expect(method)
    if eof:
        parser.feed(raw)
    with pytest.raises(HTTPError) as info:
        parser.feed_eof() if eof else parser.feed(raw)
    assert (info.value.status, info.value.code) == (502, code)
    with pytest.raises(HTTPError):  # and it stays dead
        parser.feed(OK_LENGTH)
    return info.value


@pytest.mark.parametrize(
    "raw",
    [
        b"garbage\r\n\r\n",
        b"<html>hello</html>",
        b"HTTP/1.1 200 OK\nContent-Length: 1\n\nx",  # bare LF (llhttp)
        b"HTTP/1.1 2000 OK\r\n\r\n",  # llhttp
        b"HTTP/1.1 099 Low\r\n\r\n",  # ours: RFC 9110 §15, 100-599
        b"HTTP/2.0 200 OK\r\n\r\n",  # ours
        b"RTSP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n",  # ours
        b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",  # llhttp
        b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n",  # llhttp
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",  # llhttp
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nab\r\n",  # llhttp
    ],
)
def test_bad_response(raw: bytes) -> None:
    _refusal(raw)


def test_oversized_head() -> None:
    """Its own code, so that the client can tell the gateway (RESET HEAD_TOO_LARGE)."""
    raw = b"HTTP/1.1 200 OK\r\nX: " + b"v" * 200 + b"\r\n\r\n"
    error = _refusal(raw, code="response_head_too_large", max_header_bytes=100)
    assert "over the limit of 100" in str(error)
    assert f"of {len(raw)} bytes or more" in str(error)
    unfinished = b"HTTP/1.1 200 OK\r\nX: " + b"v" * 200
    _refusal(unfinished, code="response_head_too_large", max_header_bytes=100)


def test_too_many_headers() -> None:
    _refusal(b"HTTP/1.1 200 OK\r\n" + b"X: 1\r\n" * 11 + b"\r\n", max_header_count=10)


def test_bytes_with_no_request_outstanding() -> None:
    with pytest.raises(HTTPError):
        ResponseParser().feed(b"HTTP/1.1 200 OK\r\n\r\n")
    parser = ResponseParser()
    parser.expect(b"GET")
    parser.feed(OK_LENGTH)
    with pytest.raises(HTTPError):
        parser.feed(b"x")


@pytest.mark.parametrize("raw", [b"", b"HTTP/1.1 200", OK_LENGTH[:-1], OK_CHUNKED[:-2]], ids=repr)
def test_eof_before_the_end(raw: bytes) -> None:
    _refusal(raw, eof=True)


def test_eof_when_idle_is_nothing() -> None:
    parser = ResponseParser()
    assert parser.feed_eof() == []
    parser.expect(b"GET")
    parser.feed(OK_LENGTH)
    assert parser.feed_eof() == []


def test_repr_elides_field_values() -> None:
    parser = ResponseParser()
    parser.expect(b"GET")
    (head, _) = parser.feed(b"HTTP/1.1 200 OK\r\nSet-Cookie: secret\r\nContent-Length: 0\r\n\r\n")
    assert repr(head) == "<ResponseHead HTTP/1.1 200 length=0 headers=2 keep_alive=True>"
    assert repr(parser) == "<ResponseParser idle to GET>"


def test_each_head_says_where_it_ends_in_the_bytes_that_completed_it() -> None:
    parser = ResponseParser()
    parser.expect(b"GET")
    interim = b"HTTP/1.1 100 Continue\r\n\r\n"
    first, final = heads(parser.feed(interim + OK_LENGTH))
    assert first.end == len(interim)
    assert final.end == len(interim) + OK_LENGTH.index(b"hello")
    parser.expect(b"GET")
    split = OK_LENGTH.index(b"\r\n\r\n") + 3  # the last LF comes alone
    assert parser.feed(OK_LENGTH[:split]) == []
    (head,) = heads(parser.feed(OK_LENGTH[split:]))
    assert head.end == 1
