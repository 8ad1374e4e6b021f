"""The timer wheel: deadlines fire once, in order of time, and cleared ones never."""

from __future__ import annotations

import asyncio
import time

from tunnelgate.testing.clock import FakeClock
from tunnelgate.transport.deadlines import Deadlines


class Probe:
    def __init__(self, name: str, fired: list[str], done: asyncio.Event | None = None) -> None:
        self.name = name
        self.deadline_tick = 0
        self._fired = fired
        self._done = done

    def on_deadline(self) -> None:
        self._fired.append(self.name)
        if self._done is not None:
            self._done.set()


async def test_deadlines_fire_in_time_order_and_only_once() -> None:
    wheel = Deadlines(resolution=0.01)
    fired: list[str] = []
    done = asyncio.Event()
    late = Probe("late", fired, done)
    early = Probe("early", fired)
    wheel.set(late, 0.08)
    wheel.set(early, 0.02)
    async with asyncio.timeout(5):
        await done.wait()
    assert fired == ["early", "late"]
    assert len(wheel) == 0
    assert (early.deadline_tick, late.deadline_tick) == (0, 0)


async def test_cleared_and_moved_deadlines() -> None:
    wheel = Deadlines(resolution=0.01)
    fired: list[str] = []
    done = asyncio.Event()
    cleared = Probe("cleared", fired)
    moved = Probe("moved", fired)
    marker = Probe("marker", fired, done)
    wheel.set(cleared, 0.02)
    wheel.clear(cleared)
    wheel.set(moved, 0.02)
    wheel.set(moved, 0.2)  # re-arming replaces the earlier deadline
    wheel.set(marker, 0.06)
    async with asyncio.timeout(5):
        await done.wait()
    assert fired == ["marker"]  # "moved" is still pending, "cleared" never fires
    assert len(wheel) == 1
    wheel.close()
    assert len(wheel) == 0


async def test_a_deadline_never_fires_early() -> None:
    wheel = Deadlines(resolution=0.05)
    fired: list[str] = []
    done = asyncio.Event()
    loop = asyncio.get_running_loop()
    probe = Probe("p", fired, done)
    started = loop.time()
    wheel.set(probe, 0.12)
    async with asyncio.timeout(5):
        await done.wait()
    assert loop.time() - started >= 0.12


# --- with a fake clock: catching up costs the deadlines pending, not the time elapsed ----
def test_a_long_quiet_time_costs_nothing() -> None:
    clock = FakeClock()
    wheel = Deadlines(resolution=0.1, clock=clock)
    fired: list[str] = []
    wheel.set(Probe("first", fired), 1.0)
    clock.advance(2.0)
    assert fired == ["first"]
    assert clock.pending == 0  # nothing pending: no timer runs
    clock.advance(10 * 365 * 86400.0)  # ten years without a deadline
    started = time.perf_counter()
    wheel.set(Probe("second", fired), 1.0)
    clock.advance(1.2)
    assert fired == ["first", "second"]
    assert time.perf_counter() - started < 0.5  # not 3e9 ticks walked one by one


def test_a_stalled_loop_catches_up_in_order_without_walking_every_tick() -> None:
    clock = FakeClock()
    wheel = Deadlines(resolution=0.1, clock=clock)
    fired: list[str] = []
    for name, delay in [("c", 30.0), ("a", 0.5), ("b", 7.0), ("later", 1e9)]:
        wheel.set(Probe(name, fired), delay)
    clock.jump(1e8)  # the loop stalled: 1e9 ticks went by before the timer could run
    started = time.perf_counter()
    clock.run_due()
    assert time.perf_counter() - started < 0.5
    assert fired == ["a", "b", "c"]
    assert len(wheel) == 1  # "later" still waits
    clock.jump(1e9)
    clock.run_due()
    assert fired == ["a", "b", "c", "later"]
    assert clock.pending == 0


def test_deadlines_set_while_firing_are_kept() -> None:
    clock = FakeClock()
    wheel = Deadlines(resolution=0.1, clock=clock)
    fired: list[str] = []
    again = Probe("again", fired)

    class Rearming(Probe):
        def on_deadline(self) -> None:
            super().on_deadline()
            wheel.set(again, 0.3)

    wheel.set(Rearming("first", fired), 0.2)
    clock.advance(0.35)
    assert fired == ["first"]
    clock.advance(0.5)
    assert fired == ["first", "again"]
