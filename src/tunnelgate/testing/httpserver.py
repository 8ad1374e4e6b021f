"""A minimal HTTP/1.1 server core for the test app: requests in, responses out, one at a time.

Independent of the gateway's own HTTP code on purpose: it is the reference the gateway is tested
against. One connection is served by one coroutine that reads a request, lets the handler answer
it completely, then reads the next; pipelined requests are therefore answered in order, and bytes
are only read from the socket when the handler asks for them, so a slow handler pushes back on
its client through TCP instead of buffering.

Memory per connection is bounded by ``READ_SIZE`` (one socket read parsed ahead) plus the
transport's write buffer, which ``drain()`` keeps near asyncio's default high-water mark.
"""

from __future__ import annotations

import asyncio
import http
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

import httptools

READ_SIZE = 64 * 1024
"""Bytes asked of the socket per read; also the most request data parsed ahead of the handler."""


@dataclass
class Request:
    method: str
    target: bytes
    path: str
    query: str
    version: str
    headers: list[tuple[bytes, bytes]]
    keep_alive: bool
    upgrade: bool
    _reader: RequestReader = field(repr=False)
    _body_done: bool = field(default=False, repr=False)

    def header(self, name: str) -> str | None:
        """The first value of header ``name`` (case-insensitive), decoded as latin-1."""
        wanted = name.lower().encode("latin-1")
        for key, value in self.headers:
            if key.lower() == wanted:
                return value.decode("latin-1")
        return None

    async def body(self) -> AsyncIterator[bytes]:
        """The request body, piece by piece, as it arrives (chunked framing already removed)."""
        while not self._body_done:
            event = await self._reader.next_event()
            if isinstance(event, bytes):
                yield event
            elif event is _END:
                self._body_done = True
            else:
                raise asyncio.IncompleteReadError(b"", None)

    async def discard_body(self) -> None:
        async for _ in self.body():
            pass


class _End:
    pass


_END = _End()
_Event = bytes | _End | Request


class RequestReader:
    """Feeds socket data to httptools on demand and hands out parsed events in order."""

    def __init__(self, reader: asyncio.StreamReader) -> None:
        self.stream = reader
        self._parser = httptools.HttpRequestParser(self)
        self._events: deque[_Event] = deque()
        self._url = b""
        self._headers: list[tuple[bytes, bytes]] = []
        self.upgrade_tail: bytes | None = None
        """Bytes that followed an upgrade request's head; set once the parser has stopped."""
        self.malformed = False

    async def next_request(self) -> Request | None:
        """The next request head, or None at end of input (see ``malformed``)."""
        event = await self.next_event()
        if event is None:
            return None
        assert isinstance(event, Request), event
        return event

    async def next_event(self) -> _Event | None:
        while not self._events:
            if self.upgrade_tail is not None or self.malformed:
                return None
            data = await self.stream.read(READ_SIZE)
            if not data:
                return None
            try:
                self._parser.feed_data(data)
            except httptools.HttpParserUpgrade as exc:
                self.upgrade_tail = data[exc.args[0] :]
            except httptools.HttpParserError:
                self.malformed = True
        return self._events.popleft()

    # httptools callbacks
    def on_message_begin(self) -> None:
        self._url = b""
        self._headers = []

    def on_url(self, url: bytes) -> None:
        self._url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers.append((name, value))

    def on_headers_complete(self) -> None:
        parsed = httptools.parse_url(self._url)
        request = Request(
            method=self._parser.get_method().decode("ascii"),
            target=self._url,
            path=(parsed.path or b"").decode("latin-1"),
            query=(parsed.query or b"").decode("latin-1"),
            version=self._parser.get_http_version(),
            headers=self._headers,
            keep_alive=self._parser.should_keep_alive(),
            upgrade=self._parser.should_upgrade(),
            _reader=self,
        )
        self._events.append(request)

    def on_body(self, body: bytes) -> None:
        self._events.append(body)

    def on_message_complete(self) -> None:
        self._events.append(_END)


@dataclass
class ServerStats:
    max_write_buffer: int = 0
    """Most bytes seen waiting in a transport's write buffer just after a response write."""


class Response:
    """Writes one response: ``start``, any number of ``write``, then ``end``.

    Framing follows the arguments of ``start``: a Content-Length, chunked, or (neither) a
    close-delimited body. Bodies of HEAD requests are dropped. Every write waits for the
    transport to drain, which honours its pause_writing/resume_writing flow control.
    """

    def __init__(
        self, writer: asyncio.StreamWriter, request: Request, stats: ServerStats | None = None
    ) -> None:
        self._writer = writer
        self._stats = stats or ServerStats()
        self._request = request
        self.started = False
        self.close_after = not request.keep_alive
        self.detached = False
        self._chunked = False

    async def send_continue(self) -> None:
        self._writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        await self._writer.drain()

    async def start(
        self,
        status: int,
        headers: list[tuple[str, str]],
        *,
        length: int | None = None,
        chunked: bool = False,
    ) -> None:
        assert not self.started
        self.started = True
        lines = [f"HTTP/1.1 {status} {_reason(status)}"]
        lines += [f"{name}: {value}" for name, value in headers]
        if length is not None:
            lines.append(f"Content-Length: {length}")
        elif chunked and self._request.version != "1.0":
            self._chunked = True
            lines.append("Transfer-Encoding: chunked")
        elif not _bodiless(status):
            self.close_after = True
        if self.close_after:
            lines.append("Connection: close")
        self._writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
        await self._writer.drain()

    async def write(self, data: bytes) -> None:
        if not data or self._request.method == "HEAD":
            return
        if self._chunked:
            self._writer.writelines([b"%x\r\n" % len(data), data, b"\r\n"])
        else:
            self._writer.write(data)
        buffered = self._writer.transport.get_write_buffer_size()
        self._stats.max_write_buffer = max(self._stats.max_write_buffer, buffered)
        await self._writer.drain()

    async def end(self) -> None:
        if self._chunked and self._request.method != "HEAD":
            self._writer.write(b"0\r\n\r\n")
        await self._writer.drain()

    async def send(self, status: int, body: bytes, content_type: str = "text/plain") -> None:
        """A whole response with a Content-Length."""
        await self.start(status, [("Content-Type", content_type)], length=len(body))
        await self.write(body)
        await self.end()

    async def switch_protocols(
        self, protocol: str, headers: list[tuple[str, str]]
    ) -> tuple[PrefixedReader, asyncio.StreamWriter]:
        """Answer 101 and hand over the connection's bytes, starting with any read ahead."""
        tail = self._request._reader.upgrade_tail
        assert tail is not None, "only requests the parser saw as upgrades can switch"
        self.detached = True
        self.started = True
        lines = ["HTTP/1.1 101 Switching Protocols", f"Upgrade: {protocol}", "Connection: Upgrade"]
        lines += [f"{name}: {value}" for name, value in headers]
        self._writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
        await self._writer.drain()
        return PrefixedReader(tail, self._request._reader.stream), self._writer


class PrefixedReader:
    """Reads the bytes the parser had read past an upgrade's head, then the socket."""

    def __init__(self, prefix: bytes, reader: asyncio.StreamReader) -> None:
        self._prefix = prefix
        self._reader = reader

    async def read(self, n: int) -> bytes:
        if self._prefix:
            data, self._prefix = self._prefix[:n], self._prefix[n:]
            return data
        return await self._reader.read(n)

    async def read_exactly(self, n: int) -> bytes:
        taken, self._prefix = self._prefix[:n], self._prefix[n:]
        if len(taken) == n:
            return taken
        return taken + await self._reader.readexactly(n - len(taken))


def _reason(status: int) -> str:
    try:
        return http.HTTPStatus(status).phrase
    except ValueError:
        return "Unknown"


def _bodiless(status: int) -> bool:
    return status < 200 or status in (204, 304)


Handler = Callable[[Request, Response], Awaitable[None]]


async def serve_connection(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    handler: Handler,
    stats: ServerStats | None = None,
) -> None:
    """Serve requests on one connection until either side closes it."""
    requests = RequestReader(reader)
    try:
        while (request := await requests.next_request()) is not None:
            response = Response(writer, request, stats)
            await handler(request, response)
            if response.detached:
                return
            if not response.started:
                await response.send(500, b"handler sent no response\n")
            await request.discard_body()
            if response.close_after or requests.upgrade_tail is not None:
                return
        if requests.malformed:
            writer.write(
                b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            )
            await writer.drain()
    finally:
        writer.close()
