"""One tunnel client connection on the gateway: registrations, and their end.

A clean goodbye (GOAWAY NO_ERROR from the client) frees its names at once; a dropped
connection keeps them for the reconnect grace, for the same owner only.
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING

from tunnelgate import limits
from tunnelgate.logs import EventLog
from tunnelgate.proto.codes import ErrorCode, RejectReason, code_name
from tunnelgate.proto.messages import ControlMessage, Register, Registered, Rejected
from tunnelgate.proto.names import normalize_name, random_name
from tunnelgate.transport.tunnel import ConnectionEnd, StreamHandler, TunnelConnection

from .registry import Lease, Owner, Tunnel

if TYPE_CHECKING:
    from .server import Gateway

log = EventLog("tunnelgate.gateway")
# Codes a misbehaving peer is closed with: its close is a warning. One line per tunnel
# connection, as the access log has one per request: the rate of these lines is bounded
# by the rate of upgrades, which each cost a handshake.
_MISBEHAVING = frozenset(
    {
        ErrorCode.PROTOCOL_ERROR,
        ErrorCode.FLOW_CONTROL_ERROR,
        ErrorCode.FRAME_SIZE_ERROR,
        ErrorCode.ENHANCE_YOUR_CALM,
    }
)


def _frees_names(end: ConnectionEnd) -> bool:
    """A client's goodbye, or our idle or operator close, frees the names at once; any
    other end (a drop, an error, a gateway shutting down) holds them for the grace."""
    if end.by_peer:
        return end.code == ErrorCode.NO_ERROR
    return end.code in (ErrorCode.IDLE_TIMEOUT, ErrorCode.KICKED)


class GatewaySession:
    """Implements the transport's SessionHooks for one connected client."""

    def __init__(self, gateway: Gateway, client_addr: str, token: str | None) -> None:
        self.gateway = gateway
        self.client_addr = client_addr
        self.token = token
        self.connection: TunnelConnection | None = None
        self.leases: dict[int, tuple[Lease, Tunnel]] = {}
        self._registrations = 0  # register messages received, rejected ones included
        self._rejected: list[tuple[Register, Rejected]] = []  # this turn's, logged together
        self._loop = asyncio.get_running_loop()
        self._handshake_timer = self._loop.call_later(limits.HANDSHAKE_TIMEOUT, self._no_register)

    def __repr__(self) -> str:
        names = ",".join(lease.name for lease, _ in self.leases.values())
        return f"<GatewaySession {self.client_addr} tunnels=[{names}]>"

    def attach(self, connection: TunnelConnection) -> None:
        self.connection = connection
        log.info("tunnel_connected", client=self.client_addr)

    # --- SessionHooks -------------------------------------------------------
    def on_stream_opened(self, stream_id: int, metadata: bytes) -> StreamHandler | None:
        return None  # clients do not open streams in protocol v1

    def on_control(self, message: ControlMessage) -> None:
        connection = self.connection
        if connection is None or connection.closed:
            return
        if not isinstance(message, Register):
            self._close(ErrorCode.PROTOCOL_ERROR, "unexpected control message")
            return
        self._registrations += 1
        if self._registrations > limits.MAX_REGISTRATIONS_PER_CONNECTION:
            self._close(ErrorCode.ENHANCE_YOUR_CALM, "too many registrations on one connection")
            return
        self._handshake_timer.cancel()
        answer = self._try_register(message)
        if isinstance(answer, Rejected):
            if not self._rejected:
                # Once the messages that came with this one are answered: one log line
                # for the lot, and a connection left with no tunnel is closed.
                self._loop.call_soon(self._after_rejections)
            self._rejected.append((message, answer))
        connection.send_control(answer)

    def on_go_away(self, code: int, reason: str) -> None:
        if code == ErrorCode.NO_ERROR and self.connection is not None:
            self.connection.close(ErrorCode.NO_ERROR, "goodbye")

    def on_closed(self, end: ConnectionEnd) -> None:
        self._handshake_timer.cancel()
        self._log_rejections()
        clean, reason = _frees_names(end), end.reason
        registry = self.gateway.registry
        for lease, tunnel in self.leases.values():
            self.gateway.untrack(tunnel)
            if clean:
                if registry.release(lease):
                    log.info("tunnel_closed", name=lease.name, client=self.client_addr)
            elif registry.hold(lease):
                grace = self.gateway.config.reconnect_grace
                log.info(
                    "tunnel_dropped",
                    name=lease.name,
                    client=self.client_addr,
                    reason=reason,
                    grace_s=grace,
                )
                self._loop.call_later(grace, self._expire, lease)
        self.leases.clear()
        code = end.code
        if code in _MISBEHAVING and not end.by_peer:
            log.warning(
                "tunnel_disconnected",
                client=self.client_addr,
                clean=False,
                code=code_name(code) if code is not None else None,
                reason=reason,
            )
        else:
            log.info("tunnel_disconnected", client=self.client_addr, clean=clean, reason=reason)

    # --- registration -------------------------------------------------------
    def _after_rejections(self) -> None:
        self._log_rejections()
        if not self.leases:
            self._close(ErrorCode.NO_ERROR, "every registration was rejected")

    def _log_rejections(self) -> None:
        rejected, self._rejected = self._rejected, []
        if len(rejected) == 1:
            request, answer = rejected[0]
            log.info(
                "tunnel_rejected",
                client=self.client_addr,
                name=request.name,
                reason=answer.reason.value,
                detail=answer.message,
            )
        elif rejected:
            log.info(
                "tunnel_rejected",
                client=self.client_addr,
                count=len(rejected),
                names=[request.name for request, _ in rejected[:5]],
                reasons=sorted({answer.reason.value for _, answer in rejected}),
            )

    def _try_register(self, request: Register) -> Registered | Rejected:
        def reject(reason: RejectReason, message: str) -> Rejected:
            return Rejected(request.id, reason, message)

        gw = self.gateway
        if request.protocol != "http":
            return reject(RejectReason.PROTOCOL_UNSUPPORTED, "TCP tunnels are not enabled here")
        if request.id in self.leases:
            return reject(RejectReason.BAD_REQUEST, f"tunnel id {request.id} already registered")
        if len(self.leases) >= limits.MAX_TUNNELS_PER_CONNECTION:
            return reject(RejectReason.TOO_MANY_TUNNELS, "too many tunnels on one connection")
        if not gw.token_has_room(self.token):
            return reject(RejectReason.TOO_MANY_TUNNELS, "this token holds too many tunnels")
        owner = Owner(self.token, request.client_id)
        if request.name is None:
            name = self._free_random_name()
        else:
            normalized = normalize_name(request.name)
            if normalized is None:
                return reject(RejectReason.NAME_INVALID, f"{request.name!r} is not a DNS label")
            if normalized in gw.reserved:
                return reject(RejectReason.NAME_RESERVED, f"{normalized!r} is reserved")
            name = normalized
        tunnel = Tunnel(
            name=name,
            tunnel_id=request.id,
            connection=self._connection(),
            url=gw.public_url(name),
            owner=owner,
            host_header=request.host_header.encode() if request.host_header else None,
            client_addr=self.client_addr,
            connected_since=time.time(),
        )
        returning = gw.registry.lookup(name) is not None  # its owner, back for it
        lease = gw.registry.claim(name, tunnel)
        if isinstance(lease, RejectReason):
            return reject(lease, f"{name!r} is already in use")
        self.leases[request.id] = (lease, tunnel)
        gw.track(tunnel)
        event = "tunnel_reconnected" if returning else "tunnel_registered"
        log.info(event, name=name, url=tunnel.url, client=self.client_addr)
        return Registered(request.id, tunnel.url, name=name)

    def _free_random_name(self) -> str:
        registry = self.gateway.registry
        while True:  # 36^10 names: a collision is rare and a retry cheap
            name = random_name(limits.RANDOM_NAME_LENGTH)
            if registry.lookup(name) is None and name not in self.gateway.reserved:
                return name

    def _connection(self) -> TunnelConnection:
        assert self.connection is not None
        return self.connection

    def _expire(self, lease: Lease) -> None:
        if self.gateway.registry.expire(lease):
            log.info("tunnel_expired", name=lease.name)

    def _no_register(self) -> None:
        if not self.leases:
            self._close(ErrorCode.PROTOCOL_ERROR, "no registration in time")

    def _close(self, code: int, reason: str) -> None:
        if self.connection is not None:
            self.connection.close(code, reason)
