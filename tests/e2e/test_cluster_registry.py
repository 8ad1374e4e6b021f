"""Cluster mode's shared registry (issue 12 items 1, 3, 6): gateways sharing one real
redis-server, real clients and the local app, each its own process on loopback.

Requests go through the node that has the tunnel only (forwarding between nodes is not
this module's). Every wait is on a log line, a client's output, an exit or a poll of
Redis with a deadline.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest
from e2e_support import EXIT_REJECTED, assert_rejected, json_line, wait_log_line

from tunnelgate.testing.proc import JsonObject, Proc
from tunnelgate.testing.processes import (
    build_request,
    free_port,
    http_request,
    start_client,
    start_gateway,
    wait_ready_async,
)
from tunnelgate.testing.redis_server import RedisServer

SECRET = "cluster-secret-for-the-tests-0123456789"
GRACE = 5.0  # seconds: --reconnect-grace of every node here (liveness 5 s, TTL 7.5 s)
LEASE_TTL = 1.5 * GRACE
WAIT = 20.0  # seconds any awaited change may take on a loaded 2-core machine
POLL = 0.02  # seconds between polls of Redis (each wait has its deadline)


@dataclass
class Node:
    proc: Proc
    port: int
    advertise: str

    def connect_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/connect"


def start_node(redis: RedisServer, *, port: int | None = None) -> Node:
    advertise = f"127.0.0.1:{free_port()}"
    args = ["--redis", redis.url, "--cluster-secret", SECRET, "--advertise", advertise]
    proc, bound = start_gateway(*args, "--reconnect-grace", str(GRACE), port=port)
    return Node(proc, bound, advertise)


@contextlib.contextmanager
def cluster(redis: RedisServer, count: int) -> Iterator[list[Node]]:
    with contextlib.ExitStack() as stack:
        nodes = []
        for _ in range(count):
            node = start_node(redis)
            stack.callback(node.proc.terminate)
            nodes.append(node)
        yield nodes


@pytest.fixture
def clients() -> Iterator[list[Proc]]:
    """Clients a test starts; each terminated (by PID) after it."""
    started: list[Proc] = []
    try:
        yield started
    finally:
        for proc in started:
            proc.terminate()


def client(clients: list[Proc], node: Node, app_port: int, name: str) -> Proc:
    proc = start_client("http", str(app_port), "--server", node.connect_url(), "--subdomain", name)
    clients.append(proc)
    return proc


def lease(redis: RedisServer, name: str) -> dict[str, str]:
    """The lease hash of `name` in Redis (empty: free)."""
    lines = redis.command("HGETALL", f"tunnelgate:lease:{name}").decode().split("\r\n")
    assert lines[0].startswith("*"), lines
    values = lines[2 : 2 + 2 * int(lines[0][1:]) : 2]  # each value follows its $length
    return dict(zip(values[::2], values[1::2], strict=True))


async def wait_lease(redis: RedisServer, name: str, node: str | None) -> float:
    """Poll until `name`'s lease is on `node` (None: until it is free); when (monotonic)."""
    deadline = time.monotonic() + WAIT
    while (found := lease(redis, name).get("n")) != node:
        assert time.monotonic() < deadline, f"{name}: on {found}, not {node}, after {WAIT}s"
        await asyncio.sleep(POLL)  # poll interval; the deadline bounds the wait
    return time.monotonic()


async def get(node: Node, name: str) -> int:
    request = build_request("GET", "/", host=f"{name}.localhost:{node.port}")
    return (await http_request(node.port, request, timeout=WAIT)).status


async def wait_retrying(proc: Proc, reason: str) -> None:
    """Until the client says it backs off after a rejection naming `reason` (and so stays
    up, to try again), as a JSON `reconnecting` event on its stdout."""

    def retrying(text: str) -> bool:
        found = json_line(text)
        return (
            found is not None
            and found.get("event") == "reconnecting"
            and reason in str(found.get("reason"))
        )

    await proc.wait_for_line_async(retrying, WAIT)


def event(kind: str, /, **fields: object) -> Callable[[JsonObject], bool]:
    def match(obj: JsonObject) -> bool:
        return obj.get("event") == kind and all(obj.get(k) == v for k, v in fields.items())

    return match


async def test_a_name_is_unique_across_nodes_under_concurrent_claims(
    redis_server: RedisServer, local_app_proc: int, clients: list[Proc]
) -> None:
    with cluster(redis_server, 3) as nodes:
        racers = [client(clients, nodes[i % 3], local_app_proc, "race") for i in range(10)]
        outcomes = await asyncio.gather(*(ready_or_exit(proc) for proc in racers))
        winners = [proc for proc, ready in zip(racers, outcomes, strict=True) if ready]
        assert len(winners) == 1, [proc.output() for proc in racers]
        for proc, ready in zip(racers, outcomes, strict=True):
            if not ready:
                assert proc.returncode == EXIT_REJECTED, proc.output()
                assert "name_taken" in proc.output(), proc.output()
        winner_node = nodes[racers.index(winners[0]) % 3]
        assert lease(redis_server, "race")["n"] == winner_node.advertise
        assert await get(winner_node, "race") == 200


async def ready_or_exit(proc: Proc) -> bool:
    """True once the client says its tunnel is ready, False once it has exited."""
    waiter = asyncio.ensure_future(wait_ready_async(proc, WAIT))
    exited = asyncio.ensure_future(proc.wait_exit_async(WAIT))
    done, pending = await asyncio.wait({waiter, exited}, return_when=asyncio.FIRST_COMPLETED)
    for task in pending:
        task.cancel()
    await asyncio.gather(*pending, return_exceptions=True)
    if waiter in done and waiter.exception() is None:
        return True
    await exited if exited in done else await proc.wait_exit_async(WAIT)
    return False


async def test_a_killed_nodes_names_free_after_the_grace_and_move_with_their_clients(
    redis_server: RedisServer, local_app_proc: int, clients: list[Proc]
) -> None:
    with cluster(redis_server, 3) as (a, b, d):
        moving = client(clients, a, local_app_proc, "moving")
        orphan = client(clients, d, local_app_proc, "orphan")
        await wait_ready_async(moving, WAIT)
        await wait_ready_async(orphan, WAIT)
        mark = len(moving.stdout_lines)
        a.proc.signal(signal.SIGKILL)
        d.proc.signal(signal.SIGKILL)
        killed = time.monotonic()
        # Before the grace: the dead node's name is nobody else's.
        await assert_rejected(client(clients, b, local_app_proc, "orphan"), "name_taken")
        assert time.monotonic() - killed < GRACE, "too slow to test before the grace"
        # Its client comes back to another node on the same address: its name with it.
        a2 = start_node(redis_server, port=a.port)
        try:
            await wait_ready_async(moving, WAIT, after=mark)
            await wait_lease(redis_server, "moving", a2.advertise)
            assert await get(a2, "moving") == 200
            # The orphan's lease runs out between the grace and 1.5 x the grace.
            freed = await wait_lease(redis_server, "orphan", None)
            assert GRACE - 0.05 <= freed - killed <= LEASE_TTL + 1.0, freed - killed
            taker = client(clients, b, local_app_proc, "orphan")
            await wait_ready_async(taker, WAIT)
            assert lease(redis_server, "orphan")["n"] == b.advertise
            assert await get(b, "orphan") == 200
        finally:
            a2.proc.terminate()


async def test_redis_down_keeps_tunnels_serving_and_refuses_new_claims_until_it_is_back(
    redis_server: RedisServer, local_app_proc: int, clients: list[Proc]
) -> None:
    with cluster(redis_server, 2) as (a, b):
        alpha = client(clients, a, local_app_proc, "alpha")
        beta = client(clients, b, local_app_proc, "beta")
        await wait_ready_async(alpha, WAIT)
        await wait_ready_async(beta, WAIT)
        marks = [len(node.proc.stderr_lines) for node in (a, b)]
        redis_server.kill()
        assert await get(a, "alpha") == 200
        assert await get(b, "beta") == 200
        # Refused fail-closed, but not final: the client backs off and comes back.
        gamma = client(clients, b, local_app_proc, "gamma")
        await wait_retrying(gamma, "registry_unavailable")
        for node, mark in zip((a, b), marks, strict=True):
            await wait_log_line(node.proc, event("registry_unavailable"), after=mark, timeout=WAIT)
        assert await get(a, "alpha") == 200  # still, as long as Redis is away
        redis_server.start()  # empty
        for node, mark in zip((a, b), marks, strict=True):
            await wait_log_line(node.proc, event("registry_restored"), after=mark, timeout=WAIT)
        await wait_lease(redis_server, "alpha", a.advertise)  # written back
        await wait_lease(redis_server, "beta", b.advertise)
        for node, mark in zip((a, b), marks, strict=True):
            found = await wait_log_line(
                node.proc, event("leases_reasserted"), after=mark, timeout=WAIT
            )
            assert found["count"] == 1, found
        # No second owner: the name is still alpha's, cluster-wide.
        await assert_rejected(client(clients, b, local_app_proc, "alpha"), "name_taken")
        await wait_ready_async(gamma, WAIT)  # its retry after Redis came back
        assert await get(b, "gamma") == 200
        assert await get(a, "alpha") == 200
        assert alpha.returncode is None
        assert beta.returncode is None


async def test_a_lease_taken_elsewhere_while_redis_was_empty_is_lost_and_its_client_told(
    redis_server: RedisServer, local_app_proc: int, clients: list[Proc]
) -> None:
    with cluster(redis_server, 2) as (a, b):
        first = client(clients, a, local_app_proc, "delta")
        await wait_ready_async(first, WAIT)
        mark = len(a.proc.stderr_lines)
        a.proc.signal(signal.SIGSTOP)  # a cannot write its lease back before b claims
        try:
            redis_server.kill()
            redis_server.start()
            second = client(clients, b, local_app_proc, "delta")
            await wait_ready_async(second, WAIT)
        finally:
            a.proc.signal(signal.SIGCONT)
        lost = await wait_log_line(a.proc, event("lease_lost", name="delta"), after=mark)
        assert lost["node"] == a.advertise
        assert await first.wait_exit_async(WAIT) != 0
        assert "lease lost" in first.output()
        assert lease(redis_server, "delta")["n"] == b.advertise
        assert await get(b, "delta") == 200
        # Not served twice: a has no tunnel for it any more, and relays to its owner, b
        # (cross-node forwarding, docs/cluster.md).
        assert await get(a, "delta") == 200
        relayed = await wait_log_line(
            a.proc, event("cluster_forwarded", target="delta"), after=mark
        )
        assert relayed["node"] == b.advertise


async def test_a_gateway_starts_without_redis_and_joins_when_it_comes(
    redis_server: RedisServer, local_app_proc: int, clients: list[Proc]
) -> None:
    redis_server.kill()
    node = start_node(redis_server)  # healthy without Redis
    try:
        joined = await wait_log_line(node.proc, event("cluster_joined"), timeout=WAIT)
        assert joined["node"] == node.advertise
        assert joined["redis"] == redis_server.url
        await wait_log_line(node.proc, event("registry_unavailable"), timeout=WAIT)
        early = client(clients, node, local_app_proc, "early")
        await wait_retrying(early, "registry_unavailable")
        redis_server.start()
        await wait_log_line(node.proc, event("registry_restored"), timeout=WAIT)
        await wait_ready_async(early, WAIT)
        assert early.returncode is None
        assert lease(redis_server, "early")["n"] == node.advertise
        assert await get(node, "early") == 200
    finally:
        node.proc.terminate()
