"""Gateways of one cluster in this process, sharing one MemoryRegistry (no Redis needed).

Each node is a real `Gateway` with real listeners on loopback (its own --tcp-bind,
127.0.0.N, and --advertise port): only the registry is shared in memory instead of Redis.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import io
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from tunnelgate.config import GatewayConfig
from tunnelgate.gateway.app import Gateway
from tunnelgate.gateway.registry import MemoryRegistry
from tunnelgate.logs import LineWriter
from tunnelgate.testing.processes import build_request, free_port, http_request

SECRET = "cluster-secret-for-tests-0123456789"
START_TIMEOUT = 10.0
STOP_TIMEOUT = 10.0


@dataclass
class Node:
    gateway: Gateway
    stop: asyncio.Event
    task: asyncio.Task[None]
    http_port: int
    link_port: int
    bind: str  # its --tcp-bind
    https_port: int | None = None

    @property
    def name(self) -> str:
        return self.gateway.node

    @property
    def server(self) -> str:
        return f"ws://127.0.0.1:{self.http_port}/connect"


async def _healthy(port: int) -> bool:
    try:
        response = await http_request(port, build_request("GET", "/healthz"), timeout=1.0)
    except OSError:
        return False
    return response.status == 200


async def poll_async(
    condition: Callable[[], Awaitable[bool]],
    timeout: float,  # noqa: ASYNC109 - a deadline for the condition, by design
    interval: float = 0.02,
) -> None:
    """Until `condition()` is true; TimeoutError after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not await condition():
        if time.monotonic() >= deadline:
            raise TimeoutError(f"{condition!r} still false after {timeout}s")
        await asyncio.sleep(interval)  # poll interval; the deadline bounds the wait


@contextlib.asynccontextmanager
async def in_process_cluster(
    count: int = 3,
    *,
    tcp_ports: tuple[int, int] | None = None,
    certificate: tuple[Path, Path] | None = None,
    grace_hold: float = 0.0,
) -> AsyncIterator[list[Node]]:
    """`certificate`: (chain, key) for an --https listener on every node; `grace_hold`:
    their --grace-hold (the shared MemoryRegistry publishes nothing: a wait ends at its
    deadline, or at a drain)."""
    registry = MemoryRegistry()
    nodes: list[Node] = []
    try:
        for i in range(count):
            http_port, link_port = free_port(), free_port()
            bind = f"127.0.0.{i + 2}"
            https_port = free_port() if certificate is not None else None
            tls: dict[str, object] = {}
            if certificate is not None:
                tls = {
                    "https": ("127.0.0.1", https_port),
                    "tls_cert": str(certificate[0]),
                    "tls_key": str(certificate[1]),
                }
            config = GatewayConfig(
                http=("127.0.0.1", http_port),
                advertise=("127.0.0.1", link_port),
                cluster_secret=SECRET,
                tcp_ports=tcp_ports,
                tcp_bind=bind,
                drain_timeout=1.0,
                grace_hold=grace_hold,
                **tls,  # type: ignore[arg-type]
            )
            gateway = Gateway(config, 4096)
            gateway.registry = registry
            stop = asyncio.Event()
            task = asyncio.get_running_loop().create_task(gateway.serve(stop))
            nodes.append(Node(gateway, stop, task, http_port, link_port, bind, https_port))
            await poll_async(functools.partial(_healthy, http_port), START_TIMEOUT)
        yield nodes
    finally:
        for node in nodes:
            node.stop.set()
        async with asyncio.timeout(STOP_TIMEOUT):
            await asyncio.gather(*(node.task for node in nodes), return_exceptions=True)


def events(stream: io.StringIO, name: str) -> list[dict[str, object]]:
    LineWriter.flush_all()
    found = [json.loads(line) for line in stream.getvalue().splitlines() if line.startswith("{")]
    return [event for event in found if event.get("event") == name]


async def wait_events(
    stream: io.StringIO,
    name: str,
    count: int,
    timeout: float = START_TIMEOUT,  # noqa: ASYNC109 - a deadline for the lines, by design
) -> list[dict[str, object]]:
    """The `name` lines once there are `count` of them (a relay logs when it ends)."""

    async def enough() -> bool:
        return len(events(stream, name)) >= count

    await poll_async(enough, timeout)
    return events(stream, name)
