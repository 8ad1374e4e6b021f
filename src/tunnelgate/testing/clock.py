"""A clock that moves only when a test says so, with timers on it.

It is what `transport.deadlines.Deadlines` uses of the event loop (`time`, `call_later`),
so a test can jump an hour ahead in no time:

    clock = FakeClock()
    wheel = Deadlines(clock=clock)
    wheel.set(conn, 60.0)
    clock.advance(61.0)           # runs the timers that came due, in order
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable


class FakeTimer:
    def __init__(self, when: float, callback: Callable[[], None]) -> None:
        self.when = when
        self.callback = callback
        self.cancelled = False

    def __repr__(self) -> str:
        return f"<FakeTimer at {self.when:g}{' cancelled' if self.cancelled else ''}>"

    def cancel(self) -> None:
        self.cancelled = True


class FakeClock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now
        self._timers: list[tuple[float, int, FakeTimer]] = []
        self._order = itertools.count()  # timers due at the same time run in call order

    def __repr__(self) -> str:
        return f"<FakeClock {self.now:g} timers={self.pending}>"

    @property
    def pending(self) -> int:
        return sum(not timer.cancelled for _, _, timer in self._timers)

    def time(self) -> float:
        return self.now

    def call_later(self, delay: float, callback: Callable[[], None]) -> FakeTimer:
        timer = FakeTimer(self.now + delay, callback)
        heapq.heappush(self._timers, (timer.when, next(self._order), timer))
        return timer

    def advance(self, seconds: float) -> None:
        """Move time on by `seconds`, running each timer that comes due at its time
        (timers set by those run too, if they come due within the jump)."""
        end = self.now + seconds
        while self._timers and self._timers[0][0] <= end:
            when, _, timer = heapq.heappop(self._timers)
            if not timer.cancelled:
                self.now = max(self.now, when)
                timer.callback()
        self.now = end

    def jump(self, seconds: float) -> None:
        """Move time on by `seconds` without running any timer: a stalled event loop,
        whose timers then run late (`run_due`)."""
        self.now += seconds

    def run_due(self) -> None:
        """Run the timers that are due now (after `jump`)."""
        self.advance(0.0)
