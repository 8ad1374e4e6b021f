"""A gateway stand-in that a test scripts: it takes a real client's tunnel, answers its
registrations, and opens TCP or TLS streams to it when the test says, so the client's side
of TCP and TLS tunnels can be tested end to end (a real client process, a real local
service) without the gateway's public listeners.

    async with ScriptedGateway() as gateway:
        client = start_client("tcp", str(app.port), "--server", gateway.url)
        await gateway.wait_registered(1)
        stream = await gateway.open_stream(1, StreamKind.TCP, "203.0.113.9:4000")
        await stream.send(b"ping", end=True)
        assert await stream.wait_end() == b"ping"

It speaks the real protocol through the sans-IO mux core (docs/protocol.md), one client
connection at a time. Registrations are all accepted: a tcp tunnel gets the port it asked
for or the next of `first_port`, `first_port + 1`, ... (never one given before, so a test
sees whether a reconnecting client asks for its port again); http and tls tunnels the name
asked for (or a made-up one). Stream bytes the client sends are acknowledged as they arrive.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from types import TracebackType

from tunnelgate.proto import events as ev
from tunnelgate.proto.codes import StreamKind
from tunnelgate.proto.messages import OpenInfo, Register, Registered
from tunnelgate.proto.mux import Connection, Role
from tunnelgate.testing import websocket as ws
from tunnelgate.testing.endpoints import switching_protocols

TIMEOUT = 10.0
"""Seconds any one wait of a test on the gateway may take."""


class ScriptedStream:
    """One stream the gateway opened: what the client sent on it, and how it ended."""

    def __init__(self, gateway: ScriptedGateway, sid: int) -> None:
        self.gateway = gateway
        self.sid = sid
        self.received = bytearray()
        self.ended = False  # the client's FIN
        self.reset_code: int | None = None
        self._changed = asyncio.Event()
        self._writable = asyncio.Event()
        self._writable.set()

    def __repr__(self) -> str:
        return f"<ScriptedStream {self.sid} received={len(self.received)} ended={self.ended}>"

    async def send(self, data: bytes, *, end: bool = False) -> None:
        """Queue `data` (and a FIN); returns once the stream has credit for more."""
        if not self.gateway.mux.send_data(self.sid, data, end):
            self._writable.clear()
        await self.gateway.flush()
        async with asyncio.timeout(TIMEOUT):
            await self._writable.wait()

    async def end(self) -> None:
        await self.send(b"", end=True)

    async def wait_for(self, count: int) -> bytes:
        """What the client sent, once it is at least `count` bytes."""
        await self._until(lambda: len(self.received) >= count or self._over())
        return bytes(self.received)

    async def wait_end(self) -> bytes:
        """Everything the client sent, once it sent its FIN."""
        await self._until(lambda: self.ended or self.reset_code is not None)
        if not self.ended:
            raise AssertionError(f"stream {self.sid} reset with {self.reset_code}, not ended")
        return bytes(self.received)

    async def wait_reset(self) -> int:
        """The code of the client's RESET."""
        await self._until(lambda: self.reset_code is not None)
        assert self.reset_code is not None
        return self.reset_code

    def _over(self) -> bool:
        return self.ended or self.reset_code is not None

    async def _until(self, condition: Callable[[], bool]) -> None:
        async with asyncio.timeout(TIMEOUT):
            while not condition():
                self._changed.clear()
                await self._changed.wait()

    def _event(self, event: ev.Event) -> None:
        if isinstance(event, ev.DataReceived):
            self.received += event.data
            self.gateway.mux.acknowledge_data(self.sid, len(event.data))
        elif isinstance(event, ev.StreamEnded):
            self.ended = True
        elif isinstance(event, ev.StreamReset):
            self.reset_code = event.code
            self._writable.set()
        elif isinstance(event, ev.StreamWritable):
            self._writable.set()
        self._changed.set()


class ScriptedGateway:
    """A listener on 127.0.0.1 for one tunnel client at a time. Use with ``async with``."""

    def __init__(self, first_port: int = 20001, domain: str = "localhost") -> None:
        self.first_port = first_port
        self.domain = domain
        self.registers: list[Register] = []  # every register received, on any connection
        self.connections = 0  # client connections accepted
        self.mux = Connection(Role.GATEWAY)
        self._writer: asyncio.StreamWriter | None = None
        self._streams: dict[int, ScriptedStream] = {}
        self._next_port = first_port
        self._server: asyncio.Server | None = None
        self._handlers: set[asyncio.Task[None]] = set()
        self._changed = asyncio.Event()

    def __repr__(self) -> str:
        return f"<ScriptedGateway connections={self.connections} registers={len(self.registers)}>"

    @property
    def url(self) -> str:
        """The client's ``--server`` for this gateway."""
        assert self._server is not None, "not started"
        return f"ws://127.0.0.1:{self._server.sockets[0].getsockname()[1]}/connect"

    async def __aenter__(self) -> ScriptedGateway:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        return self

    async def __aexit__(
        self, typ: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        assert self._server is not None
        self._server.close()
        await self.drop()
        await self._server.wait_closed()

    # --- what a test does --------------------------------------------------------------
    async def wait_registered(self, count: int) -> list[Register]:
        """The registers received so far, once there are at least `count`."""
        async with asyncio.timeout(TIMEOUT):
            while len(self.registers) < count:
                self._changed.clear()
                await self._changed.wait()
        return self.registers

    async def open_stream(self, tunnel_id: int, kind: StreamKind, client: str) -> ScriptedStream:
        """A new stream to the client's tunnel `tunnel_id`, from the public `client`."""
        sid = self.mux.open_stream(OpenInfo(tunnel_id, client, kind).encode())
        stream = self._streams[sid] = ScriptedStream(self, sid)
        await self.flush()
        return stream

    async def drop(self) -> None:
        """Reset the client's connection (it reconnects) and wait for its handler."""
        if self._writer is not None:
            self._writer.transport.abort()
        await asyncio.gather(*self._handlers, return_exceptions=True)

    async def flush(self) -> None:
        data = self.mux.data_to_send()
        if data and self._writer is not None:
            self._writer.write(ws.encode_frame(ws.OP_BINARY, data, mask=False))
            await self._writer.drain()

    # --- one client connection ------------------------------------------------------------
    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        self.connections += 1
        self.mux = Connection(Role.GATEWAY)  # a new connection starts from scratch
        self._streams = {}
        self._writer = writer
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            writer.write(switching_protocols(head))
            await self._serve(reader)
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass  # the client went away: it reconnects, or the test is over
        finally:
            writer.close()
            self._writer = None
            self._handlers.discard(task)

    async def _serve(self, reader: asyncio.StreamReader) -> None:
        while True:
            frame = await ws.read_frame(reader.readexactly)
            if frame.opcode == ws.OP_CLOSE:
                return
            if frame.opcode not in (ws.OP_BINARY, ws.OP_CONTINUATION):
                continue
            now = asyncio.get_running_loop().time()
            for event in self.mux.receive_data(frame.payload, now):
                self._dispatch(event)
            while self.mux.has_backlog:  # over the frames-per-call limit: the rest
                for event in self.mux.receive_data(b"", now):
                    self._dispatch(event)
            await self.flush()
            self._changed.set()

    def _dispatch(self, event: ev.Event) -> None:
        if isinstance(event, ev.ControlReceived) and isinstance(event.message, Register):
            self.registers.append(event.message)
            self.mux.send_control(self._registered(event.message))
            return
        stream = self._streams.get(getattr(event, "stream_id", 0))
        if stream is not None:
            stream._event(event)

    def _registered(self, register: Register) -> Registered:
        if register.protocol == "tcp":
            # No memory of earlier connections: a client that wants its port back asks.
            port = register.port
            if port is None:
                port, self._next_port = self._next_port, self._next_port + 1
            return Registered(register.id, f"tcp://{self.domain}:{port}", port=port)
        name = register.name or f"t{register.id}"
        scheme = "tls" if register.protocol == "tls" else "http"
        port = 8443 if scheme == "tls" else 8080
        return Registered(register.id, f"{scheme}://{name}.{self.domain}:{port}", name=name)
