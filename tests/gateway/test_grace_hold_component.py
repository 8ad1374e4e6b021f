"""--grace-hold on the edge and the route table, driven through their interfaces (fakes as in
test_edge_component.py): what waits, what wakes it, what ends it, and the retry of a request
whose stream could not be opened. The end-to-end tests (tests/e2e/test_grace_hold.py) prove
the same with real processes."""

from __future__ import annotations

from typing import Any, cast

import pytest
from fakes import FakeTransport, Services, TunnelPeer

from tunnelgate import limits
from tunnelgate.gateway.edge import PublicConnection
from tunnelgate.gateway.routes import Held, Route
from tunnelgate.proto.codes import ErrorCode, StreamKind

HOST = "web.localhost:8080"
OK_HELLO = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"


@pytest.fixture
async def services() -> Services:
    return Services(grace_hold=30.0)


def connect(services: Services, ip: str = "203.0.113.7") -> tuple[PublicConnection, FakeTransport]:
    conn = PublicConnection(cast(Any, services))
    transport = FakeTransport((ip, 5555))
    conn.connection_made(cast(Any, transport))
    return conn, transport


def request(target: str = "/", *, body: bytes = b"") -> bytes:
    length = f"Content-Length: {len(body)}\r\n" if body else ""
    return f"POST {target} HTTP/1.1\r\nHost: {HOST}\r\n{length}\r\n".encode() + body


def route_on(peer: TunnelPeer) -> Route:
    return Route("web", 7, peer.connection, "http://web.localhost:8080", principal="p")


def held(services: Services) -> Held:
    route = route_on(TunnelPeer())
    services.routes.add(route)
    hold = services.routes.hold(route, expires_at=1e12)
    assert hold is not None
    return hold


def come_back(services: Services) -> TunnelPeer:
    """The owner's new tunnel: routed, then its registration answered (session.py)."""
    peer = TunnelPeer()
    services.routes.add(route_on(peer))
    services.routes.wake("web")
    return peer


def status_of(written: bytes | bytearray) -> int:
    return int(bytes(written).split(b" ", 2)[1])


async def test_a_request_for_a_held_name_waits_unread_then_goes_to_the_returning_tunnel(
    services: Services,
) -> None:
    held(services)
    conn, transport = connect(services)
    conn.data_received(request("/up", body=b"abc"))
    assert transport.written == b""
    assert not transport.reading  # backpressure: nothing more is read while it waits
    assert services.routes.waiting("web") == 1

    peer = come_back(services)
    await peer.pump()
    (sid,) = peer.streams
    assert peer.sent[sid].startswith(b"POST /up HTTP/1.1\r\n")
    assert peer.sent[sid].endswith(b"\r\n\r\nabc")  # its body waited with it
    assert transport.reading
    peer.respond(sid, OK_HELLO, end=True)
    assert bytes(transport.written) == OK_HELLO
    assert services.routes.waiting("web") == 0


async def test_grace_hold_0_answers_a_held_name_at_once() -> None:
    services = Services()
    held(services)
    conn, transport = connect(services)
    conn.data_received(request())
    assert status_of(transport.written) == 502
    assert b"X-Tunnelgate-Error: tunnel_offline" in transport.written
    assert services.routes.waiting("web") == 0


async def test_the_end_of_the_hold_answers_502_at_once(services: Services) -> None:
    hold = held(services)
    conn, transport = connect(services)
    conn.data_received(request())
    assert services.routes.expire("web", hold)
    assert status_of(transport.written) == 502
    assert b"X-Tunnelgate-Error: tunnel_offline" in transport.written
    # The connection was not read while it waited: the close lingers over what came.
    assert transport.eof_written
    assert conn.eof_received() is False


async def test_the_wait_ends_with_502_at_its_deadline(services: Services) -> None:
    held(services)
    conn, transport = connect(services)
    conn.data_received(request())
    assert conn.deadline_tick  # the wait is on the deadline wheel
    conn.on_deadline()  # as the wheel does once --grace-hold is over
    assert status_of(transport.written) == 502
    assert services.routes.waiting("web") == 0


async def test_past_the_per_name_queue_the_answer_is_503_at_once(services: Services) -> None:
    held(services)
    for i in range(limits.GRACE_HOLD_QUEUE):  # from several addresses: each is capped
        conn, transport = connect(services, f"198.51.100.{i % 100}")
        conn.data_received(request())
        assert transport.written == b""  # it waits
    assert services.routes.waiting("web") == limits.GRACE_HOLD_QUEUE
    conn, transport = connect(services)
    conn.data_received(request())
    assert status_of(transport.written) == 503
    assert b"X-Tunnelgate-Error: hold_queue_full" in transport.written


async def test_a_stream_not_opened_because_the_tunnel_died_is_retried_on_the_next(
    services: Services,
) -> None:
    dead = TunnelPeer()
    services.routes.add(route_on(dead))
    dead.connection.close(ErrorCode.SHUTDOWN, "stream ids exhausted")  # not yet unrouted
    conn, transport = connect(services)
    conn.data_received(request())
    assert transport.written == b""
    assert services.routes.waiting("web") == 1

    peer = come_back(services)
    await peer.pump()
    (sid,) = peer.streams
    peer.respond(sid, OK_HELLO, end=True)
    assert bytes(transport.written) == OK_HELLO


async def test_a_tunnel_going_away_is_waited_out_too(services: Services) -> None:
    going = TunnelPeer()
    services.routes.add(route_on(going))
    going.harness.peer.go_away(ErrorCode.NO_ERROR, "bye")
    going.harness.deliver()
    conn, transport = connect(services)
    conn.data_received(request())
    assert transport.written == b""
    assert services.routes.remove(services.routes.routes()[0])  # its goodbye frees the name
    assert status_of(transport.written) == 502


async def test_without_grace_hold_a_dead_tunnel_is_502_as_before() -> None:
    services = Services()
    dead = TunnelPeer()
    services.routes.add(route_on(dead))
    dead.connection.close(ErrorCode.SHUTDOWN, "gone")
    conn, transport = connect(services)
    conn.data_received(request())
    assert status_of(transport.written) == 502


async def test_a_name_held_for_a_tls_passthrough_tunnel_is_not_waited_for(
    services: Services,
) -> None:
    route = route_on(TunnelPeer())
    route.kind = StreamKind.TLS
    services.routes.add(route)
    services.routes.hold(route, expires_at=1e12)
    conn, transport = connect(services)
    conn.data_received(request())
    assert status_of(transport.written) == 502
    assert services.routes.waiting("web") == 0


async def test_a_name_that_comes_back_as_another_kind_is_404(services: Services) -> None:
    held(services)
    conn, transport = connect(services)
    conn.data_received(request())
    route = route_on(TunnelPeer())
    route.kind = StreamKind.TLS
    services.routes.add(route)
    services.routes.wake("web")
    assert status_of(transport.written) == 404


async def test_a_public_client_that_leaves_stops_waiting(services: Services) -> None:
    held(services)
    conn, _ = connect(services)
    conn.data_received(request())
    conn.connection_lost(None)
    assert services.routes.waiting("web") == 0
    come_back(services)  # nothing left to wake


async def test_a_drain_answers_waiting_requests_503(services: Services) -> None:
    held(services)
    conn, transport = connect(services)
    conn.data_received(request())
    conn.drain()
    assert status_of(transport.written) == 503
    assert b"X-Tunnelgate-Error: gateway_draining" in transport.written
    assert services.routes.waiting("web") == 0
