"""The client's local side with fakes: streams from a FakeStreamTarget, local apps on
FakeTransports, the pool's idle timeout on a FakeClock. Milliseconds, no sockets."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import TypeVar

import pytest

from tunnelgate import limits
from tunnelgate.client.dialer import LocalDialer
from tunnelgate.client.upstream import LocalPool
from tunnelgate.config import TunnelSpec
from tunnelgate.proto.codes import ErrorCode, StreamKind
from tunnelgate.proto.messages import OpenInfo
from tunnelgate.testing.clock import FakeClock
from tunnelgate.testing.fakes import FakeStreamTarget, FakeTransport
from tunnelgate.transport.deadlines import Deadlines

SPEC = TunnelSpec("web", "http", "127.0.0.1", 3000)
P = TypeVar("P", bound=asyncio.Protocol)
OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi"


class Sink:
    def __init__(self) -> None:
        self.requests: list[tuple[str, str, int, int, int]] = []

    def request(
        self,
        tunnel: str,
        method: str,
        path: str,
        status: int,
        duration_ms: float,
        bytes_in: int,
        bytes_out: int,
    ) -> None:
        self.requests.append((method, path, status, bytes_in, bytes_out))

    def connection(self, *args: object) -> None:
        raise AssertionError("an HTTP stream is not a raw connection")


class LocalApp:
    """The local app as the dialer reaches it: each connect gets a FakeTransport."""

    def __init__(self) -> None:
        self.transports: list[FakeTransport] = []
        self.refuse = False
        self.hang: asyncio.Event | None = None
        self.bug = False

    async def connect(self, spec: TunnelSpec, factory: Callable[[], P]) -> P:
        if self.hang is not None:
            await self.hang.wait()
        if self.bug:
            raise RuntimeError("bug in connect")
        if self.refuse:
            raise ConnectionRefusedError(111, "refused")
        local = factory()
        self.transports.append(FakeTransport(local))
        return local


class Client:
    def __init__(self) -> None:
        self.clock = FakeClock()
        self.pool = LocalPool(SPEC, Deadlines(clock=self.clock))
        self.sink = Sink()
        self.app = LocalApp()
        self.dialer = LocalDialer(
            {1: SPEC}, {1: self.pool}, self.sink, connect=self.app.connect, retry_for=0.0
        )
        self.target = FakeStreamTarget()

    async def request(self, sid: int, head: bytes, *, end: bool = True) -> FakeTransport:
        """Open stream `sid` carrying the request `head`; its local connection."""
        method, target, version = head.split(b"\r\n", 1)[0].split(b" ")
        info = OpenInfo(
            1, "203.0.113.9:4000", StreamKind.HTTP, method, target, version[5:].decode()
        )
        relay = self.dialer.open_relay(self.target, sid, info.encode())
        assert relay is not None
        self.target.attach(sid, relay)
        self.target.feed(sid, head)
        if end:
            self.target.feed_end(sid)
        await asyncio.sleep(0)  # the connect task, if the pool had no connection
        assert relay.local is not None
        assert relay.local.transport is not None
        return relay.local.transport  # type: ignore[return-value]


@pytest.fixture
def client() -> Client:
    return Client()


# --- HTTP requests ----------------------------------------------------------------------
async def test_a_keep_alive_connection_serves_the_next_stream(client: Client) -> None:
    head = b"GET /a?b=1 HTTP/1.1\r\nHost: web\r\n\r\n"
    async with client.dialer.serving():
        local = await client.request(2, head)
        assert bytes(local.written) == head
        assert client.target.acked[2] == len(head)
        local.receive(OK)
        assert client.target.data(2) == OK
        assert 2 in client.target.ended
        assert 2 in client.target.released
        assert repr(client.pool) == "<LocalPool web idle=1>"
        second = b"GET /c HTTP/1.1\r\nHost: web\r\n\r\n"
        again = await client.request(4, second)
        assert again is local
        local.receive(OK)
    assert len(client.app.transports) == 1
    assert client.sink.requests == [
        ("GET", "/a?b=1", 200, len(head), len(OK)),
        ("GET", "/c", 200, len(second), len(OK)),
    ]


async def test_a_head_response_ends_without_a_body(client: Client) -> None:
    async with client.dialer.serving():
        local = await client.request(2, b"HEAD / HTTP/1.1\r\nHost: web\r\n\r\n")
        head = b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n"
        local.receive(head)  # no body follows: the method says so, not the bytes
        assert client.target.data(2) == head
        assert 2 in client.target.ended
        assert client.pool.take() is local.protocol  # and the connection is reusable
    assert client.sink.requests[0][:3] == ("HEAD", "/", 200)


async def test_an_http10_request_does_not_keep_the_connection(client: Client) -> None:
    async with client.dialer.serving():
        local = await client.request(2, b"GET / HTTP/1.0\r\n\r\n")
        local.receive(OK)
        assert 2 in client.target.ended
        assert local.closing
        assert client.pool.take() is None


async def test_an_idle_pooled_connection_is_closed(client: Client) -> None:
    async with client.dialer.serving():
        local = await client.request(2, b"GET / HTTP/1.1\r\n\r\n")
        local.receive(OK)
        client.clock.advance(limits.LOCAL_IDLE_TIMEOUT - 0.5)
        assert not local.closing
        client.clock.advance(1.0)
        assert local.closing
        assert client.pool.take() is None


async def test_credit_waits_while_the_local_app_does_not_read(client: Client) -> None:
    async with client.dialer.serving():
        head = b"POST / HTTP/1.1\r\nContent-Length: 10\r\n\r\n"
        local = await client.request(2, head, end=False)
        local.protocol.pause_writing()
        client.target.feed(2, b"0123456789")
        assert client.target.acked[2] == len(head)
        local.protocol.resume_writing()
        assert client.target.acked[2] == len(head) + 10


# --- upgrades: a raw pipe after the 101 ------------------------------------------------------
async def test_101_then_raw_bytes_and_half_closes_both_ways(client: Client) -> None:
    request = b"GET /ws HTTP/1.1\r\nConnection: upgrade\r\nUpgrade: x\r\n\r\n"
    switching = b"HTTP/1.1 101 Switching Protocols\r\nConnection: upgrade\r\nUpgrade: x\r\n\r\n"
    async with client.dialer.serving():
        local = await client.request(2, request, end=False)
        local.receive(switching + b"server hello")
        assert client.target.data(2) == switching + b"server hello"
        client.target.feed(2, b"client bytes")
        local.receive(b"more from the server")
        assert bytes(local.written) == request + b"client bytes"
        assert client.target.data(2).endswith(b"more from the server")
        client.target.feed_end(2)  # the public client half-closed
        assert local.eof_written
        assert client.sink.requests == []  # the server may still talk
        local.receive(b"last words")
        local.receive_eof()
        assert 2 in client.target.ended
        assert client.target.data(2).endswith(b"last words")
        assert local.closing  # done: not back in the pool
        await asyncio.sleep(0)
    assert client.pool.take() is None
    [(method, path, status, bytes_in, _)] = client.sink.requests
    assert (method, path, status) == ("GET", "/ws", 101)
    assert bytes_in == len(request) + len(b"client bytes")


async def test_a_raw_stream_reset_aborts_the_local_connection(client: Client) -> None:
    async with client.dialer.serving():
        local = await client.request(2, b"GET /ws HTTP/1.1\r\nUpgrade: x\r\n\r\n", end=False)
        local.receive(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\n\r\n")
        client.target.feed_reset(2, ErrorCode.CANCEL)
        assert local.aborted
    assert client.sink.requests[0][2] == 101


async def test_a_raw_local_connection_reset_resets_the_stream(client: Client) -> None:
    async with client.dialer.serving():
        local = await client.request(2, b"GET /ws HTTP/1.1\r\nUpgrade: x\r\n\r\n", end=False)
        local.receive(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\n\r\n")
        local.lose(ConnectionResetError())
    assert client.target.resets == {2: ErrorCode.CONNECT_ERROR}


# --- failures ------------------------------------------------------------------------------
async def test_a_refusing_local_app_is_a_connect_error(client: Client) -> None:
    client.app.refuse = True
    async with client.dialer.serving():
        relay = client.dialer.open_relay(
            client.target, 2, OpenInfo(1, "a:1", method=b"GET").encode()
        )
        assert relay is not None
        client.target.attach(2, relay)
        await asyncio.sleep(0)
    assert client.target.resets == {2: ErrorCode.CONNECT_ERROR}  # the gateway answers 502
    assert client.sink.requests[0][2] == 502


@pytest.mark.parametrize("how", ["eof", "reset"])
async def test_the_app_closing_mid_response_resets_the_stream(client: Client, how: str) -> None:
    async with client.dialer.serving():
        local = await client.request(2, b"GET / HTTP/1.1\r\n\r\n")
        local.receive(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc")
        if how == "eof":
            local.receive_eof()
        else:
            local.lose(ConnectionResetError())
        await asyncio.sleep(0)
    assert client.target.resets == {2: ErrorCode.PROTOCOL_ERROR}  # never a complete response
    assert 2 not in client.target.ended
    assert client.pool.take() is None


async def test_a_stream_reset_mid_response_closes_the_local_connection(client: Client) -> None:
    async with client.dialer.serving():
        local = await client.request(2, b"GET / HTTP/1.1\r\n\r\n")
        client.target.feed_reset(2, ErrorCode.CANCEL)
        assert local.closing
    assert client.sink.requests[0][2] == 499


@pytest.mark.parametrize(
    "metadata",
    [
        pytest.param(b"junk", id="bad-metadata"),
        pytest.param(OpenInfo(9, "a:1").encode(), id="unknown-tunnel"),
        pytest.param(OpenInfo(1, "a:1", StreamKind.TCP).encode(), id="tcp-on-http-tunnel"),
    ],
)
async def test_streams_the_client_cannot_serve_are_refused(client: Client, metadata: bytes) -> None:
    async with client.dialer.serving():
        assert client.dialer.open_relay(client.target, 2, metadata) is None


async def test_no_relay_outside_a_connection(client: Client) -> None:
    assert client.dialer.open_relay(client.target, 2, OpenInfo(1, "a:1").encode()) is None


# --- connect tasks belong to the connection --------------------------------------------------
async def test_connects_still_pending_when_the_connection_ends_are_cancelled(
    client: Client,
) -> None:
    client.app.hang = asyncio.Event()
    async with client.dialer.serving():
        client.dialer.open_relay(client.target, 2, OpenInfo(1, "a:1").encode())
        await asyncio.sleep(0)
        assert "connecting=1" in repr(client.dialer)
    assert "connecting=0" in repr(client.dialer)
    assert client.app.transports == []


async def test_a_bug_in_a_connect_fails_its_stream_only(
    client: Client, caplog: pytest.LogCaptureFixture
) -> None:
    client.app.bug = True
    with caplog.at_level(logging.ERROR, logger="tunnelgate.client"):
        async with client.dialer.serving():
            relay = client.dialer.open_relay(client.target, 2, OpenInfo(1, "a:1").encode())
            assert relay is not None
            client.target.attach(2, relay)
            await asyncio.sleep(0)
    assert client.target.resets == {2: ErrorCode.CONNECT_ERROR}
    [record] = [r for r in caplog.records if r.msg == "local_connect_failed"]
    assert record.exc_info is not None
