"""The client's side of a stream: one request relayed to the local app and its answer back.

Each stream carries one HTTP request; its method, target and version come with the
stream's OPEN metadata (`OpenInfo`), so the relay never reads them from the bytes.
Local connections are kept alive and reused (a pool per tunnel); a passthrough parser
finds where each response ends. After a 101 the stream and the local socket become a
raw pipe (transport/pipe.py): half-closes, credit and resets passed on both ways.

What the relay needs of the tunnel and of the user's output is declared here, as
`StreamTarget` and `RequestSink`: nothing here imports the agent or the transport's class.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from typing import Protocol, cast

from tunnelgate import limits
from tunnelgate.config import TunnelSpec
from tunnelgate.errors import HTTPError
from tunnelgate.http1.response import ResponseComplete, ResponseHead, ResponseParser
from tunnelgate.logs import EventLog
from tunnelgate.proto.codes import ErrorCode
from tunnelgate.proto.messages import OpenInfo
from tunnelgate.transport.deadlines import Deadlines
from tunnelgate.transport.pipe import Pipe
from tunnelgate.transport.reset import abort_with_reset

log = EventLog("tunnelgate.client")


class StreamTarget(Protocol):
    """What a relay uses of the tunnel transport (TunnelConnection implements it)."""

    def send(self, stream_id: int, data: bytes | memoryview, end: bool = False) -> bool: ...
    def end(self, stream_id: int) -> None: ...
    def reset(self, stream_id: int, code: int) -> None: ...
    def acknowledge(self, stream_id: int, n: int) -> None: ...
    def release(self, stream_id: int) -> None: ...
    def is_open(self, stream_id: int) -> bool: ...


class RequestSink(Protocol):
    """Where a relay reports its request once done (the client's Output)."""

    def request(
        self,
        tunnel: str,
        method: str,
        path: str,
        status: int,
        duration_ms: float,
        bytes_in: int,
        bytes_out: int,
    ) -> None: ...


class LocalConnection(asyncio.Protocol):
    """A socket to the local app; `relay` is the stream it serves (None while pooled).
    It is also the socket end of a raw pipe (transport.pipe.PipeSocket) after a 101."""

    def __init__(self, pool: LocalPool) -> None:
        self.pool = pool
        self.relay: LocalRelay | None = None
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.write_paused = False
        self.deadline_tick = 0  # Timed: idle in the pool until then

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports do not subclass asyncio.Transport, but implement it.
        self.transport = transport = cast(asyncio.Transport, transport)
        transport.set_write_buffer_limits(limits.WRITE_HIGH_WATER, limits.WRITE_LOW_WATER)

    def data_received(self, data: bytes) -> None:
        if self.relay is not None:
            self.relay.on_local_data(data)
        else:
            self.close()  # an idle connection has nothing to say

    def eof_received(self) -> bool:
        if self.relay is not None:
            return self.relay.on_local_eof()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.pool.discard(self)
        if self.relay is not None:
            self.relay.on_local_lost(exc)

    def pause_writing(self) -> None:
        self.write_paused = True

    def resume_writing(self) -> None:
        self.write_paused = False
        if self.relay is not None:
            self.relay.on_local_drained()

    def on_deadline(self) -> None:
        self.close()  # idle in the pool for too long

    def close(self) -> None:
        self.closed = True
        self.pool.discard(self)
        if self.transport is not None:
            self.transport.close()

    # --- PipeSocket: the raw pipe after a 101 ---------------------------------------
    def write(self, data: bytes) -> None:
        if self.transport is not None:
            self.transport.write(data)

    def write_eof(self) -> None:
        if self.transport is not None:
            self.transport.write_eof()

    def can_write_eof(self) -> bool:
        return self.transport is not None and self.transport.can_write_eof()

    def pause_reading(self) -> None:
        if self.transport is not None:
            self.transport.pause_reading()

    def resume_reading(self) -> None:
        if self.transport is not None:
            self.transport.resume_reading()

    def abort(self) -> None:
        """The pipe's reset: the app sees RST, not a FIN that would pass a cut-off
        upgraded connection for a finished one."""
        self.closed = True
        self.pool.discard(self)
        if self.transport is not None:
            abort_with_reset(self.transport)


class LocalPool:
    """Idle keep-alive connections to one local app, newest first."""

    def __init__(self, spec: TunnelSpec, deadlines: Deadlines) -> None:
        self.spec = spec
        self.idle: deque[LocalConnection] = deque()
        self._deadlines = deadlines

    def __repr__(self) -> str:
        return f"<LocalPool {self.spec.name} idle={len(self.idle)}>"

    def take(self) -> LocalConnection | None:
        while self.idle:
            conn = self.idle.pop()
            self._deadlines.clear(conn)
            if not conn.closed:
                return conn
        return None

    def give_back(self, conn: LocalConnection) -> None:
        conn.relay = None
        if conn.closed or len(self.idle) >= limits.MAX_IDLE_LOCAL_CONNECTIONS:
            conn.close()
            return
        if conn.transport is not None:
            # Its last stream may have paused it for lack of credit; the next must read.
            conn.transport.resume_reading()
        self.idle.append(conn)
        self._deadlines.set(conn, limits.LOCAL_IDLE_TIMEOUT)

    def discard(self, conn: LocalConnection) -> None:
        self._deadlines.clear(conn)
        with contextlib.suppress(ValueError):  # not pooled: it was serving a stream
            self.idle.remove(conn)

    def close(self) -> None:
        while self.idle:
            conn = self.idle.pop()
            self._deadlines.clear(conn)
            conn.close()


class LocalRelay:
    """StreamHandler for one stream; talks to one LocalConnection, then, after a 101,
    hands both to a Pipe and forwards their callbacks to it."""

    def __init__(
        self,
        target: StreamTarget,
        sid: int,
        info: OpenInfo,
        spec: TunnelSpec,
        pool: LocalPool,
        sink: RequestSink,
    ) -> None:
        self.target = target
        self.sid = sid
        self.info = info
        self.spec = spec
        self.pool = pool
        self.sink = sink
        self.local: LocalConnection | None = None
        self.pipe: Pipe | None = None  # after a 101
        self.status = 0
        self.done = False
        self.request_ended = False
        self.response_done = False
        self.keep_alive = False
        self.bytes_in = 0
        self.bytes_out = 0
        self._waiting: list[bytes] = []  # stream bytes that arrived before the local socket
        self._unacked = 0
        self._parser = ResponseParser()
        self._parser.expect(info.method)  # a HEAD response has no body
        self._request_http11 = info.http_version == "1.1"
        self._started = time.monotonic()

    def __repr__(self) -> str:
        method = self.info.method.decode("ascii", "replace")
        state = "raw" if self.pipe is not None else "done" if self.done else "http"
        return f"<LocalRelay {self.spec.name} sid={self.sid} {method} {state} {self.status}>"

    # --- stream side (StreamHandler) ----------------------------------------
    def on_data(self, data: bytes) -> None:
        if self.pipe is not None:
            self.pipe.on_data(data)
            return
        if self.done:
            return
        self.bytes_in += len(data)
        local = self.local
        if local is None or local.transport is None:
            self._waiting.append(data)
            self._unacked += len(data)
            return
        local.transport.write(data)
        self._ack(len(data))

    def on_end(self) -> None:
        if self.pipe is not None:
            self.pipe.on_end()
            return
        self.request_ended = True
        self._maybe_release()

    def on_reset(self, code: int) -> None:
        if self.pipe is not None:
            self.pipe.on_reset(code)
        elif not self.done:
            self._close_local()
            self._finish(status=self.status or 499)

    def on_writable(self) -> None:
        if self.pipe is not None:
            self.pipe.on_writable()
        elif self.local is not None and self.local.transport is not None:
            self.local.transport.resume_reading()

    # --- local side -----------------------------------------------------------
    def attach(self, local: LocalConnection) -> None:
        if self.done:
            self.pool.give_back(local)
            return
        self.local = local
        local.relay = self
        assert local.transport is not None
        waiting, self._waiting = self._waiting, []
        if waiting:
            local.transport.writelines(waiting)
        self.on_local_drained()

    def on_local_data(self, data: bytes) -> None:
        if self.pipe is not None:
            self.pipe.on_socket_data(data)
            return
        if self.done:
            return
        try:
            events = self._parser.feed(data)
        except HTTPError as exc:
            self._bad_response(exc)
            return
        end = len(data)
        switched = False
        for event in events:
            if isinstance(event, ResponseHead) and not event.interim:
                self.status = event.status
                self.keep_alive = event.keep_alive and self._request_http11
            elif isinstance(event, ResponseComplete):
                if self.status == 101:
                    switched = True  # the rest of `data` is the new protocol's
                else:
                    end -= event.leftover
                    self.response_done = True
        # The last bytes of a response carry the FIN: one frame, not two.
        self._send(data if end == len(data) else data[:end], end=self.response_done)
        if switched:
            self._enter_raw()
        elif self.response_done:
            if end != len(data):
                self.keep_alive = False  # bytes past the response: do not reuse
            self._maybe_release()

    def on_local_eof(self) -> bool:
        if self.pipe is not None:
            self.pipe.on_socket_eof()
            return True  # half-close: the other direction may still flow
        if not self.response_done:
            try:
                events = self._parser.feed_eof()
            except HTTPError:
                self._fail(ErrorCode.CONNECT_ERROR if not self.status else ErrorCode.PROTOCOL_ERROR)
                return False
            if events:
                self.response_done = True
                self.keep_alive = False
                self.target.end(self.sid)
                self._finish()
        return False

    def on_local_lost(self, exc: Exception | None) -> None:
        if self.pipe is not None:
            self.pipe.on_socket_lost(exc)
            return
        self.local = None
        if not self.done and not self.response_done:
            self._fail(ErrorCode.CONNECT_ERROR if not self.status else ErrorCode.PROTOCOL_ERROR)

    def on_local_drained(self) -> None:
        if self.pipe is not None:
            self.pipe.on_socket_drained()
        elif self._unacked:
            n, self._unacked = self._unacked, 0
            self.target.acknowledge(self.sid, n)

    def fail_connect(self) -> None:
        self._fail(ErrorCode.CONNECT_ERROR, status=502)

    # --- PipeOwner ------------------------------------------------------------------
    def pipe_finished(self, aborted: bool) -> None:
        local, self.local = self.local, None
        if local is not None:
            local.relay = None
        self._finish()

    # --- internals --------------------------------------------------------------
    def _enter_raw(self) -> None:
        """After the 101: the stream and the socket become a pipe. Credit still withheld
        for bytes the socket has not taken goes with them."""
        local = self.local
        assert local is not None
        unacked, self._unacked = self._unacked, 0
        self.pipe = pipe = Pipe(
            self.target, self.sid, local, self, reset_code=ErrorCode.CONNECT_ERROR, unacked=unacked
        )
        if self.request_ended:  # the public side half-closed before the 101
            pipe.on_end()

    def _send(self, data: bytes, end: bool = False) -> None:
        if not data and not end:
            return
        self.bytes_out += len(data)
        if not self.target.send(self.sid, data, end) and self.local is not None and not end:
            assert self.local.transport is not None
            self.local.transport.pause_reading()

    def _ack(self, n: int) -> None:
        if self.local is not None and self.local.write_paused:
            self._unacked += n
        else:
            self.target.acknowledge(self.sid, n)

    def _maybe_release(self) -> None:
        if self.response_done and (self.request_ended or not self.target.is_open(self.sid)):
            local, self.local = self.local, None
            if local is not None:
                if self.keep_alive and self.request_ended:
                    self.pool.give_back(local)
                else:
                    local.relay = None
                    local.close()
            self._finish()

    def _bad_response(self, exc: HTTPError) -> None:
        """The app's response cannot be forwarded: the stream is reset, saying why when
        the gateway has its own answer for it (docs/protocol.md §7)."""
        if exc.code == "response_head_too_large":
            log.warning(
                "response_head_too_large",
                tunnel=self.spec.name,
                path=self.info.target[:200].decode("latin-1"),
                error=str(exc),
                size=self._parser.head_size,
                limit=limits.MAX_HEADER_BYTES,
            )
            self._fail(ErrorCode.HEAD_TOO_LARGE)
        else:
            self._fail(ErrorCode.PROTOCOL_ERROR)

    def _fail(self, code: int, status: int = 502) -> None:
        if self.done:
            return
        self.target.reset(self.sid, code)
        self._close_local()
        self._finish(status=self.status or status)

    def _close_local(self) -> None:
        local, self.local = self.local, None
        if local is not None:
            local.relay = None
            local.close()

    def _finish(self, status: int | None = None) -> None:
        if self.done:
            return
        self.done = True
        self.target.release(self.sid)
        pipe = self.pipe
        bytes_in, bytes_out = self.bytes_in, self.bytes_out
        if pipe is not None:
            bytes_in += pipe.bytes_from_stream
            bytes_out += pipe.bytes_from_socket
        self.sink.request(
            self.spec.name,
            self.info.method.decode("ascii", "replace"),
            self.info.target.decode("latin-1"),
            status if status is not None else self.status,
            round((time.monotonic() - self._started) * 1000, 2),
            bytes_in,
            bytes_out,
        )
