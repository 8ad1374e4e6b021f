"""The node-local table: name -> the live tunnel on this gateway that serves it.

The registry (registry.py) says who owns a name, cluster-wide; this table holds what only
this process can: the tunnel connection a request is sent down. It is read on every
public request, so a lookup is one dict get. A name whose owner dropped is kept here as
`Held` until its grace ends, so the edge can answer 502 (offline) instead of 404.

With --grace-hold, public requests for a held name (or for a name whose tunnel died
before their stream could be opened) wait here for the owner, a few per name
(limits.GRACE_HOLD_QUEUE): `wake` sends them to the returning tunnel, and the end of the
hold (`expire`, `remove`) answers them. The waiting lists are touched only then, never
by a lookup of a live name.
"""

from __future__ import annotations

from typing import Protocol

from tunnelgate import limits
from tunnelgate.proto.codes import StreamKind
from tunnelgate.transport.tunnel import TunnelConnection

from .shares import StreamShares


class Route:
    """A live tunnel as the edge sees it; counters for the access log and admin API."""

    __slots__ = (
        "bytes_in",
        "bytes_out",
        "client_addr",
        "connected_since",
        "host_header",
        "kind",
        "name",
        "port",
        "principal",
        "requests",
        "shares",
        "target",
        "tunnel_id",
        "url",
    )

    def __init__(
        self,
        name: str,
        tunnel_id: int,
        target: TunnelConnection,
        url: str,
        *,
        principal: str,
        host_header: bytes | None = None,
        client_addr: str = "",
        connected_since: float = 0.0,
        kind: StreamKind = StreamKind.HTTP,
        port: int = 0,
    ) -> None:
        self.name = name  # the subdomain; for a TCP tunnel its lease key ("port:N")
        self.kind = kind  # HTTP, TLS (passthrough by SNI) or TCP
        self.port = port  # TCP: the public port
        self.tunnel_id = tunnel_id  # the client's handle, carried in each stream's OPEN
        self.target = target
        self.url = url
        self.principal = principal
        self.host_header = host_header
        self.client_addr = client_addr
        self.connected_since = connected_since
        self.requests = 0
        self.bytes_in = 0
        self.bytes_out = 0
        # Streams each public address holds; the routes of one connection share one.
        self.shares = StreamShares(target.mux.max_streams)

    def __repr__(self) -> str:
        return f"<Route {self.name} tunnel={self.tunnel_id} requests={self.requests}>"


class Held:
    """A name whose owner dropped, until `expires_at` (monotonic seconds); `kind`: what
    its tunnel was (only HTTP names have requests wait for them)."""

    __slots__ = ("expires_at", "kind")

    def __init__(self, expires_at: float, kind: StreamKind = StreamKind.HTTP) -> None:
        self.expires_at = expires_at
        self.kind = kind


class Waiter(Protocol):
    """A public request waiting for its name's owner (edge.PublicConnection)."""

    def tunnel_returned(self, route: Route) -> None: ...
    def hold_ended(self) -> None: ...


class RouteTable:
    def __init__(self) -> None:
        self._entries: dict[str, Route | Held] = {}
        self._waiting: dict[str, list[Waiter]] = {}  # by name, in order of arrival

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, name: str, now: float) -> Route | Held | None:
        entry = self._entries.get(name)
        if type(entry) is Held and entry.expires_at <= now:
            del self._entries[name]
            self._end_waits(name)
            return None
        return entry

    # --- requests waiting for a name's owner (--grace-hold) ------------------------------
    def wait(self, name: str, waiter: Waiter) -> bool:
        """`waiter` waits for `name`'s owner; False if the name has too many waiting."""
        queue = self._waiting.get(name)
        if queue is None:
            self._waiting[name] = [waiter]
            return True
        if len(queue) >= limits.GRACE_HOLD_QUEUE:
            return False
        queue.append(waiter)
        return True

    def stop_waiting(self, name: str, waiter: Waiter) -> None:
        """`waiter` gave up (its deadline, or its public client went away)."""
        queue = self._waiting.get(name)
        if queue is not None and waiter in queue:
            queue.remove(waiter)  # a short list, and only when a wait ends early
            if not queue:
                del self._waiting[name]

    def waiting(self, name: str) -> int:
        queue = self._waiting.get(name)
        return 0 if queue is None else len(queue)

    def wake(self, name: str) -> None:
        """`name` is served again (its owner's registration was answered): the requests
        waiting for it go on, in the order they came."""
        entry = self._entries.get(name)
        if type(entry) is Route:
            for waiter in self._waiting.pop(name, ()):
                waiter.tunnel_returned(entry)

    def _end_waits(self, name: str) -> None:
        """The name is no longer held: its waiting requests get their answer now."""
        for waiter in self._waiting.pop(name, ()):
            waiter.hold_ended()

    def add(self, route: Route) -> None:
        """`route` serves its name from now on (replacing a hold or a dead connection)."""
        self._entries[route.name] = route

    def hold(self, route: Route, expires_at: float) -> Held | None:
        """The tunnel of `route` dropped; its name waits for its owner (the hold, or None
        if another tunnel serves the name by now)."""
        if self._entries.get(route.name) is not route:
            return None
        held = self._entries[route.name] = Held(expires_at, route.kind)
        return held

    def remove(self, route: Route) -> bool:
        """Forget `route`, if it still serves its name (a newer one may have taken over)."""
        if self._entries.get(route.name) is route:
            del self._entries[route.name]
            self._end_waits(route.name)
            return True
        return False

    def expire(self, name: str, held: Held) -> bool:
        """The grace of `held` is over: forget it, unless the name moved on meanwhile."""
        if self._entries.get(name) is held:
            del self._entries[name]
            self._end_waits(name)
            return True
        return False

    def routes(self) -> list[Route]:
        return [entry for entry in self._entries.values() if type(entry) is Route]
