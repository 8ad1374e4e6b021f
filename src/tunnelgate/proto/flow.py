"""Per-stream credit flow control, both directions.

The receiver grants credit; the sender spends it. Credit is returned only as the
receiving side's consumer takes the bytes (`acknowledge`), so a stalled consumer
stops its own stream and nothing else. A window doubles when the sender reports it
is window-bound (BLOCKED) while the consumer keeps up: the bandwidth-delay product
of a fast path is found without letting a slow one buffer more.
"""

from __future__ import annotations

from typing import Final

from tunnelgate.errors import LocalProtocolError, RemoteProtocolError
from tunnelgate.proto.codes import ErrorCode

MAX_WINDOW_VALUE: Final = 2**31 - 1


class SendWindow:
    __slots__ = ("available",)

    def __init__(self, initial: int) -> None:
        self.available = initial

    def spend(self, n: int) -> None:
        if n > self.available:
            raise LocalProtocolError(ErrorCode.FLOW_CONTROL_ERROR, "sent past the window")
        self.available -= n

    def grant(self, increment: int) -> None:
        if increment <= 0:
            raise RemoteProtocolError(ErrorCode.PROTOCOL_ERROR, "window increment must be > 0")
        if self.available + increment > MAX_WINDOW_VALUE:
            raise RemoteProtocolError(ErrorCode.FLOW_CONTROL_ERROR, "window grew past 2^31-1")
        self.available += increment


class ReceiveWindow:
    """Invariant: credit + unconsumed + unreturned == size."""

    __slots__ = ("acked", "credit", "size", "unconsumed", "unreturned")

    def __init__(self, size: int) -> None:
        self.size = size
        self.credit = size  # what the peer may still send
        self.unconsumed = 0  # received, not yet acknowledged by our consumer
        self.unreturned = 0  # acknowledged, credit not yet sent back
        self.acked = 0  # acknowledged since the window last grew

    def receive(self, n: int) -> None:
        if n > self.credit:
            raise RemoteProtocolError(
                ErrorCode.FLOW_CONTROL_ERROR, f"peer sent {n} bytes with {self.credit} of credit"
            )
        self.credit -= n
        self.unconsumed += n

    def acknowledge(self, n: int, floor: int = 0) -> int:
        """Record `n` consumed bytes; return the credit to send back now (0 = not yet).

        With a `floor` (memory pressure), a window larger than it first shrinks toward
        it by keeping the credit these bytes would have returned: the peer's credit is
        never taken back, it is just not renewed in full."""
        if n > self.unconsumed:
            raise LocalProtocolError(ErrorCode.INTERNAL_ERROR, "acknowledged more than received")
        self.unconsumed -= n
        self.unreturned += n
        self.acked += n
        if floor and self.size > floor:
            cut = min(self.unreturned, self.size - floor)
            self.size -= cut
            self.unreturned -= cut
        # Batch credit: one WINDOW frame per quarter window, not one per chunk.
        if self.unreturned * 4 >= self.size:
            return self._release()
        return 0

    def grow(self, max_size: int, budget: int, fresh: int = 0) -> tuple[int, int]:
        """The sender is window-bound. Return (credit to send, bytes of budget used).

        `fresh`: bytes that arrived in the same batch as the BLOCKED frame. The consumer
        has had no chance to take them yet, so they do not count against it if it has
        taken half a window since the last growth (a consumer that never takes anything
        keeps its stream at the initial window)."""
        if (self.unconsumed - fresh) * 2 > self.size or (
            self.unconsumed * 2 > self.size and self.acked * 2 < self.size
        ):
            return 0, 0  # our consumer is the bottleneck: more window would only buffer
        new_size = min(self.size * 2, max_size, self.size + max(budget, 0))
        used = new_size - self.size
        self.size = new_size
        self.unreturned += used
        self.acked = 0
        return self._release(), used

    def _release(self) -> int:
        increment, self.unreturned = self.unreturned, 0
        self.credit += increment
        return increment
