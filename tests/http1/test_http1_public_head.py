"""public_head: a response head as the gateway sends it to the public client (issue 13)."""

from __future__ import annotations

import pytest

from tunnelgate.http1.response import ResponseHead, ResponseParser, public_head


def head_of(raw: bytes, method: bytes = b"GET") -> ResponseHead:
    parser = ResponseParser()
    parser.expect(method)
    heads = [e for e in parser.feed(raw) if isinstance(e, ResponseHead)]
    return heads[-1]


PLAIN = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\n"


def test_a_head_without_hop_by_hop_fields_is_sent_as_it_is_without_a_copy() -> None:
    head = head_of(PLAIN + b"hello")
    assert not head.hop
    assert public_head(head, close=False, http10=False) is head.raw
    trailer = head_of(b"HTTP/1.1 200 OK\r\nTrailer: X-A\r\nTransfer-Encoding: chunked\r\n\r\n")
    assert trailer.hop  # looked at again, but kept: the body keeps its trailers
    assert public_head(trailer, close=False, http10=False) is trailer.raw


def test_hop_by_hop_fields_and_those_connection_names_are_taken_out() -> None:
    raw = (
        b"HTTP/1.1 200 OK\r\nConnection: X-Secret, keep-alive\r\nX-Secret: leak\r\n"
        b"Keep-Alive: timeout=5\r\nX-Before: 1\r\nProxy-Connection: keep-alive\r\nTE: trailers\r\n"
        b"Upgrade: h2c\r\nx-secret: twice\r\nContent-Length: 0\r\nX-After: 2\r\n\r\n"
    )
    assert public_head(head_of(raw), close=False, http10=False) == (
        b"HTTP/1.1 200 OK\r\nX-Before: 1\r\nContent-Length: 0\r\nX-After: 2\r\n\r\n"
    )


def test_connection_cannot_name_the_framing_away() -> None:
    raw = (
        b"HTTP/1.1 200 OK\r\nConnection: content-length, transfer-encoding\r\n"
        b"Content-Length: 2\r\n\r\n"
    )
    assert public_head(head_of(raw), close=False, http10=False) == (
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n"
    )


@pytest.mark.parametrize(
    ("close", "http10", "said"),
    [
        (True, False, b"Connection: close\r\n"),
        (True, True, b"Connection: close\r\n"),
        (False, True, b"Connection: keep-alive\r\n"),
        (False, False, b""),
    ],
)
def test_the_gateway_states_its_own_connection_decision(
    close: bool, http10: bool, said: bytes
) -> None:
    raw = b"HTTP/1.1 200 OK\r\nConnection: keep-alive\r\nKeep-Alive: 5\r\nContent-Length: 0\r\n\r\n"
    expected = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n" + said + b"\r\n"
    assert public_head(head_of(raw), close=close, http10=http10) == expected


@pytest.mark.parametrize(
    ("said", "close", "http10", "same"),
    [
        (b"keep-alive", False, False, True),
        (b"keep-alive", False, True, True),
        (b"close", True, False, True),
        (b"close", True, True, True),
        (b"keep-alive", True, False, False),
        (b"close", False, False, False),
    ],
)
def test_an_apps_lone_connection_saying_what_the_gateway_would_goes_uncopied(
    said: bytes, close: bool, http10: bool, same: bool
) -> None:
    raw = b"HTTP/1.1 200 OK\r\nConnection: " + said + b"\r\nContent-Length: 0\r\n\r\n"
    head = head_of(raw)
    wire = public_head(head, close=close, http10=http10)
    assert (wire is head.raw) == same
    if not same:
        stated = b"Connection: close\r\n" if close else b""
        assert wire == b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n" + stated + b"\r\n"


def test_a_101_keeps_upgrade_and_says_connection_upgrade() -> None:
    raw = (
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade, X-S\r\n"
        b"X-S: 1\r\nSec-WebSocket-Accept: abc\r\n\r\n"
    )
    assert public_head(head_of(raw), close=True, http10=False) == (
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nSec-WebSocket-Accept: abc\r\n"
        b"Connection: upgrade\r\n\r\n"
    )


def test_an_interim_head_is_cleaned_but_says_nothing_of_the_connection() -> None:
    parser = ResponseParser()
    parser.expect(b"GET")
    (early, *_) = parser.feed(b"HTTP/1.1 103 Early Hints\r\nLink: </a>\r\nKeep-Alive: 1\r\n\r\n")
    assert isinstance(early, ResponseHead)
    assert early.interim
    assert public_head(early, close=True, http10=False) == (
        b"HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n"
    )


def test_for_an_http10_client_a_chunked_head_loses_its_framing_and_trailer_fields() -> None:
    raw = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: X-Sum\r\nX-A: 1\r\n\r\n"
    assert public_head(head_of(raw), close=True, http10=True) == (
        b"HTTP/1.1 200 OK\r\nX-A: 1\r\nConnection: close\r\n\r\n"
    )
    # an HTTP/1.1 client gets the body as it came, with its framing and trailers
    assert public_head(head_of(raw), close=False, http10=False) == raw


def test_spans_of_chunk_data_for_dechunking() -> None:
    parser = ResponseParser()
    parser.expect(b"GET")
    parser.spans = []
    raw = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
    body = b"5;x=1\r\nhello\r\n1\r\n!\r\n0\r\nX-Sum: 1\r\n\r\n"
    parser.feed(raw + body)
    data = raw + body
    spans = parser.spans
    assert b"".join(data[spans[i] : spans[i + 1]] for i in range(0, len(spans), 2)) == b"hello!"
