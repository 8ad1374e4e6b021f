"""The gateway-wide budget for stream data held for public clients that read slowly.

Each stream is bounded by its window, and each tunnel connection by its growth budget,
but a slow-read attack (slowhttptest -X) opens many streams on many tunnels. So the bytes
the gateway holds in public write buffers beyond what the sockets take are counted here:
a public connection whose writes are paused holds up to its high-water mark, plus the
stream data written to it since, whose credit is withheld until it drains.

Past the limit the gateway is under pressure: new requests get 503, and tunnel windows
stop growing and shrink back as they are acknowledged (`Connection.constrained`), so
what is already held cannot grow much further. It lifts once the held bytes fall below
three quarters of the limit.

One address (the connection caps' key: an IPv4 address, an IPv6 /64) may hold a share
of it (limits.MAX_HELD_RESPONSE_BYTES_PER_ADDRESS): `take` says when a connection's
bytes took its address past that, and the caller resets that connection, as Envoy's
overload manager resets the streams holding the most. So slow readers from one address
cannot put every tunnel under pressure; many addresses together still can, and then the
budget refuses as above. Only connections whose writes are paused touch the table.
"""

from __future__ import annotations

from collections.abc import Callable


class BufferBudget:
    __slots__ = ("_low", "_on_pressure", "by_address", "held", "limit", "over", "share")

    def __init__(
        self,
        limit: int,
        on_pressure: Callable[[bool], None] | None = None,
        share: int | None = None,
    ) -> None:
        """`share`: what one address may hold (default: the whole limit)."""
        self.limit = limit
        self.share = limit if share is None else share
        self._low = limit * 3 // 4
        self.held = 0
        self.by_address: dict[str, int] = {}  # only addresses holding something
        self.over = False
        self._on_pressure = on_pressure

    def __repr__(self) -> str:
        return (
            f"<BufferBudget held={self.held} limit={self.limit} over={self.over} "
            f"addresses={len(self.by_address)}>"
        )

    def take(self, n: int, address: str) -> bool:
        """Count `n` bytes held for a connection from `address`; False if that took the
        address past its share (counted all the same: `give` them back as usual)."""
        self.held += n
        held = self.by_address[address] = self.by_address.get(address, 0) + n
        if not self.over and self.held > self.limit:
            self.over = True
            if self._on_pressure is not None:
                self._on_pressure(True)
        return held <= self.share

    def give(self, n: int, address: str) -> None:
        left = self.by_address[address] - n
        if left > 0:
            self.by_address[address] = left
        else:
            del self.by_address[address]
        self.held -= n
        if self.over and self.held <= self._low:
            self.over = False
            if self._on_pressure is not None:
                self._on_pressure(False)
