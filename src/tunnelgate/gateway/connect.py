"""`GET /connect`: authenticate a tunnel client, then hand its socket to the tunnel layer.

Failures are answered before the upgrade: 401 for a missing or bad token, 400 when the
client does not speak our protocol version.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from tunnelgate.http1.request import RequestHead
from tunnelgate.logs import EventLog, RateLimitedLog
from tunnelgate.proto.mux import Role
from tunnelgate.transport.handoff import hand_over
from tunnelgate.transport.tunnel import SUBPROTOCOL, TunnelConnection

from .addresses import address_key
from .pages import error_page
from .session import GatewaySession

if TYPE_CHECKING:
    from .server import Gateway

log = EventLog("tunnelgate.gateway")
# Anyone can make the gateway refuse an upgrade, as often as they like.
refusals = RateLimitedLog(log)


def _header(head: RequestHead, name: bytes) -> bytes | None:
    for key, value in head.headers:
        if key.lower() == name:
            return value
    return None


def accept_tunnel_client(
    gateway: Gateway,
    transport: asyncio.Transport,
    head: RequestHead,
    early_data: bytes,
    client_addr: str,
    release: Callable[[], None],  # gives back the connection's slot when its tunnel ends
) -> None:
    def refuse(status: int, code: str, message: str, retry_after: int | None = None) -> None:
        refusals.warning("tunnel_refused", client=client_addr, status=status, reason=code)
        transport.write(error_page(status, code, message, retry_after=retry_after))
        transport.close()

    if head.method != b"GET" or head.upgrade != b"websocket":
        refuse(400, "bad_upgrade", "/connect takes a WebSocket upgrade")
        return
    # Local checks first: a token that checks out passes whatever its address did (many
    # users share one NAT address). Only a failing one meets the failed-auth limit.
    identity = gateway.auth.authenticate(_header(head, b"authorization"))
    if identity is None:
        address = address_key(client_addr.rsplit(":", 1)[0])
        now = time.monotonic()
        cooldown = gateway.auth_failures.retry_after(address, now)
        if cooldown:
            refuse(
                429,
                "too_many_auth_failures",
                "too many failed authentications; retry later",
                retry_after=math.ceil(cooldown),
            )
            return
        gateway.auth_failures.record_failure(address, now)
        refuse(401, "unauthorized", "a valid token is required (Authorization: Bearer <token>)")
        return
    offered = _header(head, b"sec-websocket-protocol") or b""
    if SUBPROTOCOL.encode() not in (p.strip() for p in offered.split(b",")):
        refuse(400, "unsupported_version", f"this gateway speaks {SUBPROTOCOL}")
        return
    config = gateway.config
    session = GatewaySession(gateway, client_addr, identity.token)
    connection = TunnelConnection(
        Role.GATEWAY,
        session,
        heartbeat_interval=config.heartbeat_interval,
        heartbeat_timeout=config.heartbeat_timeout,
        idle_timeout=config.idle_timeout,
        max_streams=config.max_streams,
        peer_may_open=False,  # v1: only the gateway opens streams
    )
    connection.mux.constrained = gateway.buffers.over
    session.attach(connection)
    # picows re-reads the upgrade request from the head we parsed; it answers 101.
    lines = [b"GET " + head.target + b" HTTP/1.1"]
    lines += [key + b": " + value for key, value in head.headers]
    raw = b"\r\n".join(lines) + b"\r\n\r\n" + early_data
    hand_over(transport, raw, connection, release)
