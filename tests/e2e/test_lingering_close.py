"""An answer given before the request was all read reaches a client still uploading (RFC 9112
§9.6, lingering close: transport/linger.py), and the lingering ends within its bounds.

Before the fix the gateway closed at once after such an answer (a 404 for an unknown host,
431, an app's early 413...); the client's unread bytes made the kernel reset the connection,
and a client busy sending its body lost the answer. Real processes on loopback; the bodies
are larger than what loopback's socket buffers hold, so a reset cannot go unseen.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import pytest
from e2e_support import TunnelEnv, start_tunnel_env

from tunnelgate import limits
from tunnelgate.testing.http_client import RawConnection, RawResponse, open_connection
from tunnelgate.testing.metrics import scrape
from tunnelgate.testing.processes import free_port

BODY = 24 * limits.MiB  # past loopback's send and receive buffers together, below LINGER_MAX_BYTES
PIECE = 256 * limits.KiB
OP_TIMEOUT = 10.0  # seconds any one socket operation may take
SLACK = 5.0  # seconds past a bound for its effect to show
REPEAT = 3  # a reset depends on timing: each case is tried several times


@pytest.fixture(scope="module")
def admin_env() -> Iterator[tuple[TunnelEnv, int]]:
    """A tunnel environment whose gateway has an admin API (for its connection gauge)."""
    admin = free_port()
    with start_tunnel_env(gateway_args=["--admin", f"127.0.0.1:{admin}"]) as env:
        yield env, admin


@pytest.fixture
def env(admin_env: tuple[TunnelEnv, int]) -> TunnelEnv:
    return admin_env[0]


async def upload_then_read(conn: RawConnection, head: bytes, size: int = BODY) -> RawResponse:
    """Send `head` and a body of `size` bytes, as a client that reads only once its request
    is sent (curl, requests) does; then read the answer."""
    await conn.send(head)
    piece = b"x" * PIECE
    sent = 0
    while sent < size:
        n = min(PIECE, size - sent)
        await conn.send(piece[:n])
        sent += n
    return await conn.read_response()


def upload_head(host: str, target: str = "/upload", extra: str = "") -> bytes:
    return (
        f"POST {target} HTTP/1.1\r\nHost: {host}\r\n{extra}Content-Length: {BODY}\r\n\r\n"
    ).encode()


async def test_unknown_host_answer_reaches_a_client_still_uploading(env: TunnelEnv) -> None:
    host = f"nobody.localhost:{env.gateway_port}"
    for _ in range(REPEAT):
        async with await open_connection(env.gateway_port, timeout=OP_TIMEOUT) as conn:
            response = await upload_then_read(conn, upload_head(host))
            assert response.status == 404
            assert response.header("X-Tunnelgate-Error") == "no_tunnel"
            assert response.header("Connection") == "close"
            assert await conn.read_some() == b""  # then the gateway's half-close: EOF


async def test_head_over_the_limit_answer_reaches_a_client_still_uploading(
    env: TunnelEnv,
) -> None:
    big = "X-Big: " + "b" * (limits.MAX_HEADER_BYTES + 1024) + "\r\n"
    for _ in range(REPEAT):
        async with await open_connection(env.gateway_port, timeout=OP_TIMEOUT) as conn:
            response = await upload_then_read(conn, upload_head(env.host, extra=big))
            assert response.status == 431


async def test_app_early_answer_reaches_a_client_still_uploading(env: TunnelEnv) -> None:
    """The local app answers 413 without reading the body: the exchange ends early."""
    for _ in range(REPEAT):
        async with await open_connection(env.gateway_port, timeout=OP_TIMEOUT) as conn:
            response = await upload_then_read(conn, upload_head(env.host, "/status/413"))
            assert response.status == 413
            assert response.body == b"status 413\n"
            assert response.header("Connection") == "close"


OPEN = "tunnelgate_connections_open{}"
TUNNEL_ONLY = 1.0  # the gauge with only the tunnel client's connection (it keeps its slot)


async def send_until_closed(conn: RawConnection, pause: float, piece: bytes) -> int:
    """Send `piece` every `pause` seconds until the gateway closes the connection (a send
    fails: the kernel answered the first one after the close with a reset); bytes sent."""
    sent = 0
    try:
        while True:
            await conn.send(piece)
            sent += len(piece)
            if pause:
                await asyncio.sleep(pause)  # the pace under test, not a synchronisation
    except (ConnectionResetError, BrokenPipeError):
        return sent


async def start_endless_upload(env: TunnelEnv) -> RawConnection:
    """A request for an unknown host with a body that never ends, answered 404 at once."""
    conn = await open_connection(env.gateway_port, timeout=OP_TIMEOUT)
    host = f"nobody.localhost:{env.gateway_port}"
    await conn.send(
        f"POST / HTTP/1.1\r\nHost: {host}\r\nContent-Length: {1 << 40}\r\n\r\n".encode()
    )
    assert (await conn.read_response()).status == 404
    return conn


async def wait_open(admin: int, count: float, timeout: float) -> None:  # noqa: ASYNC109
    """Poll the gateway's gauge of public connections until it says `count`."""
    deadline = time.monotonic() + timeout
    while (found := (await scrape(admin))[OPEN]) != count:
        if time.monotonic() >= deadline:
            raise AssertionError(f"{found} public connections after {timeout}s, not {count}")
        await asyncio.sleep(0.1)  # poll interval; the deadline bounds the wait


async def test_lingering_ends_after_linger_max_bytes(env: TunnelEnv) -> None:
    async with await start_endless_upload(env) as conn:
        started = time.monotonic()
        sent = await send_until_closed(conn, 0, b"x" * PIECE)
        assert time.monotonic() - started < limits.LINGER_TIME
        assert sent >= limits.LINGER_MAX_BYTES
        assert sent < limits.LINGER_MAX_BYTES + 32 * limits.MiB  # + the socket buffers


async def test_lingering_ends_after_linger_timeout_without_a_byte(
    admin_env: tuple[TunnelEnv, int],
) -> None:
    env, admin = admin_env
    idle = TUNNEL_ONLY
    await wait_open(admin, idle, SLACK)  # the other tests' connections are gone
    async with await start_endless_upload(env) as conn:
        started = time.monotonic()
        assert await conn.read_some() == b""  # the half-close; the connection still counts
        assert (await scrape(admin))[OPEN] == idle + 1
        await wait_open(admin, idle, limits.LINGER_TIMEOUT + SLACK)  # nothing sent: closed
        assert time.monotonic() - started >= limits.LINGER_TIMEOUT - 0.5


async def test_lingering_ends_after_linger_time_for_a_client_that_keeps_sending(
    admin_env: tuple[TunnelEnv, int],
) -> None:
    env, admin = admin_env
    idle = TUNNEL_ONLY
    await wait_open(admin, idle, SLACK)  # the other tests' connections are gone
    async with await start_endless_upload(env) as conn:
        started = time.monotonic()
        async with asyncio.timeout(limits.LINGER_TIME + SLACK):
            sent = await send_until_closed(conn, 0.5, b"x" * 1024)  # never idle for 5 s
        elapsed = time.monotonic() - started
        assert elapsed >= limits.LINGER_TIME - 1, elapsed
        assert sent < limits.LINGER_MAX_BYTES
    await wait_open(admin, idle, SLACK)  # its place under the caps is given back
