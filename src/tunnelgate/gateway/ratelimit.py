"""Failed authentications per source address, with an escalating cool-down.

`rate` failures from one address (IPv6: one /64, see addresses.py) within a minute put it
on a cool-down: a minute the first time, twice as long each time it offends again (up to
an hour), forgiven after a day without offending. During a cool-down a bad or missing
token is answered 429 without being looked up remotely (the controller), but a token
that checks out locally still passes (connect.py): many users share one NAT address,
and one of them guessing must not lock out the others.

Memory is bounded: each address keeps at most `rate` timestamps, and at most
`max_addresses` addresses are tracked (the longest-quiet ones are forgotten first).
"""

from __future__ import annotations

from collections import OrderedDict, deque
from typing import Final

WINDOW: Final = 60.0  # seconds: the limit is "per minute", and the first cool-down
MAX_COOLDOWN: Final = 3600.0  # seconds: the longest cool-down
FORGIVE_AFTER: Final = 86400.0  # seconds without offending before offences are forgotten
MAX_ADDRESSES: Final = 100_000


class _Record:
    __slots__ = ("blocked_until", "failures", "last_offence", "offences")

    def __init__(self, rate: int) -> None:
        self.failures: deque[float] = deque(maxlen=rate)
        self.blocked_until = 0.0
        self.offences = 0
        self.last_offence = 0.0


class FailedAuthLimiter:
    def __init__(self, rate: int, *, max_addresses: int = MAX_ADDRESSES) -> None:
        self.rate = rate
        self._max_addresses = max_addresses
        self._records: OrderedDict[str, _Record] = OrderedDict()

    def __len__(self) -> int:
        return len(self._records)

    def retry_after(self, address: str, now: float) -> float:
        """Seconds left of `address`'s cool-down (0: it is not on one)."""
        record = self._records.get(address)
        if record is None:
            return 0.0
        left = record.blocked_until - now
        if left > 0:
            return left
        while record.failures and now - record.failures[0] >= WINDOW:
            record.failures.popleft()
        if not record.failures and (
            not record.offences or now - record.last_offence >= FORGIVE_AFTER
        ):
            del self._records[address]  # nothing left to remember
        return 0.0

    def blocked(self, address: str, now: float) -> bool:
        return self.retry_after(address, now) > 0

    def record_failure(self, address: str, now: float) -> None:
        record = self._records.get(address)
        if record is None:
            if len(self._records) >= self._max_addresses:
                self._records.popitem(last=False)
            record = self._records[address] = _Record(self.rate)
        else:
            self._records.move_to_end(address)
        if now < record.blocked_until:
            return  # already cooling down
        record.failures.append(now)
        if len(record.failures) < self.rate or now - record.failures[0] >= WINDOW:
            return
        if now - record.last_offence >= FORGIVE_AFTER:
            record.offences = 0
        record.offences += 1
        record.last_offence = now
        record.blocked_until = now + min(WINDOW * 2 ** (record.offences - 1), MAX_COOLDOWN)
        record.failures.clear()
