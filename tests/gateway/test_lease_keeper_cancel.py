"""gateway/lease_keeper.py: aclose() stops the keeper even when its store swallows the
cancellation (redis-py may turn a CancelledError inside a call into a connection error)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from tunnelgate.errors import RegistryUnavailable
from tunnelgate.gateway.lease_keeper import LeaseKeeper
from tunnelgate.gateway.registry import Lease


class _SwallowingStore:
    """A store whose first ping waits until cancelled, then raises RegistryUnavailable
    instead; later pings answer at once (so a failing test ends rather than hangs)."""

    available: bool | None = True  # up: the next round is a full interval away

    def __init__(self) -> None:
        self.pinging = asyncio.Event()
        self.swallowed = False

    async def release_now(self, lease: Lease) -> bool:
        return True

    async def hold_now(self, lease: Lease, grace: float) -> bool:
        return True

    async def keep(self, leases: Sequence[tuple[Lease, float | None]]) -> list[int]:
        return [0 for _ in leases]

    async def ping(self) -> None:
        self.pinging.set()
        if self.swallowed:
            return
        try:
            await asyncio.Event().wait()  # a call Redis never answers
        except asyncio.CancelledError:
            self.swallowed = True
            raise RegistryUnavailable("connection closed") from None


async def test_aclose_stops_a_keeper_whose_call_swallowed_the_cancel() -> None:
    store = _SwallowingStore()
    keeper = LeaseKeeper(store, interval=60.0)  # a round's sleep far past the test's wait
    keeper.start()
    async with asyncio.timeout(5):
        await store.pinging.wait()
    closing = asyncio.get_running_loop().create_task(keeper.aclose())
    done, _ = await asyncio.wait({closing}, timeout=5)
    if not done:  # before the fix: the keeper went on to its next round's sleep
        closing.cancel()  # cancels the keeper again, in its sleep: it ends
        await asyncio.wait({closing}, timeout=5)
    assert done == {closing}
