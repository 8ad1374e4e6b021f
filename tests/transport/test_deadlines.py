"""The timer wheel: deadlines fire once, in order of time, and cleared ones never."""

from __future__ import annotations

import asyncio

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
