"""Issue 13: HTTP/1.1 conformance at the edge, against a raw origin that emits exact bytes.

Each test runs a real gateway and client in front of a :class:`RawOrigin` (an asyncio server
in the test) and, where the answer should be the origin's own, sends the same raw request
straight to the origin and through the tunnel (:func:`compare`): the exchanges may differ
only as a proxy's must (tunnelgate.testing.differential).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

from e2e_support import TunnelEnv, start_tunnel_env, wait_log_line

from tunnelgate.limits import MAX_HEADER_BYTES
from tunnelgate.testing.differential import RawOrigin, Reply, compare
from tunnelgate.testing.http_client import build_request

HOP_BY_HOP_RESPONSE = (
    b"HTTP/1.1 200 OK\r\n"
    b"Connection: X-Secret, keep-alive\r\n"
    b"X-Secret: leak\r\n"
    b"Keep-Alive: timeout=5\r\n"
    b"Proxy-Connection: keep-alive\r\n"
    b"TE: trailers\r\n"
    b"Upgrade: h2c\r\n"
    b"X-End-To-End: kept\r\n"
    b"Content-Length: 5\r\n"
    b"\r\n"
    b"hello"
)
EARLY_HINTS = b"HTTP/1.1 103 Early Hints\r\nLink: </s.css>; rel=preload\r\nKeep-Alive: 1\r\n\r\n"
CHUNKED_WITH_TRAILERS = (
    b"HTTP/1.1 200 OK\r\n"
    b"Transfer-Encoding: chunked\r\n"
    b"Trailer: X-Checksum\r\n"
    b"X-End-To-End: kept\r\n"
    b"\r\n"
    b"5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nX-Checksum: 42\r\n\r\n"
)


def always(data: bytes, **options: bool) -> Callable[[bytes], Reply]:
    return lambda _head: Reply(data, **options)


@contextlib.contextmanager
def tunnel_to(origin: RawOrigin) -> Iterator[TunnelEnv]:
    with start_tunnel_env(app_port=origin.port) as env:
        yield env


async def test_hop_by_hop_response_fields_do_not_reach_the_public_client() -> None:
    """RFC 9110 §7.6.1: Connection, the fields it names, Keep-Alive, Proxy-Connection, TE
    and Upgrade (outside a 101) are the app's hop, not the public client's; a 1xx is
    cleaned too. The connection stays open, and says nothing about it (HTTP/1.1)."""
    async with RawOrigin(always(EARLY_HINTS + HOP_BY_HOP_RESPONSE)) as origin:
        with tunnel_to(origin) as env:
            raw = env.build("GET", "/hop")
            comparison = await compare(origin, env.gateway_port, raw)
            assert comparison.differences() == []
            response = comparison.tunneled.response
            head = response.raw_head
            hop = (
                b"Connection",
                b"X-Secret",
                b"Keep-Alive",
                b"Proxy-Connection",
                b"TE",
                b"Upgrade",
            )
            for name in hop:
                assert b"\r\n" + name + b":" not in head, head
            assert response.header("X-End-To-End") == "kept"
            assert [r.status for r in response.interim] == [103]
            assert b"Keep-Alive" not in response.interim[0].raw_head
            # kept alive as the head implied: the same connection serves another request
            async with await env.connect() as conn:
                for _ in range(2):
                    await conn.send(raw)
                    again = await conn.read_response()
                    assert (again.status, again.body) == (200, b"hello")


async def test_chunked_bodies_pass_both_ways_with_extensions_and_trailers() -> None:
    """Point 2 of the issue (fixed before it: see test_http_semantics.py's
    test_chunk_extensions_and_request_trailers_reach_the_app_as_sent), through the
    differential: the app gets the request's chunks, extensions and trailers as sent, and
    the client the response's."""
    async with RawOrigin(always(CHUNKED_WITH_TRAILERS)) as origin:
        with tunnel_to(origin) as env:
            headers = [("Transfer-Encoding", "chunked"), ("Trailer", "X-Sum")]
            body = b"3;a=b\r\nabc\r\n0\r\nX-Sum: 7\r\n\r\n"
            comparison = await compare(
                origin, env.gateway_port, env.build("POST", "/t", headers=headers) + body
            )
            assert comparison.differences() == []
            assert comparison.tunneled.request.endswith(b"\r\n\r\n" + body)
            assert comparison.tunneled.response.trailers == [("X-Checksum", "42")]


async def test_an_early_answer_says_connection_close_and_a_retry_works() -> None:
    """The app answers 401 after the head, before the body is all sent, and keeps its
    connection: the gateway will not read the rest of the body, so the 401 says
    `Connection: close` and the connection ends after it; the client retries on a new one.
    A request whose body was all sent keeps the connection (no close announced)."""
    unauthorized = (
        b"HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Basic\r\nContent-Length: 2\r\n\r\nno"
    )
    async with RawOrigin(always(unauthorized, read_body=False)) as origin:
        with tunnel_to(origin) as env:
            head = env.build("POST", "/login", headers=[("Content-Length", "1000")])
            async with await env.connect() as conn:
                await conn.send(head + b"x" * 10)  # 990 bytes still to come
                response = await conn.read_response()
                assert (response.status, response.body) == (401, b"no")
                assert response.header("Connection") == "close"
                assert await conn.read_some() == b""  # closed, as announced
            whole = head + b"x" * 1000
            async with await env.connect() as conn:  # the retry, with the whole body
                for _ in range(2):
                    await conn.send(whole)
                    response = await conn.read_response()
                    assert response.status == 401
                    assert response.header("Connection") is None  # kept alive


async def test_a_response_head_over_the_limit_gets_its_own_code_and_log_lines() -> None:
    big = b"HTTP/1.1 200 OK\r\nX-Big: " + b"a" * (20 * 1024) + b"\r\nContent-Length: 0\r\n\r\n"
    async with RawOrigin(always(big)) as origin:
        with tunnel_to(origin) as env:
            gateway_mark, client_mark = env.gateway_mark(), len(env.client.stderr_lines)
            response = await env.request(env.build("GET", "/big"))
            assert response.status == 502
            assert response.header("X-Tunnelgate-Error") == "response_head_too_large"
            assert str(MAX_HEADER_BYTES) in response.text
            logged = await env.wait_gateway_event(
                lambda o: o.get("event") == "response_head_too_large", after=gateway_mark
            )
            assert logged["limit"] == MAX_HEADER_BYTES
            assert logged["path"] == "/big"
            said = await wait_log_line(
                env.client, lambda o: o.get("event") == "response_head_too_large", after=client_mark
            )
            assert said["limit"] == MAX_HEADER_BYTES
            assert MAX_HEADER_BYTES < said["size"] <= len(big)


async def test_an_http10_client_gets_no_1xx_and_a_dechunked_body() -> None:
    """RFC 9110 §15.2 and RFC 9112 §6.1: no 1xx and no chunked coding for HTTP/1.0. The
    body is de-chunked and ends with the connection (its trailers cannot be sent)."""
    async with RawOrigin(always(EARLY_HINTS + CHUNKED_WITH_TRAILERS)) as origin:
        with tunnel_to(origin) as env:
            raw = build_request("GET", "/old", host=env.host).replace(b"HTTP/1.1", b"HTTP/1.0", 1)
            raw = raw.replace(b"\r\n\r\n", b"\r\nConnection: keep-alive\r\n\r\n", 1)
            comparison = await compare(origin, env.gateway_port, raw)
            assert comparison.differences() == []
            response = comparison.tunneled.response
            assert response.interim == []
            assert response.framing == "close"  # read to EOF: the gateway closed
            assert response.body == b"hello world"
            assert response.header("Transfer-Encoding") is None
            assert response.header("Trailer") is None
            assert response.header("Connection") == "close"


async def test_an_http10_keep_alive_client_is_told_and_kept() -> None:
    """A response with a length can keep an HTTP/1.0 client that asked for keep-alive: it
    must be told so (`Connection: keep-alive`), whatever the app said on its hop."""
    answer = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nKeep-Alive: timeout=5\r\n\r\nok"
    async with RawOrigin(always(answer)) as origin:
        with tunnel_to(origin) as env:
            raw = build_request("GET", "/ka", host=env.host).replace(b"HTTP/1.1", b"HTTP/1.0", 1)
            raw = raw.replace(b"\r\n\r\n", b"\r\nConnection: keep-alive\r\n\r\n", 1)
            async with await env.connect() as conn:
                for _ in range(2):
                    await conn.send(raw)
                    response = await conn.read_response()
                    assert (response.status, response.body) == (200, b"ok")
                    assert response.header("Connection") == "keep-alive"
                    assert response.header("Keep-Alive") is None
