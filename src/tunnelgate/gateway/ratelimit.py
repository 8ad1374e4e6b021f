"""Failed authentications per source address, over a sliding minute.

An address over the limit is answered 429 before its token is even looked at, so a
token cannot be guessed faster than the limit. Memory is bounded: each address keeps
at most `rate` timestamps, and at most `max_addresses` addresses are tracked (the
longest-quiet ones are forgotten first).
"""

from __future__ import annotations

from collections import OrderedDict, deque

WINDOW = 60.0  # seconds: the limit is "per minute"
MAX_ADDRESSES = 100_000


class FailedAuthLimiter:
    def __init__(self, rate: int, *, max_addresses: int = MAX_ADDRESSES) -> None:
        self.rate = rate
        self._max_addresses = max_addresses
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._failures)

    def blocked(self, address: str, now: float) -> bool:
        """True if `address` used up its failures for the last minute."""
        times = self._failures.get(address)
        if times is None:
            return False
        while times and now - times[0] >= WINDOW:
            times.popleft()
        if not times:
            del self._failures[address]
            return False
        return len(times) >= self.rate

    def record_failure(self, address: str, now: float) -> None:
        times = self._failures.get(address)
        if times is None:
            if len(self._failures) >= self._max_addresses:
                self._failures.popitem(last=False)
            times = self._failures[address] = deque(maxlen=self.rate)
        else:
            self._failures.move_to_end(address)
        times.append(now)
