"""Name leases: only the holder releases; a dropped owner gets its name back, nobody else."""

from __future__ import annotations

from typing import Any, cast

import pytest

from tunnelgate.gateway.registry import HELD, Lease, MemoryRegistry, Owner, Tunnel
from tunnelgate.proto.codes import RejectReason
from tunnelgate.proto.mux import Role
from tunnelgate.transport.tunnel import TunnelConnection


def tunnel(name: str, token: str | None, client_id: str | None) -> Tunnel:
    # A connection that never connects: routing does not touch it in these tests.
    connection = TunnelConnection(Role.GATEWAY, cast(Any, object()))
    return Tunnel(name, 1, connection, f"http://{name}.localhost", Owner(token, client_id))


def claimed(registry: MemoryRegistry, t: Tunnel) -> Lease:
    lease = registry.claim(t.name, t)
    assert isinstance(lease, Lease), lease
    return lease


async def test_a_live_name_belongs_to_one_tunnel() -> None:
    registry = MemoryRegistry()
    first = tunnel("web", "alice", "c1")
    claimed(registry, first)
    assert registry.claim("web", tunnel("web", "bob", "c2")) is RejectReason.NAME_TAKEN
    # The same token from another client process is a second tunnel: refused too.
    assert registry.claim("web", tunnel("web", "alice", "c2")) is RejectReason.NAME_TAKEN
    assert registry.lookup("web") is first


async def test_only_the_current_lease_releases() -> None:
    registry = MemoryRegistry()
    old = claimed(registry, tunnel("web", "alice", "c1"))
    # The same client reconnects before the gateway noticed the old connection died.
    newer = tunnel("web", "alice", "c1")
    new = claimed(registry, newer)
    assert not registry.release(old)  # the stale lease frees nothing
    assert not registry.hold(old)
    assert registry.lookup("web") is newer
    assert registry.release(new)
    assert registry.lookup("web") is None


@pytest.mark.parametrize(
    ("owner", "returning", "allowed"),
    [
        (("alice", "c1"), ("alice", "c2"), True),  # same token, new process: its name back
        (("alice", "c1"), ("bob", "c1"), False),  # another token
        ((None, "c1"), (None, "c1"), True),  # anonymous: proven by the client id
        ((None, "c1"), (None, "c2"), False),
        ((None, None), (None, None), False),  # anonymous without an id proves nothing
    ],
)
async def test_a_held_name_goes_back_to_its_owner_only(
    owner: tuple[str | None, str | None], returning: tuple[str | None, str | None], allowed: bool
) -> None:
    registry = MemoryRegistry()
    lease = claimed(registry, tunnel("web", *owner))
    assert registry.hold(lease)
    assert registry.lookup("web") is HELD
    result = registry.claim("web", tunnel("web", *returning))
    assert isinstance(result, Lease) is allowed
    if not allowed:
        assert result is RejectReason.NAME_TAKEN


async def test_grace_expiry_frees_only_a_still_held_lease() -> None:
    registry = MemoryRegistry()
    lease = claimed(registry, tunnel("web", "alice", "c1"))
    registry.hold(lease)
    back = claimed(registry, tunnel("web", "alice", "c1"))
    assert not registry.expire(lease)  # the owner came back: its old grace frees nothing
    assert isinstance(registry.lookup("web"), Tunnel)
    registry.hold(back)
    assert registry.expire(back)
    assert registry.lookup("web") is None
    assert len(registry) == 0
