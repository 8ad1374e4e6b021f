"""The in-memory registry keeps the registry contract, and forgets expired holds."""

from __future__ import annotations

import pytest
from registry_contract import *  # noqa: F403 - the contract's tests run here
from registry_contract import ALICE, GRACE, RegistryHarness, claimed

from tunnelgate.gateway.registry import MemoryRegistry


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    async def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def harness(clock: FakeClock) -> RegistryHarness:
    return RegistryHarness(MemoryRegistry(clock), clock.advance)


async def test_expired_holds_do_not_pile_up(clock: FakeClock) -> None:
    registry = MemoryRegistry(clock)
    for i in range(1000):
        lease = await claimed(registry, f"n{i}", ALICE)
        assert await registry.hold(lease, GRACE)
    assert len(registry) == 1000
    await clock.advance(GRACE + 1)
    await claimed(registry, "fresh", ALICE)  # any call sweeps what expired
    assert len(registry) == 1
