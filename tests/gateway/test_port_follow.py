"""gateway/port_follow.py: a node listens on exactly the ports other nodes' tunnels hold."""

from __future__ import annotations

from tunnelgate.gateway.port_follow import PortFollower
from tunnelgate.gateway.registry import Claimed, MemoryRegistry, NameState, Owner
from tunnelgate.gateway.tcp import port_key

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


async def claim(registry: MemoryRegistry, port: int, node: str) -> Claimed:
    claimed = await registry.claim(port_key(port), Owner("p"), node)
    assert isinstance(claimed, Claimed)
    return claimed


async def test_ports_online_on_other_nodes_are_followed_and_only_those() -> None:
    registry, ports = MemoryRegistry(), Ports(20000, 20200)
    await claim(registry, 20000, OTHER)
    await claim(registry, 20100, ME)  # ours: TcpPorts listens for its own tunnel
    held = await claim(registry, 20200, OTHER)
    await registry.hold(held.lease, 30.0)  # its owner dropped: refused, as on its node
    follower = PortFollower(registry, ports, ME, batch=7)
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
        async def lookup(self, name: str) -> NameState | None:
            raise OSError("the registry is down")

    ports = Ports(20000, 20001)
    ports.followed = {20000}
    await PortFollower(Down(), ports, ME).scan()
    assert ports.followed == {20000}
