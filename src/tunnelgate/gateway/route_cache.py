"""Where names live in the cluster, as last asked: name -> node, bounded, each for a short while.

A route miss asks the shared registry (a network round trip to Redis); the answer is kept
for the next requests to that name for `ttl` seconds. An entry goes sooner when its name
changes owner (the registry's pub/sub: `drop`) or a forward to its node fails. Only
"on node X" answers are kept: a name found nowhere is asked again each time, so a tunnel
registered on another gateway is reachable from here at once.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable


class NodeCache:
    def __init__(
        self, max_entries: int, ttl: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._max = max_entries
        self._ttl = ttl
        self._clock = clock
        self._entries: OrderedDict[str, tuple[str, float]] = OrderedDict()  # oldest first

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return f"<NodeCache {len(self._entries)}/{self._max} ttl={self._ttl}>"

    def get(self, name: str) -> str | None:
        entry = self._entries.get(name)
        if entry is None:
            return None
        node, until = entry
        if self._clock() >= until:
            del self._entries[name]
            return None
        return node

    def put(self, name: str, node: str) -> None:
        entries = self._entries
        entries.pop(name, None)
        while len(entries) >= self._max:
            entries.popitem(last=False)  # the oldest answer goes first
        entries[name] = (node, self._clock() + self._ttl)

    def drop(self, name: str) -> None:
        self._entries.pop(name, None)

    def drop_node(self, node: str) -> None:
        """Every name on `node`: it could not be reached."""
        for name in [name for name, (at, _) in self._entries.items() if at == node]:
            del self._entries[name]

    def clear(self) -> None:
        self._entries.clear()
