"""Differential HTTP tests: the same raw request sent straight to an origin and through a
tunnel, and the two exchanges compared modulo what a proxy is meant to change.

The origin is :class:`RawOrigin`, an asyncio server that answers each request with the exact
bytes a test scripts (unusual but legal shapes: hop-by-hop fields, 1xx, trailers, early
answers), and records every request as it arrived. :func:`compare` sends one raw request to
the origin directly and to the gateway's public port, and :meth:`Comparison.differences` lists
what differs beyond the expected:

- on the request: `X-Forwarded-For/-Proto/-Host` added by the gateway, hop-by-hop fields
  (RFC 9110 §7.6.1) and the framing restated;
- on the response: hop-by-hop fields taken out, the gateway's own `Connection` (close,
  keep-alive, upgrade) and, for an HTTP/1.0 client, no 1xx, no chunked coding and so no
  trailers (RFC 9110 §15.2, RFC 9112 §6.1).

Status, reason, end-to-end fields (in order, values as sent), body and trailers must be the
same; any hop-by-hop field that reaches the public client is a difference of its own.

    async with RawOrigin(lambda request: Reply(b"HTTP/1.1 204 No Content\\r\\n\\r\\n")) as origin:
        ...  # start a tunnel to origin.port
        comparison = await compare(origin, gateway_port, raw_request)
        assert comparison.differences() == []
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field
from types import TracebackType

from .http_client import RawResponse, open_connection

__all__ = ["Comparison", "RawOrigin", "Reply", "compare", "end_to_end"]

# RFC 9110 §7.6.1, and the proxy fields: never forwarded by a proxy as they came.
HOP_BY_HOP = frozenset(
    {"connection", "keep-alive", "proxy-connection", "te", "transfer-encoding", "upgrade"}
)
FORWARDED = frozenset({"x-forwarded-for", "x-forwarded-proto", "x-forwarded-host", "forwarded"})
# What the gateway may say about its own connection.
GATEWAY_CONNECTION = frozenset({"close", "keep-alive", "upgrade"})
TIMEOUT = 10.0  # seconds any one read or write may take


@dataclass
class Reply:
    """The origin's answer to one request: these bytes; then `close` the connection.
    `read_body`: read the request's body first (False: answer after the head, early)."""

    data: bytes
    close: bool = False
    read_body: bool = True


@dataclass
class Exchange:
    """One request as the origin received it (head and body bytes) and its response as the
    public client read it."""

    request: bytes
    response: RawResponse


def _head_fields(head: bytes) -> list[tuple[str, str]]:
    lines = head.split(b"\r\n")[1:]
    found = []
    for line in lines:
        if line:
            name, _, value = line.decode("latin-1").partition(":")
            found.append((name, value.strip(" \t")))
    return found


def end_to_end(
    fields: list[tuple[str, str]], *, keep: frozenset[str] = frozenset()
) -> list[tuple[str, str]]:
    """`fields` without the hop-by-hop ones and those their Connection names (names lower-
    cased, order kept); `keep`: hop-by-hop names to keep all the same (Upgrade of a 101)."""
    named = {
        token.strip().lower()
        for name, value in fields
        if name.lower() == "connection"
        for token in value.split(",")
    }
    dropped = (HOP_BY_HOP | named) - keep
    return [(name.lower(), value) for name, value in fields if name.lower() not in dropped]


@dataclass
class Comparison:
    """The same raw request, direct and through the tunnel."""

    raw: bytes
    direct: Exchange
    tunneled: Exchange
    http10: bool = field(init=False)

    def __post_init__(self) -> None:
        self.http10 = self.raw.split(b"\r\n", 1)[0].endswith(b"HTTP/1.0")

    def differences(self) -> list[str]:
        """What differs beyond what a proxy is meant to change; empty when transparent."""
        return self._request_differences() + self._response_differences()

    def _request_differences(self) -> list[str]:
        found = []
        d_head, _, d_body = self.direct.request.partition(b"\r\n\r\n")
        t_head, _, t_body = self.tunneled.request.partition(b"\r\n\r\n")
        if d_head.split(b"\r\n", 1)[0] != t_head.split(b"\r\n", 1)[0]:
            found.append(f"request line: {d_head[:80]!r} became {t_head[:80]!r}")
        ignore = FORWARDED | {"content-length"}
        direct = [f for f in end_to_end(_head_fields(d_head)) if f[0] not in ignore]
        tunneled = [f for f in end_to_end(_head_fields(t_head)) if f[0] not in ignore]
        if direct != tunneled:
            found.append(f"request fields: {direct} became {tunneled}")
        if d_body != t_body:
            found.append(f"request body: {d_body[:200]!r} became {t_body[:200]!r}")
        return found

    def _response_differences(self) -> list[str]:
        direct, tunneled = self.direct.response, self.tunneled.response
        found = []
        for what in ("status", "reason", "body"):
            if getattr(direct, what) != getattr(tunneled, what):
                found.append(
                    f"{what}: {getattr(direct, what)!r} became {getattr(tunneled, what)!r}"
                )
        keep = frozenset({"upgrade"}) if direct.status == 101 else frozenset()
        expected = end_to_end(direct.headers, keep=keep)
        trailers = direct.trailers
        interim = [r.status for r in direct.interim]
        if self.http10 and direct.framing == "chunked":
            expected = [f for f in expected if f[0] != "trailer"]
            trailers = []
        if self.http10:
            interim = []
        got = end_to_end(tunneled.headers, keep=keep)
        if expected != got:
            found.append(f"response fields: {expected} became {got}")
        if trailers != tunneled.trailers:
            found.append(f"trailers: {trailers} became {tunneled.trailers}")
        if interim != [r.status for r in tunneled.interim]:
            found.append(
                f"interim responses: {interim} became {[r.status for r in tunneled.interim]}"
            )
        for response in (*tunneled.interim, tunneled):
            found += _hop_by_hop_left(response)
        if self.http10 and tunneled.framing == "chunked":
            found.append("a chunked body to an HTTP/1.0 client")
        return found


def _hop_by_hop_left(response: RawResponse) -> list[str]:
    """Hop-by-hop fields in a response the gateway sent, beyond its own Connection."""
    found = []
    named: set[str] = set()
    for name, value in response.headers:
        key = name.lower()
        if key == "connection":
            tokens = {token.strip().lower() for token in value.split(",")}
            named |= tokens
            if not tokens <= GATEWAY_CONNECTION:
                found.append(f"{response.status}: Connection: {value}")
        elif key == "upgrade" and response.status == 101:
            continue
        elif key == "transfer-encoding" and response.framing == "chunked":
            continue  # the body's own framing, passed on as it came
        elif key in HOP_BY_HOP:
            found.append(f"{response.status}: {name}: {value}")
    for name, value in response.headers:
        if name.lower() in named - GATEWAY_CONNECTION:
            found.append(f"{response.status}: {name}: {value} (named by Connection)")
    return found


class RawOrigin:
    """A local app that answers with scripted bytes: `respond(request)` gets each request
    head (CRLFCRLF included) and gives the Reply. Every request is recorded in `requests`
    (head and body as received), one per request, in arrival order."""

    def __init__(self, respond: Callable[[bytes], Reply]) -> None:
        self.respond = respond
        self.requests: list[bytes] = []
        self.port = 0
        self._server: asyncio.Server | None = None
        self._arrived = asyncio.Condition()

    async def __aenter__(self) -> RawOrigin:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(
        self, typ: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._server is not None:
            self._server.close()

    async def wait_requests(self, n: int) -> list[bytes]:
        """The requests once there are at least `n` (a request is recorded when answered,
        so the public client may have its response before the origin's record is made)."""
        async with asyncio.timeout(TIMEOUT), self._arrived:
            await self._arrived.wait_for(lambda: len(self.requests) >= n)
        return self.requests

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError):
            try:
                while True:
                    head = await reader.readuntil(b"\r\n\r\n")
                    reply = self.respond(head)
                    if reply.read_body:
                        body = await _read_body(reader, head)
                        writer.write(reply.data)
                    else:  # an early answer; then the body is read, as apps keep the connection
                        writer.write(reply.data)
                        body = await _read_body(reader, head)
                    await writer.drain()
                    async with self._arrived:
                        self.requests.append(head + body)
                        self._arrived.notify_all()
                    if reply.close:
                        break
            finally:
                writer.close()


async def _read_body(reader: asyncio.StreamReader, head: bytes) -> bytes:
    fields = {name.lower(): value for name, value in _head_fields(head.rstrip(b"\r\n"))}
    if fields.get("transfer-encoding", "").lower() == "chunked":
        body = bytearray()
        while True:
            line = await reader.readuntil(b"\r\n")
            body += line
            size = int(line.split(b";", 1)[0], 16)
            if not size:
                break
            body += await reader.readexactly(size + 2)
        while (line := await reader.readuntil(b"\r\n")) != b"\r\n":
            body += line  # trailer fields
        return bytes(body + b"\r\n")
    return await reader.readexactly(int(fields.get("content-length", "0")))


async def _exchange(origin: RawOrigin, port: int, raw: bytes) -> Exchange:
    """Send `raw` to `port` on a new connection; the response, and the request as the origin
    got it."""
    before = len(origin.requests)
    method = raw.split(b" ", 1)[0].decode("latin-1")
    async with await open_connection(port, timeout=TIMEOUT) as conn:
        await conn.send(raw)
        response = await conn.read_response(method=method)
    requests = await origin.wait_requests(before + 1)
    return Exchange(requests[before], response)


async def compare(origin: RawOrigin, public_port: int, raw: bytes) -> Comparison:
    """`raw` (one request, with the tunnel's Host) sent straight to `origin` and then to the
    gateway on `public_port`, each on a new connection."""
    direct = await _exchange(origin, origin.port, raw)
    tunneled = await _exchange(origin, public_port, raw)
    return Comparison(raw, direct, tunneled)
