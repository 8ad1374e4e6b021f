"""What hostile-peer tests measure on a running gateway: its memory and descriptors, and the
latency another tunnel sees while an attack runs."""

from __future__ import annotations

import asyncio
import os
import statistics
import time

from e2e_support import TunnelEnv

PROBE_INTERVAL = 0.01
"""Seconds between two latency probes (each probe is one GET through the good tunnel)."""


def rss_mib(pid: int) -> float:
    """Resident memory of process `pid` in MiB (VmRSS)."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise AssertionError(f"no VmRSS for {pid}")


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def cpu_seconds(pid: int) -> float:
    """User + system CPU time process `pid` has used."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


class LatencyProbe:
    """GETs through a good tunnel, one after another, while something else happens; the
    gateway's RSS is sampled alongside."""

    def __init__(self, env: TunnelEnv) -> None:
        self.env = env
        self.latencies: list[float] = []
        self.failures: list[str] = []
        self.peak_rss = rss_mib(env.gateway.pid)
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def measure(self, count: int) -> float:
        """The median of `count` probes taken now (a baseline)."""
        samples = [await self._probe() for _ in range(count)]
        return statistics.median(samples)

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        self._stop.set()
        if self._task is not None:
            await self._task

    @property
    def median(self) -> float:
        return statistics.median(self.latencies)

    async def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.latencies.append(await self._probe())
            except (OSError, TimeoutError, AssertionError) as exc:
                self.failures.append(repr(exc))
            self.peak_rss = max(self.peak_rss, rss_mib(self.env.gateway.pid))
            # Pace the probes; the stop event ends the wait early.
            try:
                async with asyncio.timeout(PROBE_INTERVAL):
                    await self._stop.wait()
            except TimeoutError:
                pass

    async def _probe(self) -> float:
        started = time.monotonic()
        response = await self.env.get("/")
        assert response.status == 200, response
        return time.monotonic() - started
