"""The node-local table: name -> the live tunnel on this gateway that serves it.

The registry (registry.py) says who owns a name, cluster-wide; this table holds what only
this process can: the tunnel connection a request is sent down. It is read on every
public request, so a lookup is one dict get. A name whose owner dropped is kept here as
`Held` until its grace ends, so the edge can answer 502 (offline) instead of 404.
"""

from __future__ import annotations

from tunnelgate.proto.codes import StreamKind
from tunnelgate.transport.tunnel import TunnelConnection


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

    def __repr__(self) -> str:
        return f"<Route {self.name} tunnel={self.tunnel_id} requests={self.requests}>"


class Held:
    """A name whose owner dropped, until `expires_at` (monotonic seconds)."""

    __slots__ = ("expires_at",)

    def __init__(self, expires_at: float) -> None:
        self.expires_at = expires_at


class RouteTable:
    def __init__(self) -> None:
        self._entries: dict[str, Route | Held] = {}

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, name: str, now: float) -> Route | Held | None:
        entry = self._entries.get(name)
        if type(entry) is Held and entry.expires_at <= now:
            del self._entries[name]
            return None
        return entry

    def add(self, route: Route) -> None:
        """`route` serves its name from now on (replacing a hold or a dead connection)."""
        self._entries[route.name] = route

    def hold(self, route: Route, expires_at: float) -> Held | None:
        """The tunnel of `route` dropped; its name waits for its owner (the hold, or None
        if another tunnel serves the name by now)."""
        if self._entries.get(route.name) is not route:
            return None
        held = self._entries[route.name] = Held(expires_at)
        return held

    def remove(self, route: Route) -> bool:
        """Forget `route`, if it still serves its name (a newer one may have taken over)."""
        if self._entries.get(route.name) is route:
            del self._entries[route.name]
            return True
        return False

    def expire(self, name: str, held: Held) -> bool:
        """The grace of `held` is over: forget it, unless the name moved on meanwhile."""
        if self._entries.get(name) is held:
            del self._entries[name]
            return True
        return False

    def routes(self) -> list[Route]:
        return [entry for entry in self._entries.values() if type(entry) is Route]
