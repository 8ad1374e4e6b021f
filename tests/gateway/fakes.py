"""Small fakes for driving one gateway part through its interface, without sockets or
processes (as h2 and mitmproxy test their layers). The end-to-end tests stay the proof;
these check behaviours in milliseconds."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any

from tunnelgate.config import GatewayConfig
from tunnelgate.gateway.buffers import BufferBudget
from tunnelgate.gateway.caps import ConnectionCaps
from tunnelgate.gateway.hosts import HostRouter
from tunnelgate.gateway.registry import MemoryRegistry
from tunnelgate.gateway.routes import RouteTable
from tunnelgate.http1.request import RequestHead, RequestParser
from tunnelgate.proto.codes import ErrorCode
from tunnelgate.proto.messages import ControlMessage
from tunnelgate.transport.deadlines import Deadlines
from tunnelgate.transport.tunnel import StreamHandler


def head_of(raw: bytes) -> RequestHead:
    events = RequestParser().feed(raw)
    assert isinstance(events[0], RequestHead), events
    return events[0]


class FakeTransport:
    """An asyncio transport that records what is done to it."""

    def __init__(self, peer: tuple[str, int] = ("203.0.113.7", 5555)) -> None:
        self.written = bytearray()
        self.peer = peer
        self.closed = False
        self.aborted = False
        self.reading = True
        self.eof_written = False
        self.protocol: object = None

    def get_extra_info(self, name: str, default: object = None) -> object:
        return {"peername": self.peer}.get(name, default)

    def write(self, data: bytes | bytearray | memoryview) -> None:
        assert not self.closed, "write after close"
        self.written += data

    def writelines(self, pieces: list[bytes]) -> None:
        for piece in pieces:
            self.write(piece)

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.closed = self.aborted = True

    def is_closing(self) -> bool:
        return self.closed

    def pause_reading(self) -> None:
        self.reading = False

    def resume_reading(self) -> None:
        self.reading = True

    def can_write_eof(self) -> bool:
        return True

    def write_eof(self) -> None:
        self.eof_written = True

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        pass

    def set_protocol(self, protocol: object) -> None:
        self.protocol = protocol


class FakeTarget:
    """A tunnel connection as an exchange sees it: records streams and what went on them."""

    def __init__(self, *, refuse: bool = False) -> None:
        self.closed = False
        self.refuse = refuse
        self.handlers: dict[int, StreamHandler] = {}
        self.metadata: dict[int, bytes] = {}
        self.sent: dict[int, bytearray] = {}
        self.ended: set[int] = set()
        self.resets: dict[int, int] = {}
        self.acked: dict[int, int] = {}
        self.credit = 1 << 30  # bytes send() takes before it says "stop"
        self._next = 2

    def open_stream(self, metadata: bytes, handler: StreamHandler) -> int:
        if self.refuse:
            from tunnelgate.errors import LocalProtocolError

            raise LocalProtocolError(ErrorCode.REFUSED_STREAM, "too many streams")
        sid, self._next = self._next, self._next + 2
        self.handlers[sid] = handler
        self.metadata[sid] = metadata
        self.sent[sid] = bytearray()
        return sid

    def send(self, stream_id: int, data: bytes | memoryview, end: bool = False) -> bool:
        self.sent[stream_id] += data
        self.credit -= len(data)
        if end:
            self.ended.add(stream_id)
        return self.credit > 0

    def end(self, stream_id: int) -> None:
        self.ended.add(stream_id)

    def reset(self, stream_id: int, code: int = ErrorCode.CANCEL) -> None:
        self.resets[stream_id] = code
        self.handlers.pop(stream_id, None)

    def acknowledge(self, stream_id: int, n: int) -> None:
        self.acked[stream_id] = self.acked.get(stream_id, 0) + n

    def release(self, stream_id: int) -> None:
        self.handlers.pop(stream_id, None)

    def is_open(self, stream_id: int) -> bool:
        return stream_id in self.handlers and stream_id not in self.resets


class FakeAcceptor:
    def __init__(self) -> None:
        self.accepted: list[tuple[object, RequestHead, bytes, str]] = []

    def accept(
        self,
        transport: asyncio.Transport,
        head: RequestHead,
        early_data: bytes,
        client_addr: str,
        release_slot: Callable[[], None],
    ) -> None:
        self.accepted.append((transport, head, early_data, client_addr))


class FakeLive:
    """GatewayState's tracking, recorded; spawned work is kept to be run by the test."""

    def __init__(self) -> None:
        self.connections: set[object] = set()
        self.sessions: set[object] = set()
        self.work: list[Coroutine[Any, Any, None]] = []

    def connection_opened(self, connection: object) -> None:
        self.connections.add(connection)

    def connection_closed(self, connection: object) -> None:
        self.connections.discard(connection)

    def session_opened(self, session: object) -> None:
        self.sessions.add(session)

    def session_closed(self, session: object) -> None:
        self.sessions.discard(session)

    def spawn(self, work: Coroutine[Any, Any, None], name: str) -> None:
        self.work.append(work)

    async def run_spawned(self) -> None:
        while self.work:
            await self.work.pop(0)


class Services:
    """The gateway's parts for one test: real small ones, fakes at the edges."""

    def __init__(self, **config: Any) -> None:
        self.config = GatewayConfig(**config)
        self.node = "test-node"
        self.caps = ConnectionCaps(1000, 100, 100_000)
        self.buffers = BufferBudget(1 << 20)
        self.deadlines = Deadlines()
        self.hosts = HostRouter(self.config.domain, 8080)
        self.routes = RouteTable()
        self.registry = MemoryRegistry()
        self.tunnels = FakeAcceptor()
        self.live = FakeLive()


class FakeConnection:
    """A tunnel connection as a session sees it."""

    def __init__(self) -> None:
        self.closed = False
        self.sent: list[ControlMessage] = []
        self.close_code: int | None = None
        self.close_reason = ""
        self.constrained = False

    def constrain(self, on: bool) -> None:
        self.constrained = on

    def send_control(self, message: ControlMessage) -> None:
        assert not self.closed
        self.sent.append(message)

    def close(self, code: int = ErrorCode.NO_ERROR, reason: str = "") -> None:
        if not self.closed:
            self.closed = True
            self.close_code, self.close_reason = code, reason
