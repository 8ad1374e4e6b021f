"""Cluster mode: listen on the TCP ports other nodes' tunnels hold, to forward to them.

A public client may connect to any node's --tcp-bind address for a port; only the node the
tunnel is on listens for it by itself (tcp.TcpPorts). This follows the registry's `port:N`
leases in the range: every PORT_SCAN_INTERVAL, and at once when the registry says a port
changed owner (`poke`). A scan is one registry call (`Registry.ports`) whose cost is the
ports claimed, not the size of the range (Redis keeps an index of them). A port online on
another node is followed (a listener that forwards); a port free, held for an owner that
dropped (refused by the kernel, as on the node it was on), or ours is not. A failed scan
changes nothing.
"""

from __future__ import annotations

import asyncio
from typing import Protocol

from tunnelgate import limits
from tunnelgate.errors import RegistryUnavailable
from tunnelgate.logs import EventLog, RateLimitedLog

from .registry import NameState, Registry

log = EventLog("tunnelgate.gateway")
_warnings = RateLimitedLog(log)


class FollowedPorts(Protocol):
    """tcp.TcpPorts as the follower uses it."""

    low: int
    high: int
    followed: set[int]

    async def follow(self, port: int) -> OSError | None: ...
    def unfollow(self, port: int) -> None: ...


class PortFollower:
    def __init__(
        self,
        registry: Registry,
        ports: FollowedPorts,
        node: str,
        *,
        interval: float = limits.PORT_SCAN_INTERVAL,
    ) -> None:
        self._registry = registry
        self._ports = ports
        self._node = node
        self._interval = interval
        self._wake = asyncio.Event()

    def __repr__(self) -> str:
        return f"<PortFollower {self._node} followed={len(self._ports.followed)}>"

    def poke(self) -> None:
        """A port changed owner: scan now, not at the next interval."""
        self._wake.set()

    async def run(self) -> None:
        while True:
            await self.scan()
            self._wake.clear()
            try:
                async with asyncio.timeout(self._interval):
                    await self._wake.wait()
            except TimeoutError:
                pass  # the periodic scan

    async def scan(self) -> None:
        try:
            remote = await self._remote_ports()
        except (TimeoutError, OSError, RegistryUnavailable) as exc:
            _warnings.warning("port_scan_failed", error=repr(exc))
            return
        ports = self._ports
        for port in sorted(remote - ports.followed):
            failed = await ports.follow(port)
            if failed is not None:
                _warnings.warning("port_follow_failed", port=port, error=str(failed))
        for port in sorted(ports.followed - remote):
            ports.unfollow(port)

    async def _remote_ports(self) -> set[int]:
        """The ports in the range online on another node."""
        async with asyncio.timeout(limits.CLUSTER_LOOKUP_TIMEOUT):
            leases = await self._registry.ports(self._ports.low, self._ports.high)
        return {port for port, state in leases.items() if self._elsewhere(state)}

    def _elsewhere(self, state: NameState) -> bool:
        return state.online and state.lease.node != self._node
