"""A raw TCP service to put behind a TCP or TLS-passthrough tunnel: an echo that can be told
to expect a PROXY header, and to speak TLS.

- Every byte is written back as it comes; the peer's EOF is passed back as an EOF
  (half-close) once everything was echoed, then the connection is closed.
- ``proxy="v1" | "v2" | "any"``: the connection must start with a PROXY header of that
  version (read with :mod:`tunnelgate.testing.proxy_header`); one without, or with a
  malformed one, is closed at once, as a server configured for PROXY does.
- ``tls=context``: TLS (this side the server) is spoken after the PROXY header, as the
  header comes before a TLS client's first byte. The handshake runs over memory BIOs so
  the bytes read along with the header are not lost.

Each connection that ended is recorded (:class:`TcpConnection`: its PROXY header, peer,
bytes echoed, whether the peer half-closed, an error) in ``app.connections``; a test waits
for them with :meth:`TcpApp.wait_connections`. As a process
(``python -m tunnelgate.testing.tcp_app --port 0 [--proxy-protocol v1|v2|any]``) it prints
``{"event": "listening", "port": N}`` once bound, then one ``{"event": "connection", ...}``
line per connection ended.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import ssl
import sys
from collections.abc import Callable
from dataclasses import dataclass

import uvloop

from tunnelgate.testing.proxy_header import ProxyHeader, ProxyHeaderError, parse_proxy_header
from tunnelgate.testing.serving import close_server

PIECE = 64 * 1024
"""Largest piece read and written back at once."""
MAX_PROXY_HEADER = 16 + 65535
"""Bytes read while looking for the PROXY header (a v2 header's largest size)."""


@dataclass
class TcpConnection:
    """What the app saw of one connection."""

    peer: tuple[str, int]
    proxy: ProxyHeader | None = None
    echoed: int = 0  # bytes written back (after TLS, for a TLS connection)
    half_closed: bool = False  # the peer ended its side (EOF, or TLS close_notify) first
    error: str | None = None

    def as_json(self) -> dict[str, object]:
        return {
            "event": "connection",
            "peer": list(self.peer),
            "proxy": None if self.proxy is None else self.proxy.as_json(),
            "echoed": self.echoed,
            "half_closed": self.half_closed,
            "error": self.error,
        }


class TcpApp:
    def __init__(
        self,
        proxy: str | None = None,
        tls: ssl.SSLContext | None = None,
        on_connection: Callable[[TcpConnection], None] | None = None,
    ) -> None:
        if proxy not in (None, "v1", "v2", "any"):
            raise ValueError(f"proxy must be v1, v2 or any, not {proxy!r}")
        self.proxy = proxy
        self.tls = tls
        self.port = 0
        self.connections: list[TcpConnection] = []  # those that ended, in order
        self._on_connection = on_connection
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._changed = asyncio.Event()

    def __repr__(self) -> str:
        return f"<TcpApp port={self.port} proxy={self.proxy} ended={len(self.connections)}>"

    async def start(self, host: str = "127.0.0.1", port: int = 0, backlog: int = 512) -> None:
        self._server = await asyncio.start_server(
            self._handle, host, port, backlog=backlog, limit=PIECE
        )
        self.port = self._server.sockets[0].getsockname()[1]

    async def aclose(self) -> None:
        """Stop listening, cancel every connection, and wait for them to finish."""
        await close_server(self._server, self._tasks)

    async def wait_connections(
        self,
        count: int,
        timeout: float = 10.0,  # noqa: ASYNC109 - a deadline for the condition, by design
    ) -> list[TcpConnection]:
        """The connections that ended, once there are at least `count` of them."""
        async with asyncio.timeout(timeout):
            while len(self.connections) < count:
                self._changed.clear()
                await self._changed.wait()
        return self.connections

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        peer = writer.get_extra_info("peername")
        record = TcpConnection(peer=(str(peer[0]), int(peer[1])))
        try:
            await self._serve(record, reader, writer)
        except ProxyHeaderError as exc:
            record.error = f"proxy: {exc}"
        except (OSError, ssl.SSLError, asyncio.IncompleteReadError) as exc:
            record.error = f"{type(exc).__name__}: {exc}"
        finally:
            writer.close()
            with contextlib.suppress(OSError, ssl.SSLError):
                await writer.wait_closed()
            self._tasks.discard(task)
            self.connections.append(record)
            self._changed.set()
            if self._on_connection is not None:
                self._on_connection(record)

    async def _serve(
        self, record: TcpConnection, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        first = b""
        if self.proxy is not None:
            record.proxy, first = await _read_proxy_header(reader)
            wanted = {"v1": 1, "v2": 2}.get(self.proxy)
            if wanted is not None and record.proxy.version != wanted:
                raise ProxyHeaderError(f"a v{record.proxy.version} header, not {self.proxy}")
        if self.tls is not None:
            await _echo_tls(record, first, reader, writer, self.tls)
        else:
            await _echo(record, first, reader, writer)


async def _read_proxy_header(reader: asyncio.StreamReader) -> tuple[ProxyHeader, bytes]:
    """The PROXY header and the bytes read after it."""
    data = b""
    while True:
        parsed = parse_proxy_header(data)
        if parsed is not None:
            header, used = parsed
            return header, data[used:]
        if len(data) >= MAX_PROXY_HEADER:
            raise ProxyHeaderError("no complete PROXY header")
        more = await reader.read(PIECE)
        if not more:
            raise ProxyHeaderError(f"the connection ended in the PROXY header: {data[:32]!r}")
        data += more


async def _echo(
    record: TcpConnection, first: bytes, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> None:
    data = first or await reader.read(PIECE)
    while data:
        writer.write(data)
        record.echoed += len(data)
        await writer.drain()
        data = await reader.read(PIECE)
    record.half_closed = True
    if writer.can_write_eof():
        writer.write_eof()
    await writer.drain()


async def _echo_tls(
    record: TcpConnection,
    first: bytes,
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    context: ssl.SSLContext,
) -> None:
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = context.wrap_bio(incoming, outgoing, server_side=True)
    incoming.write(first)

    async def flush() -> None:
        if pending := outgoing.read():
            writer.write(pending)
            await writer.drain()

    async def fill() -> bool:
        data = await reader.read(PIECE)
        if not data:
            incoming.write_eof()
            return False
        incoming.write(data)
        return True

    while True:
        try:
            tls.do_handshake()
            break
        except ssl.SSLWantReadError:
            await flush()
            if not await fill():
                raise ConnectionError("the connection ended in the TLS handshake") from None
    await flush()
    while True:
        try:
            data = tls.read(PIECE)
        except ssl.SSLWantReadError:
            await flush()
            if not await fill():
                break  # the socket ended without close_notify
            continue
        except ssl.SSLZeroReturnError:  # close_notify
            break
        if not data:  # the socket ended without close_notify
            break
        tls.write(data)
        record.echoed += len(data)
        await flush()
    record.half_closed = True
    with contextlib.suppress(ssl.SSLError):
        tls.unwrap()  # our close_notify
    await flush()


async def start_tcp_app(
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    proxy: str | None = None,
    tls: ssl.SSLContext | None = None,
) -> TcpApp:
    """Start the app on this event loop; ``await app.aclose()`` stops it."""
    app = TcpApp(proxy, tls)
    await app.start(host, port)
    return app


async def _run(host: str, port: int, proxy: str | None) -> None:
    def report(record: TcpConnection) -> None:
        print(json.dumps(record.as_json()), flush=True)

    app = TcpApp(proxy, on_connection=report)
    await app.start(host, port)
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
    parser = argparse.ArgumentParser(prog="python -m tunnelgate.testing.tcp_app")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--proxy-protocol", choices=["v1", "v2", "any"], default=None)
    args = parser.parse_args(argv)
    uvloop.run(_run(args.host, args.port, args.proxy_protocol))
    return 0


if __name__ == "__main__":
    sys.exit(main())
