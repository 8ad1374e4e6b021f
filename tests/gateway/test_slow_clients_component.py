"""Slow public clients, driven through the edge's interface on a fake clock: a request
body that stops (408), one address's share of a tunnel's streams and of the held-bytes
budget, and the send timeout. tests/e2e/test_slow_clients.py proves them for real."""

from __future__ import annotations

import asyncio
from typing import Any, cast

import pytest
from fakes import FakeTransport, Services, TunnelPeer

from tunnelgate import limits
from tunnelgate.gateway.buffers import BufferBudget
from tunnelgate.gateway.edge import PublicConnection
from tunnelgate.gateway.routes import Route
from tunnelgate.proto.codes import ErrorCode
from tunnelgate.testing.clock import FakeClock
from tunnelgate.transport.deadlines import Deadlines

HOST = "web.localhost:8080"
ATTACKER = ("203.0.113.7", 5555)
OTHER = ("198.51.100.9", 6666)


def post(length: int, *, extra: str = "") -> bytes:
    return (
        f"POST /upload HTTP/1.1\r\nHost: {HOST}\r\nContent-Length: {length}\r\n{extra}\r\n"
    ).encode()


def get(target: str = "/") -> bytes:
    return f"GET {target} HTTP/1.1\r\nHost: {HOST}\r\n\r\n".encode()


@pytest.fixture
async def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def services(clock: FakeClock) -> Services:
    services = Services(head_timeout=3600.0)  # idle connections stay: the tests say when
    services.deadlines = Deadlines(clock=clock)
    return services


def connect(
    services: Services, peer: tuple[str, int] = ATTACKER
) -> tuple[PublicConnection, FakeTransport]:
    conn = PublicConnection(cast(Any, services))
    transport = FakeTransport(peer)
    conn.connection_made(cast(Any, transport))
    return conn, transport


def serve(services: Services, *, max_streams: int = limits.MAX_STREAMS) -> TunnelPeer:
    peer = TunnelPeer(max_streams=max_streams)
    route = Route("web", 7, peer.connection, "http://web.localhost:8080", principal="p")
    services.routes.add(route)
    return peer


def status_of(written: bytes | bytearray) -> int:
    return int(bytes(written).split(b" ", 2)[1])


# --- the request body's idle timeout --------------------------------------------------------
async def test_a_stalled_body_gets_408_and_its_stream_is_reset(
    services: Services, clock: FakeClock
) -> None:
    peer = serve(services)
    conn, transport = connect(services)
    conn.data_received(post(10) + b"abc")
    await peer.pump()
    (sid,) = peer.streams
    clock.advance(limits.BODY_IDLE_TIMEOUT - 1)
    assert not transport.written  # not yet
    conn.data_received(b"def")  # a byte resets the idle time
    clock.advance(limits.BODY_IDLE_TIMEOUT - 1)
    assert not transport.written
    clock.advance(2)
    assert status_of(transport.written) == 408
    assert b"X-Tunnelgate-Error: body_timeout" in transport.written
    assert transport.eof_written  # the rest of the body may come: the close lingers
    clock.advance(limits.LINGER_TIMEOUT + 1)
    assert transport.closed
    await peer.pump()
    assert peer.resets[sid] == ErrorCode.CANCEL  # the app sees the body cut, never complete
    assert sid not in peer.ended
    assert bytes(peer.sent[sid]).endswith(b"abcdef")


async def test_a_complete_body_leaves_the_app_its_response_timeout(
    services: Services, clock: FakeClock
) -> None:
    peer = serve(services)
    conn, transport = connect(services)
    conn.data_received(post(3) + b"abc")
    await peer.pump()
    (sid,) = peer.streams
    assert sid in peer.ended
    clock.advance(limits.BODY_IDLE_TIMEOUT + 1)
    assert not transport.written  # the app's turn now: no 408
    peer.respond(sid, b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", end=True)
    assert status_of(transport.written) == 200


async def test_the_response_timeout_counts_from_the_body_end_not_the_head(
    services: Services, clock: FakeClock
) -> None:
    """An upload may take longer than --response-timeout while it keeps coming (nginx's
    proxy_read_timeout counts from the last write upstream); then the app has all of it."""
    timeout = services.config.response_timeout
    peer = serve(services)
    conn, transport = connect(services)
    conn.data_received(post(60))
    pieces = int(timeout // (limits.BODY_IDLE_TIMEOUT - 1)) + 2
    for _ in range(pieces):  # a slow uplink, well past the response timeout in all
        clock.advance(limits.BODY_IDLE_TIMEOUT - 1)
        conn.data_received(b"x")
        await peer.pump()
    assert not transport.written  # no 504 midway
    conn.data_received(b"y" * (60 - pieces))  # the body's end: the app's turn from now
    await peer.pump()
    (sid,) = peer.streams
    assert sid in peer.ended
    clock.advance(timeout - 1)
    assert not transport.written
    clock.advance(2)
    assert status_of(transport.written) == 504


async def test_an_app_that_does_not_read_the_body_gets_504(
    services: Services, clock: FakeClock
) -> None:
    """The tunnel holds the body back (no credit): not the client's fault, so no 408; the
    app has the response timeout to take more of it (nginx's proxy_send_timeout), then 504."""
    serve(services)  # its peer is never pumped: it acknowledges nothing
    conn, transport = connect(services)
    size = 2 * limits.INITIAL_STREAM_WINDOW
    conn.data_received(post(size) + b"x" * size)
    timeout = services.config.response_timeout
    clock.advance(limits.BODY_IDLE_TIMEOUT + 1)
    assert not transport.written
    clock.advance(timeout)
    assert status_of(transport.written) == 504
    assert b"X-Tunnelgate-Error: response_timeout" in transport.written


async def test_with_100_continue_the_body_waits_for_the_app_then_is_timed(
    services: Services, clock: FakeClock
) -> None:
    peer = serve(services)
    conn, transport = connect(services)
    conn.data_received(post(3, extra="Expect: 100-continue\r\n"))
    await peer.pump()
    (sid,) = peer.streams
    clock.advance(limits.BODY_IDLE_TIMEOUT + 1)
    assert not transport.written  # the client waits for the app's 100: not its fault
    peer.respond(sid, b"HTTP/1.1 100 Continue\r\n\r\n")
    assert bytes(transport.written).startswith(b"HTTP/1.1 100")
    clock.advance(limits.BODY_IDLE_TIMEOUT + 1)
    assert b"HTTP/1.1 408" in transport.written


# --- one address's share of a tunnel's streams ------------------------------------------------
async def test_an_address_past_its_share_of_streams_gets_503_and_others_pass(
    services: Services,
) -> None:
    peer = serve(services, max_streams=8)
    share = int(8 * limits.ADDRESS_STREAM_SHARE)
    assert 0 < share < 8
    mine = [connect(services) for _ in range(share + 1)]
    for conn, _ in mine:
        conn.data_received(post(10))  # slow bodies: each holds its stream
    await peer.pump()
    assert len(peer.streams) == share
    refused = mine[share][1].written
    assert status_of(refused) == 503
    assert b"X-Tunnelgate-Error: tunnel_busy" in refused
    other, _ = connect(services, OTHER)
    other.data_received(get())
    await peer.pump()
    assert len(peer.streams) == share + 1  # another address is served
    first, first_transport = mine[0]
    first.data_received(b"0123456789")
    await peer.pump()
    peer.respond(peer.streams[0], b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", end=True)
    assert status_of(first_transport.written) == 200
    again, _ = connect(services)
    again.data_received(get())
    await peer.pump()
    assert len(peer.streams) == share + 2  # its share is free again


# --- one address's share of the held-bytes budget ------------------------------------------------
async def test_the_reader_that_takes_its_address_past_its_held_share_is_reset(
    services: Services,
) -> None:
    services.buffers = BufferBudget(1 << 30, share=2 * limits.WRITE_HIGH_WATER)
    readers = [connect(services) for _ in range(3)]
    other, other_transport = connect(services, OTHER)
    for conn, _ in [*readers, (other, other_transport)]:
        conn.pause_writing()
    await asyncio.sleep(0)  # the shed runs once the transport's write returned
    assert [transport.aborted for _, transport in readers] == [False, False, True]
    assert not other_transport.aborted
    readers[2][0].connection_lost(None)
    assert services.buffers.by_address == {
        ATTACKER[0]: 2 * limits.WRITE_HIGH_WATER,
        OTHER[0]: limits.WRITE_HIGH_WATER,
    }


# --- the send timeout -------------------------------------------------------------------------
async def test_a_client_that_takes_nothing_is_reset_one_that_reads_is_not(
    services: Services, clock: FakeClock
) -> None:
    reading, reading_transport = connect(services)
    stalled, stalled_transport = connect(services, OTHER)
    for conn, transport in ((reading, reading_transport), (stalled, stalled_transport)):
        transport.buffered = limits.WRITE_HIGH_WATER + 1
        conn.pause_writing()
    clock.advance(limits.SEND_TIMEOUT / 2)
    reading_transport.buffered -= 100  # it took 100 bytes
    clock.advance(limits.SEND_TIMEOUT / 2 + 1)
    assert stalled_transport.aborted
    assert not reading_transport.aborted
    clock.advance(limits.SEND_TIMEOUT + 1)  # and then nothing more
    assert reading_transport.aborted


async def test_a_closed_connection_whose_client_takes_nothing_is_reset(
    services: Services, clock: FakeClock
) -> None:
    conn, transport = connect(services)
    transport.buffered = 1000  # under the high-water mark: never paused
    conn.close()
    clock.advance(limits.SEND_TIMEOUT + 1)
    assert transport.aborted
