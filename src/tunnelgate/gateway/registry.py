"""Who owns which name: leases behind an async `Registry`.

A lease is plain data (name, owner, node, token), so a registry shared by several
gateways (Redis, cluster mode) can store it as it is. The live connection behind a name
is not in it: that is node-local (routes.py). A name is in one of three states:

    free ──claim──▶ online ──hold──▶ held (owner dropped; reconnect grace)
      ▲               │  ▲            │
      └───release─────┘  └──claim─────┘ (same owner only; online: same client only)
      ▲                               │
      └──────────(grace over)─────────┘

Only the current lease releases or holds a name (a stale one, from a connection that was
replaced, does nothing): each claim gets a new `token`, which also fences a lease that a
partitioned node still believes in. Grace expiry is data (`expires_at`), checked on every
call, not a timer: a Redis registry does the same with a key TTL.
"""

from __future__ import annotations

import heapq
import itertools
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from tunnelgate.proto.codes import RejectReason


@dataclass(frozen=True, slots=True)
class Owner:
    """Who may take a name back: the same principal (an account, or a token's digest);
    anonymous owners prove themselves with their client process's random id instead."""

    principal: str
    client_id: str | None = None
    anonymous: bool = False

    def same_as(self, other: Owner) -> bool:
        if self.principal != other.principal:
            return False
        return not self.anonymous or (
            self.client_id is not None and self.client_id == other.client_id
        )


@dataclass(frozen=True, slots=True)
class Lease:
    name: str
    owner: Owner
    node: str  # the gateway the tunnel is connected to
    token: int  # new on every claim: a stale lease never matches the current one


@dataclass(frozen=True, slots=True)
class NameState:
    """What a lookup says about a taken name."""

    lease: Lease
    online: bool  # False: held for its owner until `expires_at`
    expires_at: float = 0.0


@dataclass(frozen=True, slots=True)
class Claimed:
    lease: Lease
    reclaimed: bool  # its owner took it back (from the grace, or from a dead connection)


class Registry(Protocol):
    """The contract every registry keeps (tests/gateway/registry_contract.py)."""

    async def claim(self, name: str, owner: Owner, node: str) -> Claimed | RejectReason: ...

    async def release(self, lease: Lease) -> bool:
        """Free the name at once, if `lease` is still the current one."""
        ...

    async def hold(self, lease: Lease, grace: float) -> bool:
        """The owner dropped: keep the name for it for `grace` seconds."""
        ...

    async def lookup(self, name: str) -> NameState | None: ...

    async def ports(self, low: int, high: int) -> dict[int, NameState]:
        """The TCP ports in [low, high] that have a lease (online or held), by port: at a
        cost bounded by the ports claimed, not by the range (the port follower's scan)."""
        ...

    async def count(self, principal: str) -> int:
        """Online names of `principal` (per-owner tunnel limits)."""
        ...

    async def aclose(self) -> None: ...


@dataclass(slots=True)
class _Entry:
    lease: Lease
    online: bool
    expires_at: float = 0.0


class MemoryRegistry:
    """The registry of one gateway: a dict, and a counter per principal."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._entries: dict[str, _Entry] = {}
        self._online: Counter[str] = Counter()
        self._tokens = itertools.count(1)
        self._clock = clock
        # (expires_at, name) of holds, soonest first: swept on every call, so names held
        # and never asked for again do not pile up. Entries may be stale (taken back).
        self._expiries: list[tuple[float, str]] = []

    def __len__(self) -> int:
        self._sweep()
        return len(self._entries)

    async def claim(self, name: str, owner: Owner, node: str) -> Claimed | RejectReason:
        self._sweep()
        entry = self._current(name)
        if entry is not None and not _may_take(entry, owner):
            return RejectReason.NAME_TAKEN
        lease = Lease(name, owner, node, next(self._tokens))
        if entry is not None and entry.online:
            self._uncount(entry.lease.owner.principal)
        self._entries[name] = _Entry(lease, online=True)
        self._online[owner.principal] += 1
        return Claimed(lease, reclaimed=entry is not None)

    async def release(self, lease: Lease) -> bool:
        entry = self._current(lease.name)
        if entry is None or entry.lease != lease:
            return False  # someone else owns it now
        self._forget(lease.name, entry)
        return True

    async def hold(self, lease: Lease, grace: float) -> bool:
        entry = self._current(lease.name)
        if entry is None or entry.lease != lease or not entry.online:
            return False
        if grace <= 0:
            self._forget(lease.name, entry)
            return True
        entry.online = False
        entry.expires_at = self._clock() + grace
        heapq.heappush(self._expiries, (entry.expires_at, lease.name))
        self._uncount(lease.owner.principal)
        return True

    async def lookup(self, name: str) -> NameState | None:
        entry = self._current(name)
        if entry is None:
            return None
        return NameState(entry.lease, entry.online, entry.expires_at)

    async def ports(self, low: int, high: int) -> dict[int, NameState]:
        found: dict[int, NameState] = {}
        for name in list(self._entries):
            port = _port(name)
            entry = self._current(name) if port is not None and low <= port <= high else None
            if port is not None and entry is not None:
                found[port] = NameState(entry.lease, entry.online, entry.expires_at)
        return found

    async def count(self, principal: str) -> int:
        return self._online[principal]

    async def aclose(self) -> None:
        self._entries.clear()
        self._online.clear()
        self._expiries.clear()

    def _sweep(self) -> None:
        now = self._clock()
        expiries = self._expiries
        while expiries and expiries[0][0] <= now:
            _, name = heapq.heappop(expiries)
            self._current(name)  # forgets it if that hold is still there and over

    def _current(self, name: str) -> _Entry | None:
        """The name's entry, unless it is a hold whose grace is over (then forgotten)."""
        entry = self._entries.get(name)
        if entry is not None and not entry.online and self._clock() >= entry.expires_at:
            del self._entries[name]
            return None
        return entry

    def _forget(self, name: str, entry: _Entry) -> None:
        del self._entries[name]
        if entry.online:
            self._uncount(entry.lease.owner.principal)

    def _uncount(self, principal: str) -> None:
        left = self._online[principal] - 1
        if left:
            self._online[principal] = left
        else:
            del self._online[principal]


def _port(name: str) -> int | None:
    """N for a TCP port's name (`port:N`, tcp.port_key), else None."""
    prefix, _, number = name.partition(":")
    return int(number) if prefix == "port" and number.isdigit() else None


def _may_take(entry: _Entry, owner: Owner) -> bool:
    if not entry.online:
        return entry.lease.owner.same_as(owner)  # held: its owner comes back
    # Online: only the very same client process, reconnecting before we noticed its old
    # connection died (clients often notice first). Another client of the same principal
    # is a second tunnel, and a name belongs to one live tunnel.
    current = entry.lease.owner
    return (
        current.principal == owner.principal
        and owner.client_id is not None
        and current.client_id == owner.client_id
    )
