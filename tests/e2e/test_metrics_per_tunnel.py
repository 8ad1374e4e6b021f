"""`--metrics-per-tunnel` end to end (issue 10): a real gateway with --admin, real tunnel
clients; /metrics read with prometheus_client's own parser. A tunnel's series move with
its traffic and are gone once it is."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator

import pytest

from tunnelgate.testing.metrics import scrape
from tunnelgate.testing.processes import (
    Proc,
    build_request,
    free_port,
    free_port_range,
    http_request,
    start_client,
    start_gateway,
    start_local_app_proc,
    wait_ready_async,
)
from tunnelgate.testing.tcp_app import start_tcp_app

WAIT = 15.0
"""Seconds a client gets to come up, and a series to change."""


@pytest.fixture(scope="module")
def app_port() -> Iterator[int]:
    proc, port = start_local_app_proc()
    try:
        yield port
    finally:
        proc.terminate()


async def metrics(port: int) -> dict[str, float]:
    return await scrape(port)


async def wait_metrics(
    admin: int, done: str, check: Callable[[dict[str, float]], bool]
) -> dict[str, float]:
    """/metrics, polled until `check(samples)` holds (`done` names it in the failure)."""
    deadline = time.monotonic() + WAIT
    while not check(samples := await metrics(admin)):
        assert time.monotonic() < deadline, f"{done}: not after {WAIT}s\n{samples}"
        await asyncio.sleep(0.05)  # poll interval; the deadline above bounds the wait
    return samples


def of_tunnel(samples: dict[str, float], tunnel: str) -> list[str]:
    return [key for key in samples if f"tunnel={tunnel}}}" in key or f"tunnel={tunnel}," in key]


def started(args: list[str], procs: list[Proc]) -> Proc:
    proc = start_client(*args)
    procs.append(proc)
    return proc


async def test_http_series_move_with_traffic_and_go_with_the_tunnel(app_port: int) -> None:
    admin = free_port()
    gateway, port = start_gateway("--admin", f"127.0.0.1:{admin}", "--metrics-per-tunnel")
    procs: list[Proc] = [gateway]
    try:
        server = f"ws://127.0.0.1:{port}/connect"
        client = started(["http", str(app_port), "--server", server, "--subdomain", "pt"], procs)
        await wait_ready_async(client, WAIT)
        requests = "tunnelgate_tunnel_requests_total{protocol=http,tunnel=pt}"
        out = "tunnelgate_tunnel_bytes_total{direction=out,protocol=http,tunnel=pt}"
        before = await metrics(admin)
        for _ in range(4):
            raw = build_request("GET", "/bytes?n=1000&seed=1", host=f"pt.localhost:{port}")
            assert (await http_request(port, raw)).status == 200
        after = await metrics(admin)
        assert after[requests] - before[requests] == 4
        assert after[out] - before[out] > 4 * 1000
        client.terminate()  # a clean close frees the name at once
        gone = await wait_metrics(admin, "series gone", lambda s: not of_tunnel(s, "pt"))
        assert gone["tunnelgate_tunnels_active{protocol=http}"] == 0
    finally:
        for proc in reversed(procs):
            proc.terminate()


async def test_a_tcp_tunnel_is_named_by_its_port_and_counts_bytes() -> None:
    app = await start_tcp_app()
    low, high = free_port_range(2)
    admin = free_port()
    gateway, port = start_gateway(
        "--admin", f"127.0.0.1:{admin}", "--metrics-per-tunnel", "--tcp-ports", f"{low}-{high}"
    )
    procs: list[Proc] = [gateway]
    try:
        server = f"ws://127.0.0.1:{port}/connect"
        args = ["tcp", str(app.port), "--server", server, "--remote-port", str(low)]
        client = started(args, procs)
        await wait_ready_async(client, WAIT)
        payload = bytes(range(256)) * 40
        reader, writer = await asyncio.open_connection("127.0.0.1", low)
        writer.write(payload)
        writer.write_eof()
        assert await asyncio.wait_for(reader.read(), WAIT) == payload  # echoed, then EOF
        writer.close()
        await writer.wait_closed()
        tunnel = str(low)
        key = f"tunnelgate_tunnel_bytes_total{{direction=%s,protocol=tcp,tunnel={tunnel}}}"
        counted = await wait_metrics(
            admin, "bytes counted", lambda s: s.get(key % "out") == len(payload)
        )
        assert counted[key % "in"] == len(payload)
        assert counted[f"tunnelgate_tunnel_requests_total{{protocol=tcp,tunnel={tunnel}}}"] == 1
        client.terminate()
        await wait_metrics(admin, "series gone", lambda s: not of_tunnel(s, tunnel))
    finally:
        for proc in reversed(procs):
            proc.terminate()
        await app.aclose()
