"""TCP and TLS-passthrough streams on the client, with fakes: streams from a
FakeStreamTarget, the local service on FakeTransports. Milliseconds, no sockets."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from ipaddress import ip_address
from typing import TypeVar

import pytest

from tunnelgate import limits
from tunnelgate.client.dialer import LocalDialer
from tunnelgate.client.raw import RawConnection, RawRelay
from tunnelgate.client.upstream import LocalPool
from tunnelgate.config import TunnelSpec
from tunnelgate.proto.codes import ErrorCode, StreamKind
from tunnelgate.proto.messages import OpenInfo
from tunnelgate.proxy_header import ProxyVersion
from tunnelgate.testing.fakes import FakeStreamTarget, FakeTransport
from tunnelgate.testing.proxy_header import parse_proxy_header
from tunnelgate.transport.deadlines import Deadlines

P = TypeVar("P", bound=asyncio.Protocol)
SID = 2
CLIENT = "203.0.113.9:4000"
HELLO = b"\x16\x03\x01\x00\x05hello"  # stands for a ClientHello: bytes like any others


class Sink:
    def __init__(self) -> None:
        self.connections: list[tuple[str, str, str, str, int, int]] = []

    def request(self, *args: object) -> None:
        raise AssertionError("a raw stream is not a request")

    def connection(
        self,
        tunnel: str,
        protocol: str,
        client: str,
        end: str,
        duration_ms: float,
        bytes_in: int,
        bytes_out: int,
    ) -> None:
        assert duration_ms >= 0
        self.connections.append((tunnel, protocol, client, end, bytes_in, bytes_out))


class LocalService:
    """The local service as the dialer reaches it: each connect gets a FakeTransport,
    after `refusals` refused attempts, or once `hang` is set."""

    def __init__(self) -> None:
        self.transports: list[FakeTransport] = []
        self.refusals = 0
        self.hang: asyncio.Event | None = None
        self.connected = asyncio.Event()

    async def connect(self, spec: TunnelSpec, factory: Callable[[], P]) -> P:
        if self.hang is not None:
            await self.hang.wait()
        if self.refusals:
            self.refusals -= 1
            raise ConnectionRefusedError(111, "refused")
        local = factory()
        self.transports.append(FakeTransport(local))
        self.connected.set()
        return local


class Client:
    def __init__(
        self,
        protocol: str = "tcp",
        proxy: ProxyVersion | None = None,
        retry_for: float = 0.0,
    ) -> None:
        assert protocol in ("http", "tcp", "tls")
        subdomain = "app" if protocol == "tls" else None
        self.spec = TunnelSpec(
            "db",
            "tls" if protocol == "tls" else "http" if protocol == "http" else "tcp",
            "127.0.0.1",
            5432,
            subdomain=subdomain,
            proxy_protocol=proxy,
        )
        self.sink = Sink()
        self.service = LocalService()
        pool = LocalPool(self.spec, Deadlines())
        self.dialer = LocalDialer(
            {1: self.spec},
            {1: pool},
            self.sink,
            connect=self.service.connect,
            retry_for=retry_for,
        )
        self.target = FakeStreamTarget()

    def open(
        self, kind: StreamKind = StreamKind.TCP, client: str = CLIENT, sid: int = SID
    ) -> RawRelay:
        relay = self.dialer.open_relay(self.target, sid, OpenInfo(1, client, kind).encode())
        assert isinstance(relay, RawRelay)
        self.target.attach(sid, relay)
        return relay

    async def connected(self, relay: RawRelay) -> FakeTransport:
        """The local connection of `relay`, once its connect task has run."""
        for _ in range(3):
            await asyncio.sleep(0)
        assert relay.local is not None
        transport = relay.local.transport
        assert isinstance(transport, FakeTransport)
        return transport


# --- bytes both ways, half-closes ------------------------------------------------------
async def test_bytes_both_ways_then_half_closes_end_it_cleanly() -> None:
    client = Client()
    async with client.dialer.serving():
        relay = client.open()
        client.target.feed(SID, b"early")  # before the local connection is up
        assert client.target.acked.get(SID, 0) == 0  # credit waits until the socket has them
        local = await client.connected(relay)
        assert bytes(local.written) == b"early"
        assert client.target.acked[SID] == 5
        client.target.feed(SID, b" and later")
        local.receive(b"from the service")
        assert bytes(local.written) == b"early and later"
        assert client.target.data(SID) == b"from the service"
        local.receive_eof()  # the service half-closes: our FIN, the public side may go on
        assert SID in client.target.ended
        assert not local.closing
        client.target.feed(SID, b"!")
        client.target.feed_end(SID)
        assert local.eof_written
        assert local.closing
        assert not local.aborted
        await asyncio.sleep(0)
    assert bytes(local.written) == b"early and later!"
    assert client.sink.connections == [("db", "tcp", CLIENT, "closed", 16, 16)]
    assert "closed" in repr(relay)


async def test_a_fin_before_the_local_connection_is_passed_on() -> None:
    client = Client()
    async with client.dialer.serving():
        relay = client.open()
        client.target.feed(SID, b"all of it")
        client.target.feed_end(SID)
        local = await client.connected(relay)
        assert bytes(local.written) == b"all of it"
        assert local.eof_written  # the other direction stays open
        local.receive(b"answer")
        local.receive_eof()
        await asyncio.sleep(0)
    assert client.target.data(SID) == b"answer"
    assert client.sink.connections[0][3:] == ("closed", 9, 6)


async def test_the_service_may_speak_first() -> None:
    client = Client()
    async with client.dialer.serving():
        relay = client.open()
        local = await client.connected(relay)
        local.receive(b"SSH-2.0-OpenSSH_9.6\r\n")
        assert client.target.data(SID) == b"SSH-2.0-OpenSSH_9.6\r\n"
        client.target.feed_reset(SID, ErrorCode.CANCEL)


async def test_tls_passthrough_relays_the_client_hello_unopened() -> None:
    client = Client("tls")
    async with client.dialer.serving():
        relay = client.open(StreamKind.TLS)
        client.target.feed(SID, HELLO)
        local = await client.connected(relay)
        assert bytes(local.written) == HELLO
        client.target.feed_reset(SID, ErrorCode.CANCEL)
    assert client.sink.connections == [("db", "tls", CLIENT, "reset", len(HELLO), 0)]


# --- backpressure -----------------------------------------------------------------------
async def test_credit_waits_while_the_service_does_not_read() -> None:
    client = Client()
    async with client.dialer.serving():
        relay = client.open()
        local = await client.connected(relay)
        local.protocol.pause_writing()
        client.target.feed(SID, b"0123456789")
        assert client.target.acked.get(SID, 0) == 0
        local.protocol.resume_writing()
        assert client.target.acked[SID] == 10
        client.target.feed_reset(SID, ErrorCode.CANCEL)


async def test_the_service_is_not_read_while_the_stream_has_no_credit() -> None:
    client = Client()
    async with client.dialer.serving():
        relay = client.open()
        local = await client.connected(relay)
        client.target.writable = False
        local.receive(b"x" * 1000)
        assert local.reading_paused
        client.target.make_writable(SID)
        assert not local.reading_paused
        client.target.feed_reset(SID, ErrorCode.CANCEL)


# --- resets and refusals ------------------------------------------------------------------
async def test_a_stream_reset_aborts_the_local_connection() -> None:
    client = Client()
    async with client.dialer.serving():
        relay = client.open()
        local = await client.connected(relay)
        local.receive(b"hi")
        client.target.feed_reset(SID, ErrorCode.CANCEL)  # the public client went away
        assert local.aborted
        await asyncio.sleep(0)
    assert client.sink.connections == [("db", "tcp", CLIENT, "reset", 0, 2)]


async def test_a_local_reset_resets_the_stream() -> None:
    client = Client()
    async with client.dialer.serving():
        relay = client.open()
        local = await client.connected(relay)
        local.lose(ConnectionResetError())
    assert client.target.resets == {SID: ErrorCode.CONNECT_ERROR}
    assert client.sink.connections[0][3] == "local_reset"


async def test_a_refused_local_port_resets_the_stream_at_once() -> None:
    client = Client()
    client.service.refusals = 1
    async with client.dialer.serving():
        client.open()
        client.target.feed(SID, b"hello?")
        await asyncio.sleep(0)
    assert client.target.resets == {SID: ErrorCode.CONNECT_ERROR}  # the gateway closes it
    assert SID in client.target.released
    assert client.sink.connections == [("db", "tcp", CLIENT, "refused", 6, 0)]


async def test_a_refusal_is_retried_while_the_service_restarts() -> None:
    client = Client(retry_for=limits.LOCAL_CONNECT_RETRY)
    client.service.refusals = 1
    async with client.dialer.serving():
        relay = client.open()
        client.target.feed(SID, b"hello")
        async with asyncio.timeout(5 * limits.LOCAL_CONNECT_RETRY_INTERVAL):
            await client.service.connected.wait()
        assert relay.local is not None
        local = relay.local.transport
        assert isinstance(local, FakeTransport)
        assert bytes(local.written) == b"hello"
        client.target.feed_reset(SID, ErrorCode.CANCEL)
    assert client.target.resets == {}


async def test_a_reset_while_connecting_closes_the_connection_when_it_comes() -> None:
    client = Client()
    client.service.hang = asyncio.Event()
    async with client.dialer.serving():
        relay = client.open()
        client.target.feed(SID, b"lost")
        await asyncio.sleep(0)  # the connect is under way
        client.target.feed_reset(SID, ErrorCode.CANCEL)
        client.service.hang.set()
        for _ in range(3):
            await asyncio.sleep(0)
        [local] = client.service.transports
        assert local.closing
        assert local.written == b""
        assert relay.local is None
    assert client.sink.connections == [("db", "tcp", CLIENT, "reset", 4, 0)]


async def test_the_tunnel_lost_mid_connection_aborts_the_local_one() -> None:
    client = Client()
    async with client.dialer.serving():
        relay = client.open()
        local = await client.connected(relay)
        client.target.feed_reset(SID, ErrorCode.INTERNAL_ERROR)  # as on_ws_disconnected does
        assert local.aborted
        local.lose(None)
    assert [c[3] for c in client.sink.connections] == ["reset"]


# --- which streams a tunnel takes ---------------------------------------------------------
@pytest.mark.parametrize(
    ("protocol", "kind"),
    [
        ("tcp", StreamKind.HTTP),
        ("tcp", StreamKind.TLS),
        ("tls", StreamKind.TCP),
        ("tls", StreamKind.HTTP),
        ("http", StreamKind.TCP),
        ("http", StreamKind.TLS),
    ],
)
async def test_a_stream_of_another_kind_is_refused(protocol: str, kind: StreamKind) -> None:
    client = Client(protocol)
    async with client.dialer.serving():
        metadata = OpenInfo(1, CLIENT, kind).encode()
        assert client.dialer.open_relay(client.target, SID, metadata) is None
    assert client.service.transports == []


# --- the PROXY header ---------------------------------------------------------------------
@pytest.mark.parametrize(
    ("version", "client_addr", "expected"),
    [
        ("v1", "203.0.113.9:4000", b"PROXY TCP4 203.0.113.9 127.0.0.1 4000 50000\r\n"),
        ("v1", "2001:db8::7:4000", b"PROXY TCP6 2001:db8::7 ::ffff:127.0.0.1 4000 50000\r\n"),
        ("v1", "not an address", b"PROXY UNKNOWN\r\n"),
        (
            "v2",
            "203.0.113.9:4000",
            b"\r\n\r\n\x00\r\nQUIT\n\x21\x11\x00\x0c"
            b"\xcb\x00\x71\x09\x7f\x00\x00\x01\x0f\xa0\xc3\x50",
        ),
    ],
)
async def test_the_proxy_header_comes_before_the_first_byte(
    version: ProxyVersion, client_addr: str, expected: bytes
) -> None:
    client = Client(proxy=version)  # FakeTransport's peer is 127.0.0.1:50000
    async with client.dialer.serving():
        relay = client.open(client=client_addr)
        client.target.feed(SID, b"first")
        local = await client.connected(relay)
        assert bytes(local.written) == expected + b"first"
        client.target.feed(SID, b" then more")
        assert bytes(local.written).endswith(b"first then more")
        client.target.feed_reset(SID, ErrorCode.CANCEL)
    assert client.target.acked[SID] == len(b"first then more")  # the header is ours
    assert client.sink.connections[0][4] == len(b"first then more")


@pytest.mark.parametrize("version", ["v1", "v2"])
async def test_the_proxy_header_names_the_public_client(version: ProxyVersion) -> None:
    client = Client("tls", proxy=version)
    async with client.dialer.serving():
        relay = client.open(StreamKind.TLS, client="2001:db8::7:4000")
        client.target.feed(SID, HELLO)
        local = await client.connected(relay)
        parsed = parse_proxy_header(bytes(local.written))
        assert parsed is not None
        header, used = parsed
        assert header.source == ("2001:db8::7", 4000)
        assert header.destination is not None
        # One family: the IPv4 end as IPv4-mapped IPv6.
        assert ip_address(header.destination[0]) == ip_address("::ffff:127.0.0.1")
        assert header.destination[1] == 50000
        assert bytes(local.written)[used:] == HELLO
        client.target.feed_reset(SID, ErrorCode.CANCEL)


async def test_repr_of_a_connection_without_a_transport() -> None:
    relay = RawRelay(
        FakeStreamTarget(), SID, OpenInfo(1, CLIENT, StreamKind.TCP), Client().spec, Sink()
    )
    assert repr(relay) == f"<RawRelay db sid=2 {CLIENT} connecting>"
    assert repr(RawConnection(relay)) == "<RawConnection None bound>"
