"""One ACME order for one host, HTTP-01, from a new key to the certificate chain.

    chain_pem, key_pem = await issue(session, host, board, bounds)

RFC 8555 section 7.4: new order -> for each pending authorization, publish the key
authorization of its HTTP-01 challenge (`board`: what the HTTP listener serves at
/.well-known/acme-challenge/<token>) and tell the CA to look -> poll until the CA has
looked -> finalize with a CSR -> poll until issued -> download. An authorization the
CA already holds as valid (reused from an earlier order) needs no challenge.

Each CA call is one blocking exchange (acme_client.py) run in a worker thread; every
wait is an asyncio sleep, so cancelling the order (shutdown, its deadline, which the
caller sets) stops it at once, but for the one exchange in flight. The challenge
tokens are withdrawn however the order ends.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Protocol, TypeVar

from tunnelgate.errors import AcmeError
from tunnelgate.logs import EventLog

from .acme_client import (
    PENDING,
    PROCESSING,
    READY,
    VALID,
    Authorization,
    Challenge,
    Order,
    make_csr,
)
from .acme_schedule import AcmeBounds
from .acme_store import new_key

log = EventLog("tunnelgate.gateway.acme")
T = TypeVar("T")


class CaSession(Protocol):
    """What an order needs of acme_client.AcmeSession (tests use a fake)."""

    def new_order(self, host: str, csr_pem: bytes) -> Order: ...
    def authorization(self, url: str) -> Authorization: ...
    def answer(self, challenge: Challenge) -> None: ...
    def finalize(self, order: Order, csr_pem: bytes) -> Order: ...
    def order(self, url: str) -> Order: ...
    def certificate(self, url: str) -> bytes: ...


class ChallengeBoard(Protocol):
    """Where pending HTTP-01 answers are published for the HTTP listener."""

    def publish(self, token: str, key_authorization: bytes) -> None: ...
    def withdraw(self, token: str) -> None: ...


async def issue(
    session: CaSession, host: str, board: ChallengeBoard, bounds: AcmeBounds
) -> tuple[bytes, bytes]:
    """The chain (PEM, as the CA sent it) and its new key (PEM) for `host`."""
    key_pem = new_key()
    csr_pem = make_csr(host, key_pem)
    order = await _call(session.new_order, host, csr_pem)
    log.info("acme_order_created", host=host, order=order.url, status=order.status)
    published: list[str] = []
    try:
        pending = []
        for url in order.authorizations:
            authorization = await _call(session.authorization, url)
            if authorization.status == VALID:
                continue  # the CA reused an authorization it already holds
            challenge = _http01(authorization)
            board.publish(challenge.token, challenge.key_authorization)
            published.append(challenge.token)
            await _call(session.answer, challenge)
            pending.append(url)
        for url in pending:
            await _until_validated(session, url, bounds)
        certificate_url = await _until_issued(session, order, csr_pem, bounds)
    finally:
        for token in published:
            board.withdraw(token)
    chain_pem = await _call(session.certificate, certificate_url)
    return chain_pem, key_pem


def _http01(authorization: Authorization) -> Challenge:
    if authorization.status != PENDING:
        why = authorization.problem or "no reason given"
        raise AcmeError("refused", f"{authorization.host}: {authorization.status} ({why})")
    if authorization.challenge is None:
        raise AcmeError("refused", f"{authorization.host}: the CA offers no http-01 challenge")
    return authorization.challenge


async def _until_validated(session: CaSession, url: str, bounds: AcmeBounds) -> None:
    while True:
        authorization = await _call(session.authorization, url)
        if authorization.status == VALID:
            return
        if authorization.status != PENDING:
            why = authorization.problem or "no reason given"
            raise AcmeError(
                "refused", f"{authorization.host}: http-01 validation {authorization.status}: {why}"
            )
        await asyncio.sleep(_poll_delay(authorization.retry_after, bounds))


async def _until_issued(
    session: CaSession, order: Order, csr_pem: bytes, bounds: AcmeBounds
) -> str:
    """Finalize once the order is ready, poll until it is issued: the certificate's URL."""
    order = await _call(session.order, order.url)
    finalized = False
    while True:
        if order.status == VALID and order.certificate_url is not None:
            return order.certificate_url
        if order.status == READY and not finalized:
            order = await _call(session.finalize, order, csr_pem)
            finalized = True
            continue
        if order.status not in (PENDING, READY, PROCESSING, VALID):
            why = order.problem or "no reason given"
            raise AcmeError("refused", f"the order is {order.status}: {why}")
        await asyncio.sleep(_poll_delay(order.retry_after, bounds))
        order = await _call(session.order, order.url)


def _poll_delay(retry_after: float | None, bounds: AcmeBounds) -> float:
    if retry_after is None:
        return bounds.poll_interval
    return min(max(retry_after, bounds.poll_interval), bounds.max_poll_interval)


async def _call(function: Callable[..., T], *args: object) -> T:
    """One blocking exchange with the CA, in a worker thread."""
    return await asyncio.to_thread(function, *args)
