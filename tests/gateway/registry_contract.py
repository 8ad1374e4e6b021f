"""The contract every `Registry` keeps, as tests any implementation can run.

A test module for an implementation defines a `harness` fixture returning a
`RegistryHarness` (its registry and a way to let time pass) and star-imports this module.
The in-memory registry runs it in test_memory_registry.py; a Redis registry will run the
very same tests.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from tunnelgate.gateway.registry import Claimed, Lease, Owner, Registry
from tunnelgate.proto.codes import RejectReason

ALICE = Owner("token:alice", "c1")
ALICE_OTHER_CLIENT = Owner("token:alice", "c2")
BOB = Owner("token:bob", "c3")
ANON_1 = Owner("anonymous", "c1", anonymous=True)
ANON_2 = Owner("anonymous", "c2", anonymous=True)
GRACE = 30.0


@dataclass
class RegistryHarness:
    registry: Registry
    advance: Callable[[float], Awaitable[None]]  # let this many seconds pass


async def claimed(registry: Registry, name: str, owner: Owner, node: str = "n1") -> Lease:
    result = await registry.claim(name, owner, node)
    assert isinstance(result, Claimed), result
    return result.lease


async def test_a_free_name_is_claimed_and_looked_up(harness: RegistryHarness) -> None:
    registry = harness.registry
    assert await registry.lookup("web") is None
    result = await registry.claim("web", ALICE, "n1")
    assert isinstance(result, Claimed)
    assert not result.reclaimed
    assert result.lease.name == "web"
    assert result.lease.owner == ALICE
    assert result.lease.node == "n1"
    state = await registry.lookup("web")
    assert state is not None
    assert state.online
    assert state.lease == result.lease


async def test_a_live_name_belongs_to_one_tunnel(harness: RegistryHarness) -> None:
    registry = harness.registry
    await claimed(registry, "web", ALICE)
    assert await registry.claim("web", BOB, "n1") is RejectReason.NAME_TAKEN
    # The same principal from another client process is a second tunnel: refused too.
    assert await registry.claim("web", ALICE_OTHER_CLIENT, "n1") is RejectReason.NAME_TAKEN
    assert await registry.claim("web", ALICE_OTHER_CLIENT, "n2") is RejectReason.NAME_TAKEN


async def test_the_same_client_takes_its_live_name_over(harness: RegistryHarness) -> None:
    """A client often notices a dead connection before the gateway does."""
    registry = harness.registry
    old = await claimed(registry, "web", ALICE)
    result = await registry.claim("web", ALICE, "n2")
    assert isinstance(result, Claimed)
    assert result.reclaimed
    assert result.lease != old
    state = await registry.lookup("web")
    assert state is not None
    assert state.lease == result.lease


async def test_only_the_current_lease_releases_or_holds(harness: RegistryHarness) -> None:
    registry = harness.registry
    old = await claimed(registry, "web", ALICE)
    new = await claimed(registry, "web", ALICE)
    assert not await registry.release(old)  # the stale lease frees nothing
    assert not await registry.hold(old, GRACE)
    state = await registry.lookup("web")
    assert state is not None
    assert state.online
    assert state.lease == new
    assert await registry.release(new)
    assert await registry.lookup("web") is None
    assert not await registry.release(new)  # once


async def test_a_held_name_goes_back_to_its_owner_only(harness: RegistryHarness) -> None:
    registry = harness.registry
    lease = await claimed(registry, "web", ALICE)
    assert await registry.hold(lease, GRACE)
    state = await registry.lookup("web")
    assert state is not None
    assert not state.online
    assert await registry.claim("web", BOB, "n1") is RejectReason.NAME_TAKEN
    # Another client of the same principal may take it back (it is that owner's name).
    result = await registry.claim("web", ALICE_OTHER_CLIENT, "n2")
    assert isinstance(result, Claimed)
    assert result.reclaimed


async def test_anonymous_owners_prove_themselves_by_client_id(harness: RegistryHarness) -> None:
    registry = harness.registry
    lease = await claimed(registry, "web", ANON_1)
    assert await registry.hold(lease, GRACE)
    assert await registry.claim("web", ANON_2, "n1") is RejectReason.NAME_TAKEN
    assert isinstance(await registry.claim("web", ANON_1, "n1"), Claimed)


async def test_a_hold_expires_after_the_grace(harness: RegistryHarness) -> None:
    registry = harness.registry
    lease = await claimed(registry, "web", ALICE)
    assert await registry.hold(lease, 1.0)
    await harness.advance(0.5)
    assert await registry.lookup("web") is not None
    await harness.advance(0.6)
    assert await registry.lookup("web") is None
    assert not await registry.release(lease)
    assert isinstance(await registry.claim("web", BOB, "n1"), Claimed)


async def test_a_hold_without_grace_frees_at_once(harness: RegistryHarness) -> None:
    registry = harness.registry
    lease = await claimed(registry, "web", ALICE)
    assert await registry.hold(lease, 0.0)
    assert await registry.lookup("web") is None


async def test_online_names_are_counted_per_principal(harness: RegistryHarness) -> None:
    registry = harness.registry
    a = await claimed(registry, "a", ALICE)
    await claimed(registry, "b", ALICE_OTHER_CLIENT)
    await claimed(registry, "c", BOB)
    assert await registry.count(ALICE.principal) == 2
    assert await registry.count(BOB.principal) == 1
    assert await registry.count("token:nobody") == 0
    assert await registry.hold(a, GRACE)
    assert await registry.count(ALICE.principal) == 1  # held names do not count
    await claimed(registry, "a", ALICE)  # taken back: counts again
    assert await registry.count(ALICE.principal) == 2
    await claimed(registry, "a", ALICE)  # the same client again: still one tunnel
    assert await registry.count(ALICE.principal) == 2


async def test_leases_are_plain_data(harness: RegistryHarness) -> None:
    """What a shared registry stores: no live objects inside."""
    lease = await claimed(harness.registry, "web", ALICE)
    assert {type(v) for v in (lease.name, lease.node, lease.owner.principal)} == {str}
    assert isinstance(lease.token, int)


async def test_the_ports_in_a_range_are_read_in_one_call(harness: RegistryHarness) -> None:
    """What the port follower scans: every port lease in the range, online or held (with
    its state), and nothing else: not names, not ports outside, not ports freed."""
    registry = harness.registry
    online = await claimed(registry, "port:20001", ALICE, "n2")
    held = await claimed(registry, "port:20002", BOB, "n1")
    gone = await claimed(registry, "port:20003", BOB, "n1")
    await claimed(registry, "port:20100", BOB, "n1")  # outside the range
    await claimed(registry, "web", BOB, "n1")
    assert await registry.hold(held, 0.5)
    assert await registry.release(gone)
    found = await registry.ports(20000, 20099)
    assert sorted(found) == [20001, 20002]
    assert found[20001].lease == online
    assert found[20001].online
    assert found[20002].lease == held
    assert not found[20002].online
    await harness.advance(0.6)  # the hold runs out
    assert sorted(await registry.ports(20000, 20099)) == [20001]
