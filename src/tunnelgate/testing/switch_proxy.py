"""A TCP relay on loopback whose upstream a test chooses, to move a client between gateways.

    proxy = await SwitchProxy.start(upstream_port)
    proxy.port                     where the client connects (its --server)
    proxy.hold(); proxy.cut()      new connections wait; every relayed one is reset
    proxy.release(other_port)      waiting and new connections go to `other_port`
    await proxy.aclose()

A connection waits at most HOLD_TIMEOUT for `release`, then is closed.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
from typing import Final

HOLD_TIMEOUT: Final = 30.0  # seconds a new connection waits for `release`
CHUNK: Final = 65536  # bytes per read


class SwitchProxy:
    def __init__(self, server: asyncio.Server, upstream: int) -> None:
        self._server = server
        self.upstream = upstream
        self._open = asyncio.Event()
        self._open.set()
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    def __repr__(self) -> str:
        return f"<SwitchProxy :{self.port} -> :{self.upstream} relaying={len(self._writers)}>"

    @classmethod
    async def start(cls, upstream: int) -> SwitchProxy:
        proxy: SwitchProxy | None = None

        async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            assert proxy is not None
            await proxy._relay(reader, writer)

        server = await asyncio.start_server(serve, "127.0.0.1", 0)
        proxy = cls(server, upstream)
        return proxy

    @property
    def port(self) -> int:
        return int(self._server.sockets[0].getsockname()[1])

    def hold(self) -> None:
        self._open.clear()

    def release(self, upstream: int) -> None:
        self.upstream = upstream
        self._open.set()

    def cut(self) -> None:
        """Reset every relayed connection (RST, as a network failure would)."""
        for writer in list(self._writers):
            sock = writer.get_extra_info("socket")
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            writer.transport.abort()
        self._writers.clear()

    async def aclose(self) -> None:
        self._server.close()
        self.cut()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        try:
            async with asyncio.timeout(HOLD_TIMEOUT):
                await self._open.wait()
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream)
        except (OSError, TimeoutError):
            writer.transport.abort()
            self._writers.discard(writer)
            return
        self._writers.add(up_writer)
        tasks = [
            asyncio.create_task(_pipe(reader, up_writer)),
            asyncio.create_task(_pipe(up_reader, writer)),
        ]
        self._tasks.update(tasks)
        try:
            await asyncio.gather(*tasks, return_exceptions=True)
        finally:
            self._tasks.difference_update(tasks)
            for side in (writer, up_writer):
                side.transport.abort()
                self._writers.discard(side)


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(CHUNK):
            writer.write(data)
            await writer.drain()
    finally:
        writer.transport.abort()  # one side gone: the relay is over
