"""Which tunnel owns which name. Ownership is a lease: only its holder can release it.

`Registry` is the interface; `MemoryRegistry` serves one gateway. A cluster registry
(Redis) implements the same calls. A name is in one of three states:

    free ──claim──▶ online ──hold──▶ held (owner dropped; reconnect grace)
      ▲               │  ▲            │
      └───release─────┘  └──claim─────┘ (same owner only; online: same client only)
      ▲                               │
      └────────────expire─────────────┘
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Protocol

from tunnelgate.proto.codes import RejectReason
from tunnelgate.transport.tunnel import TunnelConnection


@dataclass(slots=True, eq=False)
class Tunnel:
    """An online HTTP tunnel, as routing sees it."""

    name: str
    tunnel_id: int  # the client's handle, carried in each stream's metadata
    connection: TunnelConnection
    url: str
    owner: Owner
    host_header: bytes | None = None
    client_addr: str = ""
    connected_since: float = 0.0
    requests: int = 0
    bytes_in: int = 0
    bytes_out: int = 0


@dataclass(frozen=True, slots=True)
class Owner:
    """Who may take a name back: the same token, and with no token the same client."""

    token: str | None
    client_id: str | None

    def same_as(self, other: Owner) -> bool:
        if self.token != other.token:
            return False
        # Anonymous owners prove themselves with their random client id.
        return self.token is not None or (
            self.client_id is not None and self.client_id == other.client_id
        )


@dataclass(frozen=True, slots=True)
class Lease:
    name: str
    lease_id: int


class Held:
    """Route answer for a name whose owner dropped and may come back."""

    __slots__ = ()


HELD = Held()


class Registry(Protocol):
    def claim(self, name: str, tunnel: Tunnel) -> Lease | RejectReason: ...
    def release(self, lease: Lease) -> bool: ...
    def hold(self, lease: Lease) -> bool: ...
    def expire(self, lease: Lease) -> bool: ...
    def lookup(self, name: str) -> Tunnel | Held | None: ...
    def __len__(self) -> int: ...


@dataclass(slots=True)
class _Entry:
    lease: Lease
    owner: Owner
    tunnel: Tunnel | None  # None while held


class MemoryRegistry:
    def __init__(self) -> None:
        self._entries: dict[str, _Entry] = {}
        self._ids = itertools.count(1)

    def __len__(self) -> int:
        return len(self._entries)

    def claim(self, name: str, tunnel: Tunnel) -> Lease | RejectReason:
        entry = self._entries.get(name)
        if entry is not None and not self._may_take(entry, tunnel.owner):
            return RejectReason.NAME_TAKEN
        lease = Lease(name, next(self._ids))
        self._entries[name] = _Entry(lease, tunnel.owner, tunnel)
        return lease

    @staticmethod
    def _may_take(entry: _Entry, owner: Owner) -> bool:
        if entry.tunnel is None:
            return entry.owner.same_as(owner)  # held: its owner comes back
        # Online: only the very same client, reconnecting before we noticed its old
        # connection died (clients often notice first). Another client with the same
        # token is a second tunnel, and a name belongs to one live tunnel.
        return entry.owner.token == owner.token and (
            owner.client_id is not None and entry.owner.client_id == owner.client_id
        )

    def release(self, lease: Lease) -> bool:
        entry = self._entries.get(lease.name)
        if entry is None or entry.lease != lease:
            return False  # someone else owns it now
        del self._entries[lease.name]
        return True

    def hold(self, lease: Lease) -> bool:
        entry = self._entries.get(lease.name)
        if entry is None or entry.lease != lease:
            return False
        entry.tunnel = None
        return True

    def expire(self, lease: Lease) -> bool:
        entry = self._entries.get(lease.name)
        if entry is None or entry.lease != lease or entry.tunnel is not None:
            return False
        del self._entries[lease.name]
        return True

    def lookup(self, name: str) -> Tunnel | Held | None:
        entry = self._entries.get(name)
        if entry is None:
            return None
        return entry.tunnel if entry.tunnel is not None else HELD

    def tunnels(self) -> list[Tunnel]:
        return [e.tunnel for e in self._entries.values() if e.tunnel is not None]
