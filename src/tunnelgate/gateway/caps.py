"""Caps on public connections: in all, per address, and by free descriptors.

A connection holds a slot from accept until it closes; a `/connect` upgrade keeps its slot
until its tunnel connection ends (transport/handoff.py calls back). Over a cap, the new
connection is closed at once by the caller (no bytes, no keep-alive wait); here it is
counted and logged, at most a few lines per cause every ten seconds. Admitting and
releasing are a dict update each: this runs on every accept.
"""

from __future__ import annotations

import resource
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from tunnelgate import limits
from tunnelgate.logs import EventLog, RateLimitedLog

from .addresses import address_key

log = EventLog("tunnelgate.gateway")

# The causes of a refusal, as logged (`connection_refused reason=...`) and counted.
PER_ADDRESS: Final = "per_address_cap"
GLOBAL: Final = "max_connections"
DESCRIPTORS: Final = "descriptors_exhausted"

# A soft RLIMIT_NOFILE reported as unlimited (not on Linux) is taken as Linux's default
# ceiling (fs.nr_open).
_UNLIMITED_FILES: Final = 1 << 20


@dataclass(frozen=True, slots=True)
class CapStatistics:
    """A snapshot for the admin API and metrics."""

    open: int
    addresses: int
    refused_per_address: int
    refused_max_connections: int
    refused_descriptors: int


class ConnectionCaps:
    def __init__(
        self,
        max_connections: int,
        max_per_address: int,
        open_files: int,
        clock: Callable[[], float] = time.monotonic,  # for the log's rate limit
    ) -> None:
        self.max_connections = max_connections
        self.max_per_address = max_per_address
        self.open_files = open_files
        # The lowest descriptor number a connection may not take: accept() returns the
        # lowest free number, so a connection at or past it left fewer than the headroom.
        self.max_fd = open_files - limits.FD_HEADROOM
        self.open = 0
        self.per_address: dict[str, int] = {}
        self.refused_per_address = 0
        self.refused_max_connections = 0
        self.refused_descriptors = 0
        # One budget of lines per cause: a flood of one kind does not hide the others.
        self._per_address_log = RateLimitedLog(log, clock=clock)
        self._global_log = RateLimitedLog(log, clock=clock)
        self._descriptors_log = RateLimitedLog(log, clock=clock)

    def __repr__(self) -> str:
        return (
            f"<ConnectionCaps open={self.open}/{self.max_connections} "
            f"addresses={len(self.per_address)} per_address={self.max_per_address}>"
        )

    def admit(self, ip: str, fd: int, client: str) -> str | None:
        """The key a new connection from `ip` (on descriptor `fd`) holds its slot under,
        or None if it is over a cap and must be closed (counted and logged here)."""
        # An IPv4 peer address comes from the kernel in canonical form: it is its own key.
        key = address_key(ip) if ":" in ip else ip
        held = self.per_address.get(key, 0)
        if held >= self.max_per_address:
            self.refused_per_address += 1
            self._per_address_log.warning(
                "connection_refused", reason=PER_ADDRESS, client=client, limit=self.max_per_address
            )
            return None
        if self.open >= self.max_connections:
            self.refused_max_connections += 1
            self._global_log.warning(
                "connection_refused", reason=GLOBAL, client=client, limit=self.max_connections
            )
            return None
        if fd >= self.max_fd:
            self.refused_descriptors += 1
            self._descriptors_log.warning(
                "connection_refused",
                reason=DESCRIPTORS,
                client=client,
                limit=self.open_files,
                open=self.open,
            )
            return None
        self.per_address[key] = held + 1
        self.open += 1
        return key

    def release(self, key: str) -> None:
        self.open -= 1
        held = self.per_address[key] - 1
        if held:
            self.per_address[key] = held
        else:
            del self.per_address[key]  # the table holds only addresses with connections

    def statistics(self) -> CapStatistics:
        return CapStatistics(
            open=self.open,
            addresses=len(self.per_address),
            refused_per_address=self.refused_per_address,
            refused_max_connections=self.refused_max_connections,
            refused_descriptors=self.refused_descriptors,
        )


def raise_open_file_limit() -> int:
    """Raise the soft RLIMIT_NOFILE to the hard limit where allowed; the soft limit after."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != soft:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (ValueError, OSError):
            pass  # e.g. macOS refuses an unlimited hard limit: keep the soft one
    return _UNLIMITED_FILES if soft == resource.RLIM_INFINITY else soft
