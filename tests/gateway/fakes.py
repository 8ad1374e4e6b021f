"""Small fakes for driving one gateway part through its interface, without sockets or
processes (as h2 and mitmproxy test their layers). The end-to-end tests stay the proof;
these check behaviours in milliseconds."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any, cast

from tunnelgate import limits
from tunnelgate.config import GatewayConfig
from tunnelgate.gateway.buffers import BufferBudget
from tunnelgate.gateway.caps import ConnectionCaps
from tunnelgate.gateway.counters import RequestCounters, TunnelCounters
from tunnelgate.gateway.hosts import HostRouter
from tunnelgate.gateway.registry import MemoryRegistry
from tunnelgate.gateway.routes import RouteTable
from tunnelgate.http1.request import RequestHead, RequestParser
from tunnelgate.proto import events as ev
from tunnelgate.proto.messages import ControlMessage
from tunnelgate.proto.mux import Role
from tunnelgate.testing.memory_tunnel import TunnelHarness
from tunnelgate.transport.deadlines import Deadlines
from tunnelgate.transport.tunnel import TunnelConnection


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
        self.buffered = 0  # what get_write_buffer_size says: bytes the "kernel" did not take

    def get_extra_info(self, name: str, default: object = None) -> object:
        return {"peername": self.peer}.get(name, default)

    def write(self, data: bytes | bytearray | memoryview) -> None:
        assert not self.closed, "write after close"
        self.written += data

    def writelines(self, pieces: list[bytes]) -> None:
        for piece in pieces:
            self.write(piece)

    def get_write_buffer_size(self) -> int:
        return self.buffered

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


class _NoHooks:
    """A gateway session that does nothing: the edge tests drive streams only."""

    def on_stream_opened(self, stream_id: int, metadata: bytes) -> None:
        return None

    def on_control(self, message: ControlMessage) -> None:
        pass

    def on_go_away(self, code: int, reason: str) -> None:
        pass

    def on_closed(self, end: object) -> None:
        pass


class TunnelPeer:
    """The gateway's real TunnelConnection on a fake WebSocket, and the tunnel client's
    side of it played by the test (the sans-IO mux): what came down each stream, and the
    answers the test sends back."""

    def __init__(self, *, max_streams: int = limits.MAX_STREAMS) -> None:
        hooks = cast(Any, _NoHooks())
        self.connection = TunnelConnection(Role.GATEWAY, hooks, max_streams=max_streams)
        self.harness = TunnelHarness(self.connection)
        self.metadata: dict[int, bytes] = {}
        self.sent: dict[int, bytearray] = {}
        self.ended: set[int] = set()
        self.resets: dict[int, int] = {}

    @property
    def streams(self) -> list[int]:
        """Streams opened so far, in order."""
        return list(self.metadata)

    async def pump(self) -> None:
        """Read what the gateway sent (after a loop turn); the client consumes it all."""
        peer = self.harness.peer
        for event in await self.harness.receive():
            if isinstance(event, ev.StreamOpened):
                self.metadata[event.stream_id] = event.metadata
                self.sent[event.stream_id] = bytearray()
            elif isinstance(event, ev.DataReceived):
                self.sent[event.stream_id] += event.data
                peer.acknowledge_data(event.stream_id, len(event.data))
            elif isinstance(event, ev.StreamEnded):
                self.ended.add(event.stream_id)
            elif isinstance(event, ev.StreamReset):
                self.resets[event.stream_id] = event.code
        self.harness.deliver()  # our WINDOW frames, if any

    def respond(self, stream_id: int, data: bytes, *, end: bool = False) -> None:
        self.harness.peer.send_data(stream_id, data, end)
        self.harness.deliver()

    def reset(self, stream_id: int, code: int) -> None:
        self.harness.peer.reset_stream(stream_id, code)
        self.harness.deliver()

    def credit(self, stream_id: int) -> int:
        """What the client may still send on the stream: credit the gateway returned."""
        return self.harness.peer.send_window(stream_id)


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
        self.tcp = None  # no TCP tunnels in these tests
        self.forwarder = None  # one gateway alone
        self.acme = None
        self.counters = RequestCounters()
        self.tunnel_counters = TunnelCounters()
        self.prepared: list[str] = []
        self.tunnels = FakeAcceptor()
        self.live = FakeLive()

    def prepare_certificate(self, name: str) -> None:
        self.prepared.append(name)


class SessionLink:
    """A session's real TunnelConnection on a fake WebSocket: the control messages it
    sent the client, and whether and how it closed."""

    def __init__(self, hooks: object) -> None:
        self.connection = TunnelConnection(Role.GATEWAY, cast(Any, hooks))
        self.harness = TunnelHarness(self.connection)
        self.sent: list[ControlMessage] = []

    async def settle(self) -> None:
        """Let the loop turn (batches go out at its end); collect what was sent."""
        for event in await self.harness.receive():
            if isinstance(event, ev.ControlReceived):
                self.sent.append(event.message)

    @property
    def closed(self) -> bool:
        return self.connection.closed

    @property
    def close_code(self) -> int | None:
        return self.connection.ending.code if self.connection.closed else None
