"""A budget for frames that make us work but move no stream data.

HTTP/2 servers learnt this the hard way (CVE-2019-9512 ping flood, -9514 reset flood,
-9515 settings flood, -9518 empty frames, CVE-2023-44487 rapid reset): a peer can send
frames that cost the receiver work or a reply while costing the sender almost nothing.
Such frames here: PING, PONG, an OPEN we refuse, an empty DATA without FIN, a stream
frame for a stream that is already closed, a WINDOW too small to be honest, a BLOCKED
while the peer still has credit, CONTROL, a second GOAWAY.

Each costs one token from a bucket that refills with time and with our own work that
an honest peer answers with such frames (each stream we open or reset may see a few
cross its end in flight). An honest peer sends a PING per heartbeat and a handful of
crossing frames per stream: nowhere near the allowance. A peer that empties the bucket
broke the protocol with ENHANCE_YOUR_CALM, like HTTP/2's code of that name.
"""

from __future__ import annotations

from tunnelgate.errors import RemoteProtocolError
from tunnelgate.proto.codes import ErrorCode


class FloodBudget:
    __slots__ = ("_burst", "_earn_cap", "_last", "_rate", "spent", "tokens")

    def __init__(self, burst: float, rate: float, earn_cap: float = 0.0) -> None:
        self._burst = burst
        self._rate = rate  # tokens per second
        # Earned tokens may take the bucket past its burst by this much: a mass reset
        # of every open stream is answered by a few crossing frames each, all at once.
        self._earn_cap = burst + earn_cap
        self.tokens = burst
        self._last = 0.0  # the `now` of the last refill
        self.spent = 0  # frames charged so far, for statistics

    def __repr__(self) -> str:
        return f"<FloodBudget tokens={self.tokens:.0f}/{self._burst:.0f} spent={self.spent}>"

    def earn(self, tokens: float) -> None:
        """Our own work that may draw such frames back (a stream opened or reset)."""
        self.tokens = min(self._earn_cap, self.tokens + tokens)

    def spend(self, now: float, what: str) -> None:
        """Charge one frame; raises RemoteProtocolError(ENHANCE_YOUR_CALM) when spent.
        `now` is a monotonic clock reading in seconds (0 when the caller has none: the
        bucket then refills only by `earn`)."""
        if now > self._last:
            if self._last and self.tokens < self._burst:
                self.tokens = min(self._burst, self.tokens + (now - self._last) * self._rate)
            self._last = now
        self.spent += 1
        self.tokens -= 1
        if self.tokens < 0:
            raise RemoteProtocolError(
                ErrorCode.ENHANCE_YOUR_CALM, f"flood of {what} frames (over the allowance)"
            )
