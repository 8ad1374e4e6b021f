"""One task per node that keeps its leases in the shared registry true.

Every round (the refresh interval, or REDIS_RETRY_INTERVAL while Redis is unreachable):
releases and holds that failed are tried again, then every lease of this node is
refreshed in batches of MAX_LEASES_PER_REFRESH, one script call each. A lease Redis no
longer has (it restarted empty, or this node could not reach it for longer than the TTL)
is written back with its own token: an online one with the TTL, a held one (its owner
dropped) with the grace it has left, so a restart does not free it early. An online lease
another node took meanwhile is lost here, and `on_lost` closes its tunnel; a held one that
another lease replaced (its owner came back, here or elsewhere) or whose grace is over is
simply no longer kept. Rounds and releases/holds are serialised by one lock, so
a refresh never writes back a lease released while it was in flight.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Sequence
from typing import Final, Protocol

from tunnelgate import limits
from tunnelgate.errors import RegistryUnavailable
from tunnelgate.logs import EventLog

from .registry import Lease

log = EventLog("tunnelgate.gateway")

KEPT: Final = 0
REASSERTED: Final = 1
LOST: Final = 2


class LeaseStore(Protocol):
    """The registry calls the keeper makes; each raises RegistryUnavailable."""

    @property
    def available(self) -> bool | None: ...
    async def release_now(self, lease: Lease) -> bool: ...
    async def hold_now(self, lease: Lease, grace: float) -> bool: ...
    async def keep(self, leases: Sequence[tuple[Lease, float | None]]) -> list[int]: ...
    async def ping(self) -> None: ...


class LeaseKeeper:
    def __init__(
        self,
        store: LeaseStore,
        interval: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        on_lost: Callable[[Lease], None] | None = None,
    ) -> None:
        self._store = store
        self.interval = interval
        self._clock = clock
        self.on_lost = on_lost
        self._mine: dict[str, Lease] = {}  # this node's online leases, by name
        # This node's held leases, by name, with when their grace ends: at most one per
        # name, each kept until then (or another lease replaces it).
        self._held: dict[str, tuple[Lease, float]] = {}
        # Releases (None) and holds (until when) that Redis did not get, by token: at
        # most one per lease this node had, so bounded by what it served.
        self._pending: dict[int, tuple[Lease, float | None]] = {}
        self._lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None

    def __repr__(self) -> str:
        mine, held, pending = len(self._mine), len(self._held), len(self._pending)
        return f"<LeaseKeeper leases={mine} held={held} pending={pending}>"

    @property
    def pending(self) -> int:
        return len(self._pending)

    def leases(self) -> list[Lease]:
        return list(self._mine.values())

    def held(self) -> list[Lease]:
        return [lease for lease, _ in self._held.values()]

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="lease keeper")

    async def aclose(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def track(self, lease: Lease) -> None:
        self._mine[lease.name] = lease
        self._held.pop(lease.name, None)  # the name's owner is back here: a new lease

    def forget(self, lease: Lease) -> None:
        if self._mine.get(lease.name) == lease:
            del self._mine[lease.name]
        held = self._held.get(lease.name)
        if held is not None and held[0] == lease:
            del self._held[lease.name]

    async def release(self, lease: Lease) -> bool:
        """Release now, or queue it for the next round (then False: not known yet)."""
        async with self._lock:
            try:
                return await self._store.release_now(lease)
            except RegistryUnavailable:
                self._pending[lease.token] = (lease, None)
                return False

    async def hold(self, lease: Lease, grace: float) -> bool:
        """Hold now, or queue it (the grace still counted from now) for the next round.
        Either way the hold is kept until its grace ends: written back if Redis loses it."""
        until = self._clock() + grace
        async with self._lock:
            if grace > 0:
                self._held[lease.name] = (lease, until)
            try:
                return await self._store.hold_now(lease, grace)
            except RegistryUnavailable:
                self._pending[lease.token] = (lease, until)
                return False

    async def run_round(self) -> None:
        """One round: queued work, then the refresh. Raises RegistryUnavailable."""
        async with self._lock:
            await self._flush()
            await self._refresh()

    async def _run(self) -> None:
        while True:
            try:
                await self.run_round()
            except RegistryUnavailable:
                pass  # the registry logged it; the next round tries again
            except Exception:  # the task's root: a bug in one round must not stop the next
                log.exception("lease_keeper_failed")
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                # aclose() cancelled it mid-call and the call lost it (redis-py's use of
                # Python 3.11's wait_for can) or turned it into an error: stop all the
                # same (the loop would otherwise go on for ever, and a gateway that
                # failed to start or was stopping hung with it).
                raise asyncio.CancelledError
            up = self._store.available
            # A period, not a wait for an event: Redis tells no one when it is back.
            await asyncio.sleep(self.interval if up else limits.REDIS_RETRY_INTERVAL)

    async def _flush(self) -> None:
        for token, (lease, until) in list(self._pending.items()):
            if until is None:
                await self._store.release_now(lease)
            else:
                left = until - self._clock()
                await self._store.hold_now(lease, max(0.0, left))
            del self._pending[token]

    async def _refresh(self) -> None:
        batch = self._batch()
        if not batch:
            await self._store.ping()  # so a Redis that went away is noticed (and logged)
            return
        reasserted = 0
        for start in range(0, len(batch), limits.MAX_LEASES_PER_REFRESH):
            part = batch[start : start + limits.MAX_LEASES_PER_REFRESH]
            for (lease, grace_left), status in zip(part, await self._store.keep(part), strict=True):
                if status == REASSERTED:
                    reasserted += 1
                elif status == LOST and grace_left is not None:
                    self.forget(lease)  # its owner is back (a new lease), or someone else
                elif status == LOST and self._mine.get(lease.name) == lease:
                    del self._mine[lease.name]
                    log.warning("lease_lost", name=lease.name, node=lease.node, token=lease.token)
                    if self.on_lost is not None:
                        self.on_lost(lease)
        if reasserted:
            log.info("leases_reasserted", count=reasserted, of=len(batch))

    def _batch(self) -> list[tuple[Lease, float | None]]:
        """The online leases (None), then the holds with the grace they have left; holds
        whose grace is over are dropped here (Redis's TTL freed them)."""
        now = self._clock()
        for name, (_, until) in list(self._held.items()):
            if until <= now:
                del self._held[name]
        batch: list[tuple[Lease, float | None]] = [(lease, None) for lease in self._mine.values()]
        batch += [(lease, until - now) for lease, until in self._held.values()]
        return batch
