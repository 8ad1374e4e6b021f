"""Bulk transfer through one tunnel, with the gateway's memory watched from /proc.

- 256 MiB down and 64 MiB up (Content-Length and chunked), byte-exact, under a peak RSS bound;
- a public client that stops reading a 1 GiB download stalls only its own stream: other
  requests on the tunnel go on, and neither the gateway nor the client buffers the backlog;
- 64 uploads while the client briefly stops reading its tunnel (SIGSTOP): the gateway's
  writes back up, then credit for every stream comes back at once; all arrive intact;
- 300 requests in flight at once on one tunnel, each answered about its own body.

The gateway and the client are real processes (``python -m tunnelgate``). The public side is
asyncio streams in this process. Nothing here is timed: generous deadlines bound every wait,
and the figures a run measured are printed (``pytest -s`` shows them).
"""

from __future__ import annotations

import asyncio
import hashlib
import random
import signal
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterator

import pytest
from e2e_support import TunnelEnv, start_tunnel_env

from tunnelgate.testing.http_client import RawConnection, RawResponse, open_connection
from tunnelgate.testing.local_app import (
    LocalApp,
    expected_bytes_sha256,
    start_local_app,
    stream_blocks,
)
from tunnelgate.testing.proc import JsonObject, Proc
from tunnelgate.testing.processes import http_request, poll_until_async

MiB = 1024 * 1024
DOWNLOAD_BYTES = 256 * MiB
UPLOAD_BYTES = 64 * MiB
STALLED_BYTES = 1024 * MiB
"""What the stalled reader asks for: far more than any buffer on the way could hold."""
PEAK_RSS_LIMIT = 150 * MiB
"""VmHWM the gateway (and the client) may reach moving the bulk transfers."""
STALLED_RSS_LIMIT = 100 * MiB
"""VmRSS the gateway (and the client) may have while a reader is stalled."""
STALLED_RSS_GROWTH = 8 * MiB
"""How much RSS may still move across the samples once the stall has set in."""
RSS_SAMPLES = 5
RSS_SETTLED = 1 * MiB
"""Two RSS samples this close in a row: the stall has set in."""
RSS_SETTLE_INTERVAL = 0.2
RSS_SAMPLE_INTERVAL = 0.5
"""Seconds between RSS samples (a measurement period, not a synchronisation)."""
TRANSFER_TIMEOUT = 120.0
"""Seconds one bulk transfer may take (each socket operation: 30 s)."""
IO_TIMEOUT = 30.0
CONCURRENT = 300
CONGESTED_UPLOADS = 64
FREEZE = 0.5
"""Seconds the client is stopped (SIGSTOP) while uploads come in."""
MAX_BODY = 64 * 1024
BACKLOG = 1024
"""Listen backlog of the in-process app for the concurrent test (asyncio's default is 100:
300 connections at once overflow it, and each dropped SYN costs the client a 1 s retry)."""


# --- helpers ----------------------------------------------------------------------------------
def status_bytes(pid: int, field: str) -> int:
    """A ``kB`` line of /proc/PID/status (``VmRSS``, ``VmHWM``), in bytes."""
    with open(f"/proc/{pid}/status", encoding="ascii") as status:
        for line in status:
            key, _, value = line.partition(":")
            if key == field:
                return int(value.split()[0]) * 1024
    raise AssertionError(f"no {field} in /proc/{pid}/status")


def mib(n: float) -> str:
    return f"{n / MiB:.1f} MiB"


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


async def read_body_digest(conn: RawConnection, *, method: str = "GET") -> tuple[int, int, str]:
    """Status, length and sha256 of the next response's body, hashed as it streams."""
    head = await conn.read_head(method=method)
    digest, length = hashlib.sha256(), 0
    async for piece in conn.iter_body(head):
        digest.update(piece)
        length += len(piece)
    return head.status, length, digest.hexdigest()


def assert_peak_rss(env: TunnelEnv, what: str) -> tuple[int, int]:
    """The gateway's and the client's VmHWM, both under PEAK_RSS_LIMIT."""
    gateway = status_bytes(env.gateway.pid, "VmHWM")
    client = status_bytes(env.client.pid, "VmHWM")
    print(f"{what}: peak RSS gateway {mib(gateway)}, client {mib(client)}")
    assert gateway < PEAK_RSS_LIMIT, f"gateway peak RSS {mib(gateway)} after {what}"
    assert client < PEAK_RSS_LIMIT, f"client peak RSS {mib(client)} after {what}"
    return gateway, client


@pytest.fixture
def env() -> Iterator[TunnelEnv]:
    """A fresh gateway, client and local app (processes) for each test, so each one's peak
    RSS belongs to that test's transfers alone."""
    with start_tunnel_env(subdomain="bulk") as fresh:
        yield fresh


# --- 256 MiB down, 64 MiB up ------------------------------------------------------------------
async def test_256_mib_download_is_byte_exact_with_bounded_gateway_memory(env: TunnelEnv) -> None:
    seed = 256
    expected = expected_bytes_sha256(DOWNLOAD_BYTES, seed)
    async with asyncio.timeout(TRANSFER_TIMEOUT):
        async with await env.connect(timeout=IO_TIMEOUT) as conn:
            started = time.monotonic()
            await conn.send(env.build("GET", f"/bytes?n={DOWNLOAD_BYTES}&seed={seed}"))
            status, length, digest = await read_body_digest(conn)
            elapsed = time.monotonic() - started

    print(f"download: {DOWNLOAD_BYTES / elapsed / 1e6:.0f} MB/s ({elapsed:.1f} s)")
    assert (status, length) == (200, DOWNLOAD_BYTES)
    assert digest == expected
    assert_peak_rss(env, "256 MiB download")


async def _send_upload(conn: RawConnection, env: TunnelEnv, seed: int, framing: str) -> str:
    """Stream a 64 MiB POST /upload body; its sha256."""
    digest = hashlib.sha256()
    if framing == "length":
        headers = [("Content-Length", str(UPLOAD_BYTES))]
    else:
        headers = [("Transfer-Encoding", "chunked")]
    await conn.send(env.build("POST", "/upload", headers=headers))
    for block in stream_blocks(UPLOAD_BYTES, seed):  # the app's byte stream, 64 KiB at a time
        digest.update(block)
        await conn.send(block if framing == "length" else b"%x\r\n%s\r\n" % (len(block), block))
    if framing == "chunked":
        await conn.send(b"0\r\n\r\n")
    return digest.hexdigest()


@pytest.mark.parametrize("framing", ["length", "chunked"])
async def test_64_mib_upload_is_byte_exact_with_bounded_gateway_memory(
    env: TunnelEnv, framing: str
) -> None:
    async with asyncio.timeout(TRANSFER_TIMEOUT):
        async with await env.connect(timeout=IO_TIMEOUT) as conn:
            started = time.monotonic()
            sent = await _send_upload(conn, env, 64, framing)
            response = await conn.read_response()
            elapsed = time.monotonic() - started

    print(f"upload ({framing}): {UPLOAD_BYTES / elapsed / 1e6:.0f} MB/s ({elapsed:.1f} s)")
    assert response.status == 200, response
    assert response.json() == {"len": UPLOAD_BYTES, "sha256": sent}
    assert_peak_rss(env, f"64 MiB upload ({framing})")


async def _upload(env: TunnelEnv, body: bytes) -> RawResponse:
    return await env.request(env.build("POST", "/upload", body=body), IO_TIMEOUT)


async def test_uploads_survive_a_congested_tunnel(env: TunnelEnv) -> None:
    # 64 uploads of 1 MiB while the client does not read its tunnel for a moment: the
    # gateway's messages to it queue up behind a full socket, and the client then grants
    # credit to every stream at once. Everything must still arrive intact, on the same tunnel.
    bodies = [b"".join(stream_blocks(MiB, 500 + i)) for i in range(CONGESTED_UPLOADS)]
    client_mark = env.client_mark()
    env.client.signal(signal.SIGSTOP)
    try:
        async with asyncio.timeout(TRANSFER_TIMEOUT), asyncio.TaskGroup() as group:
            uploads = [group.create_task(_upload(env, body)) for body in bodies]
            # The fault's duration, not a synchronisation: a correct tunnel delivers every
            # upload whatever it is; long enough here for the gateway's writes to back up.
            await asyncio.sleep(FREEZE)
            env.client.signal(signal.SIGCONT)
    finally:
        env.client.signal(signal.SIGCONT)

    statuses = Counter(upload.result().status for upload in uploads)
    assert statuses == {200: CONGESTED_UPLOADS}, f"{statuses}\n{env.client.output(5)}"
    for body, upload in zip(bodies, uploads, strict=True):
        assert upload.result().json() == {"len": len(body), "sha256": sha256(body)}
    lost = [e for e in env.client_events(client_mark) if e.get("event") != "request"]
    assert not lost, f"the tunnel did not hold: {lost}"


# --- a stalled reader -------------------------------------------------------------------------
async def _one_of_many(env: TunnelEnv, i: int) -> None:
    """Request ``i`` of the ones made beside the stalled reader, checked byte for byte."""
    if i % 2:
        n, seed = 20_000 + i * 7919, 1000 + i
        response = await env.request(env.build("GET", f"/bytes?n={n}&seed={seed}"), IO_TIMEOUT)
        assert response.status == 200, response
        assert sha256(response.body) == expected_bytes_sha256(n, seed)
    else:
        body = random.Random(i).randbytes(1000 + i * 3001)
        response = await env.request(env.build("POST", f"/echo?i={i}", body=body), IO_TIMEOUT)
        assert response.status == 200, response
        answer = response.json()
        assert (answer["query"], answer["body_len"]) == (f"i={i}", len(body))
        assert answer["body_sha256"] == sha256(body)


async def _rss_samples(procs: list[Proc]) -> list[list[int]]:
    """VmRSS of each process, RSS_SAMPLES times over about two seconds."""
    samples: list[list[int]] = [[] for _ in procs]
    for k in range(RSS_SAMPLES):
        if k:
            await asyncio.sleep(RSS_SAMPLE_INTERVAL)  # the measurement's period
        for proc, series in zip(procs, samples, strict=True):
            series.append(status_bytes(proc.pid, "VmRSS"))
    return samples


async def _wait_rss_settled(procs: list[Proc]) -> list[list[int]]:
    """Sample every process's VmRSS until two samples in a row are within RSS_SETTLED of each
    other (the stalled stream's window and socket buffers are full); all the samples."""
    samples: list[list[int]] = [[] for _ in procs]

    def settled() -> bool:
        for proc, series in zip(procs, samples, strict=True):
            series.append(status_bytes(proc.pid, "VmRSS"))
        return len(samples[0]) > 1 and all(
            abs(series[-1] - series[-2]) < RSS_SETTLED for series in samples
        )

    await poll_until_async(settled, IO_TIMEOUT, interval=RSS_SETTLE_INTERVAL)
    return samples


@pytest.fixture
async def stalled(env: TunnelEnv) -> AsyncIterator[tuple[RawConnection, str]]:
    """A connection whose client asked for 1 GiB, read its head and a first piece, and then
    stopped reading; and the target it asked for."""
    target = f"/bytes?n={STALLED_BYTES}&seed=7"
    conn = await env.connect(timeout=IO_TIMEOUT)
    try:
        await conn.send(env.build("GET", target))
        head = await conn.read_head()
        assert (head.status, head.content_length) == (200, STALLED_BYTES), head
        yield conn, target
    finally:
        await conn.aclose()


async def test_stalled_reader_stops_only_its_own_stream(
    env: TunnelEnv, stalled: tuple[RawConnection, str]
) -> None:
    conn, target = stalled
    expected = stream_blocks(STALLED_BYTES, 7)
    first = await conn.read_exactly(64 * 1024)
    assert first == next(expected)

    # While it is stalled, the tunnel serves everyone else, correctly and promptly.
    started = time.monotonic()
    async with asyncio.timeout(IO_TIMEOUT):
        await asyncio.gather(*(_one_of_many(env, i) for i in range(20)))
    print(f"stalled reader: 20 other requests done in {time.monotonic() - started:.2f} s")

    # Neither the gateway nor the client buffers what the stalled reader does not take: once
    # the stream's window and the socket buffers are full, their memory stays put.
    procs = {"gateway": env.gateway, "client": env.client}
    settling = await _wait_rss_settled(list(procs.values()))
    stalled_rss = await _rss_samples(list(procs.values()))
    for who, before, series in zip(procs, settling, stalled_rss, strict=True):
        shown = [mib(s) for s in series]
        print(f"stalled reader: {who} RSS settling {[mib(s) for s in before]}, then {shown}")
        assert max(before + series) < STALLED_RSS_LIMIT, f"{who} RSS {[mib(s) for s in before]}"
        assert max(series) - series[0] < STALLED_RSS_GROWTH, f"{who} RSS grows: {shown}"

    # The stream was paused, not cut: reading on, the bytes go on where they stopped.
    for _ in range(16):
        block = next(expected)
        assert await conn.read_exactly(len(block)) == block

    # Hanging up ends the stream on the client's side too, and the tunnel serves on.
    client_mark = env.client_mark()
    await conn.aclose()
    await env.wait_client_request(target, after=client_mark)
    response = await env.get("/")
    assert (response.status, response.body) == (200, b"hello\n")
    await _one_of_many(env, 1)


# --- 300 at once ------------------------------------------------------------------------------
@pytest.fixture
async def backlog_app() -> AsyncIterator[LocalApp]:
    """The test app listening with a backlog big enough for CONCURRENT connections at once."""
    app = await start_local_app(backlog=BACKLOG)
    try:
        yield app
    finally:
        await app.aclose()
    assert not app.errors, f"local app handlers failed: {app.errors!r}"


def _bodies() -> list[bytes]:
    rng = random.Random(300)
    return [b"%d:" % i + rng.randbytes(rng.randint(1, MAX_BODY - 8)) for i in range(CONCURRENT)]


def _check(i: int, body: bytes, answer: JsonObject) -> None:
    if i % 2:
        assert answer == {"len": len(body), "sha256": sha256(body)}, i
    else:
        assert (answer["query"], answer["body_len"]) == (f"i={i}", len(body)), i
        assert answer["body_sha256"] == sha256(body), i


async def test_300_concurrent_requests_each_get_their_own_answer(backlog_app: LocalApp) -> None:
    app = backlog_app
    bodies = _bodies()
    assert len({sha256(body) for body in bodies}) == CONCURRENT
    with start_tunnel_env(app_port=app.port, subdomain="many") as env:
        conns: list[RawConnection] = []
        try:
            async with asyncio.timeout(TRANSFER_TIMEOUT):
                conns += await asyncio.gather(
                    *(open_connection(env.gateway_port, timeout=IO_TIMEOUT) for _ in bodies)
                )
                started = time.monotonic()
                base = app.requests
                # Every request but its last body byte: all 300 are in flight at once ...
                requests = [
                    env.build("POST", "/upload" if i % 2 else f"/echo?i={i}", body=body)
                    for i, body in enumerate(bodies)
                ]
                await asyncio.gather(
                    *(conn.send(raw[:-1]) for conn, raw in zip(conns, requests, strict=True))
                )
                await poll_until_async(lambda: app.requests - base >= CONCURRENT, IO_TIMEOUT)
                in_flight = time.monotonic() - started
                # ... then they may finish.
                await asyncio.gather(
                    *(conn.send(raw[-1:]) for conn, raw in zip(conns, requests, strict=True))
                )
                responses = await asyncio.gather(*(conn.read_response() for conn in conns))
            elapsed = time.monotonic() - started
        finally:
            await asyncio.gather(*(conn.aclose() for conn in conns))

        print(
            f"{CONCURRENT} concurrent: all in flight after {in_flight:.2f} s, done {elapsed:.2f} s"
        )
        for i, (body, response) in enumerate(zip(bodies, responses, strict=True)):
            assert response.status == 200, (i, response)
            _check(i, body, response.json())
        assert app.requests - base == CONCURRENT
        ok = await http_request(env.gateway_port, env.build("GET", "/"))
        assert ok.status == 200
