"""The local test app, spoken to byte for byte with the raw client."""

from __future__ import annotations

import hashlib
import os

import pytest

from tunnelgate.testing import websocket as ws
from tunnelgate.testing.http_client import (
    RawConnection,
    RawResponse,
    build_request,
    chunked,
    http_request,
    open_connection,
)
from tunnelgate.testing.local_app import BLOCK, LocalApp, expected_bytes_sha256, stream_blocks
from tunnelgate.testing.processes import poll_until_async


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


async def get(port: int, target: str) -> RawResponse:
    return await http_request(port, build_request("GET", target))


async def test_root(local_app: LocalApp) -> None:
    response = await get(local_app.port, "/")
    assert (response.status, response.body) == (200, b"hello\n")
    assert response.header("Content-Length") == "6"
    assert response.framing == "length"


async def test_head_root_has_get_headers_and_no_body(local_app: LocalApp) -> None:
    async with await open_connection(local_app.port) as conn:
        await conn.send(build_request("HEAD", "/") + build_request("GET", "/"))
        head = await conn.read_response(method="HEAD")
        after = await conn.read_response()
    assert (head.status, head.header("Content-Length"), head.body) == (200, "6", b"")
    assert after.body == b"hello\n"  # no stray body bytes were sent after the HEAD answer


async def test_unknown_route_is_404(local_app: LocalApp) -> None:
    assert (await get(local_app.port, "/nope")).status == 404


async def test_echo_reports_request_as_received(local_app: LocalApp) -> None:
    headers = [("X-MiXeD-Case", "Value 1"), ("x-dup", "a"), ("x-dup", "b")]
    raw = build_request(
        "PUT", "/echo?a=1&b=%20", host="foo.localhost", headers=headers, body=b"xyz"
    )
    echo = (await http_request(local_app.port, raw)).json()
    assert echo["method"] == "PUT"
    assert (echo["path"], echo["query"], echo["version"]) == ("/echo", "a=1&b=%20", "1.1")
    assert echo["headers"] == [
        ["Host", "foo.localhost"],
        ["X-MiXeD-Case", "Value 1"],
        ["x-dup", "a"],
        ["x-dup", "b"],
        ["Content-Length", "3"],
    ]
    assert (echo["body_len"], echo["body_sha256"]) == (3, sha256(b"xyz"))


async def test_echo_chunked_body(local_app: LocalApp) -> None:
    te = [("Transfer-Encoding", "chunked")]
    raw = build_request("POST", "/echo", headers=te) + chunked(b"ab", b"c" * 5000)
    echo = (await http_request(local_app.port, raw)).json()
    assert (echo["body_len"], echo["body_sha256"]) == (5002, sha256(b"ab" + b"c" * 5000))


async def test_upload_chunked_body_in_pieces(local_app: LocalApp) -> None:
    pieces = [os.urandom(n) for n in (1, 100, 70_000, 3)]
    async with await open_connection(local_app.port) as conn:
        await conn.send(
            build_request("POST", "/upload", headers=[("Transfer-Encoding", "chunked")])
        )
        for piece in pieces:
            await conn.send(b"%x\r\n%s\r\n" % (len(piece), piece))
        await conn.send(b"0\r\n\r\n")
        result = (await conn.read_response()).json()
    assert result == {"len": 70_104, "sha256": sha256(b"".join(pieces))}


async def test_upload_large_content_length_body(local_app: LocalApp) -> None:
    body = os.urandom(5 * 1024 * 1024 + 17)
    result = (
        await http_request(local_app.port, build_request("POST", "/upload", body=body))
    ).json()
    assert result == {"len": len(body), "sha256": sha256(body)}


async def test_upload_requires_post(local_app: LocalApp) -> None:
    assert (await get(local_app.port, "/upload")).status == 405


async def test_pipelined_requests_are_answered_in_order(local_app: LocalApp) -> None:
    requests = [
        build_request("GET", "/slow?ms=50"),
        build_request("POST", "/echo?i=2", body=b"two"),
        build_request("GET", "/status/404"),
        build_request("GET", "/"),
    ]
    async with await open_connection(local_app.port) as conn:
        await conn.send(b"".join(requests))  # one write: all four arrive before any answer
        answers = [await conn.read_response() for _ in requests]
    assert [a.status for a in answers] == [200, 200, 404, 200]
    assert answers[0].body == b"slow\n"
    assert answers[1].json()["query"] == "i=2"
    assert answers[3].body == b"hello\n"
    assert local_app.connections == 1


@pytest.mark.parametrize("n", [0, 1, BLOCK, 1_000_003])
async def test_bytes_content_length(local_app: LocalApp, n: int) -> None:
    response = await get(local_app.port, f"/bytes?n={n}&seed=7")
    assert response.header("Content-Length") == str(n)
    assert len(response.body) == n
    assert sha256(response.body) == expected_bytes_sha256(n, 7)


async def test_bytes_chunked(local_app: LocalApp) -> None:
    response = await get(local_app.port, "/bytes?n=300000&seed=3&chunked=1")
    assert response.framing == "chunked"
    assert response.header("Content-Length") is None
    assert sha256(response.body) == expected_bytes_sha256(300_000, 3)


def test_bytes_stream_is_deterministic_and_prefix_stable() -> None:
    long = b"".join(stream_blocks(200_000, 5))
    assert b"".join(stream_blocks(70_000, 5)) == long[:70_000]
    assert b"".join(stream_blocks(70_000, 6)) != long[:70_000]
    assert expected_bytes_sha256(200_000, 5) == sha256(long)


async def test_bytes_respects_backpressure(local_app: LocalApp) -> None:
    n = 32 * 1024 * 1024
    async with await open_connection(local_app.port) as conn:
        await conn.send(build_request("GET", f"/bytes?n={n}&seed=1"))
        # Not reading yet: the app's transport must fill up to its high-water mark and pause.
        await poll_until_async(lambda: local_app.stats.max_write_buffer >= 64 * 1024)
        response = await conn.read_head()
        digest = hashlib.sha256()
        async for piece in conn.iter_body(response):
            digest.update(piece)
    assert digest.hexdigest() == expected_bytes_sha256(n, 1)
    assert local_app.stats.max_write_buffer <= 1024 * 1024


async def test_sse_streams_first_event_before_release(local_app: LocalApp) -> None:
    async with await open_connection(local_app.port) as conn:
        await conn.send(build_request("GET", "/sse?n=3&wait=1&key=k1"))
        response = await conn.read_head()
        assert response.header("Content-Type") == "text/event-stream"
        assert (response.framing, response.header("Content-Length")) == ("chunked", None)
        body = conn.iter_body(response)
        first = await anext(body)  # arrives although the app has not been released yet
        assert first == b"id: 0\ndata: event 0\n\n"
        released = await get(local_app.port, "/release?key=k1")
        assert released.status == 200
        rest = b"".join([piece async for piece in body])
    assert rest == b"id: 1\ndata: event 1\n\nid: 2\ndata: event 2\n\n"


async def test_sse_release_before_stream_waits(local_app: LocalApp) -> None:
    assert (await get(local_app.port, "/release?key=early")).status == 200
    response = await get(local_app.port, "/sse?n=2&wait=1&key=early")
    assert response.body.count(b"data: ") == 2


async def test_sse_interval(local_app: LocalApp) -> None:
    response = await get(local_app.port, "/sse?n=4&interval=5")
    assert response.body.count(b"data: event") == 4


@pytest.mark.parametrize(
    ("code", "body"),
    [(500, b"boom\n"), (418, b"status 418\n"), (503, b"status 503\n"), (204, b"")],
)
async def test_status(local_app: LocalApp, code: int, body: bytes) -> None:
    response = await get(local_app.port, f"/status/{code}")
    assert (response.status, response.body) == (code, body)


async def test_status_rejects_nonsense(local_app: LocalApp) -> None:
    assert (await get(local_app.port, "/status/abc")).status == 400
    assert (await get(local_app.port, "/bytes?n=x")).status == 400


async def test_slow(local_app: LocalApp) -> None:
    response = await get(local_app.port, "/slow?ms=20")
    assert (response.status, response.body) == (200, b"slow\n")


async def test_close_delimited_body(local_app: LocalApp) -> None:
    async with await open_connection(local_app.port) as conn:
        await conn.send(build_request("GET", "/close"))
        response = await conn.read_response()
        assert await conn.read_some() == b""  # and the app has closed the connection
    assert response.framing == "close"
    assert response.header("Content-Length") is None
    assert response.header("Transfer-Encoding") is None
    assert response.body == b"closing\n"


async def test_http10_request_is_answered_then_closed(local_app: LocalApp) -> None:
    async with await open_connection(local_app.port) as conn:
        await conn.send(b"GET / HTTP/1.0\r\n\r\n")
        response = await conn.read_response()
        assert await conn.read_some() == b""
    assert (response.body, response.header("Connection")) == (b"hello\n", "close")


async def test_malformed_request_gets_400_and_close(local_app: LocalApp) -> None:
    async with await open_connection(local_app.port) as conn:
        await conn.send(b"GET / HTTP/1.1\r\nBad Header Line\r\n\r\n")
        response = await conn.read_response()
        assert await conn.read_some() == b""
    assert response.status == 400


async def open_websocket(port: int, extra: bytes = b"") -> tuple[RawConnection, RawResponse]:
    conn = await open_connection(port)
    key = ws.new_key()
    await conn.send(ws.upgrade_request("/ws", "localhost", key) + extra)
    response = await conn.read_response()
    assert response.status == 101, response
    assert response.header("Sec-WebSocket-Accept") == ws.accept_key(key)
    return conn, response


def test_accept_key_matches_rfc_6455_example() -> None:
    assert ws.accept_key("dGhlIHNhbXBsZSBub25jZQ==") == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="


async def test_websocket_echo(local_app: LocalApp) -> None:
    first = ws.encode_frame(ws.OP_TEXT, b"sent with the handshake")
    conn, response = await open_websocket(local_app.port, extra=first)
    async with conn:
        assert response.header("Upgrade") == "websocket"
        echoed = await conn.read_ws_frame()
        assert (echoed.opcode, echoed.payload, echoed.masked) == (
            ws.OP_TEXT,
            b"sent with the handshake",
            False,
        )
        big = os.urandom(200_000)
        await conn.send(ws.encode_frame(ws.OP_BINARY, big))
        assert (await conn.read_ws_frame()).payload == big
        await conn.send(ws.encode_frame(ws.OP_PING, b"p"))
        assert (await conn.read_ws_frame()) == ws.Frame(True, ws.OP_PONG, b"p")


async def test_websocket_fragments_and_close(local_app: LocalApp) -> None:
    conn, _ = await open_websocket(local_app.port)
    async with conn:
        await conn.send(ws.encode_frame(ws.OP_TEXT, b"frag", fin=False))
        await conn.send(ws.encode_frame(ws.OP_CONTINUATION, b"ment"))
        assert (await conn.read_ws_frame()) == ws.Frame(False, ws.OP_TEXT, b"frag")
        assert (await conn.read_ws_frame()) == ws.Frame(True, ws.OP_CONTINUATION, b"ment")
        await conn.send(ws.encode_frame(ws.OP_CLOSE, ws.close_payload(1000, "bye")))
        close = await conn.read_ws_frame()
        assert (close.close_code, close.payload[2:]) == (1000, b"bye")
        assert await conn.read_some() == b""


async def test_websocket_unmasked_client_frame_is_a_protocol_error(local_app: LocalApp) -> None:
    conn, _ = await open_websocket(local_app.port)
    async with conn:
        await conn.send(ws.encode_frame(ws.OP_TEXT, b"x", mask=False))
        assert (await conn.read_ws_frame()).close_code == 1002


async def test_websocket_without_upgrade_is_426(local_app: LocalApp) -> None:
    assert (await get(local_app.port, "/ws")).status == 426


async def test_raw_upgrade_echoes_bytes_until_half_close(local_app: LocalApp) -> None:
    head = build_request(
        "GET", "/upgrade-raw", headers=[("Connection", "Upgrade"), ("Upgrade", "echo")]
    )
    payload = bytes(range(256)) * 4
    async with await open_connection(local_app.port) as conn:
        await conn.send(head + b"early\r\n\r\nbytes")
        response = await conn.read_response()
        assert (response.status, response.header("Upgrade")) == (101, "echo")
        assert await conn.read_exactly(14) == b"early\r\n\r\nbytes"
        await conn.send(payload)
        assert await conn.read_exactly(len(payload)) == payload
        await conn.write_eof()
        assert await conn.read_until_eof() == b""


async def test_expect_100_continue_comes_before_the_body_is_sent(local_app: LocalApp) -> None:
    headers = [("Expect", "100-continue"), ("Content-Length", "5")]
    async with await open_connection(local_app.port) as conn:
        await conn.send(build_request("POST", "/expect", headers=headers))
        interim = await conn.read_head()  # the body has not been sent yet
        assert (interim.status, interim.framing) == (100, "none")
        await conn.send(b"hello")
        response = await conn.read_response()
    assert response.json() == {"len": 5, "sha256": sha256(b"hello"), "continue_sent": True}


async def test_expect_without_expect_header_sends_no_100(local_app: LocalApp) -> None:
    response = await http_request(local_app.port, build_request("POST", "/expect", body=b"abc"))
    assert response.interim == []
    assert response.json()["continue_sent"] is False


async def test_http_request_collects_interim_responses(local_app: LocalApp) -> None:
    headers = [("Expect", "100-continue")]
    raw = build_request("POST", "/expect", headers=headers, body=b"abc")
    response = await http_request(local_app.port, raw)
    assert [r.status for r in response.interim] == [100]
    assert response.json()["len"] == 3


async def test_stats_counts_requests_and_connections(local_app: LocalApp) -> None:
    await get(local_app.port, "/")
    await get(local_app.port, "/echo")
    stats = (await get(local_app.port, "/stats")).json()
    assert (stats["requests"], stats["connections"]) == (2, 3)


async def test_as_a_process(local_app_proc: int) -> None:
    response = await get(local_app_proc, "/")
    assert response.body == b"hello\n"
    response = await get(local_app_proc, "/bytes?n=100000&seed=9&chunked=1")
    assert sha256(response.body) == expected_bytes_sha256(100_000, 9)
