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
"""

from __future__ import annotations

from collections.abc import Callable


class BufferBudget:
    __slots__ = ("_low", "_on_pressure", "held", "limit", "over")

    def __init__(self, limit: int, on_pressure: Callable[[bool], None] | None = None) -> None:
        self.limit = limit
        self._low = limit * 3 // 4
        self.held = 0
        self.over = False
        self._on_pressure = on_pressure

    def __repr__(self) -> str:
        return f"<BufferBudget held={self.held} limit={self.limit} over={self.over}>"

    def take(self, n: int) -> None:
        self.held += n
        if not self.over and self.held > self.limit:
            self.over = True
            if self._on_pressure is not None:
                self._on_pressure(True)

    def give(self, n: int) -> None:
        self.held -= n
        if self.over and self.held <= self._low:
            self.over = False
            if self._on_pressure is not None:
                self._on_pressure(False)
