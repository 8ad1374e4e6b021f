"""testing/tcp_app.py: the raw echo behind TCP and TLS tunnels, with and without a PROXY
header in front, on loopback."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator

import pytest
import trustme

from tunnelgate.proxy_header import encode, parse_endpoint
from tunnelgate.testing.tcp_app import TcpApp, start_tcp_app

TIMEOUT = 10.0
V1 = b"PROXY TCP4 203.0.113.9 127.0.0.1 4000 5432\r\n"


@pytest.fixture
async def app(request: pytest.FixtureRequest) -> AsyncIterator[TcpApp]:
    proxy = getattr(request, "param", None)
    app = await start_tcp_app(proxy=proxy)
    yield app
    await app.aclose()


async def exchange(port: int, data: bytes) -> bytes:
    """Send `data`, half-close, and read until the app closes."""
    async with asyncio.timeout(TIMEOUT):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(data)
        writer.write_eof()
        answer = await reader.read()
        writer.close()
        await writer.wait_closed()
    return answer


async def test_echo_with_half_close(app: TcpApp) -> None:
    data = bytes(range(256)) * 1000
    assert await exchange(app.port, data) == data
    [record] = await app.wait_connections(1)
    assert (record.echoed, record.half_closed, record.proxy, record.error) == (
        len(data),
        True,
        None,
        None,
    )


@pytest.mark.parametrize("app", ["v1"], indirect=True)
async def test_a_v1_header_is_read_and_not_echoed(app: TcpApp) -> None:
    assert await exchange(app.port, V1 + b"payload") == b"payload"
    [record] = await app.wait_connections(1)
    assert record.proxy is not None
    assert record.proxy.source == ("203.0.113.9", 4000)
    assert record.as_json()["proxy"] == record.proxy.as_json()


@pytest.mark.parametrize("app", ["any"], indirect=True)
async def test_any_version_and_a_header_split_over_reads(app: TcpApp) -> None:
    header = encode("v2", parse_endpoint("[2001:db8::7]:4000"), parse_endpoint("[::1]:5432"))
    async with asyncio.timeout(TIMEOUT):
        reader, writer = await asyncio.open_connection("127.0.0.1", app.port)
        writer.write(header[:7])
        await writer.drain()
        await asyncio.sleep(0.05)  # the app reads the first piece alone
        writer.write(header[7:] + b"rest")
        writer.write_eof()
        assert await reader.read() == b"rest"
        writer.close()
    [record] = await app.wait_connections(1)
    assert record.proxy is not None
    assert (record.proxy.version, record.proxy.source) == (2, ("2001:db8::7", 4000))


@pytest.mark.parametrize(
    ("app", "data", "error"),
    [
        ("v1", b"no header here\r\n", "proxy: no PROXY header"),
        ("v2", V1 + b"x", "proxy: a v1 header, not v2"),
        ("v1", b"PROXY TCP4", "proxy: the connection ended in the PROXY header"),
    ],
    indirect=["app"],
)
async def test_a_connection_without_the_right_header_is_closed(
    app: TcpApp, data: bytes, error: str
) -> None:
    assert await exchange(app.port, data) == b""
    [record] = await app.wait_connections(1)
    assert record.error is not None
    assert record.error.startswith(error)


async def test_tls_after_a_proxy_header() -> None:
    ca = trustme.CA()
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("app.localhost").configure_cert(server)
    client = ssl.create_default_context()
    ca.configure_trust(client)
    app = await start_tcp_app(proxy="v1", tls=server)
    try:
        async with asyncio.timeout(TIMEOUT):
            reader, writer = await asyncio.open_connection("127.0.0.1", app.port)
            writer.write(V1)
            await writer.start_tls(client, server_hostname="app.localhost")
            writer.write(b"secret")
            assert await reader.readexactly(6) == b"secret"
            writer.close()
            await writer.wait_closed()
        [record] = await app.wait_connections(1)
        assert record.proxy is not None
        assert record.proxy.source == ("203.0.113.9", 4000)
        assert (record.echoed, record.half_closed) == (6, True)
    finally:
        await app.aclose()
