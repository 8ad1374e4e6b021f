"""A TCP relay: the pure-Python stand-in for one nginx hop of the two-hop chain (smoke run).

    python -m bench.relay --to PORT [--port 0]

It listens on 127.0.0.1, prints ``{"event": "listening", "port": N}``, and for each connection
it accepts opens one to 127.0.0.1:PORT and copies bytes both ways until both directions have
ended (a half-close is passed on). It parses nothing: the smoke run needs a path of two relays
in their own processes to drive through the benchmark's orchestration, not a fast one.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
from collections.abc import Callable
from typing import Final

CHUNK: Final = 256 * 1024  # bytes read at a time (a 1 MiB body in a few reads)
HOST: Final = "127.0.0.1"


async def _pump(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, abort: Callable[[], None]
) -> None:
    """Copy until end of file, then half-close; on a socket error end both directions,
    or the other pump would wait for ever on a keep-alive peer that never closes."""
    try:
        while data := await reader.read(CHUNK):
            writer.write(data)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()
    except OSError:
        abort()


async def _relay(
    upstream_port: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> None:
    try:
        up_reader, up_writer = await asyncio.open_connection(HOST, upstream_port)
    except OSError:
        writer.transport.abort()
        return

    def abort() -> None:
        writer.transport.abort()
        up_writer.transport.abort()

    try:
        async with asyncio.TaskGroup() as group:
            group.create_task(_pump(reader, up_writer, abort))
            group.create_task(_pump(up_reader, writer, abort))
    finally:
        for each in (writer, up_writer):
            each.close()
            with contextlib.suppress(OSError):
                await each.wait_closed()


async def serve(port: int, upstream_port: int) -> None:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _relay(upstream_port, reader, writer)

    server = await asyncio.start_server(handle, HOST, port, backlog=4096)
    bound = server.sockets[0].getsockname()[1]
    print(json.dumps({"event": "listening", "port": bound}), flush=True)
    async with server:
        await server.serve_forever()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.relay", description=__doc__)
    parser.add_argument("--port", type=int, default=0, help="port to listen on (0: any free)")
    parser.add_argument("--to", type=int, required=True, help="port of the next hop")
    args = parser.parse_args(argv)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(args.port, args.to))
    return 0


if __name__ == "__main__":
    sys.exit(main())
