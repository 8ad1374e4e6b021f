"""The raw client's response parser, against a socket that sends canned bytes."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from tunnelgate.testing.http_client import ResponseFormatError, build_request, http_request

Serve = Callable[[bytes], Awaitable[int]]


@pytest.fixture
async def canned() -> AsyncIterator[Serve]:
    """``await canned(answer)``: a port whose server reads a request head, then sends
    ``answer`` and closes."""
    servers: list[asyncio.Server] = []

    async def serve(answer: bytes) -> int:
        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await reader.readuntil(b"\r\n\r\n")
            writer.write(answer)
            await writer.drain()
            writer.close()

        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        servers.append(server)
        port: int = server.sockets[0].getsockname()[1]
        return port

    try:
        yield serve
    finally:
        for server in servers:
            server.close()
            await server.wait_closed()


async def test_chunked_with_extensions_and_trailers(canned: Serve) -> None:
    port = await canned(
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"3;ext=1\r\nabc\r\n2\r\nde\r\n0\r\nX-Trailer: t\r\n\r\n"
    )
    response = await http_request(port, build_request("GET", "/"))
    assert (response.body, response.trailers) == (b"abcde", [("X-Trailer", "t")])


async def test_close_delimited(canned: Serve) -> None:
    port = await canned(b"HTTP/1.0 200 OK\r\nX: y\r\n\r\nuntil the end")
    response = await http_request(port, build_request("GET", "/"))
    assert (response.version, response.framing) == ("HTTP/1.0", "close")
    assert response.body == b"until the end"
    assert response.header("x") == "y"


async def test_head_response_has_no_body(canned: Serve) -> None:
    port = await canned(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n")
    response = await http_request(port, build_request("HEAD", "/"))
    assert (response.content_length, response.body) == (None, b"")


@pytest.mark.parametrize(
    "answer",
    [
        b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd",
        b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcXX",
        b"SPDY/3 200 OK\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nno colon\r\n\r\n",
    ],
)
async def test_malformed_responses_raise(canned: Serve, answer: bytes) -> None:
    port = await canned(answer)
    with pytest.raises((ResponseFormatError, EOFError)):
        await http_request(port, build_request("GET", "/"))
