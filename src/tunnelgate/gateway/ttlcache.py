"""A small bounded cache whose entries expire: the controller's answers (controller_auth.py).

At most `max_size` entries; storing past it drops the least recently stored. An entry is
returned until its expiry (`now` is passed in, as everywhere time matters here) and
forgotten when found expired. Lookups do not refresh an entry: a cached allow must be
asked again after its TTL, however often it was used.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Generic, TypeVar

K = TypeVar("K")
V = TypeVar("V")


class TtlCache(Generic[K, V]):
    def __init__(self, max_size: int) -> None:
        self.max_size = max_size
        self._entries: OrderedDict[K, tuple[float, V]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: K, now: float) -> V | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        expires_at, value = entry
        if now >= expires_at:
            del self._entries[key]
            return None
        return value

    def put(self, key: K, value: V, expires_at: float) -> None:
        self._entries[key] = (expires_at, value)
        self._entries.move_to_end(key)
        while len(self._entries) > self.max_size:
            self._entries.popitem(last=False)
