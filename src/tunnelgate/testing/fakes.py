"""Fakes of what the transport and the client talk to, for component tests in milliseconds.

- `FakeStreamTarget`: the tunnel transport as a stream's handler sees it (send, end,
  reset, acknowledge, release, is_open, open_stream). It records every call, and
  `feed`/`feed_end`/`feed_reset` deliver the peer's side to the handler.
- `FakeSocket`: the socket end of a raw pipe (`transport.pipe.PipeSocket`).
- `FakeTransport`: an asyncio transport under a protocol object (the client's local
  connection, the gateway's public one). `close()` and `abort()` call the protocol's
  `connection_lost` on the next loop turn, as real transports do.

    target = FakeStreamTarget()
    pipe = Pipe(target, 1, FakeSocket(), owner, reset_code=ErrorCode.CANCEL)
    target.attach(1, pipe)
    target.feed(1, b"hello")      # the peer's DATA, to the handler
    assert target.acked[1] == 5
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any, Protocol

from tunnelgate.proto.codes import ErrorCode


class Handler(Protocol):
    """A stream's handler (transport.tunnel.StreamHandler)."""

    def on_data(self, data: bytes) -> None: ...
    def on_end(self) -> None: ...
    def on_reset(self, code: int) -> None: ...
    def on_writable(self) -> None: ...


class FakeStreamTarget:
    def __init__(self, first_stream_id: int = 2) -> None:
        self.sent: dict[int, bytearray] = {}  # stream bytes sent, by stream
        self.ended: set[int] = set()  # streams we sent FIN on
        self.peer_ended: set[int] = set()  # streams the peer sent FIN on
        self.resets: dict[int, int] = {}  # streams we reset, and the code
        self.acked: dict[int, int] = {}  # bytes acknowledged, by stream
        self.released: set[int] = set()
        self.handlers: dict[int, Handler] = {}
        self.metadata: dict[int, bytes] = {}  # OPEN metadata of streams we opened
        self.writable = True  # what send() answers: False = out of credit
        self.closed = False
        self._next_id = first_stream_id

    def __repr__(self) -> str:
        return f"<FakeStreamTarget streams={sorted(self.handlers)} resets={self.resets}>"

    # --- the transport's API -------------------------------------------------------
    def open_stream(self, metadata: bytes, handler: Handler) -> int:
        sid, self._next_id = self._next_id, self._next_id + 2
        self.metadata[sid] = metadata
        self.handlers[sid] = handler
        return sid

    def send(self, stream_id: int, data: bytes | memoryview, end: bool = False) -> bool:
        if stream_id in self.ended or stream_id in self.resets:
            return False
        self.sent.setdefault(stream_id, bytearray()).extend(data)
        if end:
            self.ended.add(stream_id)
        return self.writable

    def end(self, stream_id: int) -> None:
        self.send(stream_id, b"", end=True)

    def reset(self, stream_id: int, code: int = ErrorCode.CANCEL) -> None:
        self.resets.setdefault(stream_id, code)
        self.handlers.pop(stream_id, None)

    def acknowledge(self, stream_id: int, n: int) -> None:
        self.acked[stream_id] = self.acked.get(stream_id, 0) + n

    def release(self, stream_id: int) -> None:
        self.released.add(stream_id)
        self.handlers.pop(stream_id, None)

    def is_open(self, stream_id: int) -> bool:
        both_ended = stream_id in self.ended and stream_id in self.peer_ended
        return stream_id not in self.resets and not both_ended

    # --- the peer's side, delivered to the handler -------------------------------------
    def attach(self, stream_id: int, handler: Handler) -> None:
        """`handler` serves `stream_id`, as if the peer had opened it."""
        self.handlers[stream_id] = handler

    def feed(self, stream_id: int, data: bytes) -> None:
        self.handlers[stream_id].on_data(data)

    def feed_end(self, stream_id: int) -> None:
        self.peer_ended.add(stream_id)
        handler = self.handlers.get(stream_id)
        if handler is not None:
            handler.on_end()

    def feed_reset(self, stream_id: int, code: int) -> None:
        handler = self.handlers.pop(stream_id, None)
        if handler is not None:
            handler.on_reset(code)

    def make_writable(self, stream_id: int) -> None:
        """Credit came back: the handler may send again."""
        self.writable = True
        handler = self.handlers.get(stream_id)
        if handler is not None:
            handler.on_writable()

    def data(self, stream_id: int) -> bytes:
        return bytes(self.sent.get(stream_id, b""))


class FakeSocket:
    """A pipe's socket end: records what the pipe did to it."""

    def __init__(self, *, can_eof: bool = True) -> None:
        self.written = bytearray()
        self.eof_written = False
        self.reading_paused = False
        self.write_paused = False  # set by the test, as pause_writing() would
        self.closed = False
        self.aborted = False
        self._can_eof = can_eof

    def __repr__(self) -> str:
        return f"<FakeSocket written={len(self.written)} eof={self.eof_written}>"

    def write(self, data: bytes) -> None:
        if self.closed or self.aborted:
            raise AssertionError("a write after the socket was closed")
        self.written += data

    def write_eof(self) -> None:
        self.eof_written = True

    def can_write_eof(self) -> bool:
        return self._can_eof

    def pause_reading(self) -> None:
        self.reading_paused = True

    def resume_reading(self) -> None:
        self.reading_paused = False

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.aborted = True


class FakeTransport:
    """An asyncio transport for `protocol`, which it calls as the kernel would."""

    def __init__(self, protocol: asyncio.Protocol, *, can_eof: bool = True) -> None:
        self.protocol = protocol
        self.written = bytearray()
        self.eof_written = False
        self.reading_paused = False
        self.closing = False
        self.aborted = False
        self._can_eof = can_eof
        self._lost = False
        protocol.connection_made(self)  # type: ignore[arg-type]

    def __repr__(self) -> str:
        return f"<FakeTransport written={len(self.written)} closing={self.closing}>"

    # --- asyncio.Transport ---------------------------------------------------------
    def write(self, data: bytes | bytearray | memoryview) -> None:
        if not self.closing:
            self.written += data

    def writelines(self, chunks: Iterable[bytes | bytearray | memoryview]) -> None:
        for chunk in chunks:
            self.write(chunk)

    def write_eof(self) -> None:
        self.eof_written = True

    def can_write_eof(self) -> bool:
        return self._can_eof

    def pause_reading(self) -> None:
        self.reading_paused = True

    def resume_reading(self) -> None:
        self.reading_paused = False

    def is_reading(self) -> bool:
        return not self.reading_paused

    def is_closing(self) -> bool:
        return self.closing

    def close(self) -> None:
        self._close_soon()

    def abort(self) -> None:
        self.aborted = True
        self._close_soon()

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        pass

    def get_write_buffer_size(self) -> int:
        return 0

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"peername": ("127.0.0.1", 50000)}.get(name, default)

    # --- the peer, as the protocol sees it -------------------------------------------
    def receive(self, data: bytes) -> None:
        self.protocol.data_received(data)

    def receive_eof(self) -> None:
        if not self.protocol.eof_received():
            self.close()

    def lose(self, exc: Exception | None = None) -> None:
        """The connection is gone (reset by the peer, with `exc`)."""
        self.closing = True
        self._connection_lost(exc)

    def _close_soon(self) -> None:
        if not self.closing:
            self.closing = True
            asyncio.get_running_loop().call_soon(self._connection_lost, None)

    def _connection_lost(self, exc: Exception | None) -> None:
        if not self._lost:
            self._lost = True
            self.protocol.connection_lost(exc)
