"""Coarse timeouts for many objects: a timer wheel.

A public connection re-arms its timeout on every request (head, response, keep-alive).
With one libuv timer each, that is a timer start and stop per request and a timer per
idle connection; here setting or clearing a deadline is a dict operation, and one loop
timer runs while any deadline is pending. A deadline fires between its time and one
`resolution` later, which is precise enough for timeouts of half a second and up.

Each run fires the slots that came due since the last one. Normally that is one tick;
after the loop stalled, the wheel walks whichever is fewer, the ticks it missed or the
slots pending, so catching up never costs more than the deadlines there are.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Protocol


class Timed(Protocol):
    deadline_tick: int  # 0 = no deadline; managed by Deadlines

    def on_deadline(self) -> None: ...


class Cancellable(Protocol):
    def cancel(self) -> None: ...


class Clock(Protocol):
    """What the wheel uses of the event loop (tunnelgate.testing.clock fakes it)."""

    def time(self) -> float: ...
    def call_later(self, delay: float, callback: Callable[[], None]) -> Cancellable: ...


class Deadlines:
    def __init__(self, resolution: float = 0.1, clock: Clock | None = None) -> None:
        self._clock: Clock = asyncio.get_running_loop() if clock is None else clock
        self._resolution = resolution
        self._slots: dict[int, dict[Timed, None]] = {}
        self._done_tick = self._tick_of(self._clock.time())  # ticks up to here have fired
        self._handle: Cancellable | None = None

    def __len__(self) -> int:
        return sum(len(slot) for slot in self._slots.values())

    def time(self) -> float:
        """Now, on the clock the deadlines are counted on."""
        return self._clock.time()

    def set(self, timed: Timed, delay: float) -> None:
        """`timed.on_deadline()` runs once, `delay` seconds from now (or up to a tick later)."""
        if timed.deadline_tick:
            self.clear(timed)
        now = self._clock.time()
        tick = self._tick_of(now + delay) + 1
        slot = self._slots.get(tick)
        if slot is None:
            slot = self._slots[tick] = {}
        slot[timed] = None
        timed.deadline_tick = tick
        if self._handle is None:
            # Nothing was pending: no tick before now has a slot to fire.
            self._done_tick = self._tick_of(now)
            self._handle = self._clock.call_later(self._resolution, self._run)

    def clear(self, timed: Timed) -> None:
        tick = timed.deadline_tick
        if tick:
            timed.deadline_tick = 0
            slot = self._slots.get(tick)
            if slot is not None:
                slot.pop(timed, None)
                if not slot:
                    del self._slots[tick]

    def close(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        self._slots.clear()

    def _tick_of(self, when: float) -> int:
        return int(when / self._resolution)

    def _run(self) -> None:
        now_tick = self._tick_of(self._clock.time())
        if now_tick - self._done_tick <= len(self._slots):
            due: list[int] | range = range(self._done_tick + 1, now_tick + 1)
        else:  # a stalled loop: fewer slots than missed ticks
            due = sorted(tick for tick in self._slots if tick <= now_tick)
        self._done_tick = now_tick
        for tick in due:
            slot = self._slots.pop(tick, None)
            if slot:
                for timed in slot:
                    timed.deadline_tick = 0
                    timed.on_deadline()
        self._handle = self._clock.call_later(self._resolution, self._run) if self._slots else None
