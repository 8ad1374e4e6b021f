"""What a gateway hands another of its cluster: a parsed head restated, and a head cut
mid-way (http1.serialize.restate_head, RequestParser.unparsed)."""

from __future__ import annotations

from tunnelgate.http1.request import RequestHead, RequestParser
from tunnelgate.http1.serialize import restate_head

RAW = (
    b"POST /a?b=c HTTP/1.1\r\nHost: web.localhost\r\nX-One: 1\r\nX-Forwarded-For: 6.6.6.6\r\n"
    b"Transfer-Encoding: chunked\r\nConnection: keep-alive\r\n\r\n"
)


def test_a_restated_head_parses_to_the_same_request() -> None:
    head = RequestParser(raw_chunks=True).feed(RAW)[0]
    assert isinstance(head, RequestHead)
    again = RequestParser(raw_chunks=True).feed(restate_head(head))[0]
    assert isinstance(again, RequestHead)
    for field in RequestHead.fields:
        assert getattr(again, field) == getattr(head, field), field
    assert restate_head(head) == RAW  # the client's own fields, untouched (XFF too)


def test_unparsed_is_a_head_cut_mid_way_and_nothing_else() -> None:
    parser = RequestParser()
    events = parser.feed(b"GET / HTTP/1.1\r\nHost: a\r\n\r\nGET /next HTTP/1.1\r\nHo")
    assert len(events) == 2  # the first request, head and end
    assert parser.unparsed() == b"GET /next HTTP/1.1\r\nHo"
    parser.feed(b"st: a\r\n\r\n")
    assert parser.unparsed() == b""
