"""The user's app behind a tunnel: a real HTTP/1.1 server with routes that exercise a proxy.

Run it as a process (``python -m tunnelgate.testing.local_app --port 0`` prints
``{"event": "listening", "port": N}`` once bound) or in-process with :func:`start_local_app`.

Routes (any other path is 404):

- ``GET|HEAD /``: 200 ``hello\\n``.
- ``ANY /echo``: 200 JSON ``{"method", "path", "query", "version", "headers": [[name, value]...],
  "body_len", "body_sha256"}``; header names as sent, the body hashed as it streams.
- ``POST /upload`` and ``POST /expect``: JSON ``{"len", "sha256"}`` of the streamed body;
  ``/expect`` answers ``100 Continue`` first when asked to (``"continue_sent"``).
- ``GET /bytes?n=N&seed=S[&chunked=1|&close=1][&hold=X]``: N bytes of :func:`stream_blocks`,
  with a Content-Length (or chunked, or close-delimited), written with backpressure; with
  ``hold`` the rest waits after the first block until ``GET /release?key=X``.
- ``GET /sse?n=K[&interval=MS][&wait=1&key=X]``: K server-sent events, chunked; with ``wait=1``
  the first event is sent and the rest wait until ``GET /release?key=X`` (default key ``sse``).
  A test can thus prove streaming without timing: read event 0, then release.
- ``GET /release?key=X``: 200, releases that key (before or after the stream waits on it).
- ``GET /status/CODE`` (200..599): that status, body ``status CODE\\n`` (``boom\\n`` for 500;
  none for 204 and 304).
- ``GET /slow?ms=M``: 200 ``slow\\n`` after M milliseconds; ``GET /slow?key=X``: the same
  once ``GET /release?key=X`` came (no response head before: a test holds the response
  whole, not only its body).
- ``GET /close``: 200 ``closing\\n`` with neither Content-Length nor chunking, then close.
- ``GET /ws``: WebSocket (RFC 6455) echo. ``/upgrade-raw`` with ``Upgrade: echo``: raw echo.
- ``GET /stats``: JSON ``{"requests", "connections", "max_write_buffer"}`` so far (``/stats``
  itself not counted); the last is the most bytes ever queued in a transport after a write.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import random
import signal
import ssl
import sys
import traceback
from collections.abc import Iterator
from urllib.parse import parse_qs

import uvloop

from tunnelgate.testing import upgrades
from tunnelgate.testing import websocket as ws
from tunnelgate.testing.httpserver import Request, Response, ServerStats, serve_connection
from tunnelgate.testing.serving import close_server

BLOCK = 64 * 1024
"""Size of the pieces /bytes generates and writes (and of each chunk when chunked)."""
RELEASE_TIMEOUT = 30.0
"""Seconds an /sse?wait=1 stream waits for its release; then the stream is cut short."""


def stream_blocks(n: int, seed: int) -> Iterator[bytes]:
    """The deterministic pseudo-random bytes /bytes sends, in blocks of at most ``BLOCK``.

    A shorter stream is a prefix of a longer one with the same seed.
    """
    rng = random.Random(seed)
    while n > 0:
        block = rng.randbytes(BLOCK)
        yield block[:n]
        n -= len(block)


def expected_bytes_sha256(n: int, seed: int) -> str:
    """The sha256 hex digest of ``GET /bytes?n=N&seed=S``'s body, without a server."""
    digest = hashlib.sha256()
    for block in stream_blocks(n, seed):
        digest.update(block)
    return digest.hexdigest()


class LocalApp:
    """A running app. ``errors`` collects handler failures other than the peer going away."""

    def __init__(self) -> None:
        self.port = 0
        self.requests = 0
        self.connections = 0
        self.errors: list[BaseException] = []
        self.stats = ServerStats()
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._releases: dict[str, asyncio.Event] = {}

    def __repr__(self) -> str:
        return f"<LocalApp port={self.port} requests={self.requests} conns={self.connections}>"

    async def start(
        self, host: str, port: int, tls: ssl.SSLContext | None = None, backlog: int = 100
    ) -> None:
        self._server = await asyncio.start_server(
            self._on_connection, host, port, ssl=tls, backlog=backlog
        )
        self.port = self._server.sockets[0].getsockname()[1]

    async def aclose(self) -> None:
        """Stop listening, cancel every connection, and wait for them to finish."""
        await close_server(self._server, self._tasks)

    async def _on_connection(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self.connections += 1
        try:
            await serve_connection(reader, writer, self._handle, self.stats)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass  # the peer went away mid-exchange: normal for a proxy under test
        except Exception as exc:  # root of the connection's task: keep it, and show it
            self.errors.append(exc)
            traceback.print_exc(file=sys.stderr)
        finally:
            self._tasks.discard(task)

    def release(self, key: str) -> None:
        """Let the /sse stream waiting on ``key`` go on (or the next one to wait on it)."""
        self._releases.setdefault(key, asyncio.Event()).set()

    async def wait_released(self, key: str) -> None:
        await self._releases.setdefault(key, asyncio.Event()).wait()
        del self._releases[key]

    async def _handle(self, req: Request, resp: Response) -> None:
        if req.path != "/stats":
            self.requests += 1
        route = _ROUTES.get(req.path)
        try:
            if route is not None:
                await route(self, req, resp)
            elif req.path.startswith("/status/"):
                await _status(req, resp)
            else:
                await resp.send(404, f"no route {req.path}\n".encode())
        except _BadRequest as exc:
            await resp.send(400, f"{exc}\n".encode())


class _BadRequest(Exception):
    pass


def _params(req: Request) -> dict[str, str]:
    return {key: values[-1] for key, values in parse_qs(req.query).items()}


def _int_param(params: dict[str, str], name: str, default: int) -> int:
    try:
        return int(params.get(name, default))
    except ValueError:
        raise _BadRequest(f"{name} must be an integer") from None


async def _hash_body(req: Request) -> tuple[int, str]:
    digest, length = hashlib.sha256(), 0
    async for piece in req.body():
        digest.update(piece)
        length += len(piece)
    return length, digest.hexdigest()


async def _send_json(resp: Response, value: object, status: int = 200) -> None:
    await resp.send(status, json.dumps(value).encode() + b"\n", "application/json")


async def _root(app: LocalApp, req: Request, resp: Response) -> None:
    if req.method not in ("GET", "HEAD"):
        await resp.send(405, b"method not allowed\n")
        return
    await resp.send(200, b"hello\n")


async def _echo(app: LocalApp, req: Request, resp: Response) -> None:
    length, sha = await _hash_body(req)
    headers = [[k.decode("latin-1"), v.decode("latin-1")] for k, v in req.headers]
    await _send_json(
        resp,
        {
            "method": req.method,
            "path": req.path,
            "query": req.query,
            "version": req.version,
            "headers": headers,
            "body_len": length,
            "body_sha256": sha,
        },
    )


async def _upload(app: LocalApp, req: Request, resp: Response) -> None:
    if req.method != "POST":
        await resp.send(405, b"method not allowed\n")
        return
    length, sha = await _hash_body(req)
    await _send_json(resp, {"len": length, "sha256": sha})


async def _expect(app: LocalApp, req: Request, resp: Response) -> None:
    if req.method != "POST":
        await resp.send(405, b"method not allowed\n")
        return
    wants_continue = (req.header("Expect") or "").lower() == "100-continue"
    if wants_continue:
        await resp.send_continue()
    length, sha = await _hash_body(req)
    await _send_json(resp, {"len": length, "sha256": sha, "continue_sent": wants_continue})


async def _bytes(app: LocalApp, req: Request, resp: Response) -> None:
    params = _params(req)
    n, seed = _int_param(params, "n", 0), _int_param(params, "seed", 0)
    chunked = params.get("chunked") == "1"
    close_delimited = params.get("close") == "1"
    hold = params.get("hold")
    headers = [("Content-Type", "application/octet-stream")]
    length = None if chunked or close_delimited else n
    await resp.start(200, headers, length=length, chunked=chunked)
    for i, block in enumerate(stream_blocks(n, seed)):
        if i == 1 and hold is not None:
            async with asyncio.timeout(RELEASE_TIMEOUT):
                await app.wait_released(hold)
        await resp.write(block)  # drains: at most one block beyond the transport's high water
    await resp.end()


async def _sse(app: LocalApp, req: Request, resp: Response) -> None:
    params = _params(req)
    count, interval = _int_param(params, "n", 3), _int_param(params, "interval", 0) / 1000
    wait_key = params.get("key", "sse") if params.get("wait") == "1" else None
    headers = [("Content-Type", "text/event-stream"), ("Cache-Control", "no-cache")]
    await resp.start(200, headers, chunked=True)
    for i in range(count):
        if i == 1 and wait_key is not None:
            async with asyncio.timeout(RELEASE_TIMEOUT):
                await app.wait_released(wait_key)
        elif i > 0 and interval > 0:
            await asyncio.sleep(interval)  # the pacing this route exists to produce
        await resp.write(f"id: {i}\ndata: event {i}\n\n".encode())
    await resp.end()


async def _release(app: LocalApp, req: Request, resp: Response) -> None:
    app.release(_params(req).get("key", "sse"))
    await resp.send(200, b"released\n")


async def _status(req: Request, resp: Response) -> None:
    try:
        code = int(req.path.removeprefix("/status/"))
    except ValueError:
        code = 0
    if not 200 <= code <= 599:
        await resp.send(400, b"status must be 200..599\n")
    elif code in (204, 304):
        await resp.start(code, [])
    else:
        await resp.send(code, b"boom\n" if code == 500 else f"status {code}\n".encode())


async def _slow(app: LocalApp, req: Request, resp: Response) -> None:
    params = _params(req)
    key = params.get("key")
    if key is not None:
        async with asyncio.timeout(RELEASE_TIMEOUT):
            await app.wait_released(key)
    else:
        await asyncio.sleep(_int_param(params, "ms", 1000) / 1000)  # the delay under test
    await resp.send(200, b"slow\n")


async def _close(app: LocalApp, req: Request, resp: Response) -> None:
    await resp.start(200, [("Content-Type", "text/plain")])  # close-delimited
    await resp.write(b"closing\n")
    await resp.end()


async def _ws(app: LocalApp, req: Request, resp: Response) -> None:
    key = req.header("Sec-WebSocket-Key")
    if not req.upgrade or (req.header("Upgrade") or "").lower() != "websocket" or not key:
        await resp.send(426, b"websocket upgrade required\n")
        return
    if req.header("Sec-WebSocket-Version") != "13":
        await resp.send(400, b"unsupported websocket version\n")
        return
    accept = [("Sec-WebSocket-Accept", ws.accept_key(key))]
    reader, writer = await resp.switch_protocols("websocket", accept)
    await upgrades.echo_websocket(reader, writer)


async def _upgrade_raw(app: LocalApp, req: Request, resp: Response) -> None:
    if not req.upgrade or (req.header("Upgrade") or "").lower() != "echo":
        await resp.send(426, b"Upgrade: echo required\n")
        return
    reader, writer = await resp.switch_protocols("echo", [])
    await upgrades.echo_raw(reader, writer)


async def _stats(app: LocalApp, req: Request, resp: Response) -> None:
    stats = {
        "requests": app.requests,
        "connections": app.connections,
        "max_write_buffer": app.stats.max_write_buffer,
    }
    await _send_json(resp, stats)


_ROUTES = {
    "/": _root,
    "/echo": _echo,
    "/upload": _upload,
    "/expect": _expect,
    "/bytes": _bytes,
    "/sse": _sse,
    "/release": _release,
    "/slow": _slow,
    "/close": _close,
    "/ws": _ws,
    "/upgrade-raw": _upgrade_raw,
    "/stats": _stats,
}


async def start_local_app(
    host: str = "127.0.0.1",
    port: int = 0,
    tls: ssl.SSLContext | None = None,
    backlog: int = 100,
) -> LocalApp:
    """Start the app on this event loop (over TLS with ``tls``; ``backlog`` as for listen);
    ``await app.aclose()`` stops it."""
    app = LocalApp()
    await app.start(host, port, tls, backlog)
    return app


async def _serve(host: str, port: int) -> None:
    app = await start_local_app(host, port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    print(json.dumps({"event": "listening", "port": app.port}), flush=True)
    try:
        await stop.wait()
    finally:
        await app.aclose()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tunnelgate.testing.local_app")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args(argv)
    uvloop.run(_serve(args.host, args.port))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
