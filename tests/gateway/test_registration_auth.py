"""Registrations authorized (gateway/registrar.py): a token's bounds on names and ports, the
controller's account as the owner, and checks in order, on a real session and
TunnelConnection over a fake WebSocket (as test_session_component.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any, cast

import pytest
from fakes import Services, SessionLink

from tunnelgate.gateway.auth import Identity, Refusal, Wanted
from tunnelgate.gateway.controller import ControllerClient
from tunnelgate.gateway.controller_auth import ControllerAuth
from tunnelgate.gateway.ratelimit import FailedAuthLimiter
from tunnelgate.gateway.reservations import Reservations
from tunnelgate.gateway.routes import Route
from tunnelgate.gateway.session import GatewaySession
from tunnelgate.gateway.tcp import TcpPorts
from tunnelgate.proto.codes import RejectReason
from tunnelgate.proto.messages import Register, Registered, Rejected
from tunnelgate.testing.controller import ControllerDouble
from tunnelgate.testing.processes import free_port_range

BOUND = Identity("jwt:carol", account="carol", names=("web", "team-*"), ports=())


async def answer(services: Services, identity: Identity, request: Register) -> Any:
    session = GatewaySession(cast(Any, services), "198.51.100.1:4000", identity)
    link = SessionLink(session)
    session.attach(link.connection)
    session.on_control(request)
    await services.live.run_spawned()
    await link.settle()
    (message,) = link.sent
    return message


def http(name: str | None, tid: int = 1) -> Register:
    return Register(id=tid, protocol="http", name=name, client_id="c1")


def tcp(port: int | None, tid: int = 1, client_id: str = "c1") -> Register:
    return Register(id=tid, protocol="tcp", port=port, client_id=client_id)


@pytest.fixture
async def services() -> Services:
    return Services(reconnect_grace=30.0)


@pytest.mark.parametrize("name", ["web", "team-red", "Team-Blue"])
async def test_a_bound_token_takes_its_names(services: Services, name: str) -> None:
    message = await answer(services, BOUND, http(name))
    assert isinstance(message, Registered)
    route = services.routes.get(name.lower(), 0.0)
    assert isinstance(route, Route)
    assert route.principal == "jwt:carol"


@pytest.mark.parametrize(
    ("name", "detail"),
    [
        ("blog", "'blog' is not a name this token may take (allowed: web, team-*)"),
        (None, "this token may take only the names web, team-*: ask for one (--subdomain)"),
    ],
)
async def test_a_bound_token_is_refused_other_names(
    services: Services, name: str | None, detail: str
) -> None:
    message = await answer(services, BOUND, http(name))
    assert message == Rejected(1, RejectReason.NOT_AUTHORIZED, detail)
    assert await services.registry.count("jwt:carol") == 0


async def test_invalid_and_reserved_names_are_refused_before_the_bounds(
    services: Services,
) -> None:
    assert (await answer(services, BOUND, http("no_way"))).reason is RejectReason.NAME_INVALID
    assert (await answer(services, BOUND, http("www"))).reason is RejectReason.NAME_RESERVED


async def test_the_claims_max_tunnels_is_the_owners_limit(services: Services) -> None:
    capped = Identity("jwt:erin", max_tunnels=1)
    assert isinstance(await answer(services, capped, http("one")), Registered)
    second = await answer(services, capped, http("two"))
    assert second.reason is RejectReason.TOO_MANY_TUNNELS


# --- ports --------------------------------------------------------------------------------------
@pytest.fixture
async def tcp_services() -> AsyncIterator[tuple[Services, int, int]]:
    low, high = free_port_range(3)
    services = Services(reconnect_grace=30.0)
    ports = TcpPorts(cast(Any, services), "127.0.0.1", low, high)
    services.tcp = cast(Any, ports)
    yield services, low, high
    ports.close_all()


async def test_a_bound_token_takes_its_ports_only(tcp_services: tuple[Services, int, int]) -> None:
    services, low, high = tcp_services
    identity = Identity("jwt:carol", ports=(high,))
    refused = await answer(services, identity, tcp(low))
    detail = f"port {low} is not one this token may take (allowed: {high})"
    assert refused == Rejected(1, RejectReason.NOT_AUTHORIZED, detail)
    taken = await answer(services, identity, tcp(high))
    assert taken == Registered(1, f"tcp://localhost:{high}", port=high)


async def test_a_bound_token_asking_any_port_gets_one_of_its_own(
    tcp_services: tuple[Services, int, int],
) -> None:
    services, low, high = tcp_services
    identity = Identity("jwt:carol", ports=(1, high))  # 1 is outside the range
    taken = await answer(services, identity, tcp(None))
    assert isinstance(taken, Registered)
    assert taken.port == high
    # Another client of the same account (the same client would take its port back).
    again = await answer(services, identity, tcp(None, client_id="c2"))
    assert again == Rejected(
        1, RejectReason.PORT_TAKEN, f"no port this token may take is free in {low}-{high}"
    )


async def test_tunnels_of_one_connection_never_share_a_port(
    tcp_services: tuple[Services, int, int],
) -> None:
    # The registry lets a client take its own online port again (a reconnect it noticed
    # first): its other tunnels on the same connection must not take it that way.
    services, low, high = tcp_services
    session = GatewaySession(cast(Any, services), "198.51.100.1:4000", Identity("token:alice"))
    link = SessionLink(session)
    session.attach(link.connection)
    for tid, port in ((1, None), (2, None), (3, None), (4, None), (5, low)):
        session.on_control(tcp(port, tid))
    await services.live.run_spawned()
    await link.settle()
    taken = [m for m in link.sent[:3] if isinstance(m, Registered)]
    ports = sorted(m.port or 0 for m in taken)
    assert ports == list(range(low, high + 1))  # three tunnels, three ports
    assert link.sent[3] == Rejected(
        4, RejectReason.PORT_TAKEN, f"no free port left in {low}-{high}"
    )
    assert link.sent[4] == Rejected(5, RejectReason.PORT_TAKEN, f"port {low} is already yours here")
    tcp_ports = cast(TcpPorts, services.tcp)
    assert sorted(route.port for route in tcp_ports.routes()) == ports


async def test_a_port_out_of_range_is_refused_before_the_bounds(
    tcp_services: tuple[Services, int, int],
) -> None:
    services, _, _ = tcp_services
    refused = await answer(services, Identity("jwt:carol", ports=(1,)), tcp(1))
    assert refused.reason is RejectReason.PORT_OUT_OF_RANGE


# --- checks: the controller, the reservations ---------------------------------------------------
class Recording:
    """A RegistrationCheck that records what it was asked and answers as told."""

    def __init__(self, outcome: Identity | Refusal) -> None:
        self.outcome = outcome
        self.asked: list[Wanted] = []

    async def authorize(self, identity: Identity, wanted: Wanted) -> Identity | Refusal:
        self.asked.append(wanted)
        return self.outcome

    def reserved_for_other(self, name: str, identity: Identity) -> bool:
        return False


async def test_the_check_is_asked_after_the_local_checks(services: Services) -> None:
    check = Recording(Identity("account:acme", account="acme"))
    identity = Identity("token:x", names=("web",), check=check)
    assert (await answer(services, identity, http("www"))).reason is RejectReason.NAME_RESERVED
    assert (await answer(services, identity, http("blog"))).reason is RejectReason.NOT_AUTHORIZED
    assert check.asked == []
    assert isinstance(await answer(services, identity, http("Web")), Registered)
    assert check.asked == [Wanted("http", "web", None, "198.51.100.1:4000")]
    route = services.routes.get("web", 0.0)
    assert isinstance(route, Route)
    assert route.principal == "account:acme"  # the owner the check named
    assert await services.registry.count("account:acme") == 1


async def test_the_checks_refusal_is_sent_as_it_is(services: Services) -> None:
    check = Recording(Refusal(RejectReason.CONTROLLER_UNAVAILABLE, "controller unavailable: x"))
    message = await answer(services, Identity("token:x", check=check), http("web"))
    assert message == Rejected(1, RejectReason.CONTROLLER_UNAVAILABLE, "controller unavailable: x")


async def test_random_names_skip_names_reserved_for_others(
    services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    reservations = Reservations()
    reservations.update("account:acme", ["aaaaaaaaaa"])
    picks = iter(["aaaaaaaaaa", "bbbbbbbbbb"])
    monkeypatch.setattr("tunnelgate.gateway.registrar.random_name", lambda n: next(picks))
    message = await answer(services, Identity("token:x", check=reservations), http(None))
    assert message == Registered(1, "http://bbbbbbbbbb.localhost:8080", name="bbbbbbbbbb")


@pytest.fixture
def controller() -> Iterator[ControllerDouble]:
    with ControllerDouble() as double:
        yield double


async def test_a_controller_account_owns_its_tunnels(
    services: Services, controller: ControllerDouble
) -> None:
    auth = ControllerAuth(
        ControllerClient(controller.url, 2.0), Reservations(), FailedAuthLimiter(20)
    )
    try:
        controller.allow("acme-token", "acme", names=["shop"])
        controller.allow("bob-token", "bob")
        acme = await auth.authenticate("acme-token", "198.51.100.1:4000")
        bob = await auth.authenticate("bob-token", "198.51.100.1:4000")
        assert acme is not None
        assert bob is not None
        assert isinstance(await answer(services, acme, http("acme-web")), Registered)
        route = services.routes.get("acme-web", 0.0)
        assert isinstance(route, Route)
        assert route.principal == "account:acme"
        refused = await answer(services, bob, http("shop"))
        assert refused == Rejected(
            1, RejectReason.NAME_RESERVED, "'shop' is reserved for another account"
        )
    finally:
        await auth.aclose()
