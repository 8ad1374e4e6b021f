"""One tunnel client connection on the gateway: its registrations, and their end.

Registrations are answered in order by one task per session, since the registry is
async (a shared one is a network call away). A clean goodbye (the client's GOAWAY
NO_ERROR, or our idle or operator close) frees the names at once; any other end keeps
them for the reconnect grace, for the same owner only.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Coroutine
from typing import Any, Protocol

from tunnelgate import limits
from tunnelgate.config import GatewayConfig
from tunnelgate.logs import EventLog
from tunnelgate.proto.codes import ErrorCode, RejectReason, StreamKind, code_name
from tunnelgate.proto.messages import ControlMessage, Register, Registered, Rejected
from tunnelgate.transport.tunnel import ConnectionEnd, StreamHandler, TunnelConnection

from .auth import Identity
from .counters import TunnelCounters
from .hosts import HostRouter
from .registrar import Registrar, Taken
from .registry import Lease, Registry
from .routes import Held, Route, RouteTable
from .tcp import TcpPorts

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


class SessionServices(Protocol):
    """What a session needs of the gateway; built by app.py."""

    @property
    def config(self) -> GatewayConfig: ...
    @property
    def node(self) -> str: ...
    @property
    def registry(self) -> Registry: ...
    @property
    def routes(self) -> RouteTable: ...
    @property
    def hosts(self) -> HostRouter: ...
    @property
    def tcp(self) -> TcpPorts | None: ...
    @property
    def live(self) -> SessionTracker: ...
    @property
    def tunnel_counters(self) -> TunnelCounters: ...

    def prepare_certificate(self, name: str) -> None: ...


class SessionTracker(Protocol):
    def session_opened(self, session: GatewaySession) -> None: ...
    def session_closed(self, session: GatewaySession) -> None: ...
    def spawn(self, work: Coroutine[Any, Any, None], name: str) -> None: ...


def frees_names(end: ConnectionEnd) -> bool:
    """A client's goodbye, or our idle or operator close, frees the names at once; any
    other end (a drop, an error, a gateway shutting down) holds them for the grace."""
    if end.by_peer:
        return end.code == ErrorCode.NO_ERROR
    return end.code in (ErrorCode.IDLE_TIMEOUT, ErrorCode.KICKED)


class GatewaySession:
    """Implements the transport's SessionHooks for one connected client. One per tunnel
    connection, idle most of its life: slots, and nothing allocated before it is needed."""

    __slots__ = (
        "_handshake_timer",
        "_pending",
        "_registering",
        "_registrations",
        "_rejected",
        "client_addr",
        "connection",
        "identity",
        "services",
        "tunnels",
    )

    def __init__(self, services: SessionServices, client_addr: str, identity: Identity) -> None:
        self.services = services
        self.client_addr = client_addr
        self.identity = identity
        self.connection: TunnelConnection | None = None
        self.tunnels: dict[int, tuple[Lease, Route]] = {}  # by the client's tunnel id
        self._registrations = 0  # register messages received, rejected ones included
        self._pending: list[Register] = []  # at most MAX_REGISTRATIONS_PER_CONNECTION
        self._registering = False
        self._rejected: list[tuple[Register, Rejected]] = []  # logged together
        loop = asyncio.get_running_loop()
        self._handshake_timer: asyncio.TimerHandle | None = loop.call_later(
            limits.HANDSHAKE_TIMEOUT, self._no_register
        )

    def __repr__(self) -> str:
        names = ",".join(lease.name for lease, _ in self.tunnels.values())
        return f"<GatewaySession {self.client_addr} {self.identity.principal} [{names}]>"

    def attach(self, connection: TunnelConnection) -> None:
        self.connection = connection
        self.services.live.session_opened(self)
        log.info("tunnel_connected", client=self.client_addr)

    # --- state.LiveSession ---------------------------------------------------------------
    def constrain(self, on: bool) -> None:
        if self.connection is not None:
            self.connection.constrain(on)

    def drain(self, reason: str) -> None:
        """GOAWAY SHUTDOWN, the connection kept: its streams may finish, no new one opens,
        and the client reconnects once it ends (drain.py closes it when it is idle)."""
        if self.connection is not None:
            self.connection.go_away(ErrorCode.SHUTDOWN, reason)

    def shut_down(self, reason: str) -> None:
        self._close(ErrorCode.SHUTDOWN, reason)

    def cut_off(self, reason: str) -> None:
        """Close now, whatever is open: every stream is reset (its public side too)."""
        connection = self.connection
        if connection is not None:
            connection.close(ErrorCode.SHUTDOWN, reason)
            connection.abort()

    def open_streams(self) -> int:
        connection = self.connection
        return connection.mux.open_streams if connection is not None else 0

    # --- SessionHooks ----------------------------------------------------------------
    def on_stream_opened(self, stream_id: int, metadata: bytes) -> StreamHandler | None:
        return None  # clients open no streams (the mux refuses them before this)

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
        self._stop_handshake_timer()
        self._pending.append(message)
        if not self._registering:
            self._registering = True
            self.services.live.spawn(self._register_pending(), f"register {self.client_addr}")

    def on_go_away(self, code: int, reason: str) -> None:
        if code == ErrorCode.NO_ERROR and self.connection is not None:
            self.connection.close(ErrorCode.NO_ERROR, "goodbye")

    def on_closed(self, end: ConnectionEnd) -> None:
        self._stop_handshake_timer()
        self._pending.clear()
        self._log_rejections()
        self.services.live.session_closed(self)
        tunnels, self.tunnels = list(self.tunnels.values()), {}
        if tunnels:
            holds = self._unroute(tunnels, end)  # at once: the edge answers 502 from now on
            work = self._wind_up(tunnels, end, holds)
            self.services.live.spawn(work, f"wind up {self.client_addr}")
        self.services.tunnel_counters.disconnect(_cause(end))
        if end.code in _MISBEHAVING and not end.by_peer:
            log.warning(
                "tunnel_disconnected",
                client=self.client_addr,
                clean=False,
                code=code_name(end.code) if end.code is not None else None,
                reason=end.reason,
            )
        else:
            clean = frees_names(end)
            log.info("tunnel_disconnected", client=self.client_addr, clean=clean, reason=end.reason)

    # --- registration --------------------------------------------------------------------
    async def _register_pending(self) -> None:
        """Answer the registrations that came in, in order; then log the rejections among
        them in one line, and close a connection they left with no tunnel."""
        try:
            while self._pending:
                request = self._pending.pop(0)  # a handful at most: a list is smaller
                answer = await self._register(request)
                connection = self.connection
                if connection is None or connection.closed:
                    return
                if isinstance(answer, Rejected):
                    self._rejected.append((request, answer))
                    self.services.tunnel_counters.reject(answer.reason.value)
                connection.send_control(answer)
                if isinstance(answer, Registered) and answer.name is not None:
                    # After the answer: the client hears of its tunnel before its streams.
                    self.services.routes.wake(answer.name)  # requests held for it go on
        finally:
            self._registering = False
        if self._rejected:
            self._log_rejections()
            if not self.tunnels:
                self._close(ErrorCode.NO_ERROR, "every registration was rejected")

    async def _register(self, request: Register) -> Registered | Rejected:
        if request.id in self.tunnels:
            message = f"tunnel id {request.id} already registered"
            return Rejected(request.id, RejectReason.BAD_REQUEST, message)
        connection = self.connection
        assert connection is not None
        registrar = Registrar(self.services, self.identity, self.client_addr)
        held = [lease for lease, _ in self.tunnels.values()]
        taken = await registrar.register(request, connection, held)
        if isinstance(taken, Rejected):
            return taken
        return self._serve(request, taken)

    def _serve(self, request: Register, taken: Taken) -> Registered | Rejected:
        """Route what was taken to this connection, unless it closed meanwhile."""
        lease, route, connection = taken.lease, taken.route, self.connection
        if connection is None or connection.closed:
            self._give_back(lease, route)
            return Rejected(request.id, RejectReason.INTERNAL, "the connection closed")
        for _, other in self.tunnels.values():
            route.shares = other.shares  # the stream cap is the connection's: so is the share
            break
        if route.kind is not StreamKind.TCP:
            self.services.routes.add(route)
        if route.kind is StreamKind.HTTP:
            self.services.prepare_certificate(lease.name)
        self.tunnels[request.id] = (lease, route)
        counters = self.services.tunnel_counters
        if taken.reclaimed:
            counters.reconnected += 1
        else:
            counters.registered += 1
        event = "tunnel_reconnected" if taken.reclaimed else "tunnel_registered"
        log.info(event, name=lease.name, url=route.url, client=self.client_addr)
        if route.kind is StreamKind.TCP:
            return Registered(request.id, route.url, port=route.port)
        return Registered(request.id, route.url, name=lease.name)

    def _give_back(self, lease: Lease, route: Route) -> None:
        tcp = self.services.tcp
        if route.kind is StreamKind.TCP and tcp is not None:
            tcp.close(route)
        self.services.live.spawn(self._release(lease), f"release {lease.name}")

    async def _release(self, lease: Lease) -> None:
        await self.services.registry.release(lease)

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

    # --- the end ---------------------------------------------------------------------
    def _unroute(
        self, tunnels: list[tuple[Lease, Route]], end: ConnectionEnd
    ) -> dict[str, Held | None]:
        """Take this connection's routes out of the table, or hold their names."""
        routes, grace = self.services.routes, self.services.config.reconnect_grace
        holds: dict[str, Held | None] = {}
        for _, route in tunnels:
            if route.kind is StreamKind.TCP:
                # Its port stops listening either way: held, new connections are refused
                # by the kernel at once; the owner's return listens again.
                if self.services.tcp is not None:
                    self.services.tcp.close(route)
            elif frees_names(end):
                routes.remove(route)
            else:
                holds[route.name] = routes.hold(route, time.monotonic() + grace)
        return holds

    async def _wind_up(
        self, tunnels: list[tuple[Lease, Route]], end: ConnectionEnd, holds: dict[str, Held | None]
    ) -> None:
        """Free or hold each name in the registry."""
        services, frees = self.services, frees_names(end)
        grace = services.config.reconnect_grace
        for lease, _ in tunnels:
            if frees:
                if await services.registry.release(lease):
                    log.info("tunnel_closed", name=lease.name, client=self.client_addr)
            elif await services.registry.hold(lease, grace):
                log.info(
                    "tunnel_dropped",
                    name=lease.name,
                    client=self.client_addr,
                    reason=end.reason,
                    grace_s=grace,
                )
                held = holds.get(lease.name)
                if held is not None:
                    loop = asyncio.get_running_loop()
                    loop.call_later(grace, _expire, services.routes, lease.name, held)

    def _stop_handshake_timer(self) -> None:
        if self._handshake_timer is not None:
            self._handshake_timer.cancel()
            self._handshake_timer = None  # its handle is not kept for the tunnel's life

    def _no_register(self) -> None:
        self._handshake_timer = None
        if not self.tunnels and not self._registering:
            self._close(ErrorCode.PROTOCOL_ERROR, "no registration in time")

    def _close(self, code: int, reason: str) -> None:
        if self.connection is not None:
            self.connection.close(code, reason)


def _cause(end: ConnectionEnd) -> str:
    """How a connection ended, as a metrics label: clean, dropped, or our code's name."""
    if frees_names(end):
        return "clean"
    if end.code is None or end.by_peer:
        return "dropped"
    return code_name(end.code)


def _expire(routes: RouteTable, name: str, held: Held) -> None:
    if routes.expire(name, held):
        log.info("tunnel_expired", name=name)
