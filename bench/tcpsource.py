"""The local TCP service of the TCP rows: ``N\\n`` in, N bytes out, then the server closes.

    python -m bench.tcpsource [--port 0]

It listens on 127.0.0.1 and prints ``{"event": "listening", "port": N}``. A client sends a
decimal byte count and a newline; the server writes that many bytes (from one random 1 MiB
block, over and over, under the transport's flow control) and closes. One request line of
``104857600`` is the 100 MiB transfer; ``16`` is the connection-rate exchange. The server
closes first, so the TIME_WAIT sockets stay on the listening side and the connecting side
does not run out of ephemeral ports. uvloop Protocol callbacks, no per-byte Python work: a
direct transfer runs at several GB/s, far above any relay measured against it (the run
records the direct figure, which shows it).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import sys
from typing import Final, cast

import uvloop

BLOCK: Final = memoryview(os.urandom(1024 * 1024))  # random: no layer can compress it
MAX_LINE: Final = 32  # bytes of request line before the connection is dropped
HOST: Final = "127.0.0.1"
HIGH_WATER: Final = 4 * 1024 * 1024  # bytes buffered in the transport before pausing


class Source(asyncio.Protocol):
    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.head = b""
        self.left = -1  # bytes still to send; -1 until the request line is read
        self.paused = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's: no subclass of it
        self.transport.set_write_buffer_limits(high=HIGH_WATER)

    def data_received(self, data: bytes) -> None:
        if self.left >= 0 or self.transport is None:
            return  # anything after the request line is ignored
        self.head += data
        line, found, _ = self.head.partition(b"\n")
        if not found:
            if len(self.head) > MAX_LINE:
                self.transport.abort()
            return
        try:
            self.left = int(line)
        except ValueError:
            self.transport.abort()
            return
        self._send()

    def pause_writing(self) -> None:
        self.paused = True

    def resume_writing(self) -> None:
        self.paused = False
        self._send()

    def _send(self) -> None:
        assert self.transport is not None
        while self.left > 0 and not self.paused:
            piece = min(self.left, len(BLOCK))
            self.transport.write(BLOCK[:piece])
            self.left -= piece
        if self.left == 0:
            self.left = -2  # done: close() once, after the buffer is flushed
            self.transport.close()


async def serve(port: int) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(Source, HOST, port, backlog=4096)
    bound = server.sockets[0].getsockname()[1]
    print(json.dumps({"event": "listening", "port": bound}), flush=True)
    async with server:
        await server.serve_forever()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.tcpsource", description=__doc__)
    parser.add_argument("--port", type=int, default=0, help="port to listen on (0: any free)")
    args = parser.parse_args(argv)
    with contextlib.suppress(KeyboardInterrupt):
        uvloop.run(serve(args.port))
    return 0


if __name__ == "__main__":
    sys.exit(main())
