"""serialize_head and chunk encoding: what the local app receives."""

from __future__ import annotations

from http1_support import LAST_CHUNK, body_of, encode_chunk, merged

from tunnelgate.http1.request import (
    BodyData,
    RequestComplete,
    RequestHead,
    RequestParser,
    serialize_head,
)

FORWARDED = (
    b"X-Forwarded-For: 203.0.113.9\r\nX-Forwarded-Proto: https\r\nX-Forwarded-Host: app.example\r\n"
)


def parse_head(raw: bytes) -> RequestHead:
    head = RequestParser().feed(raw)[0]
    assert isinstance(head, RequestHead)
    return head


def serialize(raw: bytes, host_override: bytes | None = None) -> bytes:
    return serialize_head(
        parse_head(raw),
        client_ip="203.0.113.9",
        proto="https",
        public_host=b"app.example",
        host_override=host_override,
    )


def test_fields_pass_in_order_and_forwarding_fields_are_ours() -> None:
    raw = (
        b"GET /p?q=1 HTTP/1.1\r\nHost: App.Example\r\nAccept: */*\r\n"
        b"X-Forwarded-For: 6.6.6.6\r\nx-forwarded-proto: http\r\nX-Forwarded-Host: evil\r\n"
        b"Forwarded: for=6.6.6.6\r\nCookie: a=b\r\n\r\n"
    )
    assert serialize(raw) == (
        b"GET /p?q=1 HTTP/1.1\r\nHost: App.Example\r\nAccept: */*\r\nCookie: a=b\r\n"
        + FORWARDED
        + b"\r\n"
    )


def test_hop_by_hop_fields_are_dropped() -> None:
    raw = (
        b"GET / HTTP/1.1\r\nHost: a\r\nConnection: keep-alive, X-Private, host\r\n"
        b"Keep-Alive: timeout=5\r\nProxy-Connection: keep-alive\r\nTE: trailers\r\n"
        b"Trailer: X-T\r\nUpgrade: websocket\r\nProxy-Authorization: Basic x\r\n"
        b"Proxy-Authenticate: Basic\r\nX-Private: secret\r\nX-Kept: 1\r\n\r\n"
    )
    # `host` named in Connection does not remove Host; Trailer is end-to-end (the trailer
    # fields it announces are forwarded with the chunked body).
    assert serialize(raw) == (
        b"GET / HTTP/1.1\r\nHost: a\r\nTrailer: X-T\r\nX-Kept: 1\r\n" + FORWARDED + b"\r\n"
    )


def test_host_override_replaces_host_in_place() -> None:
    raw = b"GET / HTTP/1.1\r\nX-A: 1\r\nHost: app.example\r\nX-B: 2\r\n\r\n"
    assert serialize(raw, host_override=b"localhost:3000") == (
        b"GET / HTTP/1.1\r\nX-A: 1\r\nHost: localhost:3000\r\nX-B: 2\r\n" + FORWARDED + b"\r\n"
    )


def test_framing_is_restated() -> None:
    raw = b"POST / HTTP/1.1\r\nContent-Length: 5\r\nHost: a\r\n\r\n"
    assert serialize(raw) == (
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n" + FORWARDED + b"\r\n"
    )
    raw = b"POST / HTTP/1.1\r\nTransfer-Encoding: CHUNKED\r\nHost: a\r\n\r\n"
    assert serialize(raw) == (
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n" + FORWARDED + b"\r\n"
    )


def test_upgrade_is_restated_with_its_original_value() -> None:
    raw = (
        b"GET /ws HTTP/1.1\r\nHost: a\r\nConnection: keep-alive, Upgrade\r\n"
        b"Upgrade: WebSocket\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    assert serialize(raw) == (
        b"GET /ws HTTP/1.1\r\nHost: a\r\nSec-WebSocket-Version: 13\r\n"
        b"Connection: upgrade\r\nUpgrade: WebSocket\r\n" + FORWARDED + b"\r\n"
    )


def test_http10_keep_alive_is_restated() -> None:
    raw = b"GET / HTTP/1.0\r\nHost: a\r\nConnection: keep-alive\r\n\r\n"
    assert serialize(raw) == (
        b"GET / HTTP/1.0\r\nHost: a\r\nConnection: keep-alive\r\n" + FORWARDED + b"\r\n"
    )
    raw = b"GET / HTTP/1.0\r\nHost: a\r\n\r\n"
    assert serialize(raw) == b"GET / HTTP/1.0\r\nHost: a\r\n" + FORWARDED + b"\r\n"


def test_http10_without_host_gets_the_public_host() -> None:
    assert serialize(b"GET / HTTP/1.0\r\n\r\n") == (
        b"GET / HTTP/1.0\r\nHost: app.example\r\n" + FORWARDED + b"\r\n"
    )


def test_absolute_form_becomes_origin_form() -> None:
    # nginx sends the origin-form upstream; the target's authority is the host.
    raw = b"GET http://App.Example:80?x=1 HTTP/1.1\r\nHost: ignored\r\n\r\n"
    assert serialize(raw) == (
        b"GET /?x=1 HTTP/1.1\r\nHost: App.Example:80\r\n" + FORWARDED + b"\r\n"
    )
    assert serialize(raw, host_override=b"localhost") == (
        b"GET /?x=1 HTTP/1.1\r\nHost: localhost\r\n" + FORWARDED + b"\r\n"
    )


def test_the_app_parses_what_we_send() -> None:
    raw = b"PUT /x HTTP/1.1\r\nHost: a\r\nX-Y: z\r\nContent-Length: 3\r\n\r\n"
    again = parse_head(serialize(raw))
    original = parse_head(raw)
    assert (again.method, again.target, again.content_length) == (b"PUT", b"/x", 3)
    assert again.headers[:3] == original.headers
    assert again.headers[3:] == [
        (b"X-Forwarded-For", b"203.0.113.9"),
        (b"X-Forwarded-Proto", b"https"),
        (b"X-Forwarded-Host", b"app.example"),
    ]


def test_chunks_round_trip() -> None:
    pieces = [b"a", b"", b"bc" * 100, b"\r\n0\r\n\r\n"]
    body = b"".join(b"".join(encode_chunk(p)) for p in pieces) + LAST_CHUNK
    head = b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
    events = merged(RequestParser().feed(head + body))
    assert body_of(events) == b"".join(pieces)
    assert events[-2:] == [BodyData(b"".join(pieces)), RequestComplete()]
