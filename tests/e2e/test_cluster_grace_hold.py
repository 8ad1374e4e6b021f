"""--grace-hold across nodes (docs/cluster.md, "Forwarding"): a public request on one node
for a name held for its owner waits for the owner to be back on any node, then goes there.

Three gateway processes and one real redis-server. The client reaches the gateways through
a relay the test switches (testing/switch_proxy.py): cut, its tunnel drops on node A (the
name held there), and its reconnection is let through to node B. Every wait is on a log
line, a client's output, or a poll with a deadline.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass

import pytest
from e2e_support import wait_log_line

from tunnelgate.gateway.redis_registry import RedisRegistry
from tunnelgate.gateway.registry import Claimed, Owner
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
from tunnelgate.testing.switch_proxy import SwitchProxy

SECRET = "cluster-secret-for-the-tests-0123456789"
GRACE = 10.0  # --reconnect-grace: how long a dropped tunnel's name is held
GRACE_HOLD = 8.0  # --grace-hold of every node
WAIT = 20.0  # seconds any awaited change may take on a loaded 2-core machine
POLL = 0.05  # seconds between polls (each wait has its deadline)


@dataclass
class Node:
    proc: Proc
    port: int
    advertise: str

    def host(self, name: str) -> str:
        return f"{name}.localhost:{self.port}"


@contextlib.contextmanager
def cluster(redis: RedisServer, count: int = 3) -> Iterator[list[Node]]:
    with contextlib.ExitStack() as stack:
        nodes = []
        for _ in range(count):
            advertise = f"127.0.0.1:{free_port()}"
            args = ["--redis", redis.url, "--cluster-secret", SECRET, "--advertise", advertise,
                    "--reconnect-grace", str(GRACE), "--grace-hold", str(GRACE_HOLD)]  # fmt: skip
            proc, port = start_gateway(*args)
            stack.callback(proc.terminate)
            nodes.append(Node(proc, port, advertise))
        yield nodes


@pytest.fixture
async def registry(redis_server: RedisServer) -> AsyncIterator[RedisRegistry]:
    """The test's own view of the cluster's registry (node "test")."""
    view = RedisRegistry(redis_server.url, "127.0.0.1:1", GRACE)
    try:
        yield view
    finally:
        await view.aclose()


def event(kind: str, /, **fields: object) -> Callable[[JsonObject], bool]:
    def match(obj: JsonObject) -> bool:
        return obj.get("event") == kind and all(obj.get(k) == v for k, v in fields.items())

    return match


async def get(node: Node, name: str) -> tuple[int, str | None]:
    raw = build_request("GET", "/", host=node.host(name))
    response = await http_request(node.port, raw, timeout=WAIT)
    return response.status, response.header("X-Tunnelgate-Error")


async def held_on(registry: RedisRegistry, name: str, node: Node) -> None:
    deadline = time.monotonic() + WAIT
    while True:
        state = await registry.lookup(name)
        if state is not None and not state.online and state.lease.node == node.advertise:
            return
        assert time.monotonic() < deadline, state
        await asyncio.sleep(POLL)  # poll interval; the deadline bounds it


async def test_a_request_waits_for_an_owner_that_comes_back_on_another_node(
    redis_server: RedisServer, registry: RedisRegistry, local_app_proc: int
) -> None:
    with cluster(redis_server) as (a, b, c):
        proxy = await SwitchProxy.start(a.port)
        client = start_client(
            "http", str(local_app_proc), "--subdomain", "back",
            "--server", f"ws://127.0.0.1:{proxy.port}/connect",
        )  # fmt: skip
        try:
            await wait_ready_async(client, WAIT)
            assert await get(c, "back") == (200, None)  # through C, to A
            mark = len(client.stdout_lines)
            proxy.hold()
            proxy.cut()  # the tunnel drops on A: its name is held there
            await held_on(registry, "back", a)
            waiting = asyncio.create_task(get(c, "back"))
            await wait_log_line(c.proc, event("request_waiting", name="back", node=a.advertise))
            assert not waiting.done()  # no 502 at once: it waits
            proxy.release(b.port)  # the client's reconnection reaches B
            await wait_ready_async(client, WAIT, after=mark)
            assert await waiting == (200, None)
            await wait_log_line(c.proc, event("cluster_forwarded", target="back", node=b.advertise))
        finally:
            client.terminate()
            await proxy.aclose()


async def test_a_request_waits_no_longer_than_the_hold(
    redis_server: RedisServer, registry: RedisRegistry
) -> None:
    with cluster(redis_server, 1) as (c,):
        claimed = await registry.claim("gone", Owner("someone"), registry.node)
        assert isinstance(claimed, Claimed)
        held_at = time.monotonic()
        assert await registry.hold(claimed.lease, 1.5)  # its owner never comes back
        assert await get(c, "gone") == (502, "tunnel_offline")
        waited = time.monotonic() - held_at
        assert 1.5 - 0.1 <= waited < GRACE_HOLD  # the hold's end, not --grace-hold's
        await wait_log_line(c.proc, event("request_waiting", name="gone"))
