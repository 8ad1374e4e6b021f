"""Abuse of the public edge, end to end: connection floods against the per-address and the
global cap, connections that never send a request, descriptor exhaustion, and what the
gateway keeps (descriptors, memory) after a flood.

Each test starts its own gateway (real processes on loopback) with the caps it needs; a
second loopback address (127.0.0.2) stands for another client. Refused connections are told
from served ones by asking each for ``/healthz``: a served one answers 200, a refused one was
closed at once and answers nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import AsyncIterator, Iterator, Sequence

from tunnelgate.testing.http_client import RawConnection, build_request
from tunnelgate.testing.proc import JsonObject, json_object
from tunnelgate.testing.processes import (
    Proc,
    free_port,
    poll_until_async,
    start_client,
    start_gateway,
    wait_ready,
)

OTHER = "127.0.0.2"
"""Another client's address (all of 127/8 is loopback on Linux)."""
OP_TIMEOUT = 5.0
"""Seconds any one socket operation of a test may take (well under the head timeouts used)."""
WAIT = 10.0
"""Seconds a condition (served again, descriptors back) gets to come true."""
BURST = 5
"""Lines RateLimitedLog lets through per cause in its window (logs.py)."""


# --- gateways and connections ------------------------------------------------------------------
@contextlib.contextmanager
def gateway(*args: str, open_files: int | None = None) -> Iterator[tuple[Proc, int]]:
    proc, port = start_gateway(*args, open_files=open_files)
    try:
        yield proc, port
    finally:
        proc.terminate()


async def connect(port: int, source: str = "127.0.0.1") -> RawConnection:
    async with asyncio.timeout(OP_TIMEOUT):
        reader, writer = await asyncio.open_connection("127.0.0.1", port, local_addr=(source, 0))
    return RawConnection(reader, writer, OP_TIMEOUT)


async def hold(port: int, count: int, source: str = "127.0.0.1") -> list[RawConnection]:
    """``count`` connections that send nothing, opened one after another (accepted in order)."""
    return [await connect(port, source) for _ in range(count)]


async def release(conns: Sequence[RawConnection]) -> None:
    await asyncio.gather(*(conn.aclose() for conn in conns))


def healthz(port: int) -> bytes:
    return build_request("GET", "/healthz", host=f"localhost:{port}")


async def served(conn: RawConnection, port: int) -> bool:
    """True if ``conn`` answers /healthz with 200; False if it was closed without a byte."""
    partial = b""
    try:
        await conn.send(healthz(port))
        response = await conn.read_response()
    except asyncio.IncompleteReadError as exc:
        partial = exc.partial
    except ConnectionError:  # reset: closed before or while we wrote
        return False
    else:
        assert response.status == 200, response
        return True
    assert partial == b"", f"a refused connection got {partial!r}"
    return False


async def count_served(conns: Sequence[RawConnection], port: int) -> int:
    return sum(await asyncio.gather(*(served(conn, port) for conn in conns)))


async def wait_served(port: int, source: str = "127.0.0.1") -> None:
    """Poll, with a deadline, until a new connection from ``source`` is served."""
    deadline = time.monotonic() + WAIT
    while True:
        conn = await connect(port, source)
        try:
            if await served(conn, port):
                return
        finally:
            await conn.aclose()
        assert time.monotonic() < deadline, f"{source} not served again within {WAIT}s"
        await asyncio.sleep(0.05)  # poll interval; the deadline bounds the wait


def events(proc: Proc, event: str, **match: object) -> list[JsonObject]:
    """The gateway's log events ``event`` with fields ``match``; complete once it has exited
    (``Proc.terminate`` waits for its output to be read)."""
    found = [json_object(line) for line in proc.stderr_lines]
    return [
        obj
        for obj in found
        if obj is not None
        and obj.get("event") == event
        and all(obj.get(key) == value for key, value in match.items())
    ]


# --- /proc readings of the gateway ---------------------------------------------------------------
def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


@contextlib.asynccontextmanager
async def flood(port: int, count: int) -> AsyncIterator[list[RawConnection]]:
    conns = await hold(port, count)
    try:
        yield conns
    finally:
        await release(conns)


# --- per-address and global caps ------------------------------------------------------------------
async def test_per_address_cap_refuses_exactly_the_excess() -> None:
    with gateway("--max-connections-per-address", "50") as (proc, port):
        async with flood(port, 80) as idle:
            # The first 50 hold their slots; the 30 after them were closed at once.
            assert await count_served(idle, port) == 50
            # Another address is not affected, while 127.0.0.1 is at its cap.
            await wait_served(port, OTHER)
            extra = await connect(port)
            assert not await served(extra, port)
            await extra.aclose()
        await wait_served(port)  # the idle ones are gone: 127.0.0.1 is served again
    refused = events(proc, "connection_refused", reason="per_address_cap")
    assert 1 <= len(refused) <= BURST  # 31 refusals, a few lines
    assert refused[0]["level"] == "warning"
    assert refused[0]["limit"] == 50
    assert str(refused[0]["client"]).startswith("127.0.0.1:")


async def test_global_cap_refuses_every_address_past_it() -> None:
    with gateway("--max-connections", "20") as (proc, port):
        async with flood(port, 30) as idle:
            assert await count_served(idle[:20], port) == 20
            assert await count_served(idle[20:], port) == 0
            other = await connect(port, OTHER)
            assert not await served(other, port)  # the cap is for everyone
            await other.aclose()
            await release(idle[:5])
            await wait_served(port, OTHER)  # five slots free again
        await wait_served(port)
    refused = events(proc, "connection_refused", reason="max_connections")
    assert 1 <= len(refused) <= BURST  # 11 refusals or more, a few lines
    assert refused[0]["limit"] == 20


async def test_a_tunnel_connection_keeps_its_slot_until_it_ends() -> None:
    """A /connect upgrade leaves the HTTP edge but holds its slot, like any connection,
    until the tunnel connection ends; one that fails the upgrade gives it back too."""
    with gateway("--max-connections-per-address", "3") as (_, port):
        server = f"ws://127.0.0.1:{port}/connect"
        with start_client("http", str(free_port()), "--server", server) as client:
            wait_ready(client)
            async with flood(port, 3) as idle:
                assert await count_served(idle, port) == 2  # the tunnel holds the third
        # The client is gone: its slot is free again (polled: its close takes a moment).
        deadline = time.monotonic() + WAIT
        while True:
            async with flood(port, 3) as idle:
                if await count_served(idle, port) == 3:
                    break
            assert time.monotonic() < deadline, "the tunnel's slot was not given back"
            await asyncio.sleep(0.05)  # poll interval; the deadline bounds the wait
        # An upgrade picows refuses (no Sec-WebSocket-Key) frees its slot as well.
        bad = build_request(
            "GET",
            "/connect",
            host=f"localhost:{port}",
            headers=[
                ("Upgrade", "websocket"),
                ("Connection", "Upgrade"),
                ("Sec-WebSocket-Version", "13"),
                ("Sec-WebSocket-Protocol", "tunnelgate.v2"),
            ],
        )
        for _ in range(5):
            conn = await connect(port)
            await conn.send(bad)
            assert (await conn.read_response()).status == 400
            await conn.aclose()
        await wait_served(port)
        async with flood(port, 3) as idle:
            assert await count_served(idle, port) == 3


# --- connections that never send a request ------------------------------------------------------
async def test_a_silent_connection_is_closed_at_the_head_timeout() -> None:
    with gateway("--head-timeout", "0.5") as (proc, port):
        started = time.monotonic()
        conn = await connect(port)
        assert await conn.read_some() == b""  # closed, and not a byte said (no 408)
        elapsed = time.monotonic() - started
        await conn.aclose()
        # Half a head is answered 408 at the same deadline.
        half = await connect(port)
        await half.send(f"GET / HTTP/1.1\r\nHost: localhost:{port}\r\n".encode())
        assert (await half.read_response()).status == 408
        await half.aclose()
    assert 0.4 <= elapsed < 3.0  # the head timeout, not the 75 s keep-alive
    silent = events(proc, "connection_timed_out", reason="no_request")
    assert len(silent) == 1
    assert (silent[0]["level"], silent[0]["timeout_s"]) == ("warning", 0.5)
    slow = events(proc, "connection_timed_out", reason="head_timeout")
    assert len(slow) == 1
    assert slow[0]["status"] == 408


async def test_timeouts_are_logged_at_a_limited_rate() -> None:
    with gateway("--head-timeout", "0.5") as (proc, port):
        async with flood(port, 20) as idle:
            for conn in idle:
                assert await conn.read_some() == b""
    assert 1 <= len(events(proc, "connection_timed_out")) <= BURST


# --- descriptors ---------------------------------------------------------------------------------
OPEN_FILES = 128
"""The gateway's open-file limit in the exhaustion test (it starts with about 14 open)."""


async def test_descriptor_exhaustion_is_refused_logged_and_recovered() -> None:
    # --max-connections far above what the descriptors allow; a head timeout that outlasts
    # the test, so that only the test lets the idle connections go.
    args = ("--max-connections", "1000", "--head-timeout", "60")
    with gateway(*args, open_files=OPEN_FILES) as (proc, port):
        async with flood(port, 150) as idle:
            held = await count_served(idle, port)
            assert 0 < held < OPEN_FILES
            # Exhausted: new connections are closed at once, and the gateway does not spin.
            # The scenario is a second of new connections against the exhausted gateway.
            cpu = cpu_seconds(proc.pid)
            started = time.monotonic()
            tries = 0
            while time.monotonic() - started < 1.0:
                conn = await connect(port)
                assert not await served(conn, port)
                await conn.aclose()
                tries += 1
                await asyncio.sleep(0.02)  # pace the attempts over the second
            used = cpu_seconds(proc.pid) - cpu
            assert used < 0.3, f"{used:.2f} s of CPU in a second of exhaustion"
        await wait_served(port)  # descriptors free again: served at once
    refused = events(proc, "connection_refused", reason="descriptors_exhausted")
    assert 1 <= len(refused) <= BURST  # 150 - held + tries refusals
    assert refused[0]["limit"] == OPEN_FILES
    assert 150 - held + tries > BURST


async def test_descriptors_and_memory_return_to_baseline_after_a_flood() -> None:
    """Silent connections the attacker keeps open are closed by the gateway at the head
    timeout; what they took (descriptors, memory) comes back."""
    args = ("--head-timeout", "0.5", "--max-connections-per-address", "600")
    with gateway(*args) as (proc, port):
        fds = open_fds(proc.pid)

        async def one_flood() -> None:
            async with flood(port, 1000):  # up to 600 held, the rest refused
                # The gateway closes them while the flooder still holds its ends.
                await poll_until_async(lambda: open_fds(proc.pid) <= fds, WAIT)

        await one_flood()  # warms up what is allocated once (pools, caches)
        fds, rss = open_fds(proc.pid), rss_kib(proc.pid)
        for _ in range(2):
            await one_flood()  # each one waits for the descriptors to come back
        grown = rss_kib(proc.pid) - rss
        await wait_served(port)
    # 2,000 connections leaked would be ~6 MiB; the allocator's own slack is less than 1.
    assert grown < 1536, f"RSS grew by {grown} KiB over two floods"
