"""A tunnel connection: the sans-IO mux driven by a picows WebSocket.

The WebSocket reader feeds whole messages to the mux core and dispatches its events
to per-stream handlers. What the core queues goes out in batches, one WebSocket message
each: at the end of the event-loop turn, or as soon as a batch holds EAGER_FLUSH_BYTES
(batching cut the cost per request by a third).

A handler that raises takes down its own stream only (RESET INTERNAL_ERROR, logged
with its traceback); the connection and its other streams go on. A side that has
used up its stream ids closes the connection with GOAWAY SHUTDOWN, so the client
reconnects and takes its names back within the reconnect grace.
"""

from __future__ import annotations

import asyncio
import time
from typing import Final, Protocol

from picows import WSCloseCode, WSFrame, WSMsgType, WSTransport

from tunnelgate import limits
from tunnelgate.errors import NoAvailableStreamIDError, RemoteProtocolError
from tunnelgate.logs import EventLog
from tunnelgate.proto import events as ev
from tunnelgate.proto.codes import ErrorCode, code_name
from tunnelgate.proto.messages import ControlMessage
from tunnelgate.proto.mux import Connection, Role

SUBPROTOCOL = "tunnelgate.v2"  # docs/protocol.md §11: the version is the subprotocol
# A batch goes out as soon as it holds this much (about four small requests), not only at
# the end of the event-loop turn. Whole-turn batches carried ~30 requests per message, and
# gateway and client then worked in turns, each waiting for the other's wave: a third of
# the CPU sat idle. Flushing at 1 KiB took 19k to 32k req/s at the same CPU per request
# (docs/performance.md).
EAGER_FLUSH_BYTES = 1 * limits.KiB
# One message carries at most about this much, well under the peer's message limit
# (limits.MAX_TUNNEL_MESSAGE); one frame may take it past.
FLUSH_THRESHOLD = 1 * limits.MiB
_WS_HEADROOM = bytes(14)  # the largest WebSocket frame header (with mask key)

log = EventLog("tunnelgate.tunnel")


class StreamHandler(Protocol):
    """One stream's consumer; the gateway's public connection or the client's local relay."""

    def on_data(self, data: bytes) -> None: ...
    def on_end(self) -> None: ...
    def on_reset(self, code: int) -> None: ...
    def on_writable(self) -> None: ...


class SessionHooks(Protocol):
    """What the owner of a tunnel connection (gateway session, client agent) is told."""

    def on_stream_opened(self, stream_id: int, metadata: bytes) -> StreamHandler | None: ...
    def on_control(self, message: ControlMessage) -> None: ...
    def on_go_away(self, code: int, reason: str) -> None: ...
    def on_closed(self, end: ConnectionEnd) -> None: ...


class ConnectionEnd:
    """How a tunnel connection ended; what it means (free names? reconnect?) is for the
    owner to decide, not the transport."""

    __slots__ = ("by_peer", "code", "reason")

    def __init__(self, code: int | None, reason: str, by_peer: bool) -> None:
        self.code = code  # the first GOAWAY's code; None: dropped without one
        self.reason = reason
        self.by_peer = by_peer  # the peer sent that GOAWAY (else we did, or nobody)

    def __repr__(self) -> str:
        who = "peer" if self.by_peer else "us"
        code = code_name(self.code) if self.code is not None else None
        return f"<ConnectionEnd {code} by {who}: {self.reason}>"


# How a connection ends unless we learn more: one object for all (an idle tunnel's memory).
_DROPPED: Final = ConnectionEnd(None, "connection lost", False)


class TunnelConnection:
    """Speaks picows' listener interface through `TunnelListener` (transport/listener.py):
    this class is compiled, and compiled classes cannot subclass picows' Cython class."""

    def __init__(
        self,
        role: Role,
        hooks: SessionHooks,
        *,
        heartbeat_interval: float = limits.HEARTBEAT_INTERVAL,
        heartbeat_timeout: float = limits.HEARTBEAT_TIMEOUT,
        idle_timeout: float = 0.0,
        max_streams: int = limits.MAX_STREAMS,
        peer_may_open: bool = True,
    ) -> None:
        self.mux = Connection(role, max_streams=max_streams, peer_may_open=peer_may_open)
        self.hooks = hooks
        self.ws: WSTransport | None = None
        self.handlers: dict[int, StreamHandler] = {}
        self.write_paused = False
        self.closed = False
        self._loop = asyncio.get_running_loop()
        self._flush_scheduled = False
        self._heartbeat_interval = heartbeat_interval
        self._heartbeat_timeout = heartbeat_timeout
        self._idle_timeout = idle_timeout
        self._last_received = time.monotonic()
        self._last_activity = self._last_received
        self._timer: asyncio.TimerHandle | None = None
        self._ping_seq = 0
        self._ping_sent = 0.0  # when PING `_ping_seq` went out
        # Seconds between our latest answered PING and its PONG (None: none answered yet).
        self.rtt: float | None = None
        self.ending = _DROPPED  # until we learn more
        self._backlog_scheduled = False
        self._replies_at_pause = 0
        self._stalled_since = 0.0  # when our unsent bytes last stopped going down
        self._unsent_low = 0
        # What a peer can make us hold honestly: every stream's full window (the credit
        # it granted), plus batches in flight. More is a bug or a peer that floods.
        self._max_unsent = (
            limits.MAX_CONNECTION_WINDOW
            + max_streams * limits.INITIAL_STREAM_WINDOW
            + 4 * FLUSH_THRESHOLD
        )

    def __repr__(self) -> str:
        state = "closed" if self.closed else ("paused" if self.write_paused else "open")
        rtt = "" if self.rtt is None else f" rtt={self.rtt * 1000:.1f}ms"
        return (
            f"<TunnelConnection {self.mux.role.name.lower()} {state} "
            f"streams={len(self.handlers)}{rtt}>"
        )

    # --- picows callbacks ---------------------------------------------------
    def on_ws_connected(self, transport: WSTransport) -> None:
        self.ws = transport
        self._timer = self._loop.call_later(self._heartbeat_interval, self._on_timer)

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        self._last_received = now = time.monotonic()
        msg_type = frame.msg_type
        if msg_type is WSMsgType.BINARY or msg_type is WSMsgType.CONTINUATION:
            if not self.closed:
                self._receive(frame.get_payload_as_memoryview(), now)
        elif msg_type is WSMsgType.CLOSE:
            transport.send_close(WSCloseCode.OK)
            transport.disconnect()
        elif msg_type is WSMsgType.TEXT:
            self.close(ErrorCode.PROTOCOL_ERROR, "text message on the tunnel")

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        self.closed = True
        if self._timer is not None:
            self._timer.cancel()
        handlers, self.handlers = self.handlers, {}
        for sid, handler in handlers.items():
            try:
                handler.on_reset(ErrorCode.INTERNAL_ERROR)
            except Exception:  # a handler's bug must not keep the others from hearing
                log.exception("stream_handler_failed", stream=sid, callback="on_reset")
        self.hooks.on_closed(self.ending)

    def pause_writing(self) -> None:
        self.write_paused = True
        self._replies_at_pause = self.mux.replies
        self._stalled_since = time.monotonic()
        self._unsent_low = self._unsent()

    def resume_writing(self) -> None:
        self.write_paused = False
        # Streams paused by the tunnel itself get going again.
        for sid, handler in list(self.handlers.items()):
            if self.mux.is_writable(sid):
                try:
                    handler.on_writable()
                except Exception:  # the root of this callback for that stream
                    self._stream_failed(sid, "on_writable")

    # --- input --------------------------------------------------------------
    def _receive(self, data: memoryview | bytes, now: float) -> None:
        try:
            events = self.mux.receive_data(data, now)
        except RemoteProtocolError as exc:
            self.close(exc.code, str(exc))
            return
        for event in events:
            try:
                self._dispatch(event)
            except Exception:  # a handler's bug: contained here, at the root of the callback
                self._handler_failed(event)
        if (
            self.write_paused
            and self.mux.replies - self._replies_at_pause > limits.MAX_UNREAD_REPLIES
        ):
            # It keeps asking and does not read the answers: do not buffer them.
            self.close(ErrorCode.ENHANCE_YOUR_CALM, "the peer does not read its replies")
            return
        if self.mux.has_backlog and not self._backlog_scheduled and not self.closed:
            # Over the frames-per-turn limit: the rest waits for the next loop turn, and
            # the socket is not read meanwhile, so other connections get their turn.
            self._backlog_scheduled = True
            if self.ws is not None:
                self.ws.underlying_transport.pause_reading()
            self._loop.call_soon(self._receive_backlog)
        self._schedule_flush()

    def _receive_backlog(self) -> None:
        self._backlog_scheduled = False
        if self.closed:
            return
        self._receive(b"", time.monotonic())
        if not self._backlog_scheduled and self.ws is not None and not self.ws.is_disconnected:
            self.ws.underlying_transport.resume_reading()

    # --- events -------------------------------------------------------------
    def _dispatch(self, event: ev.Event) -> None:
        if type(event) is ev.DataReceived:
            self._last_activity = self._last_received
            handler = self.handlers.get(event.stream_id)
            if handler is not None:
                handler.on_data(event.data)
        elif type(event) is ev.StreamEnded:
            handler = self.handlers.get(event.stream_id)
            if handler is not None:
                handler.on_end()  # (still registered: a failure here is contained)
            if not self.mux.is_open(event.stream_id):
                self.handlers.pop(event.stream_id, None)
        elif type(event) is ev.StreamOpened:
            self._last_activity = self._last_received
            new = self.hooks.on_stream_opened(event.stream_id, event.metadata)
            if new is None:
                self.mux.reset_stream(event.stream_id, ErrorCode.REFUSED_STREAM)
            else:
                self.handlers[event.stream_id] = new
        elif isinstance(event, ev.StreamReset):
            handler = self.handlers.pop(event.stream_id, None)
            if handler is not None:
                handler.on_reset(event.code)
        elif isinstance(event, ev.StreamWritable):
            handler = self.handlers.get(event.stream_id)
            if handler is not None:
                if not self.write_paused:
                    handler.on_writable()
                if not self.mux.is_open(event.stream_id):
                    self.handlers.pop(event.stream_id, None)
        elif isinstance(event, ev.ControlReceived):
            self.hooks.on_control(event.message)
        elif isinstance(event, ev.GoAwayReceived):
            if self.ending.code is None:
                self.ending = ConnectionEnd(event.code, event.reason or code_name(event.code), True)
            self.hooks.on_go_away(event.code, event.reason)
        elif isinstance(event, ev.PongReceived):
            if event.value == self._ping_seq:  # an older PING's answer would read too long
                self.rtt = time.monotonic() - self._ping_sent

    def _handler_failed(self, event: ev.Event) -> None:
        sid: int = getattr(event, "stream_id", 0)
        if sid:
            self._stream_failed(sid, _CALLBACKS.get(type(event), "?"))
            return
        # A session hook (control message, GOAWAY) broke: the connection is in no
        # known state, so it ends.
        log.exception("session_hook_failed", event=type(event).__name__)
        self.close(ErrorCode.INTERNAL_ERROR, "internal error")

    def _stream_failed(self, sid: int, callback: str) -> None:
        """A handler raised from `callback`: reset its stream, tell it so it can let go
        of what it holds (unless that was the failing call), log it once."""
        log.exception("stream_handler_failed", stream=sid, callback=callback)
        handler = self.handlers.pop(sid, None)
        self.mux.reset_stream(sid, ErrorCode.INTERNAL_ERROR)
        self._schedule_flush()
        if handler is not None and callback != "on_reset":
            try:
                handler.on_reset(ErrorCode.INTERNAL_ERROR)
            except Exception:
                log.exception("stream_handler_failed", stream=sid, callback="on_reset")

    # --- commands -----------------------------------------------------------
    def open_stream(self, metadata: bytes, handler: StreamHandler) -> int:
        """Raises LocalProtocolError (REFUSED_STREAM) when over the stream cap or going
        away; NoAvailableStreamIDError (one) when this side's ids are used up, after
        closing the connection with GOAWAY SHUTDOWN: the client reconnects and takes
        its names back, and streams open on a new connection."""
        try:
            sid = self.mux.open_stream(metadata)
        except NoAvailableStreamIDError:
            self.close(ErrorCode.SHUTDOWN, "stream ids exhausted")
            raise
        self.handlers[sid] = handler
        self._last_activity = self._last_received  # idleness is judged per heartbeat tick
        self._schedule_flush()
        return sid

    def send(self, stream_id: int, data: bytes | memoryview, end: bool = False) -> bool:
        """Queue stream bytes; False means stop the source until `on_writable`."""
        if not self.mux.can_send(stream_id):
            return False
        ok = self.mux.send_data(stream_id, data, end)
        if end and not self.mux.is_open(stream_id):
            self.handlers.pop(stream_id, None)
        self._schedule_flush()
        return ok and not self.write_paused

    def end(self, stream_id: int) -> None:
        self.send(stream_id, b"", end=True)

    def is_open(self, stream_id: int) -> bool:
        return self.mux.is_open(stream_id)

    def constrain(self, on: bool) -> None:
        """Memory pressure on our side: windows stop growing and shrink back (mux)."""
        self.mux.constrained = on

    def release(self, stream_id: int) -> None:
        """Its handler is done with the stream: deliver nothing more to it."""
        self.handlers.pop(stream_id, None)

    def reset(self, stream_id: int, code: int = ErrorCode.CANCEL) -> None:
        self.handlers.pop(stream_id, None)
        self.mux.reset_stream(stream_id, code)
        self._schedule_flush()

    def acknowledge(self, stream_id: int, n: int) -> None:
        self.mux.acknowledge_data(stream_id, n)
        if self.mux.bytes_to_send:
            self._schedule_flush()

    def send_control(self, message: ControlMessage) -> None:
        self.mux.send_control(message)
        self._schedule_flush()

    def go_away(self, code: int, reason: str = "") -> None:
        """Say GOAWAY with `code` but keep the connection: the streams open may finish,
        neither side opens another (docs/protocol.md §8). `close` ends it later, and
        says how it ended: until then the peer's own goodbye still counts as the end."""
        if self.closed or self.mux.go_away_sent:
            return
        self.mux.go_away(code, reason)
        self._flush()

    def close(self, code: int = ErrorCode.NO_ERROR, reason: str = "") -> None:
        """Say goodbye (GOAWAY with `code`, unless `go_away` said it), then close the
        WebSocket."""
        if self.closed:
            return
        self.closed = True
        if self.ending.code is None:
            self.ending = ConnectionEnd(code, reason or code_name(code), False)
        if not self.mux.go_away_sent:
            self.mux.go_away(code, reason)
        self._flush()
        if self.ws is None:
            return
        self.ws.send_close(_ws_close_code(code))
        if self.write_paused:
            # A graceful close waits for our unsent bytes, which a peer that does not
            # read never takes: drop them with the connection.
            self.ws.disconnect(graceful=False)
        else:
            self.ws.disconnect()
            self._loop.call_later(limits.TUNNEL_CLOSE_TIMEOUT, self.abort)

    def ping(self) -> None:
        """Send a PING now (the heartbeat sends one every interval); its PONG sets `rtt`."""
        self._ping_seq += 1
        self._ping_sent = time.monotonic()
        self.mux.ping(self._ping_seq)
        self._flush()

    def abort(self) -> None:
        if self.ws is not None and not self.ws.is_disconnected:
            self.ws.disconnect(graceful=False)

    def _unsent(self) -> int:
        if self.ws is None:
            return 0
        return int(self.ws.underlying_transport.get_write_buffer_size())

    # --- batching and timers ------------------------------------------------
    def _schedule_flush(self) -> None:
        if self.mux.bytes_to_send >= EAGER_FLUSH_BYTES:
            self._flush()
        elif not self._flush_scheduled and self.mux.bytes_to_send:
            self._flush_scheduled = True
            self._loop.call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_scheduled = False
        if self.ws is None or self.ws.is_disconnected:
            return
        # picows writes its frame header into the headroom and masks in place: a batch is
        # copied once (the join), not twice. Batches stay far below the peer's message
        # limit even when credit for many streams releases held data all at once.
        while self.mux.bytes_to_send:
            batch = self.mux.data_to_send_after(_WS_HEADROOM, FLUSH_THRESHOLD)
            self.ws.send_reuse_external_bytearray(WSMsgType.BINARY, batch, len(_WS_HEADROOM))
        if self.write_paused and not self.closed and self._unsent() > self._max_unsent:
            self.close(ErrorCode.ENHANCE_YOUR_CALM, "the peer does not read what it is sent")

    def _on_timer(self) -> None:
        now = time.monotonic()
        if now - self._last_received > self._heartbeat_timeout:
            silent = now - self._last_received
            reason = f"heartbeat timeout (silent for {silent:.0f} s)"
            self.ending = ConnectionEnd(ErrorCode.HEARTBEAT_TIMEOUT, reason, False)
            self.abort()
            return
        if self.write_paused:
            unsent = self._unsent()
            if unsent < self._unsent_low:
                self._unsent_low, self._stalled_since = unsent, now  # it reads, slowly
            elif now - self._stalled_since > limits.TUNNEL_WRITE_STALL_TIMEOUT:
                reason = "the peer stopped reading"
                self.ending = ConnectionEnd(ErrorCode.ENHANCE_YOUR_CALM, reason, False)
                self.abort()
                return
        if self._idle_timeout and now - self._last_activity > self._idle_timeout:
            if not self.handlers:
                log.info("tunnel_idle", idle_s=self._idle_timeout)
                self.close(ErrorCode.IDLE_TIMEOUT, f"idle for {self._idle_timeout:g} s")
                return
            self._last_activity = now  # streams still open count as activity
        self.ping()
        self._timer = self._loop.call_later(self._heartbeat_interval, self._on_timer)


# The handler callback each stream event makes, for the log of a failed one.
_CALLBACKS: Final[dict[type, str]] = {
    ev.StreamOpened: "on_stream_opened",
    ev.DataReceived: "on_data",
    ev.StreamEnded: "on_end",
    ev.StreamReset: "on_reset",
    ev.StreamWritable: "on_writable",
}


def _ws_close_code(code: int) -> WSCloseCode:
    """The WebSocket close code that goes with our GOAWAY code (RFC 6455 §7.4.1)."""
    if code in (ErrorCode.PROTOCOL_ERROR, ErrorCode.FLOW_CONTROL_ERROR, ErrorCode.FRAME_SIZE_ERROR):
        return WSCloseCode.PROTOCOL_ERROR
    if code == ErrorCode.SHUTDOWN:
        return WSCloseCode.GOING_AWAY
    if code == ErrorCode.INTERNAL_ERROR:
        return WSCloseCode.INTERNAL_ERROR
    return WSCloseCode.OK  # a deliberate close: goodbye, idle, operator
