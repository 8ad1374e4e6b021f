"""Real TLS on loopback for the certificate tests: a tiny echo server listening with
`create_server(ssl=...)` under uvloop, clients (asyncio streams, or blocking sockets in
a thread where only the blocking API will do), and trustme certificates on disk."""

from __future__ import annotations

import asyncio
import socket
import ssl
from collections.abc import AsyncIterator, Coroutine
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import trustme
import uvloop
from cryptography import x509

from tunnelgate.gateway.certfile import fingerprint

T = TypeVar("T")
TIMEOUT = 10.0  # seconds: any one step of a test; loopback handshakes take milliseconds
DOMAIN = "example.test"


def run(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run a test's scenario on a fresh uvloop loop (the gateway's loop)."""
    return uvloop.run(asyncio.wait_for(coroutine, TIMEOUT))


class Echo(asyncio.Protocol):
    def __init__(self, live: set[asyncio.Transport]) -> None:
        self.live = live

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport: asyncio.Transport = transport  # type: ignore[assignment]
        self.live.add(self.transport)

    def data_received(self, data: bytes) -> None:
        self.transport.write(data)

    def connection_lost(self, exc: Exception | None) -> None:
        self.live.discard(self.transport)


@dataclass
class EchoServer:
    """The listening port, and the client connections made to it (closed with it, so a
    failed assertion leaves nothing open)."""

    port: int
    clients: list[Connection] = field(default_factory=list)

    async def connect(
        self, context: ssl.SSLContext, server_name: str | None = DOMAIN
    ) -> Connection:
        connection = await connect(self.port, context, server_name)
        self.clients.append(connection)
        return connection

    async def refused(self, context: ssl.SSLContext, server_name: str | None = DOMAIN) -> str:
        return await refused(self.port, context, server_name)


@asynccontextmanager
async def echo_server(context: ssl.SSLContext) -> AsyncIterator[EchoServer]:
    """An echo server on loopback terminating TLS with `context`."""
    loop = asyncio.get_running_loop()
    assert isinstance(asyncio.get_running_loop(), uvloop.Loop)  # uvloop's TLS is tested
    live: set[asyncio.Transport] = set()
    server = await loop.create_server(lambda: Echo(live), "127.0.0.1", 0, ssl=context)
    echo = EchoServer(server.sockets[0].getsockname()[1])
    try:
        yield echo
    finally:
        for client in echo.clients:
            client.writer.transport.abort()
        server.close()
        for transport in list(live):  # uvloop's wait_closed waits for every connection
            transport.abort()
        await server.wait_closed()


def client_context(
    trust: trustme.CA | Path | None = None,
    *,
    versions: tuple[ssl.TLSVersion, ssl.TLSVersion] | None = None,
    alpn: tuple[str, ...] = ("h2", "http/1.1"),
) -> ssl.SSLContext:
    """A client that verifies against `trust` (a CA, or a PEM file), or verifies nothing."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    if isinstance(trust, trustme.CA):
        trust.configure_trust(context)
    elif isinstance(trust, Path):
        context.load_verify_locations(cafile=trust)
    else:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    if versions is not None:
        context.minimum_version, context.maximum_version = versions
    context.set_alpn_protocols(list(alpn))
    return context


@dataclass
class Connection:
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter

    @property
    def tls(self) -> ssl.SSLObject:
        ssl_object: ssl.SSLObject = self.writer.get_extra_info("ssl_object")
        return ssl_object

    @property
    def fingerprint(self) -> str:
        der = self.tls.getpeercert(binary_form=True)
        assert der is not None
        return fingerprint(x509.load_der_x509_certificate(der))

    async def echo(self, data: bytes = b"ping") -> bytes:
        self.writer.write(data)
        await self.writer.drain()
        return await self.reader.readexactly(len(data))

    async def aclose(self) -> None:
        self.writer.close()
        try:
            await self.writer.wait_closed()
        except (ssl.SSLError, ConnectionError):
            pass  # the server may close first; the test is over with it


async def connect(
    port: int, context: ssl.SSLContext, server_name: str | None = DOMAIN
) -> Connection:
    """A TLS connection to the echo server; `server_name` None sends no SNI (an address
    is verified, never sent as a server name)."""
    reader, writer = await asyncio.open_connection(
        "127.0.0.1", port, ssl=context, server_hostname=server_name or "127.0.0.1"
    )
    return Connection(reader, writer)


async def refused(port: int, context: ssl.SSLContext, server_name: str | None = DOMAIN) -> str:
    """Connect expecting the handshake to fail; what the client saw."""
    try:
        connection = await connect(port, context, server_name)
    except (ssl.SSLError, ConnectionError) as exc:
        return f"{type(exc).__name__}: {exc}"
    await connection.aclose()
    raise AssertionError(f"the handshake to {server_name} succeeded")


def blocking_handshake(
    port: int, context: ssl.SSLContext, session: ssl.SSLSession | None = None
) -> tuple[ssl.SSLSession | None, bool]:
    """One connection from a blocking socket (asyncio's client cannot offer a session):
    an echo round trip, so a TLS 1.3 ticket has arrived; its session and whether the
    one given was resumed."""
    with (
        socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as raw,
        context.wrap_socket(raw, server_hostname=DOMAIN, session=session) as tls,
    ):
        tls.sendall(b"ping")
        assert tls.recv(4) == b"ping"
        return tls.session, bool(tls.session_reused)


def write_pair(folder: Path, leaf: trustme.LeafCert, name: str = "site") -> tuple[Path, Path]:
    """The leaf's chain (leaf first, then any intermediates) and key, as PEM files."""
    folder.mkdir(parents=True, exist_ok=True)
    chain, key = folder / f"{name}.pem", folder / f"{name}.key"
    chain.write_bytes(b"".join(blob.bytes() for blob in leaf.cert_chain_pems))
    key.write_bytes(leaf.private_key_pem.bytes())
    return chain, key


def leaf_fingerprint(leaf: trustme.LeafCert) -> str:
    return fingerprint(x509.load_pem_x509_certificate(leaf.cert_chain_pems[0].bytes()))
