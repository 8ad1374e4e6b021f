"""The public edge and its exchanges, driven through their interfaces: a fake transport for
the public socket, and a real TunnelConnection on a fake WebSocket whose other side (the
tunnel client) the test plays. No sockets, no processes; the end-to-end tests (tests/e2e)
prove the same behaviours for real."""

from __future__ import annotations

from typing import Any, cast

import pytest
from fakes import FakeTransport, Services, TunnelPeer

from tunnelgate import limits
from tunnelgate.gateway.edge import PublicConnection
from tunnelgate.gateway.routes import Route
from tunnelgate.proto.codes import ErrorCode
from tunnelgate.proto.messages import OpenInfo

HOST = "web.localhost:8080"
OK_HELLO = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"


def request(target: str = "/", *, host: str = HOST, extra: str = "") -> bytes:
    return f"GET {target} HTTP/1.1\r\nHost: {host}\r\n{extra}\r\n".encode()


@pytest.fixture
async def services() -> Services:
    return Services()


def connect(services: Services) -> tuple[PublicConnection, FakeTransport]:
    conn = PublicConnection(cast(Any, services))
    transport = FakeTransport()
    conn.connection_made(cast(Any, transport))
    return conn, transport


def add_route(services: Services, peer: TunnelPeer, name: str = "web") -> Route:
    route = Route(name, 7, peer.connection, f"http://{name}.localhost:8080", principal="p")
    services.routes.add(route)
    return route


def status_of(written: bytes | bytearray) -> int:
    return int(bytes(written).split(b" ", 2)[1])


async def test_unknown_tunnel_is_404_naming_the_host(services: Services) -> None:
    conn, transport = connect(services)
    conn.data_received(request())
    assert status_of(transport.written) == 404
    assert HOST.encode() in transport.written
    assert b"X-Tunnelgate-Error: no_tunnel" in transport.written


async def test_held_name_is_502(services: Services) -> None:
    route = add_route(services, TunnelPeer())
    services.routes.hold(route, expires_at=1e12)
    conn, transport = connect(services)
    conn.data_received(request())
    assert status_of(transport.written) == 502


async def test_spent_buffer_budget_is_503_and_opens_no_stream(services: Services) -> None:
    peer = TunnelPeer()
    add_route(services, peer)
    services.buffers.take(services.buffers.limit + 1, "198.51.100.1")
    conn, transport = connect(services)
    conn.data_received(request())
    assert status_of(transport.written) == 503
    assert b"X-Tunnelgate-Error: gateway_busy" in transport.written
    await peer.pump()
    assert peer.streams == []


async def test_request_goes_down_a_stream_and_the_response_comes_back(services: Services) -> None:
    peer = TunnelPeer()
    route = add_route(services, peer)
    conn, transport = connect(services)
    conn.data_received(request("/a?b=1"))
    await peer.pump()
    (sid,) = peer.streams
    info = OpenInfo.decode(peer.metadata[sid])
    assert (info.tunnel_id, info.method, info.target) == (7, b"GET", b"/a?b=1")
    assert peer.sent[sid].startswith(b"GET /a?b=1 HTTP/1.1\r\n")
    assert b"X-Forwarded-For: 203.0.113.7\r\n" in peer.sent[sid]
    assert sid in peer.ended  # no body: the head carried the FIN
    peer.respond(sid, OK_HELLO, end=True)
    assert bytes(transport.written) == OK_HELLO
    assert conn.exchange is None  # done; the connection waits for the next request
    assert not transport.closed
    assert route.requests == 1


async def test_a_refused_stream_is_503(services: Services) -> None:
    add_route(services, TunnelPeer(max_streams=0))
    conn, transport = connect(services)
    conn.data_received(request())
    assert status_of(transport.written) == 503
    assert b"tunnel_busy" in transport.written


@pytest.mark.parametrize(
    ("code", "status"),
    [
        (ErrorCode.CONNECT_ERROR, 502),
        (ErrorCode.REFUSED_STREAM, 503),
        (ErrorCode.INTERNAL_ERROR, 502),
    ],
)
async def test_a_reset_before_the_response_is_a_gateway_error(
    services: Services, code: int, status: int
) -> None:
    peer = TunnelPeer()
    add_route(services, peer)
    conn, transport = connect(services)
    conn.data_received(request())
    await peer.pump()
    (sid,) = peer.streams
    peer.reset(sid, code)
    assert status_of(transport.written) == status
    assert transport.closed


async def test_a_request_that_crossed_the_clients_goodbye_is_502(services: Services) -> None:
    """The client stops (GOAWAY NO_ERROR, its drain) as the stream's OPEN is on its way: it
    refuses the stream, and the request is answered as for a lost tunnel, not as busy."""
    peer = TunnelPeer()
    add_route(services, peer)
    conn, transport = connect(services)
    conn.data_received(request())
    await peer.pump()
    (sid,) = peer.streams
    peer.harness.peer.go_away(ErrorCode.NO_ERROR, "client shutting down")
    peer.reset(sid, ErrorCode.REFUSED_STREAM)
    assert status_of(transport.written) == 502
    assert b"X-Tunnelgate-Error: tunnel_offline" in transport.written


async def test_a_reset_mid_response_aborts_the_public_connection(services: Services) -> None:
    peer = TunnelPeer()
    add_route(services, peer)
    conn, transport = connect(services)
    conn.data_received(request())
    await peer.pump()
    (sid,) = peer.streams
    peer.respond(sid, b"HTTP/1.1 200 OK\r\n\r\npartial")  # close-delimited
    peer.reset(sid, ErrorCode.INTERNAL_ERROR)
    assert transport.aborted  # a reset, not a FIN that would read as the end
    assert not bytes(transport.written).startswith(b"HTTP/1.1 502")


async def test_a_slow_reader_holds_credit_and_counts_against_the_budget(
    services: Services,
) -> None:
    peer = TunnelPeer()
    add_route(services, peer)
    conn, _ = connect(services)
    conn.data_received(request())
    await peer.pump()
    (sid,) = peer.streams
    chunk = limits.INITIAL_STREAM_WINDOW // 2  # credit goes back in quarter windows
    peer.respond(sid, b"HTTP/1.1 200 OK\r\nContent-Length: 10000000\r\n\r\n")
    conn.pause_writing()  # the public socket's buffer is over its high-water mark
    peer.respond(sid, b"x" * chunk)
    await peer.pump()
    credit = peer.credit(sid)
    assert credit < limits.INITIAL_STREAM_WINDOW - chunk  # withheld: not returned
    assert services.buffers.held == limits.WRITE_HIGH_WATER + chunk
    conn.resume_writing()
    await peer.pump()
    assert peer.credit(sid) > credit  # returned once the socket drained
    assert services.buffers.held == 0


async def test_the_next_request_waits_until_a_slow_reader_drains(services: Services) -> None:
    peer = TunnelPeer()
    add_route(services, peer)
    conn, transport = connect(services)
    conn.data_received(request("/1") + request("/2"))  # pipelined
    await peer.pump()
    (first,) = peer.streams
    conn.pause_writing()
    peer.respond(first, b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", end=True)
    await peer.pump()
    assert peer.streams == [first]  # the second is not started while paused
    assert not transport.reading
    conn.resume_writing()
    await peer.pump()
    second = peer.streams[-1]
    assert second != first
    assert peer.sent[second].startswith(b"GET /2 ")


async def test_connect_upgrades_go_to_the_tunnel_acceptor(services: Services) -> None:
    conn, transport = connect(services)
    upgrade = request(
        "/connect", host="localhost:8080", extra="Upgrade: websocket\r\nConnection: Upgrade\r\n"
    )
    conn.data_received(upgrade + b"early")
    ((taken, head, early, _),) = services.tunnels.accepted
    assert taken is transport
    assert head.target == b"/connect"
    assert early == b"early"
    assert conn not in services.live.connections  # the tunnel layer owns it now


async def test_connections_are_tracked_until_they_close(services: Services) -> None:
    conn, _ = connect(services)
    assert conn in services.live.connections
    conn.connection_lost(None)
    assert conn not in services.live.connections
    assert services.caps.open == 0


async def test_after_a_101_bytes_flow_raw_both_ways_with_half_closes(services: Services) -> None:
    peer = TunnelPeer()
    add_route(services, peer)
    conn, transport = connect(services)
    upgrade = request("/ws", extra="Upgrade: echo\r\nConnection: Upgrade\r\n")
    conn.data_received(upgrade + b"early")  # sent before the 101: held until it comes
    await peer.pump()
    (sid,) = peer.streams
    assert peer.sent[sid].endswith(b"\r\n\r\n")  # the head only
    peer.respond(sid, b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: echo\r\n\r\nhi")
    assert bytes(transport.written).endswith(b"\r\n\r\nhi")
    conn.data_received(b"more")
    await peer.pump()
    assert peer.sent[sid].endswith(b"earlymore")
    assert conn.eof_received() is True  # keep writing: the tunnel side may still answer
    await peer.pump()
    assert sid in peer.ended
    peer.respond(sid, b"last", end=True)
    assert transport.eof_written
    assert bytes(transport.written).endswith(b"last")
    assert conn.exchange is None  # both directions ended: done
    assert transport.closed
    assert not transport.aborted


# --- the drain (gateway/drain.py) ----------------------------------------------------------
@pytest.mark.parametrize(
    "pieces",
    [
        pytest.param([OK_HELLO], id="head-in-one-piece"),
        pytest.param([OK_HELLO[:10], OK_HELLO[10:]], id="head-split"),
        pytest.param(
            [b"HTTP/1.1 100 Continue\r\n\r\n" + OK_HELLO[:-5], OK_HELLO[-5:]], id="after-100"
        ),
    ],
)
async def test_draining_the_last_response_says_connection_close(
    services: Services, pieces: list[bytes]
) -> None:
    peer = TunnelPeer()
    add_route(services, peer)
    conn, transport = connect(services)
    conn.data_received(request())
    await peer.pump()
    (sid,) = peer.streams
    conn.drain()  # the head is still to come
    assert not transport.closed
    for piece in pieces[:-1]:
        peer.respond(sid, piece)
    peer.respond(sid, pieces[-1], end=True)
    written = bytes(transport.written)
    assert written.endswith(
        b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello"
    )
    assert transport.closed  # after the response, not before


async def test_draining_a_head_whose_blank_line_was_split_still_says_connection_close(
    services: Services,
) -> None:
    """A head is sent only once it is whole (it may need rewriting), so even one cut
    inside its blank line gets `Connection: close`."""
    peer = TunnelPeer()
    add_route(services, peer)
    conn, transport = connect(services)
    conn.data_received(request())
    await peer.pump()
    (sid,) = peer.streams
    conn.drain()
    head_end = OK_HELLO.index(b"\r\n\r\n") + 3  # the blank line's CR came in the first piece
    peer.respond(sid, OK_HELLO[:head_end])
    peer.respond(sid, OK_HELLO[head_end:], end=True)
    assert bytes(transport.written) == (
        b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello"
    )
    assert transport.closed


async def test_draining_closes_an_idle_connection_at_once(services: Services) -> None:
    peer = TunnelPeer()
    add_route(services, peer)
    conn, transport = connect(services)
    conn.data_received(request())
    await peer.pump()
    peer.respond(peer.streams[0], OK_HELLO, end=True)
    assert not transport.closed  # kept alive
    conn.drain()
    assert transport.closed
    assert bytes(transport.written) == OK_HELLO


async def test_draining_a_request_whose_head_is_coming_gets_503_and_close(
    services: Services,
) -> None:
    peer = TunnelPeer()
    add_route(services, peer)
    conn, transport = connect(services)
    conn.data_received(request()[:10])
    conn.drain()
    assert not transport.closed  # in the middle of a request: not between two
    peer.connection.go_away(ErrorCode.SHUTDOWN, "draining")
    conn.data_received(request()[10:])
    assert status_of(transport.written) == 503
    assert b"X-Tunnelgate-Error: gateway_draining" in transport.written
    assert b"Connection: close" in transport.written
    assert transport.closed


async def test_draining_refuses_new_tunnel_connections(services: Services) -> None:
    upgrade = (
        b"GET /connect HTTP/1.1\r\nHost: localhost:8080\r\nUpgrade: websocket\r\n"
        b"Connection: Upgrade\r\n\r\n"
    )
    conn, transport = connect(services)
    conn.data_received(upgrade[:10])
    conn.drain()  # the upgrade request was on its way
    conn.data_received(upgrade[10:])
    assert status_of(transport.written) == 503
    assert services.tunnels.accepted == []


async def test_cut_off_resets_a_response_in_flight(services: Services) -> None:
    peer = TunnelPeer()
    add_route(services, peer)
    conn, transport = connect(services)
    conn.data_received(request())
    await peer.pump()
    peer.respond(peer.streams[0], b"HTTP/1.1 200 OK\r\n\r\npartial")  # close-delimited
    conn.drain()
    conn.cut_off()
    assert transport.aborted  # never a FIN that would read as the body's end


async def test_a_gateway_answer_to_a_request_with_a_body_says_connection_close(
    services: Services,
) -> None:
    """The body is not read, so the connection ends after the answer: the head says so. The
    close lingers: half-closed, the body read and dropped, closed at the client's end."""
    conn, transport = connect(services)
    conn.data_received(
        b"GET /healthz HTTP/1.1\r\nHost: localhost:8080\r\nContent-Length: 3\r\n\r\n"
    )
    assert status_of(transport.written) == 200
    assert b"\r\nConnection: close\r\n" in transport.written
    assert transport.eof_written
    assert not transport.closed
    answer = transport.written
    conn.data_received(b"abc")  # the body: dropped, nothing more said
    assert transport.written == answer
    assert conn.eof_received() is False  # the client is done: the transport closes


async def test_a_gateway_answer_after_the_whole_request_closes_without_lingering(
    services: Services,
) -> None:
    conn, transport = connect(services)
    conn.data_received(
        b"GET /healthz HTTP/1.1\r\nHost: localhost:8080\r\nConnection: close\r\n\r\n"
    )
    assert status_of(transport.written) == 200
    assert transport.closed
    assert conn.linger is None
