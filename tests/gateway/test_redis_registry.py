"""The Redis registry keeps the registry contract, on a real redis-server, and survives
what a shared registry meets: a node that stops refreshing, Redis down, Redis restarted
empty, another node taking a name over."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Iterator

import pytest
from registry_contract import *  # noqa: F403 - the contract's tests run here
from registry_contract import ALICE, BOB, GRACE, RegistryHarness, claimed

from tunnelgate import limits, logs
from tunnelgate.errors import RegistryUnavailable
from tunnelgate.gateway import redis_scripts
from tunnelgate.gateway.redis_registry import RedisRegistry, public_url
from tunnelgate.gateway.registry import Claimed, Lease
from tunnelgate.proto.codes import RejectReason
from tunnelgate.testing.redis_server import RedisServer

LIVENESS = 5.0  # seconds: longer than any test here, unless it sets its own
DEADLINE = 5.0  # seconds any awaited change may take


@pytest.fixture
async def registry(redis_server: RedisServer) -> AsyncIterator[RedisRegistry]:
    registry = RedisRegistry(redis_server.url, "n1", LIVENESS)
    try:
        yield registry
    finally:
        await registry.aclose()


@pytest.fixture
def harness(registry: RedisRegistry) -> RegistryHarness:
    # Real time passes: Redis expires a key at its PX, to the millisecond.
    return RegistryHarness(registry, asyncio.sleep)


async def wait_free(registry: RedisRegistry, name: str) -> float:
    """Poll until `name` is free (with a deadline); when that was seen (monotonic)."""
    deadline = time.monotonic() + DEADLINE
    while await registry.lookup(name) is not None:
        assert time.monotonic() < deadline, f"{name} still taken after {DEADLINE}s"
        await asyncio.sleep(0.01)  # poll interval; the deadline bounds the wait
    return time.monotonic()


async def test_an_unrefreshed_lease_is_free_after_its_liveness(redis_server: RedisServer) -> None:
    """A node killed with -9 refreshes nothing: its names go after 1.5 x liveness."""
    dead = RedisRegistry(redis_server.url, "n1", 0.4)
    other = RedisRegistry(redis_server.url, "n2", LIVENESS)
    try:
        before = time.monotonic()
        await claimed(dead, "web", ALICE)
        assert await other.claim("web", BOB, "n2") is RejectReason.NAME_TAKEN
        freed = await wait_free(other, "web")
        assert freed - before >= 0.6 - 0.01  # the TTL, not before (Redis's ms clock)
        assert isinstance(await other.claim("web", BOB, "n2"), Claimed)
    finally:
        await dead.aclose()
        await other.aclose()


async def test_the_keeper_keeps_online_leases_alive(redis_server: RedisServer) -> None:
    live = RedisRegistry(redis_server.url, "n1", 0.2)  # TTL 0.3 s, refreshed every 0.1 s
    try:
        live.start()
        lease = await claimed(live, "web", ALICE)
        await asyncio.sleep(1.0)  # a few TTLs pass
        state = await live.lookup("web")
        assert state is not None
        assert state.lease == lease
        assert state.online
        assert await live.count(ALICE.principal) == 1
    finally:
        await live.aclose()


async def test_the_same_client_moves_to_another_node_and_the_first_loses_it(
    redis_server: RedisServer,
) -> None:
    lost: list[Lease] = []
    first = RedisRegistry(redis_server.url, "n1", LIVENESS, on_lost=lost.append)
    second = RedisRegistry(redis_server.url, "n2", LIVENESS)
    try:
        old = await claimed(first, "web", ALICE, "n1")
        result = await second.claim("web", ALICE, "n2")  # the client reconnected elsewhere
        assert isinstance(result, Claimed)
        assert result.reclaimed
        assert result.lease.token > old.token
        await first.keeper.run_round()
        assert lost == [old]
        assert first.keeper.leases() == []
        assert not await first.release(old)  # the stale lease frees nothing
        state = await second.lookup("web")
        assert state is not None
        assert state.lease == result.lease
    finally:
        await first.aclose()
        await second.aclose()


class Recorded(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@pytest.fixture
def gateway_log(monkeypatch: pytest.MonkeyPatch) -> Iterator[Recorded]:
    """The gateway logger's events, whatever another test configured: EventLog goes
    through the logging module only while no writer is configured."""
    monkeypatch.setattr(logs._config, "writer", None)
    logger = logging.getLogger("tunnelgate.gateway")
    handler, level = Recorded(), logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


async def test_redis_down_fails_closed_and_queues_releases_and_holds(
    redis_server: RedisServer, registry: RedisRegistry, gateway_log: Recorded
) -> None:
    freed = await claimed(registry, "freed", ALICE)
    held = await claimed(registry, "held", ALICE)
    kept = await claimed(registry, "kept", BOB)
    redis_server.kill()
    with pytest.raises(RegistryUnavailable):
        await registry.claim("new", BOB, "n1")
    with pytest.raises(RegistryUnavailable):
        await registry.count(ALICE.principal)
    assert not await registry.release(freed)  # not known yet: queued
    assert not await registry.hold(held, GRACE)
    assert registry.keeper.pending == 2
    with pytest.raises(RegistryUnavailable):
        await registry.keeper.run_round()
    assert registry.keeper.pending == 2
    redis_server.start()  # empty: no persistence
    await registry.keeper.run_round()
    assert registry.keeper.pending == 0
    state = await registry.lookup("kept")
    assert state is not None
    assert state.lease == kept  # written back with its own token
    assert state.online
    assert await registry.lookup("freed") is None
    state = await registry.lookup("held")  # written back as held: its owner may come back
    assert state is not None
    assert state.lease == held
    assert not state.online
    assert await registry.count(BOB.principal) == 1
    result = await registry.claim("new", ALICE, "n1")
    assert isinstance(result, Claimed)
    assert result.lease.token > kept.token  # the counter is above every re-asserted token
    events = [line for line in gateway_log.messages if "registry_" in line]
    assert len(events) == 2, events  # once per transition
    assert "registry_unavailable" in events[0]
    assert "registry_restored" in events[1]


async def test_a_hold_redis_did_not_get_is_made_later_with_the_grace_left(
    redis_server: RedisServer, registry: RedisRegistry
) -> None:
    """A stalled Redis: the hold times out (queued), and is made once Redis answers
    again, by the keeper or by the stalled command itself (it was sent: a timeout does
    not say whether a command ran), with at most the grace from then."""
    lease = await claimed(registry, "web", ALICE)
    redis_server.pause()  # the lease stays in Redis; the hold gets no answer
    try:
        assert not await registry.hold(lease, 3.0)
        assert registry.keeper.pending == 1
    finally:
        redis_server.resume()
    resumed = time.monotonic()
    await registry.keeper.run_round()
    assert registry.keeper.pending == 0
    state = await registry.lookup("web")
    assert state is not None
    assert not state.online
    assert state.expires_at <= resumed + 3.0 + 0.05
    assert registry.keeper.leases() == []  # a held lease is not refreshed


async def test_a_lease_taken_while_redis_was_empty_is_lost_here(
    redis_server: RedisServer,
) -> None:
    lost: list[Lease] = []
    first = RedisRegistry(redis_server.url, "n1", LIVENESS, on_lost=lost.append)
    second = RedisRegistry(redis_server.url, "n2", LIVENESS)
    try:
        old = await claimed(first, "web", ALICE, "n1")
        redis_server.kill()
        redis_server.start()
        new = await claimed(second, "web", BOB, "n2")  # before n1 could write it back
        assert new.token > old.token  # the counter starts from the clock again
        await first.keeper.run_round()
        assert lost == [old]
        state = await second.lookup("web")
        assert state is not None
        assert state.lease == new  # no second owner
    finally:
        await first.aclose()
        await second.aclose()


async def test_a_redis_that_does_not_answer_fails_within_the_timeout(
    redis_server: RedisServer, registry: RedisRegistry
) -> None:
    await claimed(registry, "warm", ALICE)  # a pooled connection, then silence on it
    redis_server.pause()
    try:
        start = time.monotonic()
        with pytest.raises(RegistryUnavailable):
            await registry.claim("web", ALICE, "n1")
        assert time.monotonic() - start < limits.REDIS_TIMEOUT + 0.5
    finally:
        redis_server.resume()


async def test_owner_changes_are_published(registry: RedisRegistry) -> None:
    pubsub = registry.client.pubsub()
    await pubsub.subscribe(redis_scripts.OWNERS_CHANNEL)
    try:
        lease = await claimed(registry, "web", ALICE)
        assert await registry.hold(lease, GRACE)
        again = await claimed(registry, "web", ALICE)
        assert await registry.release(again)
        assert await registry.claim("port:20001", BOB, "n1")
        seen: list[str] = []
        deadline = time.monotonic() + DEADLINE
        while len(seen) < 5 and time.monotonic() < deadline:
            message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=0.5)
            if message is not None:
                seen.append(message["data"])
        assert seen == ["web", "web", "web", "web", "port:20001"]
    finally:
        await pubsub.aclose()  # type: ignore[no-untyped-call]


async def test_counts_forget_names_whose_lease_ran_out(redis_server: RedisServer) -> None:
    short = RedisRegistry(redis_server.url, "n1", 0.2)
    try:
        for name in ("a", "b", "c"):
            await claimed(short, name, ALICE)
        assert await short.count(ALICE.principal) == 3
        await wait_free(short, "c")
        assert await short.count(ALICE.principal) == 0
        owned = redis_scripts.OWNED_PREFIX + ALICE.principal
        assert redis_server.command("EXISTS", owned).startswith(b":0")  # nothing left behind
    finally:
        await short.aclose()


async def test_the_keeper_refreshes_in_batches(
    registry: RedisRegistry, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(limits, "MAX_LEASES_PER_REFRESH", 7)
    leases = [await claimed(registry, f"n{i}", ALICE) for i in range(20)]
    await registry.keeper.run_round()
    assert sorted(registry.keeper.leases(), key=lambda lease: lease.name) == sorted(
        leases, key=lambda lease: lease.name
    )
    assert await registry.count(ALICE.principal) == 20


def test_logged_urls_carry_no_password() -> None:
    assert public_url("redis://:s3cret@10.0.0.1:6379/0") == "redis://:***@10.0.0.1:6379/0"
    assert public_url("redis://u:s3cret@[::1]:6379") == "redis://u:***@[::1]:6379"
    assert public_url("redis://127.0.0.1:6379/0") == "redis://127.0.0.1:6379/0"


async def test_a_principals_tunnels_are_counted_across_nodes(redis_server: RedisServer) -> None:
    """--max-tunnels-per-token holds for the cluster, not per gateway."""
    first = RedisRegistry(redis_server.url, "n1", LIVENESS)
    second = RedisRegistry(redis_server.url, "n2", LIVENESS)
    try:
        await claimed(first, "a", ALICE, "n1")
        b = await claimed(second, "b", ALICE, "n2")
        assert await first.count(ALICE.principal) == 2
        assert await second.hold(b, GRACE)
        assert await first.count(ALICE.principal) == 1
    finally:
        await first.aclose()
        await second.aclose()


async def test_a_held_name_is_written_back_after_a_restart_with_its_grace_left(
    redis_server: RedisServer, registry: RedisRegistry, gateway_log: Recorded
) -> None:
    """Redis restarted empty during an owner's reconnect grace: the name stays held for
    that owner (refused to others) until the grace it had left is over, not free early."""
    web = await claimed(registry, "web", ALICE)
    port = await claimed(registry, "port:20001", ALICE)
    held_at = time.monotonic()
    assert await registry.hold(web, 3.0)
    assert await registry.hold(port, 3.0)
    redis_server.kill()
    redis_server.start()  # empty
    await registry.keeper.run_round()
    assert any("leases_reasserted" in line for line in gateway_log.messages)
    state = await registry.lookup("web")
    assert state is not None
    assert state.lease == web
    assert not state.online
    assert time.monotonic() < state.expires_at <= held_at + 3.0 + 0.05  # the grace left
    assert await registry.claim("web", BOB, "n1") is RejectReason.NAME_TAKEN
    assert await registry.count(ALICE.principal) == 0  # held names do not count
    ports = await registry.ports(20000, 20010)
    assert list(ports) == [20001]  # in the port index again
    assert not ports[20001].online
    back = await registry.claim("web", ALICE, "n1")  # its owner comes back
    assert isinstance(back, Claimed)
    assert back.reclaimed
    freed = await wait_free(registry, "port:20001")
    assert freed >= held_at + 3.0 - 0.05  # then the hold runs out, as it would have
    assert await registry.ports(20000, 20010) == {}


async def test_a_hold_is_kept_only_until_its_owner_is_back_or_its_grace_is_over(
    redis_server: RedisServer,
) -> None:
    lost: list[Lease] = []
    first = RedisRegistry(redis_server.url, "n1", LIVENESS, on_lost=lost.append)
    second = RedisRegistry(redis_server.url, "n2", LIVENESS)
    try:
        moved = await claimed(first, "moved", ALICE, "n1")
        short = await claimed(first, "short", ALICE, "n1")
        assert await first.hold(moved, GRACE)
        assert await first.hold(short, 0.2)
        assert sorted(lease.name for lease in first.keeper.held()) == ["moved", "short"]
        back = await claimed(second, "moved", ALICE, "n2")  # its owner, on another node
        await wait_free(first, "short")
        await first.keeper.run_round()
        assert first.keeper.held() == []
        assert lost == []  # a hold replaced is not a tunnel lost
        state = await first.lookup("moved")
        assert state is not None
        assert state.lease == back
        redis_server.kill()
        redis_server.start()
        await first.keeper.run_round()
        assert await first.lookup("short") is None  # not written back after its grace
        assert await first.lookup("moved") is None  # nor the hold its owner left
    finally:
        await first.aclose()
        await second.aclose()


async def test_the_port_index_keeps_claimed_ports_and_is_cleaned_as_it_is_read(
    redis_server: RedisServer, registry: RedisRegistry
) -> None:
    dead = RedisRegistry(redis_server.url, "n2", 0.2)  # no keeper: its lease runs out
    try:
        await claimed(dead, "port:20001", BOB, "n2")
        await claimed(registry, "port:20002", ALICE)
        released = await claimed(registry, "port:20003", ALICE)
        dropped = await claimed(registry, "port:20004", ALICE)
        await claimed(registry, "web", ALICE)
        assert await registry.release(released)
        assert await registry.hold(dropped, 0.0)
        index = redis_scripts.PORTS_KEY
        assert redis_server.command("ZCARD", index).startswith(b":2")
        await wait_free(registry, "port:20001")
        assert list(await registry.ports(20000, 29999)) == [20002]
        assert redis_server.command("ZCARD", index).startswith(b":1")  # cleaned as read
    finally:
        await dead.aclose()
