"""One port follower's scan against a real redis-server: 10,000 ports in --tcp-ports,
100 of them claimed by another node (docs/cluster.md, "TCP ports").

Prints the median and max wall time of a scan, the CPU the scanning process spent, and
the Redis scripts and CPU it cost (INFO commandstats), after a few warm-up scans.
Nothing is listened on: the follower's ports are a stub that records what it would follow.

    python -m bench.port_scan [--ports 10000] [--claimed 100] [--scans 20]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time

from tunnelgate.gateway.port_follow import PortFollower
from tunnelgate.gateway.redis_registry import RedisRegistry
from tunnelgate.gateway.registry import Claimed, Owner
from tunnelgate.gateway.tcp import port_key
from tunnelgate.testing.redis_server import run_redis

LOW = 20000
ME, OTHER = "127.0.0.1:7001", "127.0.0.1:7002"


class Ports:
    def __init__(self, low: int, high: int) -> None:
        self.low, self.high = low, high
        self.followed: set[int] = set()

    async def follow(self, port: int) -> OSError | None:
        self.followed.add(port)
        return None

    def unfollow(self, port: int) -> None:
        self.followed.discard(port)


async def _scan_cost(url: str, ports: int, claimed: int, scans: int) -> None:
    other = RedisRegistry(url, OTHER, 60.0)
    mine = RedisRegistry(url, ME, 60.0)
    try:
        step = ports // claimed
        for port in range(LOW, LOW + ports, step)[:claimed]:
            result = await other.claim(port_key(port), Owner("p"), OTHER)
            assert isinstance(result, Claimed)
        table = Ports(LOW, LOW + ports - 1)
        follower = PortFollower(mine, table, ME)
        for _ in range(3):
            await follower.scan()  # warm-up: the script cached, the pool's connections open
        assert len(table.followed) == claimed, len(table.followed)
        await mine.client.config_resetstat()
        times = []
        cpu = time.process_time()
        for _ in range(scans):
            start = time.perf_counter()
            await follower.scan()
            times.append(time.perf_counter() - start)
        cpu = time.process_time() - cpu
        stats = await mine.client.info("commandstats")
        evals = sum(
            int(v["calls"]) for k, v in stats.items() if k in ("cmdstat_evalsha", "cmdstat_eval")
        )
        usec = sum(float(v["usec"]) for k, v in stats.items() if k.startswith("cmdstat_eval"))
        print(
            f"{ports} ports in range, {claimed} claimed elsewhere, {scans} scans:"
            f" wall median {statistics.median(times) * 1000:.2f} ms,"
            f" max {max(times) * 1000:.2f} ms; gateway CPU {cpu / scans * 1000:.2f} ms per scan;"
            f" {evals / scans:.0f} scripts per scan, Redis CPU {usec / scans:.0f} µs per scan"
        )
    finally:
        await other.aclose()
        await mine.aclose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ports", type=int, default=10_000)
    parser.add_argument("--claimed", type=int, default=100)
    parser.add_argument("--scans", type=int, default=20)
    args = parser.parse_args()
    with run_redis() as server:
        asyncio.run(_scan_cost(server.url, args.ports, args.claimed, args.scans))


if __name__ == "__main__":
    main()
