"""A tunnel session on the gateway, on a real TunnelConnection over a fake WebSocket:
registration, rejections, and what a connection's end does to its names."""

from __future__ import annotations

import asyncio
from typing import Any, cast

import pytest
from fakes import Services, SessionLink

from tunnelgate import limits
from tunnelgate.gateway.auth import Identity
from tunnelgate.gateway.routes import Held, Route
from tunnelgate.gateway.session import GatewaySession
from tunnelgate.proto.codes import ErrorCode, RejectReason
from tunnelgate.proto.messages import Register, Registered, Rejected
from tunnelgate.testing.proc import poll_until_async
from tunnelgate.transport.tunnel import ConnectionEnd

ALICE = Identity("token:alice")


def open_session(
    services: Services, identity: Identity = ALICE
) -> tuple[GatewaySession, SessionLink]:
    session = GatewaySession(cast(Any, services), "198.51.100.1:4000", identity)
    link = SessionLink(session)
    session.attach(link.connection)
    return session, link


async def settle(services: Services, *links: SessionLink) -> None:
    """Run the registrations spawned so far, then collect what went to each client."""
    await services.live.run_spawned()
    for link in links:
        await link.settle()


def register(tid: int, name: str | None, client_id: str = "c1") -> Register:
    return Register(id=tid, protocol="http", name=name, client_id=client_id)


@pytest.fixture
async def services() -> Services:
    return Services(reconnect_grace=30.0)


async def test_a_registration_gets_its_name_and_a_route(services: Services) -> None:
    session, connection = open_session(services)
    session.on_control(register(1, "Web"))
    await settle(services, connection)
    (answer,) = connection.sent
    assert answer == Registered(1, "http://web.localhost:8080", name="web")
    route = services.routes.get("web", 0.0)
    assert isinstance(route, Route)
    assert route.target is connection.connection
    assert route.principal == "token:alice"  # the principal, never the token
    assert session in services.live.sessions


async def test_answers_keep_the_order_of_the_registrations(services: Services) -> None:
    session, connection = open_session(services)
    for tid, name in ((1, "a"), (2, "www"), (3, None), (4, "a")):
        session.on_control(register(tid, name))
    await settle(services, connection)
    assert [m.id for m in connection.sent] == [1, 2, 3, 4]
    assert [type(m) for m in connection.sent] == [Registered, Rejected, Registered, Rejected]
    assert not connection.closed  # some tunnels live on it


async def test_a_connection_left_with_no_tunnel_is_closed(services: Services) -> None:
    session, connection = open_session(services)
    session.on_control(register(1, "www"))
    await settle(services, connection)
    (answer,) = connection.sent
    assert isinstance(answer, Rejected)
    assert answer.reason is RejectReason.NAME_RESERVED
    assert connection.closed
    assert connection.close_code == ErrorCode.NO_ERROR


async def test_too_many_registrations_is_a_flood(services: Services) -> None:
    session, connection = open_session(services)
    for tid in range(1, limits.MAX_REGISTRATIONS_PER_CONNECTION + 2):
        session.on_control(register(tid, "www"))
    assert connection.closed
    assert connection.close_code == ErrorCode.ENHANCE_YOUR_CALM
    await settle(services, connection)
    assert connection.sent == []  # closed before the answers went out


async def test_per_owner_limit_counts_across_connections(services: Services) -> None:
    capped = Identity("token:capped", max_tunnels=1)
    first, _ = open_session(services, capped)
    first.on_control(register(1, "one", client_id="c1"))
    await services.live.run_spawned()
    second, two = open_session(services, capped)
    second.on_control(register(1, "two", client_id="c2"))
    await settle(services, two)
    (answer,) = two.sent
    assert isinstance(answer, Rejected)
    assert answer.reason is RejectReason.TOO_MANY_TUNNELS


async def test_a_goodbye_frees_the_names_at_once(services: Services) -> None:
    session, _ = open_session(services)
    session.on_control(register(1, "web"))
    await services.live.run_spawned()
    session.on_closed(ConnectionEnd(ErrorCode.NO_ERROR, "goodbye", by_peer=True))
    await services.live.run_spawned()
    assert services.routes.get("web", 0.0) is None
    assert await services.registry.lookup("web") is None
    assert session not in services.live.sessions


@pytest.mark.parametrize(
    "end",
    [
        ConnectionEnd(None, "connection lost", by_peer=False),
        ConnectionEnd(ErrorCode.SHUTDOWN, "gateway shutting down", by_peer=False),
        ConnectionEnd(ErrorCode.PROTOCOL_ERROR, "bad frame", by_peer=False),
    ],
    ids=["dropped", "shutdown", "protocol-error"],
)
async def test_any_other_end_holds_the_names_for_their_owner(
    services: Services, end: ConnectionEnd
) -> None:
    session, _ = open_session(services)
    session.on_control(register(1, "web"))
    await services.live.run_spawned()
    session.on_closed(end)
    assert isinstance(services.routes.get("web", 0.0), Held)  # at once: 502 from now on
    await services.live.run_spawned()
    state = await services.registry.lookup("web")
    assert state is not None
    assert not state.online
    # Its owner (another client process, same principal) takes it back.
    again, connection = open_session(services)
    again.on_control(register(1, "web", client_id="c2"))
    await settle(services, connection)
    assert isinstance(connection.sent[0], Registered)
    assert isinstance(services.routes.get("web", 0.0), Route)


async def test_a_registration_that_completes_after_the_close_is_given_back(
    services: Services,
) -> None:
    session, connection = open_session(services)
    session.on_control(register(1, "late"))
    connection.connection.close(ErrorCode.NO_ERROR, "gone")  # before the registry answered
    await settle(services, connection)
    assert connection.sent == []
    assert await services.registry.lookup("late") is None
    assert services.routes.get("late", 0.0) is None


class Stream:
    """A public side that records whether its stream was cut."""

    def __init__(self) -> None:
        self.resets: list[int] = []

    def on_data(self, data: bytes) -> None:
        pass

    def on_end(self) -> None:
        pass

    def on_reset(self, code: int) -> None:
        self.resets.append(code)

    def on_writable(self) -> None:
        pass


async def test_a_leaving_client_frees_its_names_and_keeps_its_streams(
    services: Services,
) -> None:
    """The client's GOAWAY NO_ERROR with a stream in flight (its drain): the names are free
    at once, the stream finishes, then the connection closes."""
    session, link = open_session(services)
    session.on_control(register(1, "web"))
    await settle(services, link)
    stream = Stream()
    sid = link.connection.open_stream(b"", stream)
    await link.settle()  # the client has the OPEN
    peer = link.harness.peer
    peer.go_away(ErrorCode.NO_ERROR, "client shutting down")
    link.harness.deliver()
    assert services.routes.get("web", 0.0) is None  # new requests: 404 from now on
    await services.live.run_spawned()
    assert await services.registry.lookup("web") is None  # another client may take it
    assert not link.closed
    session.on_control(register(2, "late"))  # nothing more is registered for it
    await settle(services, link)
    assert services.routes.get("late", 0.0) is None
    # The stream ends both ways; the connection is closed soon after, cleanly.
    link.connection.end(sid)
    peer.send_data(sid, b"", end_stream=True)
    link.harness.deliver()
    await poll_until_async(lambda: link.closed, 10 * limits.DRAIN_CHECK_INTERVAL)
    assert link.close_code == ErrorCode.NO_ERROR
    assert stream.resets == []
    await asyncio.sleep(0)  # the WebSocket's end reaches the session
    assert session not in services.live.sessions


async def test_a_leaving_client_gets_no_longer_than_our_drain_timeout() -> None:
    services = Services(reconnect_grace=30.0, drain_timeout=0.3)
    session, link = open_session(services)
    session.on_control(register(1, "web"))
    await settle(services, link)
    stream = Stream()
    link.connection.open_stream(b"", stream)
    await link.settle()
    loop = asyncio.get_running_loop()
    said = loop.time()
    link.harness.peer.go_away(ErrorCode.NO_ERROR, "client shutting down")
    link.harness.deliver()
    await poll_until_async(lambda: link.closed, 0.3 + 10 * limits.DRAIN_CHECK_INTERVAL)
    assert loop.time() - said >= 0.3
    await asyncio.sleep(0)  # the WebSocket's end reaches the stream: cut off
    assert stream.resets == [ErrorCode.INTERNAL_ERROR]
    await services.live.run_spawned()
    assert await services.registry.lookup("web") is None
