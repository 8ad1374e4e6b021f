"""Public clients that read slowly or not at all: bounded memory, given back afterwards."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import Awaitable, Callable

from e2e_support import TunnelEnv
from hostile_support import rss_mib

from tunnelgate import limits

SLOW_READERS = 64
BODY = 100 * 1024 * 1024
# What the gateway may hold per stalled stream: its write buffer's high-water mark and
# one initial window (256 KiB each); and per tunnel, the windows' growth budget (64 MiB:
# windows grow while the readers' kernel buffers still take data). Plus slack.
PER_READER_MIB = 0.5
GROWTH_MIB = limits.MAX_CONNECTION_WINDOW / limits.MiB
SLACK_MIB = 24.0
SETTLE_TIME = 1.0  # seconds a count must hold still to count as settled


def _stalled_reader(port: int, raw: bytes) -> socket.socket:
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", port))
    sock.sendall(raw)
    return sock


async def _settled(read: Callable[[], Awaitable[int]], timeout: float = 20.0) -> int:  # noqa: ASYNC109
    """Poll `read()` until its value holds still for SETTLE_TIME (with a deadline)."""
    deadline = time.monotonic() + timeout
    last, since = await read(), time.monotonic()
    while time.monotonic() - since < SETTLE_TIME:
        assert time.monotonic() < deadline, f"{read} never settled (last {last})"
        await asyncio.sleep(0.1)  # poll interval; the deadline bounds the wait
        value = await read()
        if value != last:
            last, since = value, time.monotonic()
    return last


async def test_stalled_readers_hold_bounded_memory_given_back_after(
    tunnel_env: TunnelEnv,
) -> None:
    pid = tunnel_env.gateway.pid
    baseline = rss_mib(pid)
    raw = tunnel_env.build("GET", f"/bytes?n={BODY}")
    readers = [_stalled_reader(tunnel_env.gateway_port, raw) for _ in range(SLOW_READERS)]
    try:

        async def rss() -> int:
            return round(rss_mib(pid))

        during = await _settled(rss)
        bound = SLOW_READERS * PER_READER_MIB + GROWTH_MIB + SLACK_MIB
        assert during - baseline < bound, (baseline, during)
        assert (await tunnel_env.get("/")).status == 200  # the tunnel still serves
    finally:
        for sock in readers:
            sock.close()
    # Once they are gone the heap is trimmed (every 15 s while nothing is held).
    deadline = time.monotonic() + 45.0
    while rss_mib(pid) > baseline + 12:
        assert time.monotonic() < deadline, (baseline, during, rss_mib(pid))
        await asyncio.sleep(0.5)  # poll interval; the deadline bounds the wait


async def test_pipelined_requests_wait_for_a_client_that_reads_nothing(
    tunnel_env: TunnelEnv,
) -> None:
    """Each response the gateway started for a client that reads nothing would add up to
    a window to its buffer; so the next request waits until the client reads."""
    pid = tunnel_env.gateway.pid
    before = (await tunnel_env.app_stats())["requests"]
    baseline = rss_mib(pid)
    one = tunnel_env.build("GET", "/bytes?n=1000000")
    sock = _stalled_reader(tunnel_env.gateway_port, one * 100)
    try:

        async def served() -> int:
            return int((await tunnel_env.app_stats())["requests"]) - int(before)

        count = await _settled(served)
        assert count < 20, f"{count} of 100 pipelined responses were started"
        assert rss_mib(pid) - baseline < 30
    finally:
        with contextlib.suppress(OSError):
            sock.close()
