"""`GET /connect`: authenticate a tunnel client, then hand its socket to the tunnel layer.

Failures are answered before the upgrade: 400 when the request is not a WebSocket
upgrade or the client does not speak our protocol version, 401 for a missing or bad
token, 429 for one from an address on a failed-auth cool-down. Authentication is async
(a controller is a network call away), so the socket is paused meanwhile.

Order of checks (auth.AuthChain): static tokens, then JWTs, then the controller; a token
that checks out locally passes whatever its address did (many users share a NAT
address). Only a token that fails them meets the failed-auth limit: from an address on
cool-down it gets 429, and the controller, which is asked at each registration, is not
asked about it unless it has allowed that token before (controller_auth.py, which shares
this limiter and counts the controller's denials against the address).
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable, Coroutine
from typing import Any, Protocol

from tunnelgate.config import GatewayConfig
from tunnelgate.http1.request import RequestHead
from tunnelgate.logs import EventLog, RateLimitedLog
from tunnelgate.proto.mux import Role
from tunnelgate.transport.handoff import hand_over
from tunnelgate.transport.tunnel import SUBPROTOCOL, TunnelConnection

from .addresses import address_key
from .auth import Authenticator, Identity, bearer_token
from .pages import error_page
from .ratelimit import FailedAuthLimiter
from .session import GatewaySession, SessionServices

log = EventLog("tunnelgate.gateway")
# Anyone can make the gateway refuse an upgrade, as often as they like.
refusals = RateLimitedLog(log)


class Spawner(Protocol):
    def spawn(self, work: Coroutine[Any, Any, None], name: str) -> None: ...


def _header(head: RequestHead, name: bytes) -> bytes | None:
    for key, value in head.headers:
        if key.lower() == name:
            return value
    return None


class TunnelAcceptor:
    """edge.TunnelAcceptor: takes `/connect` upgrades off the public edge."""

    def __init__(
        self,
        config: GatewayConfig,
        authenticator: Authenticator,
        failures: FailedAuthLimiter,
        sessions: SessionServices,
        tasks: Spawner,
    ) -> None:
        self._config = config
        self._authenticator = authenticator
        self._failures = failures
        self._sessions = sessions
        self._tasks = tasks

    def accept(
        self,
        transport: asyncio.Transport,
        head: RequestHead,
        early_data: bytes,
        client_addr: str,
        release_slot: Callable[[], None],
    ) -> None:
        if head.method != b"GET" or head.upgrade != b"websocket":
            _refuse(
                transport, client_addr, 400, "bad_upgrade", "/connect takes a WebSocket upgrade"
            )
            return
        offered = _header(head, b"sec-websocket-protocol") or b""
        if SUBPROTOCOL.encode() not in (p.strip() for p in offered.split(b",")):
            message = f"this gateway speaks {SUBPROTOCOL}"
            _refuse(transport, client_addr, 400, "unsupported_version", message)
            return
        transport.pause_reading()  # nothing more is read until we know who this is
        work = self._authorize(transport, head, early_data, client_addr, release_slot)
        self._tasks.spawn(work, f"connect {client_addr}")

    async def _authorize(
        self,
        transport: asyncio.Transport,
        head: RequestHead,
        early_data: bytes,
        client_addr: str,
        release_slot: Callable[[], None],
    ) -> None:
        credential = bearer_token(_header(head, b"authorization"))
        identity = await self._authenticator.authenticate(credential, client_addr)
        if transport.is_closing():
            return  # the client went away meanwhile (the edge released its slot)
        if identity is None:
            self._refuse_unknown(transport, client_addr)
            return
        self._hand_over(transport, head, early_data, client_addr, release_slot, identity)

    def _refuse_unknown(self, transport: asyncio.Transport, client_addr: str) -> None:
        address = address_key(client_addr.rsplit(":", 1)[0])
        now = time.monotonic()
        cooldown = self._failures.retry_after(address, now)
        counters = self._sessions.tunnel_counters
        if cooldown:
            counters.auth_rate_limited += 1
            message = "too many failed authentications; retry later"
            code = "too_many_auth_failures"
            _refuse(transport, client_addr, 429, code, message, math.ceil(cooldown))
            return
        self._failures.record_failure(address, now)
        counters.auth_failures += 1
        message = "a valid token is required (Authorization: Bearer <token>)"
        _refuse(transport, client_addr, 401, "unauthorized", message)

    def _hand_over(
        self,
        transport: asyncio.Transport,
        head: RequestHead,
        early_data: bytes,
        client_addr: str,
        release_slot: Callable[[], None],
        identity: Identity,
    ) -> None:
        config = self._config
        session = GatewaySession(self._sessions, client_addr, identity)
        connection = TunnelConnection(
            Role.GATEWAY,
            session,
            heartbeat_interval=config.heartbeat_interval,
            heartbeat_timeout=config.heartbeat_timeout,
            idle_timeout=config.idle_timeout,
            max_streams=config.max_streams,
            peer_may_open=False,  # only the gateway opens streams
        )
        session.attach(connection)
        # picows re-reads the upgrade request from the head we parsed; it answers 101.
        lines = [b"GET " + head.target + b" HTTP/1.1"]
        lines += [key + b": " + value for key, value in head.headers]
        raw = b"\r\n".join(lines) + b"\r\n\r\n" + early_data
        hand_over(transport, raw, connection, release_slot)
        transport.resume_reading()


def _refuse(
    transport: asyncio.Transport,
    client_addr: str,
    status: int,
    code: str,
    message: str,
    retry_after: int | None = None,
) -> None:
    refusals.warning("tunnel_refused", client=client_addr, status=status, reason=code)
    transport.write(error_page(status, code, message, retry_after=retry_after))
    transport.close()
