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

With --grace-hold, an HTTP request for a name held for its owner (on this node or another)
waits in the task for the owner to be back anywhere (held_waits.py, woken by the owner-change
pub/sub), within the local wait's deadline: at most --grace-hold, and no longer than the
hold. Then it goes where the owner is, as any other request.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Coroutine
from typing import Any, Protocol

from tunnelgate import limits
from tunnelgate.errors import RegistryUnavailable
from tunnelgate.logs import EventLog, RateLimitedLog
from tunnelgate.proto.link import LinkKind

from .held_waits import HeldWaits
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
_OFFLINE = _Elsewhere(502, "tunnel_offline", "the tunnel is offline")
_TOO_MANY = _Elsewhere(
    503, "hold_queue_full", "too many requests are waiting for this tunnel; retry shortly"
)
_DRAINING = _Elsewhere(503, "gateway_draining", "the gateway is shutting down; retry shortly")
_UNAVAILABLE = _Elsewhere(503, "registry_unavailable", "the cluster's registry is unavailable")
# Kinds whose requests may wait for a held name's owner: HTTP ones (not TLS passthrough,
# not TCP), as on one node.
_WAITS = (LinkKind.HTTP, LinkKind.HTTPS)


class _Held:
    """The name is held for its owner, who dropped from `node`, until `expires_at`."""

    __slots__ = ("expires_at", "node")

    def __init__(self, node: str, expires_at: float) -> None:
        self.node = node
        self.expires_at = expires_at  # monotonic seconds


class Cluster:
    def __init__(self, services: ClusterServices, secret: bytes, grace_hold: float = 0.0) -> None:
        self._services = services
        self._secret = secret
        self._grace_hold = grace_hold
        self.holds = HeldWaits()
        self._draining = False
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
        self.holds.changed(key)
        if key.startswith("port:") and self.ports_changed is not None:
            self.ports_changed()

    def resync(self) -> None:
        """Changes may have been missed (the subscription broke): forget every answer."""
        self.cache.clear()
        self.holds.changed_all()
        if self.ports_changed is not None:
            self.ports_changed()

    def drain(self) -> None:
        """The gateway drains: requests waiting for a held name's owner are answered 503
        `gateway_draining` now, as the local wait's are."""
        self._draining = True
        self.holds.changed_all()

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
        if isinstance(found, _Held):
            found = await self._wait_for_owner(kind, key, client, found)
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

    async def _locate(self, key: str) -> str | _Elsewhere | _Held:
        """The node to forward `key` to, or what to do instead."""
        node = self.cache.get(key)
        if node is not None:
            return node
        state = await self._lookup(key)
        if isinstance(state, _Elsewhere):
            return state
        return self._decide(key, state)

    async def _lookup(self, key: str) -> NameState | _Elsewhere | None:
        try:
            async with asyncio.timeout(limits.CLUSTER_LOOKUP_TIMEOUT):
                return await self._services.registry.lookup(key)
        except (TimeoutError, OSError, RegistryUnavailable) as exc:
            _warnings.warning("cluster_lookup_failed", target=key, error=repr(exc))
            return _UNAVAILABLE

    def _decide(self, key: str, state: NameState | None) -> str | _Elsewhere | _Held:
        if state is None:
            return _HERE  # nowhere: 404 here
        if not state.online:
            return _Held(state.lease.node, state.expires_at)
        if state.lease.node == self.node:
            return _HERE  # ours: served here
        self.cache.put(key, state.lease.node)
        return state.lease.node

    async def _wait_for_owner(
        self, kind: LinkKind, key: str, client: str, held: _Held
    ) -> str | _Elsewhere:
        """`key` is held for its owner: without --grace-hold (or for a TLS or TCP
        connection, or while draining) answered as on one node (held here: by the edge; held
        elsewhere: 502). Else wait for its owner to be back on any node, at most
        --grace-hold and no longer than the hold, then where it is now."""
        if self._grace_hold <= 0 or kind not in _WAITS or self._draining:
            return _HERE if held.node == self.node else _OFFLINE
        deadline = min(time.monotonic() + self._grace_hold, held.expires_at)
        waiting = self.holds.waiting(key) + 1
        log.info("request_waiting", name=key, client=client, waiting=waiting, node=held.node)
        while True:
            event = self.holds.join(key)
            if event is None:
                return _TOO_MANY
            try:
                if self._draining:
                    return _DRAINING
                # Asked again once joined: a change between the first answer and now wakes us.
                state = await self._lookup(key)
                if isinstance(state, _Elsewhere):
                    return state
                if state is None:
                    return _OFFLINE  # the hold ended before its owner came back
                found = self._decide(key, state)
                if not isinstance(found, _Held):
                    return found
                deadline = min(deadline, found.expires_at)
                left = deadline - time.monotonic()
                if left <= 0:
                    return _OFFLINE
                try:
                    async with asyncio.timeout(left):
                        await event.wait()
                except TimeoutError:
                    return _OFFLINE
            finally:
                self.holds.leave(key, event)
