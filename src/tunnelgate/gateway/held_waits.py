"""Cluster mode, --grace-hold: requests waiting for a held name's owner to come back on
any node, woken by the registry's owner-change pub/sub (owner_watch.py).

One event per name, set (and forgotten) when the registry says the name changed owner, or
for every name when the subscription was resynced (changes may have been missed). A waiter
joins before it asks the registry again, so a change between that answer and its wait is
not missed. At most GRACE_HOLD_QUEUE waiters per name, as for the local wait (routes.py).
"""

from __future__ import annotations

import asyncio

from tunnelgate import limits


class _Name:
    __slots__ = ("event", "waiters")

    def __init__(self) -> None:
        self.event = asyncio.Event()
        self.waiters = 0


class HeldWaits:
    def __init__(self, per_name: int = limits.GRACE_HOLD_QUEUE) -> None:
        self._per_name = per_name
        self._names: dict[str, _Name] = {}

    def __repr__(self) -> str:
        return f"<HeldWaits names={len(self._names)} waiting={self.waiting()}>"

    def waiting(self, key: str | None = None) -> int:
        """Waiters for `key` (None: all)."""
        if key is not None:
            entry = self._names.get(key)
            return 0 if entry is None else entry.waiters
        return sum(entry.waiters for entry in self._names.values())

    def join(self, key: str) -> asyncio.Event | None:
        """Wait for a change of `key`'s owner: the event to wait on, None if too many wait."""
        entry = self._names.get(key)
        if entry is None:
            entry = self._names[key] = _Name()
        elif entry.waiters >= self._per_name:
            return None
        entry.waiters += 1
        return entry.event

    def leave(self, key: str, event: asyncio.Event) -> None:
        """A waiter is done with `event` (woken, timed out, or cancelled)."""
        entry = self._names.get(key)
        if entry is not None and entry.event is event:
            entry.waiters -= 1
            if not entry.waiters:
                del self._names[key]

    def changed(self, key: str) -> None:
        """The registry says `key` changed owner: its waiters ask again."""
        entry = self._names.pop(key, None)
        if entry is not None:
            entry.event.set()

    def changed_all(self) -> None:
        names, self._names = self._names, {}
        for entry in names.values():
            entry.event.set()
