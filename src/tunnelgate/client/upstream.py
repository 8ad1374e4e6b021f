"""The client's side of a stream: one request relayed to the local app and its answer back.

Each stream carries one HTTP request. Local connections are kept alive and reused
(a pool per tunnel); a passthrough parser finds where each response ends. After a
101 the bytes are relayed raw both ways, with half-closes passed on.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from typing import TYPE_CHECKING, cast

from tunnelgate import limits
from tunnelgate.config import TunnelSpec
from tunnelgate.errors import HTTPError
from tunnelgate.http1.response import ResponseComplete, ResponseHead, ResponseParser
from tunnelgate.proto.codes import ErrorCode
from tunnelgate.transport.deadlines import Deadlines
from tunnelgate.transport.tunnel import TunnelConnection

if TYPE_CHECKING:
    from .agent import Agent


class LocalConnection(asyncio.Protocol):
    """A socket to the local app; `relay` is the stream it serves (None while pooled)."""

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
            self.relay.on_local_lost()

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


class LocalPool:
    """Idle keep-alive connections to one local app, newest first."""

    def __init__(self, spec: TunnelSpec, deadlines: Deadlines) -> None:
        self.spec = spec
        self.idle: deque[LocalConnection] = deque()
        self._deadlines = deadlines

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
    """StreamHandler for one stream; talks to one LocalConnection."""

    def __init__(
        self, agent: Agent, tc: TunnelConnection, sid: int, spec: TunnelSpec, pool: LocalPool
    ) -> None:
        self.agent = agent
        self.tc = tc
        self.sid = sid
        self.spec = spec
        self.pool = pool
        self.local: LocalConnection | None = None
        self.method = ""
        self.path = ""
        self.status = 0
        self.raw = False
        self.done = False
        self.request_ended = False
        self.response_done = False
        self.keep_alive = False
        self.bytes_in = 0
        self.bytes_out = 0
        self._waiting: list[bytes] = []  # stream bytes that arrived before the local socket
        self._unacked = 0
        self._parser = ResponseParser()
        self._started = time.monotonic()
        self._request_http11 = True

    def __repr__(self) -> str:
        return (
            f"<LocalRelay {self.spec.name} sid={self.sid} {self.method} {self.path} {self.status}>"
        )

    # --- stream side (StreamHandler) ----------------------------------------
    def on_data(self, data: bytes) -> None:
        if self.done:
            return
        if not self.method and not self.raw:
            self._read_request_line(data)
        self.bytes_in += len(data)
        local = self.local
        if local is None or local.transport is None:
            self._waiting.append(data)
            self._unacked += len(data)
            return
        local.transport.write(data)
        self._ack(len(data))

    def on_end(self) -> None:
        self.request_ended = True
        if self.raw and self.local is not None and self.local.transport is not None:
            if self.local.transport.can_write_eof():
                self.local.transport.write_eof()
        self._maybe_release()

    def on_reset(self, code: int) -> None:
        if not self.done:
            self._close_local()
            self._finish(status=self.status or 499)

    def on_writable(self) -> None:
        if self.local is not None and self.local.transport is not None:
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
        if self.request_ended and self.raw:
            local.transport.write_eof()
        self.on_local_drained()

    def on_local_data(self, data: bytes) -> None:
        if self.done:
            return
        if self.raw:
            self._send(data)
            return
        try:
            events = self._parser.feed(data)
        except HTTPError:
            self._fail(ErrorCode.PROTOCOL_ERROR)
            return
        end = len(data)
        for event in events:
            if isinstance(event, ResponseHead) and not event.interim:
                self.status = event.status
                self.keep_alive = event.keep_alive and self._request_http11
            elif isinstance(event, ResponseComplete):
                if self.status == 101:
                    self.raw = True
                else:
                    end -= event.leftover
                    self.response_done = True
        # The last bytes of a response carry the FIN: one frame, not two.
        self._send(data if end == len(data) else data[:end], end=self.response_done)
        if self.response_done:
            if end != len(data):
                self.keep_alive = False  # bytes past the response: do not reuse
            self._maybe_release()

    def on_local_eof(self) -> bool:
        if self.raw:
            self.tc.end(self.sid)
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
                self.tc.end(self.sid)
                self._finish()
        return False

    def on_local_lost(self) -> None:
        self.local = None
        if not self.done:
            if self.raw:
                self.tc.end(self.sid)
                self._finish()
            elif not self.response_done:
                self._fail(ErrorCode.CONNECT_ERROR if not self.status else ErrorCode.PROTOCOL_ERROR)

    def on_local_drained(self) -> None:
        if self._unacked:
            n, self._unacked = self._unacked, 0
            self.tc.acknowledge(self.sid, n)

    def fail_connect(self) -> None:
        self._fail(ErrorCode.CONNECT_ERROR, status=502)

    # --- internals --------------------------------------------------------------
    def _read_request_line(self, data: bytes) -> None:
        line = data.split(b"\r\n", 1)[0]
        parts = line.split(b" ")
        if len(parts) == 3:
            self.method = parts[0].decode("ascii", "replace")
            self.path = parts[1].decode("latin-1")
            self._request_http11 = parts[2] == b"HTTP/1.1"
            self._parser.expect(parts[0])

    def _send(self, data: bytes, end: bool = False) -> None:
        if not data and not end:
            return
        self.bytes_out += len(data)
        if not self.tc.send(self.sid, data, end) and self.local is not None and not end:
            assert self.local.transport is not None
            self.local.transport.pause_reading()

    def _ack(self, n: int) -> None:
        if self.local is not None and self.local.write_paused:
            self._unacked += n
        else:
            self.tc.acknowledge(self.sid, n)

    def _maybe_release(self) -> None:
        if self.response_done and (self.request_ended or not self.tc.is_open(self.sid)):
            local, self.local = self.local, None
            if local is not None:
                if self.keep_alive and self.request_ended:
                    self.pool.give_back(local)
                else:
                    local.relay = None
                    local.close()
            self._finish()

    def _fail(self, code: int, status: int = 502) -> None:
        if self.done:
            return
        self.tc.reset(self.sid, code)
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
        self.tc.release(self.sid)
        self.agent.output.request(
            self.spec.name,
            self.method,
            self.path,
            status if status is not None else self.status,
            round((time.monotonic() - self._started) * 1000, 2),
            self.bytes_in,
            self.bytes_out,
        )
