"""The controller (gateway/controller.py, controller_auth.py) against a real HTTP double
(testing/controller.py): answers read as SPEC says, failing closed, the cache of allows
during an outage, names reserved for accounts, and the failed-auth rule."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterator

import pytest

from tunnelgate.errors import ControllerUnavailable
from tunnelgate.gateway.auth import Identity, Refusal, Wanted
from tunnelgate.gateway.controller import Allowed, ControllerClient, Denied, read_answer
from tunnelgate.gateway.controller_auth import ControllerAuth, ControllerPolicy
from tunnelgate.gateway.ratelimit import FailedAuthLimiter
from tunnelgate.gateway.reservations import Reservations
from tunnelgate.proto.codes import RejectReason
from tunnelgate.testing.clock import FakeClock
from tunnelgate.testing.controller import ControllerDouble
from tunnelgate.testing.processes import free_port

CLIENT = "198.51.100.7:4000"
TIMEOUT = 0.5
"""--controller-timeout in these tests: short, so a stalled controller costs little."""


def want(name: str | None = None, port: int | None = None, client: str = CLIENT) -> Wanted:
    return Wanted("tcp" if port is not None else "http", name, port, client)


# --- answers, sans-IO ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("status", "body", "expected"),
    [
        (200, b'{"allow": true, "account": "acme", "names": ["Shop", "www2"]}',
         Allowed("acme", ("shop", "www2"))),
        (200, b'{"allow": true, "account": "acme"}', Allowed("acme")),
        (200, b'{"allow": false, "reason": "suspended"}', Denied("suspended")),
        (200, b'{"allow": false}', Denied("the controller refused")),
        (200, b'{"allow": false, "reason": "two\\nlines\\u001b[31m"}', Denied("two lines [31m")),
        (403, b'{"reason": "over quota"}', Denied("over quota")),
        (404, b"<html>not found</html>", Denied("the controller answered 404")),
    ],
    ids=["allow", "allow-no-names", "deny", "deny-no-reason", "deny-control-chars", "403", "404"],
)  # fmt: skip
def test_answers(status: int, body: bytes, expected: Allowed | Denied) -> None:
    assert read_answer(status, body) == expected


@pytest.mark.parametrize(
    ("status", "body", "problem"),
    [
        (500, b'{"allow": true, "account": "a"}', "the controller answered 500"),
        (503, b"", "the controller answered 503"),
        (302, b"", "the controller answered 302"),
        (204, b"", "the controller answered 204"),
        (200, b"allow", "not JSON"),
        (200, b'{"allow": "yes"}', '"allow": true or false'),
        (200, b'{"allow": true}', "names no account"),
        (200, b'{"allow": true, "account": ""}', "names no account"),
        (200, b'{"allow": true, "account": "a", "names": ["no.dots"]}', "not a name"),
        (200, b'{"allow": true, "account": "a", "names": "shop"}', "not a list"),
    ],
)
def test_anything_else_is_unavailable(status: int, body: bytes, problem: str) -> None:
    with pytest.raises(ControllerUnavailable, match=problem):
        read_answer(status, body)


# --- the client, over HTTP ----------------------------------------------------------------------
@pytest.fixture
def controller() -> Iterator[ControllerDouble]:
    with ControllerDouble() as double:
        yield double


@pytest.fixture
async def client(controller: ControllerDouble) -> AsyncIterator[ControllerClient]:
    client = ControllerClient(controller.url + "/", TIMEOUT)
    yield client
    await client.aclose()


async def test_the_request_is_specs(controller: ControllerDouble, client: ControllerClient) -> None:
    controller.allow("tok", "acme")
    await client.ask("tok", want("web"))
    await client.ask("tok", want(port=20001, client="2001:db8::1:5000"))  # as the edge says
    await client.ask("tok", want(None))
    assert controller.requests == [
        {"token": "tok", "protocol": "http", "name": "web", "client_addr": "198.51.100.7"},
        {"token": "tok", "protocol": "tcp", "port": 20001, "client_addr": "2001:db8::1"},
        {"token": "tok", "protocol": "http", "name": None, "client_addr": "198.51.100.7"},
    ]


async def test_one_connection_is_reused(
    controller: ControllerDouble, client: ControllerClient
) -> None:
    controller.allow("tok", "acme")
    for name in ("a", "b", "c"):
        assert await client.ask("tok", want(name)) == Allowed("acme")
    assert len({received.peer for received in controller.received}) == 1


async def test_allow_deny_and_4xx(controller: ControllerDouble, client: ControllerClient) -> None:
    controller.allow("good", "acme", names=["shop"])
    controller.deny("gone", "account suspended")
    controller.answer("quota", 429, {"reason": "over quota"})
    assert await client.ask("good", want("web")) == Allowed("acme", ("shop",))
    assert await client.ask("gone", want("web")) == Denied("account suspended")
    assert await client.ask("quota", want("web")) == Denied("over quota")
    assert await client.ask("unknown", want("web")) == Denied("unknown token")


async def test_5xx_is_unavailable(controller: ControllerDouble, client: ControllerClient) -> None:
    controller.down = True
    with pytest.raises(ControllerUnavailable, match="the controller answered 503"):
        await client.ask("tok", want("web"))


async def test_a_stalled_controller_times_out(
    controller: ControllerDouble, client: ControllerClient
) -> None:
    controller.stall("tok", 5.0)
    started = time.monotonic()
    with pytest.raises(ControllerUnavailable, match=r"no answer within 0\.5s"):
        await client.ask("tok", want("web"))
    assert TIMEOUT <= time.monotonic() - started < TIMEOUT + 1.0


async def test_a_controller_that_is_not_there() -> None:
    client = ControllerClient(f"http://127.0.0.1:{free_port()}", TIMEOUT)
    try:
        with pytest.raises(ControllerUnavailable, match="Cannot connect"):
            await client.ask("tok", want("web"))
    finally:
        await client.aclose()


# --- the authenticator and its check --------------------------------------------------------
class Setup:
    """A ControllerAuth on the double, with a fake clock and a shared failure limiter."""

    def __init__(self, controller: ControllerDouble, cache_ttl: float = 60.0) -> None:
        self.controller = controller
        self.clock = FakeClock()
        self.failures = FailedAuthLimiter(3)
        self.reservations = Reservations()
        self.auth = ControllerAuth(
            ControllerClient(controller.url, TIMEOUT),
            self.reservations,
            self.failures,
            ControllerPolicy(cache_ttl=cache_ttl),
            clock=self.clock.time,
        )

    async def connect(self, token: str | None, client: str = CLIENT) -> Identity | None:
        return await self.auth.authenticate(token, client)

    async def register(self, token: str, wanted: Wanted) -> Identity | Refusal:
        identity = await self.connect(token, wanted.client_addr)
        assert identity is not None
        assert identity.check is not None
        return await identity.check.authorize(identity, wanted)


@pytest.fixture
async def setup(controller: ControllerDouble) -> AsyncIterator[Setup]:
    setup = Setup(controller)
    yield setup
    await setup.auth.aclose()


async def test_connect_takes_any_token_and_keeps_it_to_itself(setup: Setup) -> None:
    identity = await setup.connect("tok-secret-value")
    assert identity is not None
    assert "tok-secret-value" not in repr(identity)
    assert identity.principal.startswith("token:")
    assert await setup.connect(None) is None
    assert setup.controller.requests == []  # nobody asked at /connect


async def test_an_allow_names_the_account(setup: Setup) -> None:
    setup.controller.allow("tok", "acme")
    granted = await setup.register("tok", want("web"))
    assert isinstance(granted, Identity)
    assert (granted.principal, granted.account) == ("account:acme", "acme")


async def test_denials_and_outages(setup: Setup) -> None:
    setup.controller.deny("gone", "account suspended")
    assert await setup.register("gone", want("web")) == Refusal(
        RejectReason.NOT_AUTHORIZED, "account suspended"
    )
    setup.controller.down = True
    refusal = await setup.register("tok", want("web"))
    assert refusal == Refusal(
        RejectReason.CONTROLLER_UNAVAILABLE, "controller unavailable: the controller answered 503"
    )


async def test_the_cache_carries_reconnects_through_an_outage(setup: Setup) -> None:
    setup.controller.allow("tok", "acme")
    assert isinstance(await setup.register("tok", want("web")), Identity)
    setup.controller.down = True
    setup.clock.advance(59.0)
    again = await setup.register("tok", want("web"))  # the same registration: reused
    assert isinstance(again, Identity)
    assert again.account == "acme"
    other = await setup.register("tok", want("blog"))  # never allowed: fail closed
    assert isinstance(other, Refusal)
    assert other.reason is RejectReason.CONTROLLER_UNAVAILABLE
    setup.clock.advance(2.0)  # past the TTL: asked again, and it is still down
    late = await setup.register("tok", want("web"))
    assert isinstance(late, Refusal)
    assert late.reason is RejectReason.CONTROLLER_UNAVAILABLE
    assert len(setup.controller.requests) == 3


async def test_a_cached_allow_is_not_asked_again(setup: Setup) -> None:
    setup.controller.allow("tok", "acme")
    for _ in range(3):
        assert isinstance(await setup.register("tok", want("web")), Identity)
    assert len(setup.controller.requests) == 1


async def test_denials_are_not_cached(setup: Setup) -> None:
    setup.controller.deny("tok", "not yet")
    assert isinstance(await setup.register("tok", want("web")), Refusal)
    setup.controller.allow("tok", "acme")  # the account was just set up
    assert isinstance(await setup.register("tok", want("web")), Identity)


async def test_no_cache_with_ttl_0(controller: ControllerDouble) -> None:
    setup = Setup(controller, cache_ttl=0.0)
    try:
        controller.allow("tok", "acme")
        for _ in range(2):
            assert isinstance(await setup.register("tok", want("web")), Identity)
        assert len(controller.requests) == 2
    finally:
        await setup.auth.aclose()


async def test_reserved_names_go_to_their_account_only(setup: Setup) -> None:
    setup.controller.allow("acme-token", "acme", names=["shop"])
    setup.controller.allow("bob-token", "bob")  # a lax controller allows bob anything
    assert isinstance(await setup.register("acme-token", want("acme-web")), Identity)
    refusal = await setup.register("bob-token", want("shop"))
    assert refusal == Refusal(RejectReason.NAME_RESERVED, "'shop' is reserved for another account")
    assert isinstance(await setup.register("acme-token", want("shop")), Identity)
    identity = await setup.connect("bob-token")
    assert identity is not None
    assert identity.check is not None
    assert identity.check.reserved_for_other("shop", Identity("account:bob"))


async def test_denials_count_as_failed_auth_and_then_nobody_is_asked(setup: Setup) -> None:
    setup.controller.allow("known", "acme")
    assert isinstance(await setup.register("known", want("web")), Identity)
    for guess in ("g1", "g2", "g3"):  # the limiter allows 3 a minute
        assert isinstance(await setup.register(guess, want("web")), Refusal)
    asked = len(setup.controller.requests)
    # On cool-down: an unknown token is refused at /connect (429 there) and not asked...
    assert await setup.connect("g4") is None
    # ...while a token the controller allowed before still gets through, and is asked.
    again = await setup.register("known", want("blog"))
    assert isinstance(again, Identity)
    assert len(setup.controller.requests) == asked + 1
    # Another address is not on cool-down.
    assert await setup.connect("g4", "203.0.113.9:1000") is not None


async def test_an_open_connection_is_not_asked_for_once_its_address_cools_down(
    setup: Setup,
) -> None:
    identity = await setup.connect("guess")
    assert identity is not None
    assert identity.check is not None
    for guess in ("g1", "g2", "g3"):
        assert isinstance(await setup.register(guess, want("web")), Refusal)
    asked = len(setup.controller.requests)
    refusal = await identity.check.authorize(identity, want("web"))
    assert refusal == Refusal(
        RejectReason.NOT_AUTHORIZED,
        "too many failed authentications from this address; retry later",
    )
    assert len(setup.controller.requests) == asked


async def test_a_known_tokens_denials_do_not_count(setup: Setup) -> None:
    setup.controller.allow("tok", "acme", only=["web"])
    assert isinstance(await setup.register("tok", want("web")), Identity)
    for name in ("a", "b", "c", "d"):  # the account asks for names it may not have
        assert isinstance(await setup.register("tok", want(name)), Refusal)
    assert await setup.connect("someone-else") is not None  # the address is not cooling
