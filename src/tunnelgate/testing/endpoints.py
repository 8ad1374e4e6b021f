"""Broken and hostile tunnel endpoints, for testing how the client copes with them.

They stand in for "the network" or an attacker in front of the gateway (a gateway at its
descriptor limit closes new connections at once; a proxy resets them; a dead host never
answers), never for the gateway's own behaviour. Each one listens on 127.0.0.1 on this
test's event loop, counts the connections it accepted, and treats connection ``i`` as
``behaviours[i]`` says (the last one repeats):

    async with BrokenEndpoint(Behaviour.CLOSE) as endpoint:
        client = start_client("http", "3000", "--server", endpoint.url, "--max-retries", "2")
        ...
        assert endpoint.accepted == 3

After a 101 the endpoint speaks just enough of the tunnel protocol (the sans-IO mux core) to
record the client's ``register`` and ``GOAWAY`` frames, and to reject registrations.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
import time
from collections.abc import Callable
from enum import Enum
from http import HTTPStatus
from types import TracebackType

from tunnelgate.proto import events as ev
from tunnelgate.proto.codes import ErrorCode, RejectReason
from tunnelgate.proto.messages import Register, Rejected
from tunnelgate.proto.mux import Connection, Role
from tunnelgate.testing import websocket as ws

__all__ = ["Behaviour", "BrokenEndpoint", "switching_protocols"]

SUBPROTOCOL = "tunnelgate.v2"
RELAY_PIECE = 64 * 1024
"""Bytes read at once while relaying to a real gateway (or reading what a client sent)."""


class Behaviour(Enum):
    CLOSE = "close"
    """Accept and close at once, before reading anything."""
    RESET = "reset"
    """Read the upgrade request, then reset the connection (SO_LINGER 0)."""
    SILENT = "silent"
    """Read the upgrade request and never answer it."""
    PLAINTEXT = "plaintext"
    """Answer the client's first bytes with a plain-text 400 and close: to a wss:// client,
    a TLS error."""
    STATUS = "status"
    """Answer the upgrade with ``status`` (503 by default) and close."""
    OTHER_VERSION = "other-version"
    """Answer the upgrade ``400 unsupported_version`` and close, as a gateway that speaks
    none of the protocol versions the client offered does."""
    UPGRADE_THEN_CLOSE = "upgrade-then-close"
    """Answer a valid 101 (``tunnelgate.v2``), then close before any registration."""
    UPGRADE_THEN_SILENT = "upgrade-then-silent"
    """Answer a valid 101 (``tunnelgate.v2``), then answer no registration."""
    REJECT = "reject"
    """101, then answer each ``register`` with ``rejected``, then GOAWAY and close: in the
    same WebSocket message, or in the next one with ``separate_goaway``."""
    RELAY = "relay"
    """Pass the connection on, byte for byte, to a real gateway on ``relay_port``."""


class BrokenEndpoint:
    """A listener on 127.0.0.1 that mistreats tunnel clients. Use with ``async with``."""

    def __init__(
        self,
        *behaviours: Behaviour,
        status: int = 503,
        separate_goaway: bool = False,
        relay_port: int | None = None,
    ) -> None:
        if not behaviours:
            raise ValueError("at least one behaviour")
        if Behaviour.RELAY in behaviours and relay_port is None:
            raise ValueError("RELAY needs relay_port")
        self.behaviours = behaviours
        self.status = status
        self.separate_goaway = separate_goaway
        self.relay_port = relay_port
        self.accepted = 0
        self.registers: list[Register] = []
        self.goaways: list[int] = []
        """GOAWAY codes clients sent after a 101."""
        self._server: asyncio.Server | None = None
        # Connections are ended by closing their sockets, never by cancelling their
        # handlers: asyncio.start_server logs a cancelled handler as an error.
        self._handlers: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()
        self._changed = asyncio.Event()

    def __repr__(self) -> str:
        kinds = ",".join(b.value for b in self.behaviours)
        return f"<BrokenEndpoint [{kinds}] accepted={self.accepted} goaways={self.goaways}>"

    @property
    def port(self) -> int:
        assert self._server is not None, "not started"
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    @property
    def url(self) -> str:
        """The client's ``--server`` for this endpoint."""
        return f"ws://127.0.0.1:{self.port}/connect"

    async def __aenter__(self) -> BrokenEndpoint:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        return self

    async def __aexit__(
        self, typ: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        assert self._server is not None
        self._server.close()
        await self.drop_connections()
        await self._server.wait_closed()

    async def drop_connections(self) -> None:
        """Reset every connection now open (a relayed one too: the client sees it dropped),
        and wait until their handlers have finished."""
        for writer in list(self._writers):
            writer.transport.abort()
        await asyncio.gather(*self._handlers, return_exceptions=True)

    async def wait_until(
        self,
        condition: Callable[[BrokenEndpoint], bool],
        timeout: float = 10.0,  # noqa: ASYNC109 - a deadline for the condition, by design
    ) -> None:
        """Return once ``condition(self)`` holds (checked on each accept and client message)."""
        deadline = time.monotonic() + timeout
        while not condition(self):
            self._changed.clear()
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"{self!r}: condition still false after {timeout}s")
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(remaining):
                    await self._changed.wait()

    # --- one connection ---------------------------------------------------------------
    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        self._writers.add(writer)
        behaviour = self.behaviours[min(self.accepted, len(self.behaviours) - 1)]
        self.accepted += 1
        self._changed.set()
        try:
            await self._serve(behaviour, reader, writer)
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass  # the client went away or sent something else: its business
        finally:
            writer.close()
            self._writers.discard(writer)
            self._handlers.discard(task)

    async def _serve(
        self, behaviour: Behaviour, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        if behaviour is Behaviour.CLOSE:
            return
        if behaviour is Behaviour.RELAY:
            assert self.relay_port is not None
            await _relay(reader, writer, self.relay_port)
            return
        if behaviour is Behaviour.PLAINTEXT:
            await reader.read(RELAY_PIECE)  # a ClientHello, or the start of a request
            writer.write(_status_response(400))
            await writer.drain()
            return
        head = await _read_head(reader)
        if behaviour is Behaviour.RESET:
            _reset_on_close(writer)
        elif behaviour is Behaviour.SILENT:
            await reader.read()  # until the client gives up
        elif behaviour is Behaviour.STATUS:
            writer.write(_status_response(self.status))
            await writer.drain()
        elif behaviour is Behaviour.OTHER_VERSION:
            writer.write(_status_response(400, "X-Tunnelgate-Error: unsupported_version\r\n"))
            await writer.drain()
        elif behaviour is Behaviour.UPGRADE_THEN_CLOSE:
            writer.write(switching_protocols(head))
            await writer.drain()
        else:
            writer.write(switching_protocols(head))
            await self._speak_tunnel(behaviour is Behaviour.REJECT, reader, writer)

    async def _speak_tunnel(
        self, reject: bool, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        mux = Connection(Role.GATEWAY)
        while True:
            frame = await ws.read_frame(reader.readexactly)
            if frame.opcode == ws.OP_CLOSE:
                writer.write(ws.encode_frame(ws.OP_CLOSE, frame.payload[:2], mask=False))
                await writer.drain()
                return
            if frame.opcode not in (ws.OP_BINARY, ws.OP_CONTINUATION):
                continue
            registers = self._record(mux.receive_data(frame.payload))
            if reject and registers:
                await self._reject(mux, registers, writer)
                return

    def _record(self, events: list[ev.Event]) -> list[Register]:
        registers = []
        for event in events:
            if isinstance(event, ev.ControlReceived) and isinstance(event.message, Register):
                registers.append(event.message)
            elif isinstance(event, ev.GoAwayReceived):
                self.goaways.append(event.code)
        self.registers += registers
        self._changed.set()
        return registers

    async def _reject(
        self, mux: Connection, registers: list[Register], writer: asyncio.StreamWriter
    ) -> None:
        """What the gateway does when every registration failed: answer, GOAWAY, close."""
        for register in registers:
            message = f"{register.name!r} is already in use"
            mux.send_control(Rejected(register.id, RejectReason.NAME_TAKEN, message))
        if self.separate_goaway:
            writer.write(ws.encode_frame(ws.OP_BINARY, mux.data_to_send(), mask=False))
            await writer.drain()
        mux.go_away(ErrorCode.NO_ERROR, "every tunnel was rejected")
        writer.write(ws.encode_frame(ws.OP_BINARY, mux.data_to_send(), mask=False))
        writer.write(ws.encode_frame(ws.OP_CLOSE, ws.close_payload(1000), mask=False))
        await writer.drain()


async def _read_head(reader: asyncio.StreamReader) -> bytes:
    """The upgrade request's head (bounded by the reader's limit, 64 KiB)."""
    return await reader.readuntil(b"\r\n\r\n")


def _header(head: bytes, name: str) -> str:
    for line in head.decode("latin-1").split("\r\n")[1:]:
        key, _, value = line.partition(":")
        if key.strip().lower() == name.lower():
            return value.strip()
    return ""


def switching_protocols(head: bytes) -> bytes:
    """A valid 101 to the client's upgrade request `head`, choosing tunnelgate.v2."""
    accept = ws.accept_key(_header(head, "Sec-WebSocket-Key"))
    return (
        "HTTP/1.1 101 Switching Protocols\r\n"
        "Upgrade: websocket\r\n"
        "Connection: Upgrade\r\n"
        f"Sec-WebSocket-Accept: {accept}\r\n"
        f"Sec-WebSocket-Protocol: {SUBPROTOCOL}\r\n\r\n"
    ).encode("latin-1")


def _status_response(status: int, extra: str = "") -> bytes:
    if status == 429:
        extra += "Retry-After: 1\r\n"
    status_line = f"HTTP/1.1 {status} {HTTPStatus(status).phrase}\r\n"
    return f"{status_line}{extra}Content-Length: 0\r\nConnection: close\r\n\r\n".encode("latin-1")


def _reset_on_close(writer: asyncio.StreamWriter) -> None:
    """Closing the socket now sends RST, not FIN."""
    sock = writer.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


async def _relay(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, port: int) -> None:
    """Copy both ways until either side closes (no half-close: a tunnel never uses one)."""
    up_reader, up_writer = await asyncio.open_connection("127.0.0.1", port)
    loop = asyncio.get_running_loop()
    pipes = {
        loop.create_task(_pipe(reader, up_writer)),
        loop.create_task(_pipe(up_reader, writer)),
    }
    try:
        await asyncio.wait(pipes, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for pipe in pipes:
            pipe.cancel()
        await asyncio.gather(*pipes, return_exceptions=True)
        up_writer.close()


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Copy until EOF; a reset ends the copy too."""
    with contextlib.suppress(OSError):
        while data := await reader.read(RELAY_PIECE):
            writer.write(data)
            await writer.drain()
