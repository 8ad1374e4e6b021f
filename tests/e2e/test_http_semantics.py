"""HTTP/1.1 semantics end to end: public client -> gateway -> tunnel -> client -> local app.

Every test talks to a real gateway and client (``python -m tunnelgate``) with the raw-socket
client, so it controls every byte on the public side; what the app saw is read back from its
/echo and /upload answers, and the processes' JSON output is read from their pipes.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import ssl
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from e2e_support import TunnelEnv, start_tunnel_env

from tunnelgate.testing import websocket as ws
from tunnelgate.testing.http_client import RawResponse, build_request, chunked, http_request
from tunnelgate.testing.local_app import expected_bytes_sha256, start_local_app
from tunnelgate.testing.processes import (
    start_client,
    start_gateway,
    wait_ready,
    wait_ready_async,
)
from tunnelgate.transport.reset import abort_with_reset


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def unique() -> str:
    return uuid.uuid4().hex[:12]


def no_gateway_error(response: RawResponse) -> bool:
    return response.header("X-Tunnelgate-Error") is None


# --- a plain request, and what each process says about it ---------------------------------


async def test_get_returns_app_body_and_both_sides_log_it(tunnel_env: TunnelEnv) -> None:
    env = tunnel_env
    assert env.ready["url"] == f"http://app.localhost:{env.gateway_port}"
    client_mark, gateway_mark = env.client_mark(), env.gateway_mark()
    target = f"/?id={unique()}"

    async with await env.connect() as conn:
        local = conn.writer.get_extra_info("sockname")
        started = time.monotonic()
        await conn.send(env.build("GET", target))
        response = await conn.read_response()
        elapsed_ms = (time.monotonic() - started) * 1000

    assert (response.status, response.body) == (200, b"hello\n")
    assert no_gateway_error(response)

    event = await env.wait_client_request(target, after=client_mark)
    assert (event["method"], event["status"]) == ("GET", 200)
    assert isinstance(event["duration_ms"], int | float)
    assert 0 <= event["duration_ms"] <= elapsed_ms + 1000
    ready_index = next(
        i for i, obj in enumerate(env.client_events()) if obj.get("event") == "tunnel_ready"
    )
    assert ready_index < env.client_events().index(event)  # the URL comes first

    line = await env.wait_gateway_request(target, after=gateway_mark)
    assert line["host"] == env.host
    assert (line["method"], line["path"], line["status"]) == ("GET", target, 200)
    assert line["client"] == f"{local[0]}:{local[1]}"
    assert line["tunnel"] == "app"
    assert isinstance(line["bytes_in"], int)
    assert isinstance(line["duration_ms"], int | float)
    assert 0 <= line["duration_ms"] <= elapsed_ms + 1000
    # The response crossed the edge whole: at least its body, at most head + body.
    assert len(response.body) <= line["bytes_out"] <= len(response.raw_head) + len(response.body)
    logged = [
        obj for obj in env.gateway_events(gateway_mark, "request") if obj.get("path") == target
    ]
    assert logged == [line]  # one line per request


async def test_post_body_counts_in_gateway_log(tunnel_env: TunnelEnv) -> None:
    env = tunnel_env
    gateway_mark = env.gateway_mark()
    body = os.urandom(10_000)
    target = f"/upload?id={unique()}"
    raw = env.build("POST", target, body=body)
    response = await env.request(raw)
    assert response.json() == {"len": len(body), "sha256": sha256(body)}
    line = await env.wait_gateway_request(target, after=gateway_mark)
    assert (line["method"], line["status"]) == ("POST", 200)
    assert len(body) <= line["bytes_in"] <= len(raw)


# --- connection management ------------------------------------------------------------------


async def test_keep_alive_serves_many_requests_on_one_connection(tunnel_env: TunnelEnv) -> None:
    env = tunnel_env
    gateway_mark = env.gateway_mark()
    tag = unique()
    async with await env.connect() as conn:
        for i in range(5):
            body = f"request {i}".encode()
            await conn.send(env.build("PUT", f"/echo?k={tag}&i={i}", body=body))
            response = await conn.read_response()
            assert response.status == 200
            echo = response.json()
            assert (echo["method"], echo["query"]) == ("PUT", f"k={tag}&i={i}")
            assert echo["body_sha256"] == sha256(body)
            assert response.header("Connection") != "close"
    clients = set()
    for i in range(5):
        line = await env.wait_gateway_request(f"/echo?k={tag}&i={i}", after=gateway_mark)
        clients.add(line["client"])
    assert len(clients) == 1  # all five came over the same public connection


async def test_connection_close_request_is_answered_then_closed(tunnel_env: TunnelEnv) -> None:
    env = tunnel_env
    async with await env.connect() as conn:
        await conn.send(env.build("GET", "/", headers=[("Connection", "close")]))
        response = await conn.read_response()
        assert (response.status, response.body) == (200, b"hello\n")
        assert await conn.read_some() == b""


async def test_pipelined_requests_are_answered_in_order(tunnel_env: TunnelEnv) -> None:
    env = tunnel_env
    upload = os.urandom(5000)
    te = [("Transfer-Encoding", "chunked")]
    requests = [
        env.build("GET", "/slow?ms=200"),  # the slowest first: later answers must wait for it
        env.build("GET", "/echo?i=1"),
        env.build("POST", "/upload", body=upload),
        env.build("POST", "/upload", headers=te) + chunked(b"abc", b"de"),
        env.build("GET", "/bytes?n=100000&seed=4"),
        env.build("HEAD", "/"),
        env.build("GET", "/nope"),
        env.build("GET", "/"),
    ]
    async with await env.connect() as conn:
        await conn.send(b"".join(requests))  # one write
        methods = ["GET", "GET", "POST", "POST", "GET", "HEAD", "GET", "GET"]
        answers = [await conn.read_response(method=m) for m in methods]
    assert [a.status for a in answers] == [200, 200, 200, 200, 200, 200, 404, 200]
    assert all(no_gateway_error(a) for a in answers)
    assert answers[0].body == b"slow\n"
    assert answers[1].json()["query"] == "i=1"
    assert answers[2].json() == {"len": 5000, "sha256": sha256(upload)}
    assert answers[3].json() == {"len": 5, "sha256": sha256(b"abcde")}
    assert sha256(answers[4].body) == expected_bytes_sha256(100_000, 4)
    assert (answers[5].header("Content-Length"), answers[5].body) == ("6", b"")
    assert answers[6].body == b"no route /nope\n"
    assert answers[7].body == b"hello\n"


# --- bodies ---------------------------------------------------------------------------------


async def test_chunked_request_body_sent_in_pieces(tunnel_env: TunnelEnv) -> None:
    env = tunnel_env
    # Bigger than one stream window (256 KiB), so the body crosses under flow control.
    pieces = [os.urandom(n) for n in (1, 1000, 70_000, 400_000, 3)]
    async with await env.connect() as conn:
        await conn.send(env.build("POST", "/upload", headers=[("Transfer-Encoding", "chunked")]))
        for piece in pieces:
            await conn.send(b"%x;ext=1\r\n%s\r\n" % (len(piece), piece))
        await conn.send(b"0\r\nX-Trailer: t\r\n\r\n")
        response = await conn.read_response()
    whole = b"".join(pieces)
    assert response.json() == {"len": len(whole), "sha256": sha256(whole)}


@pytest.mark.parametrize("chunked_response", [True, False], ids=["chunked", "content-length"])
async def test_large_response_body(tunnel_env: TunnelEnv, chunked_response: bool) -> None:
    n = 1_500_000
    target = f"/bytes?n={n}&seed=9" + ("&chunked=1" if chunked_response else "")
    response = await tunnel_env.get(target)
    assert response.status == 200
    if chunked_response:
        assert (response.framing, response.header("Content-Length")) == ("chunked", None)
    else:
        assert response.header("Content-Length") == str(n)
    assert len(response.body) == n
    assert sha256(response.body) == expected_bytes_sha256(n, 9)


async def test_expect_100_continue(tunnel_env: TunnelEnv) -> None:
    env = tunnel_env
    body = os.urandom(50_000)
    headers = [("Expect", "100-continue"), ("Content-Length", str(len(body)))]
    async with await env.connect(timeout=5.0) as conn:
        await conn.send(env.build("POST", "/expect", headers=headers))  # the head only
        interim = await conn.read_head(method="POST")
        assert interim.status == 100
        assert no_gateway_error(interim)
        await conn.send(body)
        response = await conn.read_response(method="POST")
    assert response.status == 200
    assert response.json() == {"len": len(body), "sha256": sha256(body), "continue_sent": True}


# --- upgrades -------------------------------------------------------------------------------


async def test_websocket_echo_through_the_tunnel(tunnel_env: TunnelEnv) -> None:
    env = tunnel_env
    key = ws.new_key()
    text = "héllo, tunnel ✓".encode()
    first = ws.encode_frame(ws.OP_TEXT, text)
    all_bytes = bytes(range(256)) * 4
    big = os.urandom(200_000)  # 64-bit length, larger than one stream window
    async with await env.connect() as conn:
        # The first frame rides with the handshake, before any 101 has come back.
        await conn.send(ws.upgrade_request("/ws", env.host, key) + first)
        head = await conn.read_head()
        assert head.status == 101
        assert head.header("Sec-WebSocket-Accept") == ws.accept_key(key)
        assert (head.header("Upgrade") or "").lower() == "websocket"

        echoed = await conn.read_ws_frame()
        assert (echoed.opcode, echoed.payload, echoed.masked) == (ws.OP_TEXT, text, False)

        for opcode, payload in [
            (ws.OP_BINARY, all_bytes),
            (ws.OP_BINARY, big),
            (ws.OP_BINARY, b""),
            (ws.OP_TEXT, b"x" * 300),  # 16-bit length
        ]:
            await conn.send(ws.encode_frame(opcode, payload))
            frame = await conn.read_ws_frame()
            assert (frame.fin, frame.opcode, frame.payload) == (True, opcode, payload)

        await conn.send(ws.encode_frame(ws.OP_PING, b"ping!"))
        pong = await conn.read_ws_frame()
        assert (pong.opcode, pong.payload) == (ws.OP_PONG, b"ping!")

        await conn.send(ws.encode_frame(ws.OP_CLOSE, ws.close_payload(1000, "bye")))
        closing = await conn.read_ws_frame()
        assert (closing.opcode, closing.close_code) == (ws.OP_CLOSE, 1000)
        assert await conn.read_some() == b""  # the app closed; the gateway passed it on


async def test_raw_upgrade_echo_with_half_close(tunnel_env: TunnelEnv) -> None:
    env = tunnel_env
    upgrade = [("Connection", "Upgrade"), ("Upgrade", "echo")]
    payload = os.urandom(300_000)
    async with await env.connect() as conn:
        await conn.send(env.build("GET", "/upgrade-raw", headers=upgrade))
        head = await conn.read_head()
        assert head.status == 101
        assert (head.header("Upgrade") or "").lower() == "echo"
        opaque = b"ping\r\n\r\nnot http\x00\xff"  # not parsed as HTTP after the 101
        await conn.send(opaque)
        assert await conn.read_exactly(len(opaque)) == opaque
        await conn.send(payload)
        await conn.write_eof()  # our half-close must reach the app...
        rest = await conn.read_until_eof()  # ...which echoes the rest, then closes its side
    assert rest == payload


async def test_public_reset_of_an_upgraded_connection_reaches_the_app_as_a_reset() -> None:
    """A cut, not an end: an app must not take a connection the public client reset for one
    it finished (as a FIN would say), the same rule as for TCP tunnels."""
    ended: asyncio.Future[BaseException | None] = asyncio.get_running_loop().create_future()

    async def upgrading_origin(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(
            b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n"
        )
        try:
            while data := await reader.read(65536):
                writer.write(data)
            ended.set_result(None)  # a clean EOF
        except OSError as exc:
            ended.set_result(exc)
        finally:
            writer.close()

    server = await asyncio.start_server(upgrading_origin, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    upgrade = [("Connection", "Upgrade"), ("Upgrade", "echo")]
    try:
        with start_tunnel_env(app_port=port) as env:
            conn = await env.connect()
            await conn.send(env.build("GET", "/", headers=upgrade))
            assert (await conn.read_head()).status == 101
            await conn.send(b"x" * 1000)
            assert await conn.read_exactly(1000) == b"x" * 1000  # the app has the connection
            abort_with_reset(conn.writer.transport)
            outcome = await asyncio.wait_for(ended, 10)
    finally:
        server.close()
    assert isinstance(outcome, ConnectionResetError), outcome


# --- streaming ------------------------------------------------------------------------------


async def test_server_sent_events_are_not_buffered(tunnel_env: TunnelEnv) -> None:
    env = tunnel_env
    key = unique()
    async with await env.connect() as conn:
        await conn.send(env.build("GET", f"/sse?n=3&wait=1&key={key}"))
        head = await conn.read_head()
        assert head.status == 200
        assert head.header("Content-Type") == "text/event-stream"
        assert head.framing == "chunked"
        body = conn.iter_body(head)
        received = b""
        while b"\n\n" not in received:
            received += await anext(body)  # the app holds event 1 until it is released
        assert received == b"id: 0\ndata: event 0\n\n"

        released = await env.get(f"/release?key={key}")  # a second stream on the tunnel
        assert released.status == 200
        async for piece in body:
            received += piece
    assert received == b"".join(f"id: {i}\ndata: event {i}\n\n".encode() for i in range(3))


# --- responses without bodies, close-delimited, app errors -----------------------------------


async def test_head_has_no_body_and_connection_stays_open(tunnel_env: TunnelEnv) -> None:
    env = tunnel_env
    async with await env.connect() as conn:
        await conn.send(env.build("HEAD", "/"))
        head = await conn.read_response(method="HEAD")
        assert (head.status, head.header("Content-Length"), head.body) == (200, "6", b"")
        await conn.send(env.build("HEAD", "/bytes?n=5000&seed=1&chunked=1"))
        head = await conn.read_response(method="HEAD")
        assert (head.status, head.body) == (200, b"")
        # Any stray body byte after a HEAD answer would corrupt this response.
        await conn.send(env.build("GET", "/"))
        after = await conn.read_response()
    assert (after.status, after.body) == (200, b"hello\n")


async def test_close_delimited_body_is_delivered_then_closed(tunnel_env: TunnelEnv) -> None:
    env = tunnel_env
    async with await env.connect() as conn:
        await conn.send(env.build("GET", "/close"))
        response = await conn.read_response()
        assert response.status == 200
        assert response.framing == "close"
        assert response.body == b"closing\n"
        assert await conn.read_some() == b""


@pytest.mark.parametrize(
    ("code", "body"),
    [(500, b"boom\n"), (502, b"status 502\n"), (503, b"status 503\n"), (404, b"status 404\n")],
)
async def test_app_error_status_passes_through(
    tunnel_env: TunnelEnv, code: int, body: bytes
) -> None:
    async with await tunnel_env.connect() as conn:
        await conn.send(tunnel_env.build("GET", f"/status/{code}"))
        response = await conn.read_response()
        assert (response.status, response.body) == (code, body)
        assert no_gateway_error(response)  # the app's error, not the gateway's
        await conn.send(tunnel_env.build("GET", "/"))  # and the connection is still good
        assert (await conn.read_response()).body == b"hello\n"


async def test_204_and_304_have_no_body(tunnel_env: TunnelEnv) -> None:
    env = tunnel_env
    async with await env.connect() as conn:
        await conn.send(
            env.build("GET", "/status/204")
            + env.build("GET", "/status/304")
            + env.build("GET", "/")
        )
        no_content = await conn.read_response()
        not_modified = await conn.read_response()
        after = await conn.read_response()
    assert (no_content.status, no_content.body) == (204, b"")
    assert (not_modified.status, not_modified.body) == (304, b"")
    assert no_gateway_error(no_content)
    assert no_gateway_error(not_modified)
    assert (after.status, after.body) == (200, b"hello\n")


# --- the request head the app receives ---------------------------------------------------------


def header_values(echo: dict[str, object], name: str) -> list[str]:
    headers = echo["headers"]
    assert isinstance(headers, list)
    return [str(value) for key, value in headers if str(key).lower() == name.lower()]


async def test_forwarded_headers_set_and_hop_by_hop_removed(tunnel_env: TunnelEnv) -> None:
    env = tunnel_env
    body = b"payload"
    headers = [
        ("X-MiXeD-Case", "Value 1"),
        ("X-Forwarded-For", "6.6.6.6"),
        ("X-Forwarded-Proto", "https"),
        ("X-Forwarded-Host", "evil.example"),
        ("Forwarded", "for=6.6.6.6;proto=https;host=evil.example"),
        ("Connection", "keep-alive, X-Drop-Me"),
        ("Keep-Alive", "timeout=5"),
        ("TE", "trailers"),
        ("Proxy-Connection", "keep-alive"),
        ("Upgrade", "h2c"),  # not an upgrade request: Connection does not name it
        ("X-Drop-Me", "secret"),
        ("x-dup", "a"),
        ("x-dup", "b"),
    ]
    raw = env.build("PATCH", "/echo?a=1&b=%2F%20x", headers=headers, body=body)
    response = await env.request(raw)
    assert response.status == 200
    echo = response.json()
    assert (echo["method"], echo["path"], echo["query"]) == ("PATCH", "/echo", "a=1&b=%2F%20x")
    assert (echo["body_len"], echo["body_sha256"]) == (len(body), sha256(body))

    assert header_values(echo, "Host") == [env.host]
    assert header_values(echo, "X-Forwarded-For") == ["127.0.0.1"]
    assert header_values(echo, "X-Forwarded-Proto") == ["http"]
    assert header_values(echo, "X-Forwarded-Host") == [env.host]
    assert header_values(echo, "Forwarded") == []
    for hop in ("Keep-Alive", "TE", "Proxy-Connection", "Upgrade", "X-Drop-Me"):
        assert header_values(echo, hop) == [], hop
    for value in header_values(echo, "Connection"):  # the next hop's own, if any
        assert "x-drop-me" not in value.lower()
    # End-to-end headers arrive unchanged, names as sent, in order.
    assert ["X-MiXeD-Case", "Value 1"] in echo["headers"]
    assert header_values(echo, "x-dup") == ["a", "b"]
    assert header_values(echo, "Content-Length") == [str(len(body))]


@pytest.fixture(scope="module")
def rewrite_host(tunnel_env: TunnelEnv) -> Iterator[str]:
    """A second tunnel to the same app, with `--host-header rewrite`; its public host."""
    server = f"ws://127.0.0.1:{tunnel_env.gateway_port}/connect"
    args = ["http", str(tunnel_env.app_port), "--server", server, "--subdomain", "rewrite"]
    with start_client(*args, "--host-header", "rewrite") as client:
        ready = wait_ready(client)
        yield str(ready["url"]).removeprefix("http://")


async def test_host_header_passed_as_public_host_or_rewritten(
    tunnel_env: TunnelEnv, rewrite_host: str
) -> None:
    env = tunnel_env
    plain = (await env.get("/echo")).json()
    assert header_values(plain, "Host") == [env.host]

    rewritten = (await env.request(build_request("GET", "/echo", host=rewrite_host))).json()
    assert header_values(rewritten, "Host") == [f"127.0.0.1:{env.app_port}"]
    assert header_values(rewritten, "X-Forwarded-Host") == [rewrite_host]


# --- https:// local apps ----------------------------------------------------------------------


def _self_signed(directory: Path) -> ssl.SSLContext:
    """A TLS server context with a fresh self-signed certificate, as dev servers use."""
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=dev.local",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
        timeout=30,
    )
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    return context


async def test_https_local_app_is_reached_over_tls(tmp_path: Path) -> None:
    app = await start_local_app(tls=_self_signed(tmp_path))
    gateway, port = start_gateway()
    client = start_client(
        "http",
        f"https://127.0.0.1:{app.port}",
        "--subdomain",
        "secure",
        "--server",
        f"ws://127.0.0.1:{port}/connect",
    )
    try:
        ready = await wait_ready_async(client)
        assert ready["local"] == f"https://127.0.0.1:{app.port}"
        host = f"secure.localhost:{port}"
        response = await http_request(port, build_request("GET", "/", host=host))
        # The app speaks only TLS: a plain-text request would have been refused (502).
        assert (response.status, response.body) == (200, b"hello\n")
        assert app.requests == 1
    finally:
        client.terminate()
        gateway.terminate()
        await app.aclose()


async def test_chunk_extensions_and_request_trailers_reach_the_app_as_sent() -> None:
    """The chunked body is passed on as the client framed it (validated at the edge):
    extensions, trailers and the Trailer field arrive byte for byte (RFC 9112 §7.1)."""
    received: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()

    async def raw_origin(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        body = await reader.readuntil(b"\r\n0\r\n")
        body += await reader.readuntil(b"\r\n\r\n")
        received.set_result(head + body)
        writer.write(b"HTTP/1.1 204 No Content\r\n\r\n")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(raw_origin, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    body = b"5;name=value\r\nhello\r\n3;x\r\nabc\r\n0\r\nX-Checksum: 42\r\nX-Two: 2\r\n\r\n"
    try:
        with start_tunnel_env(app_port=port) as env:
            headers = [("Transfer-Encoding", "chunked"), ("Trailer", "X-Checksum, X-Two")]
            raw = env.build("POST", "/trail", headers=headers) + body
            async with await env.connect() as conn:
                await conn.send(raw)
                response = await conn.read_response()
                seen = await asyncio.wait_for(received, 10)
    finally:
        server.close()
    assert response.status == 204
    head, _, got = seen.partition(b"\r\n\r\n")
    assert got == body
    assert b"\r\nTrailer: X-Checksum, X-Two\r\n" in head + b"\r\n"
    assert b"\r\nTransfer-Encoding: chunked" in head
