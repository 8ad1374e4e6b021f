"""Cross-node forwarding: a public connection for a tunnel another gateway has goes there.

The edges call in on a miss only (a name or port no tunnel of this gateway serves), so a
gateway's own tunnels cost nothing more than on one node:

    edge.PublicConnection  route miss       -> forward_http  (kind HTTP, or HTTPS: decrypted)
    tls_front.TlsFront     SNI miss         -> forward_tls   (kind TLS: unopened)
    tcp.TcpPublic          followed port    -> forward_tcp   (kind TCP)

Each is one task: where is the name (the route cache, else the registry, bounded by
CLUSTER_LOOKUP_TIMEOUT), connect to that node (LINK_CONNECT_TIMEOUT), take the connection
over (`cluster_handover`: its transport, its place under the caps, the bytes it read) and
relay it (link_out.Relay). The connection is not read meanwhile. Any other answer goes back
to the connection: `cluster_local` (not on another node: served or answered here, as on one
node) or `cluster_answer` (an error it gives in its own way).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any, Protocol

from tunnelgate import limits
from tunnelgate.errors import RegistryUnavailable
from tunnelgate.logs import EventLog, RateLimitedLog
from tunnelgate.proto.link import LinkKind

from .link_out import ClusterCounters, Relay, Slots, Tracker, open_link, preamble_bytes
from .registry import NameState, Registry
from .route_cache import NodeCache
from .tcp import port_key

log = EventLog("tunnelgate.gateway")
_warnings = RateLimitedLog(log)


class Handover(Protocol):
    """A public connection waiting for the cluster's answer (edge, tls_front, tcp)."""

    def cluster_local(self, name: str) -> None: ...
    def cluster_answer(self, status: int, code: str, message: str) -> None: ...
    def cluster_handover(self) -> tuple[asyncio.Transport, str | None, bytes] | None: ...


class HttpHandover(Handover, Protocol):
    @property
    def scheme(self) -> str: ...
    @property
    def client_addr(self) -> str: ...


class Live(Tracker, Protocol):
    def spawn(self, work: Coroutine[Any, Any, None], name: str) -> None: ...


class ClusterServices(Protocol):
    @property
    def node(self) -> str: ...
    @property
    def registry(self) -> Registry: ...
    @property
    def live(self) -> Live: ...
    @property
    def caps(self) -> Slots: ...


class _Elsewhere:
    """Where a name is not on another node, and what to do about it."""

    __slots__ = ("code", "message", "status")

    def __init__(self, status: int = 0, code: str = "", message: str = "") -> None:
        self.status = status  # 0: serve it here (found nowhere, ours, or held here)
        self.code = code
        self.message = message


_HERE = _Elsewhere()


class Cluster:
    def __init__(self, services: ClusterServices, secret: bytes) -> None:
        self._services = services
        self._secret = secret
        self.node = services.node
        self.cache = NodeCache(limits.MAX_ROUTE_CACHE, limits.ROUTE_CACHE_TTL)
        self.counters = ClusterCounters()
        self.ports_changed: Callable[[], None] | None = None  # the port follower's poke

    def __repr__(self) -> str:
        return f"<Cluster {self.node} {self.cache!r}>"

    # --- the edges' misses --------------------------------------------------------------
    def forward_http(self, conn: HttpHandover, head: object, name: str) -> None:
        kind = LinkKind.HTTPS if conn.scheme == "https" else LinkKind.HTTP
        self._spawn(conn, kind, name, name, conn.client_addr)

    def forward_tls(self, front: Handover, name: str, client: str) -> None:
        self._spawn(front, LinkKind.TLS, name, name, client)

    def forward_tcp(self, public: Handover, port: int, client: str) -> None:
        self._spawn(public, LinkKind.TCP, port_key(port), str(port), client)

    def owner_changed(self, key: str) -> None:
        """The registry says `key` (a name or "port:N") changed owner: ask again next time."""
        self.cache.drop(key)
        if key.startswith("port:") and self.ports_changed is not None:
            self.ports_changed()

    def resync(self) -> None:
        """Changes may have been missed (the subscription broke): forget every answer."""
        self.cache.clear()
        if self.ports_changed is not None:
            self.ports_changed()

    # --- one forward -------------------------------------------------------------------
    def _spawn(self, conn: Handover, kind: LinkKind, key: str, target: str, client: str) -> None:
        work = self._forward(conn, kind, key, target, client)
        self._services.live.spawn(work, f"forward {key}")

    async def _forward(
        self, conn: Handover, kind: LinkKind, key: str, target: str, client: str
    ) -> None:
        """The task's root: whatever goes wrong, the connection gets its answer (it is not
        read meanwhile, and nothing else would ever answer it)."""
        try:
            await self._forward_once(conn, kind, key, target, client)
        except Exception:
            log.exception("cluster_forward_failed", target=key)
            self.counters.fail("forward_failed")
            conn.cluster_answer(502, "forward_failed", "the request could not be forwarded")

    async def _forward_once(
        self, conn: Handover, kind: LinkKind, key: str, target: str, client: str
    ) -> None:
        found = await self._locate(key)
        if isinstance(found, _Elsewhere):
            if found.status:
                self.counters.fail(found.code)
                conn.cluster_answer(found.status, found.code, found.message)
            else:
                conn.cluster_local(target if kind is not LinkKind.TCP else key)
            return
        node = found
        try:
            link = await open_link(node)
        except (OSError, TimeoutError) as exc:
            self.cache.drop_node(node)
            self.counters.fail("node_unreachable")
            _warnings.warning("cluster_node_unreachable", node=node, target=key, error=repr(exc))
            message = f"the gateway that has this tunnel ({node}) cannot be reached"
            conn.cluster_answer(502, "node_unreachable", message)
            return
        taken = conn.cluster_handover()
        if taken is None:  # the public client went away meanwhile
            if link.transport is not None:
                link.transport.close()
            return
        transport, slot, ahead = taken
        first = preamble_bytes(kind, target, client, self.node, self._secret) + ahead
        services = self._services
        relay = Relay(
            target=key,
            node=node,
            client=client,
            slot=slot,
            slots=services.caps,
            tracker=services.live,
            counters=self.counters,
            sent_ahead=len(ahead),
        )
        relay.start(transport, link, first)

    async def _locate(self, key: str) -> str | _Elsewhere:
        """The node to forward `key` to, or what to do instead."""
        node = self.cache.get(key)
        if node is not None:
            return node
        try:
            async with asyncio.timeout(limits.CLUSTER_LOOKUP_TIMEOUT):
                state = await self._services.registry.lookup(key)
        except (TimeoutError, OSError, RegistryUnavailable) as exc:
            _warnings.warning("cluster_lookup_failed", target=key, error=repr(exc))
            return _Elsewhere(503, "registry_unavailable", "the cluster's registry is unavailable")
        return self._decide(key, state)

    def _decide(self, key: str, state: NameState | None) -> str | _Elsewhere:
        if state is None or state.lease.node == self.node:
            return _HERE  # nowhere (404 here), or ours: served or held here
        if not state.online:
            return _Elsewhere(502, "tunnel_offline", "the tunnel is offline")
        self.cache.put(key, state.lease.node)
        return state.lease.node
