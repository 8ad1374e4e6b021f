"""gateway/port_follow.py: a node listens on exactly the ports other nodes' tunnels hold."""

from __future__ import annotations

from tunnelgate.gateway.port_follow import PortFollower
from tunnelgate.gateway.redis_registry import RedisRegistry
from tunnelgate.gateway.registry import Claimed, MemoryRegistry, NameState, Owner, Registry
from tunnelgate.gateway.tcp import port_key
from tunnelgate.testing.redis_server import RedisServer

ME, OTHER = "10.0.0.1:7000", "10.0.0.2:7000"


class Ports:
    def __init__(self, low: int, high: int, *, refuse: int | None = None) -> None:
        self.low, self.high = low, high
        self.followed: set[int] = set()
        self.refuse = refuse

    async def follow(self, port: int) -> OSError | None:
        if port == self.refuse:
            return OSError(98, "Address already in use")
        self.followed.add(port)
        return None

    def unfollow(self, port: int) -> None:
        self.followed.discard(port)


async def claim(registry: Registry, port: int, node: str) -> Claimed:
    claimed = await registry.claim(port_key(port), Owner("p"), node)
    assert isinstance(claimed, Claimed)
    return claimed


async def test_ports_online_on_other_nodes_are_followed_and_only_those() -> None:
    registry, ports = MemoryRegistry(), Ports(20000, 20200)
    await claim(registry, 20000, OTHER)
    await claim(registry, 20100, ME)  # ours: TcpPorts listens for its own tunnel
    held = await claim(registry, 20200, OTHER)
    await registry.hold(held.lease, 30.0)  # its owner dropped: refused, as on its node
    follower = PortFollower(registry, ports, ME)
    await follower.scan()
    assert ports.followed == {20000}


async def test_a_port_that_moves_or_goes_is_unfollowed() -> None:
    registry, ports = MemoryRegistry(), Ports(20000, 20010)
    first = await claim(registry, 20001, OTHER)
    follower = PortFollower(registry, ports, ME)
    await follower.scan()
    assert ports.followed == {20001}
    await registry.release(first.lease)
    await claim(registry, 20002, OTHER)
    await follower.scan()
    assert ports.followed == {20002}


async def test_a_port_that_cannot_be_bound_is_tried_again_next_scan() -> None:
    registry, ports = MemoryRegistry(), Ports(20000, 20001, refuse=20001)
    await claim(registry, 20001, OTHER)
    follower = PortFollower(registry, ports, ME)
    await follower.scan()
    assert ports.followed == set()
    ports.refuse = None
    await follower.scan()
    assert ports.followed == {20001}


async def test_a_failed_scan_changes_nothing() -> None:
    class Down(MemoryRegistry):
        async def ports(self, low: int, high: int) -> dict[int, NameState]:
            raise OSError("the registry is down")

    ports = Ports(20000, 20001)
    ports.followed = {20000}
    await PortFollower(Down(), ports, ME).scan()
    assert ports.followed == {20000}


async def test_a_scan_of_a_large_range_over_redis_is_one_call(redis_server: RedisServer) -> None:
    """The scan reads the index of claimed ports, not each port of --tcp-ports."""
    other = RedisRegistry(redis_server.url, OTHER, 30.0)
    mine = RedisRegistry(redis_server.url, ME, 30.0)
    try:
        for port in (20000, 25000, 29999):
            await claim(other, port, OTHER)
        await claim(mine, 21000, ME)
        ports = Ports(20000, 29999)
        follower = PortFollower(mine, ports, ME)
        await follower.scan()  # the script loaded: the next scan's calls are EVALSHAs
        assert redis_server.command("CONFIG", "RESETSTAT").startswith(b"+OK")
        await follower.scan()
        assert ports.followed == {20000, 25000, 29999}
        stats = redis_server.command("INFO", "commandstats").decode()
        calls = {  # command -> calls, the script's own commands included
            line.split(":")[0].removeprefix("cmdstat_"): int(line.split("calls=")[1].split(",")[0])
            for line in stats.splitlines()
            if line.startswith("cmdstat_")
        }
        assert calls["evalsha"] == 1  # one round trip
        assert calls["hmget"] == 4  # one read per claimed port, none per port of the range
    finally:
        await other.aclose()
        await mine.aclose()
