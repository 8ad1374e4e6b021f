"""--response-timeout counts from the request body's end (SPEC: the time the local app has to
start its response), so an upload that takes longer than it is not cut off with a 504; an
app that does not answer once the body is in still gets its 504 after the timeout.

Real processes on loopback. The bodies are paced over about twice the timeout: before the
fix the timeout counted from the request head and a 504 came partway through the upload.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Iterator

import pytest
from e2e_support import TunnelEnv, start_tunnel_env

from tunnelgate.testing.http_client import RawConnection, build_request, http_request

RESPONSE_TIMEOUT = 2.0
PIECES = 8
PACE = 0.5  # seconds between two pieces of a body: 4 s in all, twice the timeout
SLACK = 3.0  # seconds past the timeout for the 504 to show


@pytest.fixture(scope="module")
def env() -> Iterator[TunnelEnv]:
    with start_tunnel_env(gateway_args=["--response-timeout", str(RESPONSE_TIMEOUT)]) as env:
        yield env


async def paced_upload(conn: RawConnection, env: TunnelEnv, target: str, piece: bytes) -> None:
    """POST `target` with a body of PIECES `piece`s, one every PACE seconds."""
    size = PIECES * len(piece)
    await conn.send(
        f"POST {target} HTTP/1.1\r\nHost: {env.host}\r\nContent-Length: {size}\r\n\r\n".encode()
    )
    for _ in range(PIECES):
        await asyncio.sleep(PACE)  # the pace under test (a slow uplink), not a synchronisation
        await conn.send(piece)


async def test_upload_longer_than_the_response_timeout_gets_the_apps_answer(
    env: TunnelEnv,
) -> None:
    piece = bytes(range(256)) * 64  # 16 KiB
    async with await env.connect() as conn:
        started = time.monotonic()
        await paced_upload(conn, env, "/upload", piece)
        response = await conn.read_response()
        assert response.status == 200, response.raw_head
        assert time.monotonic() - started > 1.5 * RESPONSE_TIMEOUT  # it really took longer
    answer = response.json()
    assert answer["len"] == PIECES * len(piece)
    assert answer["sha256"] == hashlib.sha256(piece * PIECES).hexdigest()


async def test_app_silent_after_the_body_gets_504_after_the_timeout(env: TunnelEnv) -> None:
    key = "never-answers"
    async with await env.connect(timeout=RESPONSE_TIMEOUT + SLACK) as conn:
        try:
            await paced_upload(conn, env, f"/slow?key={key}", b"y" * 100)
            body_end = time.monotonic()
            response = await conn.read_response()
            waited = time.monotonic() - body_end
        finally:  # let the app's handler go
            release = build_request("GET", f"/release?key={key}")
            await http_request(env.app_port, release)
    assert response.status == 504
    assert response.header("X-Tunnelgate-Error") == "response_timeout"
    assert RESPONSE_TIMEOUT - 0.3 <= waited < RESPONSE_TIMEOUT + SLACK, waited
