"""One order's steps (acme_order.issue) against a scripted CA session: what pebble does not
choose to do on cue (a reused authorization, a slow issuance, an order gone invalid), and
that the challenge answers are withdrawn however the order ends."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import pytest

from tunnelgate.errors import AcmeError
from tunnelgate.gateway.acme_client import Authorization, Challenge, Order
from tunnelgate.gateway.acme_order import issue
from tunnelgate.gateway.acme_schedule import AcmeBounds

HOST = "app.example.test"
BOUNDS = AcmeBounds(poll_interval=0.001, max_poll_interval=0.01)
CHALLENGE = Challenge(
    url="https://ca/chall/1",
    token="tok1",
    key_authorization=b"tok1.thumb",
    _body=None,  # type: ignore[arg-type]  # the fake session never reads it
    _response=None,  # type: ignore[arg-type]
)


def order(status: str, **changes: object) -> Order:
    base = Order(
        url="https://ca/order/1",
        status=status,
        authorizations=("https://ca/authz/1",),
        finalize_url="https://ca/order/1/finalize",
        certificate_url=None,
        problem=None,
        retry_after=None,
    )
    return replace(base, **changes)  # type: ignore[arg-type]


def authorization(status: str, problem: str | None = None) -> Authorization:
    return Authorization(
        url="https://ca/authz/1",
        status=status,
        host=HOST,
        challenge=CHALLENGE,
        problem=problem,
        retry_after=None,
    )


@dataclass
class FakeSession:
    """Answers in the order a script gives them; records the calls."""

    authorizations: list[Authorization]
    orders: list[Order]
    calls: list[str] = field(default_factory=list)

    def new_order(self, host: str, csr_pem: bytes) -> Order:
        assert b"CERTIFICATE REQUEST" in csr_pem
        self.calls.append("new_order")
        return order("pending")

    def authorization(self, url: str) -> Authorization:
        self.calls.append("authorization")
        return self.authorizations.pop(0)

    def answer(self, challenge: Challenge) -> None:
        self.calls.append("answer")

    def finalize(self, order: Order, csr_pem: bytes) -> Order:
        self.calls.append("finalize")
        return self.orders.pop(0)

    def order(self, url: str) -> Order:
        self.calls.append("order")
        return self.orders.pop(0)

    def certificate(self, url: str) -> bytes:
        self.calls.append("certificate")
        return b"-----BEGIN CERTIFICATE-----\n"


@dataclass
class Board:
    answers: dict[str, bytes] = field(default_factory=dict)
    seen: dict[str, bytes] = field(default_factory=dict)

    def publish(self, token: str, key_authorization: bytes) -> None:
        self.answers[token] = self.seen[token] = key_authorization

    def withdraw(self, token: str) -> None:
        del self.answers[token]


async def test_the_whole_dance_with_a_slow_issuance() -> None:
    done = order("valid", certificate_url="https://ca/cert/1")
    session = FakeSession(
        authorizations=[authorization("pending"), authorization("pending"), authorization("valid")],
        orders=[order("ready"), order("processing", retry_after=0.0), order("processing"), done],
    )
    board = Board()
    chain, key = await issue(session, HOST, board, BOUNDS)
    assert chain.startswith(b"-----BEGIN CERTIFICATE-----")
    assert key.startswith(b"-----BEGIN PRIVATE KEY-----")
    assert board.seen == {"tok1": b"tok1.thumb"}
    assert board.answers == {}  # withdrawn
    assert session.calls == [
        "new_order",
        "authorization",
        "answer",
        "authorization",
        "authorization",
        "order",
        "finalize",
        "order",
        "order",
        "certificate",
    ]


async def test_an_authorization_the_ca_reuses_needs_no_challenge() -> None:
    done = order("valid", certificate_url="https://ca/cert/1")
    session = FakeSession([authorization("valid")], [order("ready"), done])
    board = Board()
    await issue(session, HOST, board, BOUNDS)
    assert "answer" not in session.calls
    assert board.seen == {}


async def test_a_failed_validation_is_refused_with_the_cas_words() -> None:
    failed = authorization("invalid", "incorrectResponse: the key authorization did not match")
    session = FakeSession([authorization("pending"), failed], [])
    board = Board()
    with pytest.raises(AcmeError) as caught:
        await issue(session, HOST, board, BOUNDS)
    assert caught.value.kind == "refused"
    assert "http-01 validation invalid: incorrectResponse" in str(caught.value)
    assert board.answers == {}  # withdrawn on failure too


async def test_an_order_that_goes_invalid_is_refused() -> None:
    invalid = order("invalid", problem="badCSR: key too small")
    session = FakeSession([authorization("valid")], [order("ready"), invalid])
    with pytest.raises(AcmeError, match="the order is invalid: badCSR: key too small"):
        await issue(session, HOST, Board(), BOUNDS)


async def test_a_ca_without_http01_is_refused() -> None:
    offered = replace(authorization("pending"), challenge=None)
    session = FakeSession([offered], [])
    with pytest.raises(AcmeError, match="offers no http-01 challenge"):
        await issue(session, HOST, Board(), BOUNDS)
