"""One address's share of a tunnel connection's streams.

A tunnel connection carries at most --max-streams requests at once, for every public
client of its tunnels. Without a share, one address with that many slow requests (slow
bodies: slowhttptest -B) holds them all and everyone else gets 503 `tunnel_busy`. So each
address (the connection caps' key: an IPv4 address, an IPv6 /64) may hold a fraction of
them (limits.ADDRESS_STREAM_SHARE), as nginx's limit_conn keyed by address and host does.

One per tunnel connection, shared by its routes (session.py). A request costs a dict
update when its stream opens and one when it ends; the table holds only addresses with
streams open, so it is as large as the streams are many.
"""

from __future__ import annotations

from tunnelgate import limits


class StreamShares:
    __slots__ = ("held", "limit")

    def __init__(self, max_streams: int) -> None:
        self.limit = max(1, int(max_streams * limits.ADDRESS_STREAM_SHARE))
        self.held: dict[str, int] = {}

    def __repr__(self) -> str:
        return f"<StreamShares addresses={len(self.held)} limit={self.limit}>"

    def take(self, address: str) -> bool:
        """Count a stream for `address`; False (nothing counted) if it holds its share."""
        held = self.held.get(address, 0)
        if held >= self.limit:
            return False
        self.held[address] = held + 1
        return True

    def give(self, address: str) -> None:
        held = self.held[address] - 1
        if held:
            self.held[address] = held
        else:
            del self.held[address]
