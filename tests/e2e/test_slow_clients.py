"""Slow public clients from one address cannot take what every client shares (issue 11,
slowhttptest): slow request bodies and one tunnel's streams, slow readers and the
gateway's held-bytes budget; and the two timeouts for clients that stop altogether, a
request body that stalls (408) and a response the client takes nothing of.

Real processes on loopback; the attacker is 127.0.0.1, another user 127.0.0.2 (all of
127/8 is loopback on Linux). The two timeout tests wait for the real timeouts
(limits.BODY_IDLE_TIMEOUT, limits.SEND_TIMEOUT): they are fixed, not options.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from e2e_support import TunnelEnv, start_tunnel_env

from tunnelgate import limits
from tunnelgate.testing.http_client import RawConnection, RawResponse
from tunnelgate.testing.proc import JsonObject

OTHER = "127.0.0.2"
OP_TIMEOUT = 10.0  # seconds any one socket operation of a test may take
SLACK = 10.0  # seconds past a timeout for its effect to show


async def connect(port: int, source: str = "127.0.0.1") -> RawConnection:
    async with asyncio.timeout(OP_TIMEOUT):
        reader, writer = await asyncio.open_connection("127.0.0.1", port, local_addr=(source, 0))
    return RawConnection(reader, writer, OP_TIMEOUT)


async def probe(env: TunnelEnv, source: str = OTHER, target: str = "/") -> RawResponse:
    async with await connect(env.gateway_port, source) as conn:
        await conn.send(env.build("GET", target))
        return await conn.read_response()


def events(env: TunnelEnv, after: int, event: str, **fields: object) -> list[JsonObject]:
    return [
        e
        for e in env.gateway_events(after, event)
        if all(e.get(key) == value for key, value in fields.items())
    ]


# --- slow bodies and one tunnel's streams ----------------------------------------------------
async def test_slow_bodies_from_one_address_leave_the_tunnel_to_others() -> None:
    max_streams = 16
    share = int(max_streams * limits.ADDRESS_STREAM_SHARE)
    with start_tunnel_env(gateway_args=["--max-streams", str(max_streams)]) as env:
        before = (await env.app_stats())["requests"]
        upload = f"POST /upload HTTP/1.1\r\nHost: {env.host}\r\nContent-Length: 100000\r\n\r\n"
        slow = [await connect(env.gateway_port) for _ in range(max_streams)]
        try:
            for conn in slow:  # every stream of the tunnel, if one address could take them
                await conn.send(upload.encode() + b"x")
            answers = {asyncio.ensure_future(conn.read_response()): conn for conn in slow}
            refused: list[RawResponse] = []
            async with asyncio.timeout(OP_TIMEOUT):
                while len(refused) < max_streams - share:
                    done, _ = await asyncio.wait(answers, return_when=asyncio.FIRST_COMPLETED)
                    for task in done:
                        del answers[task]
                        refused.append(task.result())
            assert {r.status for r in refused} == {503}
            assert {r.header("X-Tunnelgate-Error") for r in refused} == {"tunnel_busy"}
            await env.wait_app_requests(before + share)  # the app has the share's bodies
            assert len(answers) == share  # and they are still coming
            for _ in range(3):  # another address is served, again and again
                response = await probe(env)
                assert response.status == 200, response.raw_head
                assert response.body == b"hello\n"
            assert (await probe(env, "127.0.0.1")).status == 503  # the attacker is not
            await env.wait_gateway_event(lambda e: e.get("reason") == "address_stream_share")
        finally:
            for task in list(answers):
                task.cancel()
            for conn in slow:
                await conn.aclose()


# --- a body that stalls --------------------------------------------------------------------------
@dataclass
class Upload:
    """What the recording app got of one request."""

    length: int  # the Content-Length it announced
    body: bytearray = field(default_factory=bytearray)
    ended: asyncio.Event = field(default_factory=asyncio.Event)


@contextlib.asynccontextmanager
async def recording_app() -> AsyncIterator[tuple[int, list[Upload]]]:
    """A local app that reads each request's body as it comes and never answers."""
    uploads: list[Upload] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            fields = dict(line.split(b":", 1) for line in head.split(b"\r\n")[1:] if b":" in line)
            upload = Upload(int(fields[b"Content-Length"].strip()))
            uploads.append(upload)
            try:
                while len(upload.body) < upload.length:
                    piece = await reader.read(65536)
                    if not piece:
                        break
                    upload.body += piece
            except ConnectionError:
                pass  # a reset ends the body as short as a close does
            upload.ended.set()
        finally:
            writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1], uploads
    finally:
        server.close()
        await asyncio.wait_for(server.wait_closed(), OP_TIMEOUT)


async def test_a_stalled_body_gets_408_and_the_app_sees_it_cut() -> None:
    async with recording_app() as (app_port, uploads):
        with start_tunnel_env(app_port=app_port) as env:
            mark = env.gateway_mark()
            head = f"POST /upload HTTP/1.1\r\nHost: {env.host}\r\nContent-Length: 1000\r\n\r\n"
            async with await connect(env.gateway_port) as conn:
                await conn.send(head.encode() + b"0123456789")
                conn.timeout = limits.BODY_IDLE_TIMEOUT + SLACK
                started = time.monotonic()
                response = await conn.read_response()
                waited = time.monotonic() - started
                assert response.status == 408, response.raw_head
                assert response.header("X-Tunnelgate-Error") == "body_timeout"
                assert limits.BODY_IDLE_TIMEOUT - 1 < waited, waited
                assert await conn.read_some() == b""  # and the connection is closed
            (upload,) = uploads
            async with asyncio.timeout(OP_TIMEOUT):
                await upload.ended.wait()
            assert bytes(upload.body) == b"0123456789"  # cut: never the 1,000 announced
            await env.wait_gateway_event(lambda e: e.get("reason") == "body_timeout", after=mark)
            line = await env.wait_gateway_event(
                lambda e: e.get("event") == "request" and e.get("status") == 408, after=mark
            )
            assert line["path"] == "/upload"


# --- slow readers and the held-bytes budget --------------------------------------------------
def stalled_reader(port: int, raw: bytes, source: str = "127.0.0.1") -> socket.socket:
    """A client that sends its request and reads nothing (a 4 KiB receive buffer)."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.bind((source, 0))
    sock.settimeout(OP_TIMEOUT)
    sock.connect(("127.0.0.1", port))
    sock.sendall(raw)
    return sock


async def test_slow_readers_from_one_address_do_not_make_others_busy() -> None:
    # More stalled readers than the whole budget holds at the initial window (each holds
    # its write buffer's high-water mark and a window, 256 KiB each; windows grow while
    # the kernel still takes data). The stream share admits 3/4 of the tunnel's streams at
    # once and refuses the rest; of those admitted, the held-bytes share resets the ones
    # past 64 MiB (`connection_shed`), which is what this waits for.
    held_each = limits.WRITE_HIGH_WATER + limits.INITIAL_STREAM_WINDOW
    count = limits.MAX_HELD_RESPONSE_BYTES * 5 // 4 // held_each
    with start_tunnel_env() as env:
        mark = env.gateway_mark()
        raw = env.build("GET", "/bytes?n=8388608&seed=1")
        readers = [stalled_reader(env.gateway_port, raw) for _ in range(count)]
        try:
            await env.wait_gateway_event(
                lambda e: e.get("event") == "connection_shed", after=mark, timeout=60.0
            )
            for _ in range(5):  # another address is served while the attack holds
                response = await probe(env)
                assert response.status == 200, response.raw_head
            assert not events(env, mark, "buffer_pressure")  # the budget was never spent
        finally:
            for sock in readers:
                sock.close()


# --- a client that reads nothing -----------------------------------------------------------------
async def test_the_send_timeout_resets_a_client_that_reads_nothing(tunnel_env: TunnelEnv) -> None:
    env = tunnel_env
    mark = env.gateway_mark()
    sock = stalled_reader(env.gateway_port, env.build("GET", "/bytes?n=8388608&seed=2"))
    try:
        line = await env.wait_gateway_event(
            lambda e: (
                e.get("event") == "connection_timed_out" and e.get("reason") == "send_timeout"
            ),
            after=mark,
            # The kernel may still take bytes into its own buffer for a while after our
            # writes paused, which counts as progress: so up to two timeouts.
            timeout=2 * limits.SEND_TIMEOUT + SLACK,
        )
        assert line["timeout_s"] == limits.SEND_TIMEOUT
        received, reset = 0, False
        try:
            while piece := sock.recv(1 << 20):  # what the kernel had, then the reset
                received += len(piece)
        except ConnectionResetError:
            reset = True
        assert reset, received  # cut off, and not as a clean end
        assert received < 8388608
    finally:
        sock.close()
