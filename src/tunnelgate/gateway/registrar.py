"""What a `register` asks for, checked and claimed: a name (http, tls) or a port (tcp).

The checks a registration passes, in order: the protocol is served here, the connection
has room, the name or port is valid here (a DNS label not in --reserved nor already this
connection's; a port in range); then
it is authorized (auth.py: the identity's own bounds, a JWT's claim; then its check: the
controller, or the names the controller reserved for other accounts), which may name the
account it is made for; that owner has room; then the name or port is claimed from the
registry (and, for a port, bound). The result is a lease and the route the session serves
it on, or the rejection to send. The cheap local checks come first, so a controller is
never asked about a registration that would be refused anyway. A shared registry that
cannot be reached (cluster mode: Redis down) refuses it `registry_unavailable`, fail
closed, as an unreachable controller does.
"""

from __future__ import annotations

import time
from collections.abc import Collection
from dataclasses import dataclass, replace
from typing import Protocol

from tunnelgate import limits
from tunnelgate.config import GatewayConfig
from tunnelgate.errors import RegistryUnavailable
from tunnelgate.proto.codes import RejectReason, StreamKind
from tunnelgate.proto.messages import Register, Rejected
from tunnelgate.proto.names import normalize_name, random_name
from tunnelgate.transport.tunnel import TunnelConnection

from .auth import Identity, Refusal, Wanted, bounds_refusal
from .hosts import HostRouter
from .registry import Claimed, Lease, Owner, Registry
from .routes import Route
from .tcp import TcpPorts, port_key

_KINDS = {"http": StreamKind.HTTP, "tls": StreamKind.TLS, "tcp": StreamKind.TCP}


@dataclass(frozen=True, slots=True)
class Taken:
    """A registration that succeeded: its lease, the route to serve it on, and whether
    its owner took it back (a reconnect) rather than anew."""

    lease: Lease
    route: Route
    reclaimed: bool


class RegistrarServices(Protocol):
    @property
    def config(self) -> GatewayConfig: ...
    @property
    def node(self) -> str: ...
    @property
    def registry(self) -> Registry: ...
    @property
    def hosts(self) -> HostRouter: ...
    @property
    def tcp(self) -> TcpPorts | None: ...


class Registrar:
    def __init__(self, services: RegistrarServices, identity: Identity, client_addr: str) -> None:
        self._services = services
        self._identity = identity
        self._client_addr = client_addr

    async def register(
        self, request: Register, connection: TunnelConnection, held: Collection[Lease]
    ) -> Taken | Rejected:
        """Claim what `request` asks for, for `connection`; `held`: the leases this
        connection has already."""
        try:
            return await self._register(request, connection, held)
        except RegistryUnavailable as exc:
            reason = RejectReason.REGISTRY_UNAVAILABLE
            return Rejected(request.id, reason, f"registry unavailable: {exc}")

    async def _register(
        self, request: Register, connection: TunnelConnection, held: Collection[Lease]
    ) -> Taken | Rejected:
        def reject(reason: RejectReason, message: str) -> Rejected:
            return Rejected(request.id, reason, message)

        services = self._services
        kind = _KINDS[request.protocol]
        if kind is StreamKind.TCP and services.tcp is None:
            return reject(RejectReason.PROTOCOL_UNSUPPORTED, "TCP tunnels are not enabled here")
        if kind is StreamKind.TLS and services.hosts.https_port is None:
            message = "TLS passthrough needs an HTTPS listener, and this gateway has none"
            return reject(RejectReason.PROTOCOL_UNSUPPORTED, message)
        if len(held) >= limits.MAX_TUNNELS_PER_CONNECTION:
            return reject(RejectReason.TOO_MANY_TUNNELS, "too many tunnels on one connection")
        wanted = self._wanted(request, kind, held)
        if isinstance(wanted, Rejected):
            return wanted
        identity = await self._authorize(wanted)
        if isinstance(identity, Refusal):
            return reject(identity.reason, identity.message)
        self._identity = identity  # the registration's owner from here on
        limit = identity.max_tunnels or services.config.max_tunnels_per_token
        if not identity.anonymous and await services.registry.count(identity.principal) >= limit:
            return reject(RejectReason.TOO_MANY_TUNNELS, "this token holds too many tunnels")
        owner = Owner(identity.principal, request.client_id, identity.anonymous)
        if kind is StreamKind.TCP:
            mine = {lease.name for lease in held}
            return await self._port(request, owner, connection, mine)
        return await self._name(request, wanted.name, kind, owner, connection)

    def _wanted(
        self, request: Register, kind: StreamKind, held: Collection[Lease]
    ) -> Wanted | Rejected:
        """What `request` asks for, once it is valid here (before anyone is asked)."""
        wanted = Wanted(request.protocol, None, None, self._client_addr)
        if kind is StreamKind.TCP:
            tcp = self._services.tcp
            assert tcp is not None
            if request.port is not None and not tcp.in_range(request.port):
                message = f"port {request.port} is outside {tcp.low}-{tcp.high}"
                return Rejected(request.id, RejectReason.PORT_OUT_OF_RANGE, message)
            if request.port is not None and any(
                lease.name == port_key(request.port) for lease in held
            ):
                message = f"port {request.port} is already yours here"
                return Rejected(request.id, RejectReason.PORT_TAKEN, message)
            return replace(wanted, port=request.port)
        if request.name is None:
            if kind is StreamKind.TLS:
                return Rejected(request.id, RejectReason.NAME_INVALID, "a TLS tunnel needs a name")
            return wanted
        name = normalize_name(request.name)
        if name is None:
            message = f"{request.name!r} is not a DNS label"
            return Rejected(request.id, RejectReason.NAME_INVALID, message)
        if name in self._services.config.reserved:
            return Rejected(request.id, RejectReason.NAME_RESERVED, f"{name!r} is reserved")
        if any(lease.name == name for lease in held):
            message = f"{name!r} is already yours here"
            return Rejected(request.id, RejectReason.NAME_TAKEN, message)
        return replace(wanted, name=name)

    async def _authorize(self, wanted: Wanted) -> Identity | Refusal:
        """The identity `wanted` is taken under, or why it may not be."""
        identity = self._identity
        refusal = bounds_refusal(identity, wanted)
        if refusal is not None:
            return refusal
        if identity.check is None:
            return identity
        return await identity.check.authorize(identity, wanted)

    # --- names --------------------------------------------------------------------------
    async def _name(
        self,
        request: Register,
        name: str | None,
        kind: StreamKind,
        owner: Owner,
        connection: TunnelConnection,
    ) -> Taken | Rejected:
        registry = self._services.registry
        if name is None:
            claimed = await self._random_name(owner)
        else:
            result = await registry.claim(name, owner, self._services.node)
            if isinstance(result, RejectReason):
                return Rejected(request.id, result, f"{name!r} is already in use")
            claimed = result
        hosts = self._services.hosts
        name = claimed.lease.name
        url = hosts.tls_url(name) if kind is StreamKind.TLS else hosts.public_url(name)
        host_header = request.host_header.encode() if request.host_header else None
        route = self._route(name, request, connection, url, kind, host_header=host_header)
        return Taken(claimed.lease, route, claimed.reclaimed)

    async def _random_name(self, owner: Owner) -> Claimed:
        reserved, check = self._services.config.reserved, self._identity.check
        while True:  # 36^10 names: a collision is rare and a retry cheap
            name = random_name(limits.RANDOM_NAME_LENGTH)
            taken = check is not None and check.reserved_for_other(name, self._identity)
            if name in reserved or taken:
                continue
            claimed = await self._services.registry.claim(name, owner, self._services.node)
            if isinstance(claimed, Claimed):
                return claimed

    # --- ports --------------------------------------------------------------------------
    async def _port(
        self, request: Register, owner: Owner, connection: TunnelConnection, mine: set[str]
    ) -> Taken | Rejected:
        """The port asked for, or a free one; `mine`: the lease names this connection
        holds, which the registry would let its own client take again (as a reconnect)."""
        tcp = self._services.tcp
        assert tcp is not None
        if request.port is not None:
            taken = await self._take_port(request, request.port, owner, connection)
            if isinstance(taken, str):
                return Rejected(request.id, RejectReason.PORT_TAKEN, taken)
            return taken
        bound = self._identity.ports  # a token bound to some ports gets one of those
        candidates = tcp.candidates() if bound is None else filter(tcp.in_range, bound)
        for port in candidates:
            if port_key(port) in mine:
                continue  # another tunnel of this connection has it
            taken = await self._take_port(request, port, owner, connection)
            if not isinstance(taken, str):
                return taken
        if bound is None:
            message = f"no free port left in {tcp.low}-{tcp.high}"
        else:
            message = f"no port this token may take is free in {tcp.low}-{tcp.high}"
        return Rejected(request.id, RejectReason.PORT_TAKEN, message)

    async def _take_port(
        self, request: Register, port: int, owner: Owner, connection: TunnelConnection
    ) -> Taken | str:
        """Claim `port` and listen on it; why not, if it could not be taken."""
        services = self._services
        tcp = services.tcp
        assert tcp is not None
        claimed = await services.registry.claim(port_key(port), owner, services.node)
        if isinstance(claimed, RejectReason):
            return f"port {port} is already in use"
        url = services.hosts.tcp_url(port)
        route = self._route(claimed.lease.name, request, connection, url, StreamKind.TCP)
        route.port = port
        error = await tcp.open(route)
        if error is not None:
            await services.registry.release(claimed.lease)
            return f"port {port} cannot be listened on here ({error.strerror or error})"
        return Taken(claimed.lease, route, claimed.reclaimed)

    def _route(
        self,
        name: str,
        request: Register,
        connection: TunnelConnection,
        url: str,
        kind: StreamKind,
        *,
        host_header: bytes | None = None,
    ) -> Route:
        return Route(
            name,
            request.id,
            connection,
            url,
            principal=self._identity.principal,
            host_header=host_header,
            client_addr=self._client_addr,
            connected_since=time.time(),
            kind=kind,
        )
