"""A tunnel client written by hand, for hostile-peer tests.

It speaks the real protocol (docs/protocol.md) with no help from our client: the WebSocket
upgrade from testing/websocket.py, frames from proto/frames.py. A test makes it do what no
honest client does: floods, malformed frames, messages it never reads the answers to.

    async with await RawTunnel.open(port) as tunnel:
        await tunnel.register(1, "evil")
        await tunnel.send(encode_frame(FrameType.PING, 0, encode_u64(1)) * 58_000)
        goaway = await tunnel.wait_goaway()
"""

from __future__ import annotations

import asyncio
import json
import socket
from types import TracebackType

from tunnelgate.proto.codes import ErrorCode
from tunnelgate.proto.frames import Frame, FrameDecoder, FrameType, decode_u32, encode_frame
from tunnelgate.testing import websocket as ws

SUBPROTOCOL = "tunnelgate.v2"
MAX_MESSAGE = 8 * 1024 * 1024  # what this client accepts from the gateway


class TunnelClosed(Exception):
    """The gateway closed the tunnel; `goaway` is its GOAWAY (code, reason), if it sent one."""

    def __init__(self, goaway: tuple[int, str] | None) -> None:
        super().__init__(f"tunnel closed, GOAWAY {goaway}")
        self.goaway = goaway


class RawTunnel:
    def __init__(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, timeout: float
    ) -> None:
        self.reader = reader
        self.writer = writer
        self.timeout = timeout
        self._decoder = FrameDecoder(max_payload=2**32 - 1)
        self.frames: list[Frame] = []  # received so far, with private payloads
        self.goaway: tuple[int, str] | None = None
        self.closed = False

    @classmethod
    async def open(
        cls,
        port: int,
        *,
        token: str | None = None,
        host: str = "127.0.0.1",
        receive_buffer: int | None = None,
        timeout: float = 10.0,  # noqa: ASYNC109 - the bound for each operation
    ) -> RawTunnel:
        """Connect and upgrade. `receive_buffer`: a small SO_RCVBUF, for a peer that
        does not read (the gateway's sends then back up at once)."""
        sock = socket.socket()
        if receive_buffer is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
        sock.setblocking(False)
        loop = asyncio.get_running_loop()
        async with asyncio.timeout(timeout):
            await loop.sock_connect(sock, (host, port))
            reader, writer = await asyncio.open_connection(sock=sock, limit=MAX_MESSAGE)
            extra = [("Sec-WebSocket-Protocol", SUBPROTOCOL)]
            if token is not None:
                extra.append(("Authorization", f"Bearer {token}"))
            writer.write(ws.upgrade_request("/connect", f"127.0.0.1:{port}", ws.new_key(), extra))
            head = await reader.readuntil(b"\r\n\r\n")
        if not head.startswith(b"HTTP/1.1 101 "):
            writer.close()
            raise ConnectionError(f"no upgrade: {head[:200]!r}")
        return cls(reader, writer, timeout)

    async def __aenter__(self) -> RawTunnel:
        return self

    async def __aexit__(
        self, typ: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.writer.transport.abort()

    # --- sending ------------------------------------------------------------------
    def send_nowait(self, payload: bytes) -> None:
        """Queue one binary WebSocket message holding `payload` (frames of ours)."""
        self.writer.write(ws.encode_frame(ws.OP_BINARY, payload))

    async def send(self, payload: bytes) -> None:
        """One binary message; waits until the socket took it. Raises ConnectionError
        once the gateway has closed the connection."""
        self.send_nowait(payload)
        async with asyncio.timeout(self.timeout):
            await self.writer.drain()

    async def send_raw(self, data: bytes) -> None:
        """Bytes as they are, WebSocket framing and all (for malformed-frame tests)."""
        self.writer.write(data)
        async with asyncio.timeout(self.timeout):
            await self.writer.drain()

    async def register(self, tunnel_id: int, name: str | None = None) -> dict[str, object]:
        """Send a `register` and return the gateway's answer (registered or rejected)."""
        message = {"type": "register", "id": tunnel_id, "protocol": "http", "name": name}
        await self.send(encode_frame(FrameType.CONTROL, 0, json.dumps(message).encode()))
        while True:
            for frame in await self.read_frames():
                if frame.type == FrameType.CONTROL:
                    answer: dict[str, object] = json.loads(bytes(frame.payload))
                    if answer.get("id") == tunnel_id:
                        return answer

    # --- receiving ------------------------------------------------------------------
    async def read_frames(self) -> list[Frame]:
        """The frames of the next WebSocket message (answering its pings). Raises
        TunnelClosed when the gateway has closed the connection."""
        while True:
            try:
                async with asyncio.timeout(self.timeout):
                    message = await ws.read_frame(self.reader.readexactly)
            except (asyncio.IncompleteReadError, ConnectionError) as exc:
                self.closed = True
                raise TunnelClosed(self.goaway) from exc
            if message.opcode == ws.OP_CLOSE:
                self.closed = True
                raise TunnelClosed(self.goaway)
            if message.opcode in (ws.OP_BINARY, ws.OP_CONTINUATION):
                frames = [
                    Frame(f.type, f.flags, f.stream_id, bytes(f.payload))
                    for f in self._decoder.feed(message.payload)
                ]
                for frame in frames:
                    if frame.type == FrameType.GOAWAY:
                        code = decode_u32(frame.payload[:4], "GOAWAY")
                        self.goaway = (code, bytes(frame.payload[4:]).decode(errors="replace"))
                self.frames += frames
                return frames

    async def wait_closed(self) -> tuple[int, str] | None:
        """Read until the gateway closes; its GOAWAY (code, reason), if any."""
        try:
            while True:
                await self.read_frames()
        except TunnelClosed as closed:
            return closed.goaway

    async def wait_goaway(self) -> tuple[int, str]:
        goaway = await self.wait_closed()
        if goaway is None:
            raise AssertionError("the gateway closed the tunnel without a GOAWAY")
        return goaway


def code_of(goaway: tuple[int, str] | None) -> ErrorCode | int | None:
    """The GOAWAY's code as an ErrorCode (or the plain number of an unknown one)."""
    if goaway is None:
        return None
    try:
        return ErrorCode(goaway[0])
    except ValueError:
        return goaway[0]
