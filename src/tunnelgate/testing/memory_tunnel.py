"""A TunnelConnection on a fake WebSocket, facing a sans-IO peer the test drives.

    harness = TunnelHarness(TunnelConnection(Role.GATEWAY, hooks))
    sid = harness.connection.open_stream(b"meta", handler)
    events = await harness.receive()       # what the connection sent, as the peer reads it
    harness.peer.send_data(sid, b"hi")
    harness.deliver()                       # what the peer queued, to the connection

The peer is `proto.mux.Connection` of the other role: frames are real, only the
WebSocket and its socket are not.
"""

from __future__ import annotations

import asyncio

from picows import WSCloseCode, WSMsgType

from tunnelgate.proto import events as ev
from tunnelgate.proto.mux import Connection, Role
from tunnelgate.transport.tunnel import TunnelConnection


class FakeFrame:
    """A received WebSocket message (picows' WSFrame)."""

    def __init__(self, msg_type: WSMsgType, payload: bytes) -> None:
        self.msg_type = msg_type
        self._payload = payload

    def get_payload_as_memoryview(self) -> memoryview:
        return memoryview(self._payload)


class _Socket:
    """The socket under the WebSocket, for reading pauses and the write buffer."""

    def __init__(self) -> None:
        self.reading_paused = False
        self.buffered = 0  # what get_write_buffer_size() says

    def pause_reading(self) -> None:
        self.reading_paused = True

    def resume_reading(self) -> None:
        self.reading_paused = False

    def get_write_buffer_size(self) -> int:
        return self.buffered


class FakeWebSocket:
    """picows' WSTransport as TunnelConnection uses it: sent messages are kept, and a
    disconnect reaches the connection on the next loop turn, as picows' does."""

    def __init__(self, connection: TunnelConnection) -> None:
        self.connection = connection
        self.messages: list[bytes] = []
        self.close_code: WSCloseCode | None = None
        self.is_disconnected = False
        self.graceful: bool | None = None
        self.underlying_transport = _Socket()

    def __repr__(self) -> str:
        return f"<FakeWebSocket messages={len(self.messages)} closed={self.is_disconnected}>"

    def send_reuse_external_bytearray(
        self, msg_type: WSMsgType, buffer: bytearray, msg_offset: int
    ) -> None:
        assert msg_type is WSMsgType.BINARY
        self.messages.append(bytes(buffer[msg_offset:]))

    def send_close(self, close_code: WSCloseCode = WSCloseCode.OK) -> None:
        self.close_code = close_code

    def disconnect(self, graceful: bool = True) -> None:
        if not self.is_disconnected:
            self.is_disconnected = True
            self.graceful = graceful
            loop = asyncio.get_running_loop()
            loop.call_soon(self.connection.on_ws_disconnected, self)  # type: ignore[arg-type]


class TunnelHarness:
    def __init__(self, connection: TunnelConnection) -> None:
        self.connection = connection
        role = Role.CLIENT if connection.mux.role is Role.GATEWAY else Role.GATEWAY
        self.peer = Connection(role)
        self.ws = FakeWebSocket(connection)
        connection.on_ws_connected(self.ws)  # type: ignore[arg-type]

    def deliver(self) -> None:
        """What the peer queued, to the connection, as one binary message."""
        data = self.peer.data_to_send()
        if data:
            frame = FakeFrame(WSMsgType.BINARY, data)
            self.connection.on_ws_frame(self.ws, frame)  # type: ignore[arg-type]

    async def receive(self) -> list[ev.Event]:
        """After a loop turn (batches go out at its end): what the connection sent, as
        events of the peer."""
        await asyncio.sleep(0)
        data = b"".join(self.ws.messages)
        self.ws.messages.clear()
        return self.peer.receive_data(data)
