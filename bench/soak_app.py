"""The soak's local app: checks each request body against its seed, answers a seeded body.

``POST|GET /soak?id=ID&qlen=N&qseed=S&rlen=M&rseed=T&rchunked=0|1``: the request body must be
the N bytes :func:`~tunnelgate.testing.local_app.stream_blocks` makes from seed S (any
framing); if it is, the answer is 200 with ``X-Soak-Id: ID`` and the M bytes made from seed T,
with a Content-Length or chunked. If it is not, 422 with ``X-Soak-Error: request_body``: the
harness counts that request as corrupted.

``--corrupt-every K`` flips one byte of every K-th non-empty response body: the smoke test's
proof that the harness's verdict can fail.

    python -m bench.soak_app --port 0 [--corrupt-every K]   # prints {"event": "listening", ...}
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import itertools
import json
import signal
from collections.abc import Iterator
from urllib.parse import parse_qs

import uvloop

from tunnelgate.testing.httpserver import Request, Response, serve_connection
from tunnelgate.testing.local_app import expected_bytes_sha256, stream_blocks
from tunnelgate.testing.serving import close_server

PATH = "/soak"


class SoakApp:
    def __init__(self, corrupt_every: int) -> None:
        self.corrupt_every = corrupt_every
        self.bodies = itertools.count(1)  # non-empty response bodies so far
        self.tasks: set[asyncio.Task[None]] = set()

    async def on_connection(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        task = asyncio.current_task()
        assert task is not None
        self.tasks.add(task)
        try:
            await serve_connection(reader, writer, self.handle)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass  # the tunnel client went away mid-exchange: the soak kills them on purpose
        finally:
            self.tasks.discard(task)

    async def handle(self, req: Request, resp: Response) -> None:
        if req.path != PATH:
            await resp.send(404, b"no such route\n")
            return
        try:
            params = {key: int(values[-1]) for key, values in parse_qs(req.query).items()}
            qlen, qseed, rlen, rseed = (params[k] for k in ("qlen", "qseed", "rlen", "rseed"))
        except (KeyError, ValueError):
            await resp.send(400, b"soak parameters missing\n")
            return
        digest, length = hashlib.sha256(), 0
        async for piece in req.body():
            digest.update(piece)
            length += len(piece)
        if length != qlen or digest.hexdigest() != expected_bytes_sha256(qlen, qseed):
            await resp.start(422, [("X-Soak-Error", "request_body")], length=0)
            await resp.end()
            return
        chunked = params.get("rchunked") == 1
        headers = [("X-Soak-Id", str(params.get("id", ""))), ("Content-Type", "x/soak")]
        await resp.start(200, headers, length=None if chunked else rlen, chunked=chunked)
        for block in self.body(rlen, rseed):
            await resp.write(block)  # drains: backpressure from the tunnel
        await resp.end()

    def body(self, n: int, seed: int) -> Iterator[bytes]:
        blocks = stream_blocks(n, seed)
        if n and self.corrupt_every and next(self.bodies) % self.corrupt_every == 0:
            first = next(blocks)
            yield bytes([first[0] ^ 0xFF]) + first[1:]
        yield from blocks


async def serve(host: str, port: int, corrupt_every: int) -> None:
    app = SoakApp(corrupt_every)
    server = await asyncio.start_server(app.on_connection, host, port, backlog=512)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    bound = server.sockets[0].getsockname()[1]
    print(json.dumps({"event": "listening", "port": bound}), flush=True)
    try:
        await stop.wait()
    finally:
        await close_server(server, app.tasks)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.soak_app", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--corrupt-every", type=int, default=0)
    args = parser.parse_args(argv)
    uvloop.run(serve(args.host, args.port, args.corrupt_every))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
