"""A raw-socket HTTP/1.1 client for tests: you write the exact bytes, it parses what comes back.

The response parser is hand-written and strict on purpose (it shares nothing with the gateway or
httptools): a status line, headers, then a body framed by the rules of RFC 9112 section 6.3:
no body for HEAD, 1xx, 204 and 304; chunked if Transfer-Encoding says so; else Content-Length;
else everything until the server closes. Every read is bounded by the connection's timeout.

    async with await open_connection(port) as conn:
        await conn.send(build_request("GET", "/", host="foo.localhost"))
        response = await conn.read_response()
"""

from __future__ import annotations

import asyncio
import json
import ssl
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Literal

from tunnelgate.testing import websocket as ws

MAX_HEAD = 1024 * 1024
"""Largest response head the client accepts (and its StreamReader's line limit)."""
PIECE = 64 * 1024

Framing = Literal["none", "length", "chunked", "close"]


class ResponseFormatError(Exception):
    """The server's bytes are not a well-formed HTTP/1.1 response."""


@dataclass
class RawResponse:
    status: int
    reason: str
    version: str
    headers: list[tuple[str, str]]
    raw_head: bytes
    framing: Framing
    content_length: int | None = None
    body: bytes = b""
    trailers: list[tuple[str, str]] = field(default_factory=list)
    interim: list[RawResponse] = field(default_factory=list)
    """1xx responses that came before this one (when not asked to return them)."""

    def header(self, name: str) -> str | None:
        """The first value of header ``name``, case-insensitively, or None."""
        values = self.header_all(name)
        return values[0] if values else None

    def header_all(self, name: str) -> list[str]:
        return [value for key, value in self.headers if key.lower() == name.lower()]

    @property
    def text(self) -> str:
        return self.body.decode("utf-8")

    def json(self) -> Any:
        return json.loads(self.body)


def build_request(
    method: str,
    target: str,
    *,
    host: str = "localhost",
    headers: Sequence[tuple[str, str]] = (),
    body: bytes | None = None,
) -> bytes:
    """A request's bytes: Host first, then ``headers``, then Content-Length if ``body`` is set."""
    lines = [f"{method} {target} HTTP/1.1", f"Host: {host}"]
    lines += [f"{name}: {value}" for name, value in headers]
    if body is not None:
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + (body or b"")


def chunked(*pieces: bytes) -> bytes:
    """``pieces`` in chunked transfer coding, with the last chunk."""
    return b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in pieces if p) + b"0\r\n\r\n"


class RawConnection:
    """One TCP connection: send bytes, read responses (one at a time, in order) or raw bytes."""

    def __init__(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, timeout: float
    ) -> None:
        self.reader = reader
        self.writer = writer
        self.timeout = timeout
        """Seconds any single operation may take."""

    def __repr__(self) -> str:
        peer = self.writer.get_extra_info("peername")
        return f"<RawConnection {peer} {'closing' if self.writer.is_closing() else 'open'}>"

    async def __aenter__(self) -> RawConnection:
        return self

    async def __aexit__(
        self, typ: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        async with asyncio.timeout(self.timeout):
            await self.writer.drain()

    async def write_eof(self) -> None:
        self.writer.write_eof()
        async with asyncio.timeout(self.timeout):
            await self.writer.drain()

    async def read_exactly(self, n: int) -> bytes:
        async with asyncio.timeout(self.timeout):
            return await self.reader.readexactly(n)

    async def read_some(self, n: int = PIECE) -> bytes:
        """Whatever arrives next, up to ``n`` bytes; ``b""`` once the server has closed."""
        async with asyncio.timeout(self.timeout):
            return await self.reader.read(n)

    async def read_until_eof(self, limit: int = 64 * 1024 * 1024) -> bytes:
        """Everything until the server closes (raises if more than ``limit`` bytes)."""
        data = bytearray()
        while piece := await self.read_some():
            data += piece
            if len(data) > limit:
                raise ResponseFormatError(f"more than {limit} bytes before EOF")
        return bytes(data)

    async def read_ws_frame(self) -> ws.Frame:
        return await ws.read_frame(self.read_exactly)

    async def read_head(self, *, method: str = "GET") -> RawResponse:
        """The next response head (1xx included); its body is left to ``iter_body``."""
        async with asyncio.timeout(self.timeout):
            try:
                raw = await self.reader.readuntil(b"\r\n\r\n")
            except asyncio.LimitOverrunError as exc:
                raise ResponseFormatError("response head too large") from exc
        return _parse_head(raw, method)

    async def iter_body(self, response: RawResponse) -> AsyncIterator[bytes]:
        """The body of ``response`` (just read by ``read_head``), de-chunked, piece by piece."""
        if response.framing == "length":
            left = response.content_length or 0
            while left:
                piece = await self.read_some(min(left, PIECE))
                if not piece:
                    raise ResponseFormatError(f"connection closed with {left} body bytes missing")
                left -= len(piece)
                yield piece
        elif response.framing == "chunked":
            async for piece in self._iter_chunks(response):
                yield piece
        elif response.framing == "close":
            while piece := await self.read_some():
                yield piece

    async def read_response(self, *, method: str = "GET", interim: bool = False) -> RawResponse:
        """The next whole response. Unless ``interim``, 1xx heads (not 101) are skipped and
        kept in the result's ``interim`` list."""
        skipped: list[RawResponse] = []
        while True:
            response = await self.read_head(method=method)
            if interim or response.status == 101 or response.status >= 200:
                break
            skipped.append(response)
        response.interim = skipped
        response.body = b"".join([piece async for piece in self.iter_body(response)])
        return response

    async def aclose(self) -> None:
        self.writer.close()
        try:
            async with asyncio.timeout(self.timeout):
                await self.writer.wait_closed()
        except (ConnectionError, TimeoutError):
            pass  # already reset by the peer, or stuck: it is closed on our side either way

    async def _read_line(self) -> bytes:
        async with asyncio.timeout(self.timeout):
            line = await self.reader.readuntil(b"\r\n")
        return line[:-2]

    async def _iter_chunks(self, response: RawResponse) -> AsyncIterator[bytes]:
        while True:
            size_text = (await self._read_line()).split(b";", 1)[0].strip()
            try:
                size = int(size_text, 16)
            except ValueError:
                raise ResponseFormatError(f"bad chunk size {size_text!r}") from None
            if size == 0:
                break
            left = size
            while left:
                piece = await self.read_exactly(min(left, PIECE))
                left -= len(piece)
                yield piece
            if await self.read_exactly(2) != b"\r\n":
                raise ResponseFormatError("chunk not followed by CRLF")
        while line := await self._read_line():
            response.trailers.append(_split_header(line))


def _split_header(line: bytes) -> tuple[str, str]:
    name, sep, value = line.decode("latin-1").partition(":")
    if not sep or not name or name != name.strip():
        raise ResponseFormatError(f"bad header line {line!r}")
    return name, value.strip(" \t")


def _parse_head(raw: bytes, method: str) -> RawResponse:
    status_line, *lines = raw[:-4].split(b"\r\n")
    parts = status_line.decode("latin-1").split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/") or not parts[1].isdigit():
        raise ResponseFormatError(f"bad status line {status_line!r}")
    headers = [_split_header(line) for line in lines]
    response = RawResponse(
        status=int(parts[1]),
        reason=parts[2] if len(parts) > 2 else "",
        version=parts[0],
        headers=headers,
        raw_head=raw,
        framing="none",
    )
    _set_framing(response, method)
    return response


def _set_framing(response: RawResponse, method: str) -> None:
    if method == "HEAD" or response.status < 200 or response.status in (204, 304):
        return
    codings = ",".join(response.header_all("Transfer-Encoding")).lower()
    lengths = {value.strip() for value in response.header_all("Content-Length")}
    if "chunked" in codings:
        response.framing = "chunked"
    elif lengths:
        if len(lengths) != 1 or not next(iter(lengths)).isdigit():
            raise ResponseFormatError(f"bad Content-Length {sorted(lengths)}")
        response.framing = "length"
        response.content_length = int(lengths.pop())
    else:
        response.framing = "close"


async def open_connection(
    port: int,
    *,
    host: str = "127.0.0.1",
    timeout: float = 10.0,  # noqa: ASYNC109 - the bound for every operation, not just this one
    tls: ssl.SSLContext | None = None,
    server_name: str | None = None,
) -> RawConnection:
    """A connection to ``host:port``; with ``tls``, over TLS with ``server_name`` as SNI
    (and the name the certificate is checked against)."""
    async with asyncio.timeout(timeout):
        reader, writer = await asyncio.open_connection(
            host,
            port,
            limit=MAX_HEAD,
            ssl=tls,
            server_hostname=server_name if tls is not None else None,
        )
    return RawConnection(reader, writer, timeout)


async def http_request(
    port: int,
    raw: bytes,
    *,
    host: str = "127.0.0.1",
    timeout: float = 10.0,  # noqa: ASYNC109 - the bound for every operation, not just this one
    tls: ssl.SSLContext | None = None,
    server_name: str | None = None,
) -> RawResponse:
    """Send ``raw`` on a new connection, read one response (skipping 1xx), and close.

    ``timeout`` bounds the whole exchange."""
    method = raw.split(b" ", 1)[0].decode("latin-1")
    async with asyncio.timeout(timeout):
        connection = open_connection(
            port, host=host, timeout=timeout, tls=tls, server_name=server_name
        )
        async with await connection as conn:
            await conn.send(raw)
            return await conn.read_response(method=method)
