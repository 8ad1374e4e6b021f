"""The multiplexed tunnel connection, sans-IO.

    conn = Connection(Role.GATEWAY)
    events = conn.receive_data(message)   # bytes in, events out
    sid = conn.open_stream(meta)          # commands queue frames...
    conn.send_data(sid, b"...")
    wire = conn.data_to_send()            # ...which the transport drains

Streams opened by the gateway have even ids, those opened by the client odd ids
(as in HTTP/2), so the two sides never collide. Stream 0 is the connection itself.
"""

from __future__ import annotations

from enum import Enum
from typing import Final

from tunnelgate import limits
from tunnelgate.errors import LocalProtocolError, NoAvailableStreamIDError, RemoteProtocolError
from tunnelgate.proto import events as ev
from tunnelgate.proto.codes import ErrorCode
from tunnelgate.proto.flood import FloodBudget
from tunnelgate.proto.flow import ReceiveWindow, SendWindow
from tunnelgate.proto.frames import (
    FLAG_FIN,
    HEADER_SIZE,
    Frame,
    FrameDecoder,
    FrameType,
    decode_u32,
    decode_u64,
    encode_header,
    encode_u32,
    encode_u64,
)
from tunnelgate.proto.messages import ControlMessage, decode_control, encode_control

MAX_STREAM_ID: Final = 2**32 - 1
_DATA, _OPEN, _WINDOW, _RESET, _BLOCKED = (
    int(t)
    for t in (FrameType.DATA, FrameType.OPEN, FrameType.WINDOW, FrameType.RESET, FrameType.BLOCKED)
)


class Role(Enum):
    GATEWAY = 0  # opens even stream ids
    CLIENT = 1  # opens odd stream ids


class _Stream:
    __slots__ = (
        "blocked_sent",
        "fin_pending",
        "fresh",
        "fresh_batch",
        "id",
        "local_ended",
        "pending",
        "pending_size",
        "recv",
        "remote_ended",
        "send",
    )

    def __init__(self, stream_id: int, send_window: int, recv_window: int) -> None:
        self.id = stream_id
        self.send = SendWindow(send_window)
        self.recv = ReceiveWindow(recv_window)
        self.pending: list[bytes | memoryview] = []  # held back for lack of credit
        self.pending_size = 0
        self.fin_pending = False  # FIN queued behind pending data
        self.blocked_sent = False
        self.fresh = 0  # bytes received in receive_data call number `fresh_batch`
        self.fresh_batch = 0
        self.local_ended = False
        self.remote_ended = False

    def __repr__(self) -> str:
        state = "open"
        if self.local_ended and self.remote_ended:
            state = "closed"
        elif self.local_ended:
            state = "half-closed(local)"
        elif self.remote_ended:
            state = "half-closed(remote)"
        return (
            f"<Stream {self.id} {state} send_window={self.send.available} "
            f"recv_window={self.recv.size} pending={self.pending_size}>"
        )


class Connection:
    def __init__(
        self,
        role: Role,
        *,
        initial_window: int = limits.INITIAL_STREAM_WINDOW,
        max_window: int = limits.MAX_STREAM_WINDOW,
        max_connection_window: int = limits.MAX_CONNECTION_WINDOW,
        max_streams: int = limits.MAX_STREAMS,
        max_frame_payload: int = limits.MAX_FRAME_PAYLOAD,
        max_pending: int = limits.MAX_STREAM_PENDING,
        max_frames_per_call: int = limits.MAX_FRAMES_PER_TURN,
        peer_may_open: bool = True,
        next_stream_id: int = 0,
    ) -> None:
        """`next_stream_id`: the first id this side opens (0: the first of its parity). A
        test hook, to start a connection near the end of its ids."""
        self.role = role
        self._initial_window = initial_window
        self._max_window = max_window
        self._max_connection_window = max_connection_window
        self.max_streams = max_streams
        self._max_frame_payload = max_frame_payload
        self._max_pending = max_pending
        self._decoder = FrameDecoder(max_frame_payload, max_frames_per_call)
        # v2 (as v1): the gateway refuses every client OPEN; refused OPENs are charged as a flood.
        self._peer_may_open = peer_may_open
        self.flood = FloodBudget(
            limits.FLOOD_BURST,
            limits.FLOOD_RATE,
            earn_cap=2 * limits.FLOOD_EARN_PER_STREAM * max_streams,
        )
        self._now = 0.0  # the clock reading of the receive_data call in progress
        self.replies = 0  # frames the core queued by itself in answer (PONG, refusals)
        # Set by the owner under memory pressure: windows stop growing, and grown ones
        # shrink back to the initial size as their bytes are acknowledged.
        self.constrained = False
        self._streams: dict[int, _Stream] = {}
        self._out: list[bytes | memoryview] = []
        self.bytes_to_send = 0  # queued for the peer; a plain attribute, read per event
        parity = 0 if role is Role.GATEWAY else 1
        if next_stream_id and next_stream_id % 2 != parity:
            raise ValueError(f"stream id {next_stream_id} has the wrong parity for {role.name}")
        self._next_id = next_stream_id or 2 - parity
        self._highest_peer_id = 0
        self._granted = 0  # window growth granted beyond initial windows, all streams
        self._batch = 0  # receive_data calls so far
        self.go_away_sent = False
        self.go_away_received = False

    def __repr__(self) -> str:
        return (
            f"<Connection {self.role.name.lower()} streams={len(self._streams)} "
            f"buffered_out={sum(len(c) for c in self._out)}>"
        )

    # --- output -------------------------------------------------------------
    @property
    def has_data_to_send(self) -> bool:
        return bool(self._out)

    def data_to_send(self) -> bytes:
        """Everything queued since the last call, as one batch for one WebSocket message."""
        out, self._out = self._out, []
        self.bytes_to_send = 0
        return b"".join(out)

    def data_to_send_after(self, headroom: bytes, limit: int) -> bytearray:
        """The next batch, of about `limit` bytes at most (one frame may take it past), in
        a bytearray that starts with `headroom`: for transports that write their own header
        in front of the payload instead of copying it again. Call until nothing is left."""
        out = self._out
        size = 0
        count = 0
        for piece in out:
            if count and size + len(piece) > limit:
                break
            size += len(piece)
            count += 1
        batch, self._out = out[:count], out[count:]
        self.bytes_to_send -= size
        batch.insert(0, headroom)
        return bytearray().join(batch)

    def _frame(
        self, ftype: FrameType, stream_id: int, payload: bytes = b"", flags: int = 0
    ) -> None:
        self._out.append(encode_header(ftype, flags, stream_id, len(payload)))
        self.bytes_to_send += HEADER_SIZE + len(payload)
        if payload:
            self._out.append(payload)

    # --- introspection ------------------------------------------------------
    @property
    def open_streams(self) -> int:
        return len(self._streams)

    @property
    def has_backlog(self) -> bool:
        """True if received frames are left unprocessed (over the per-call frame limit):
        call `receive_data(b"")` on a later turn to go on."""
        return self._decoder.has_backlog

    def send_window(self, stream_id: int) -> int:
        return self._streams[stream_id].send.available

    def receive_window(self, stream_id: int) -> int:
        return self._streams[stream_id].recv.size

    def is_open(self, stream_id: int) -> bool:
        return stream_id in self._streams

    def can_send(self, stream_id: int) -> bool:
        """True while the stream is open and our side has not ended it."""
        stream = self._streams.get(stream_id)
        return stream is not None and not (stream.local_ended or stream.fin_pending)

    def is_writable(self, stream_id: int) -> bool:
        """True while the stream holds nothing back (its source may produce more)."""
        stream = self._streams.get(stream_id)
        return stream is not None and not stream.pending

    # --- commands -----------------------------------------------------------
    def open_stream(self, metadata: bytes) -> int:
        """A new stream's id. Raises LocalProtocolError when over the stream cap or going
        away, and NoAvailableStreamIDError once this side's ids are used up (for good:
        only a new connection can open streams again)."""
        if self.go_away_sent or self.go_away_received:
            raise LocalProtocolError(ErrorCode.REFUSED_STREAM, "connection is going away")
        if len(self._streams) >= self.max_streams:
            raise LocalProtocolError(ErrorCode.REFUSED_STREAM, "too many concurrent streams")
        if len(metadata) > limits.MAX_CONTROL_PAYLOAD:
            raise LocalProtocolError(ErrorCode.FRAME_SIZE_ERROR, "stream metadata too large")
        stream_id = self._next_id
        if stream_id > MAX_STREAM_ID:
            raise NoAvailableStreamIDError(ErrorCode.REFUSED_STREAM, "stream ids exhausted")
        self._next_id += 2
        self._streams[stream_id] = _Stream(stream_id, self._initial_window, self._initial_window)
        self._frame(FrameType.OPEN, stream_id, metadata)
        self.flood.earn(limits.FLOOD_EARN_PER_STREAM)  # frames may cross its end in flight
        return stream_id

    def send_data(self, stream_id: int, data: bytes | memoryview, end_stream: bool = False) -> bool:
        """Queue stream bytes. Returns False when some are held back for lack of credit:
        stop the source until StreamWritable (at most one more read may be queued)."""
        stream = self._sendable(stream_id)
        if stream.pending:
            if stream.pending_size + len(data) > self._max_pending:
                raise LocalProtocolError(ErrorCode.INTERNAL_ERROR, "source ignored backpressure")
            if data:
                stream.pending.append(data)
                stream.pending_size += len(data)
            stream.fin_pending = end_stream
            return False
        sent = self._send_now(stream, data, end_stream)
        if sent < len(data):
            stream.pending.append(memoryview(data)[sent:])
            stream.pending_size = len(data) - sent
            stream.fin_pending = end_stream
            self._note_blocked(stream)
            return False
        return True

    def end_stream(self, stream_id: int) -> None:
        self.send_data(stream_id, b"", end_stream=True)

    def reset_stream(self, stream_id: int, code: int = ErrorCode.CANCEL) -> None:
        stream = self._streams.get(stream_id)
        if stream is not None:
            self._remove(stream)
            self._frame(FrameType.RESET, stream_id, encode_u32(code))
            self.flood.earn(limits.FLOOD_EARN_PER_STREAM)

    def acknowledge_data(self, stream_id: int, n: int) -> None:
        """Our consumer took `n` bytes of this stream: return credit when due."""
        stream = self._streams.get(stream_id)
        if stream is None or n == 0:
            return
        if self.constrained:
            before = stream.recv.size
            increment = stream.recv.acknowledge(n, self._initial_window)
            self._granted -= before - stream.recv.size
        else:
            increment = stream.recv.acknowledge(n)
        if increment and not stream.remote_ended:
            self._frame(FrameType.WINDOW, stream_id, encode_u32(increment))

    def send_control(self, message: ControlMessage) -> None:
        self._frame(FrameType.CONTROL, 0, encode_control(message))

    def ping(self, value: int) -> None:
        self._frame(FrameType.PING, 0, encode_u64(value))

    def go_away(self, code: int = ErrorCode.NO_ERROR, reason: str = "") -> None:
        self.go_away_sent = True
        self._frame(FrameType.GOAWAY, 0, encode_u32(code) + reason.encode()[:1024])

    def _sendable(self, stream_id: int) -> _Stream:
        stream = self._streams.get(stream_id)
        if stream is None:
            raise LocalProtocolError(ErrorCode.STREAM_CLOSED, f"stream {stream_id} is not open")
        if stream.local_ended or stream.fin_pending:
            raise LocalProtocolError(ErrorCode.STREAM_CLOSED, f"stream {stream_id} already ended")
        return stream

    def _send_now(self, stream: _Stream, data: bytes | memoryview, end_stream: bool) -> int:
        """Frame as much of `data` as credit allows; FIN only if all of it went out."""
        size = len(data)
        sent = min(size, stream.send.available)
        view = memoryview(data) if sent < size or sent > self._max_frame_payload else None
        pos = 0
        while pos < sent:
            chunk_len = min(sent - pos, self._max_frame_payload)
            chunk = data if view is None else view[pos : pos + chunk_len]
            last = pos + chunk_len == size
            flags = FLAG_FIN if (end_stream and last) else 0
            self._out.append(encode_header(FrameType.DATA, flags, stream.id, chunk_len))
            self._out.append(chunk)
            self.bytes_to_send += HEADER_SIZE + chunk_len
            pos += chunk_len
        stream.send.spend(sent)
        if end_stream and sent == size:
            if size == 0:
                self._frame(FrameType.DATA, stream.id, flags=FLAG_FIN)
            self._mark_local_ended(stream)
        return sent

    def _note_blocked(self, stream: _Stream) -> None:
        if not stream.blocked_sent:
            stream.blocked_sent = True
            self._frame(FrameType.BLOCKED, stream.id)

    def _flush_pending(self, stream: _Stream) -> bool:
        """Send held-back data now that credit arrived. True if all of it went out."""
        while stream.pending and stream.send.available:
            chunk = stream.pending[0]
            last_chunk = len(stream.pending) == 1
            sent = self._send_now(stream, chunk, stream.fin_pending and last_chunk)
            stream.pending_size -= sent
            if sent < len(chunk):
                stream.pending[0] = memoryview(chunk)[sent:]
                break
            stream.pending.pop(0)
        if stream.pending:
            self._note_blocked(stream)
            return False
        if stream.fin_pending and not stream.local_ended:
            self._send_now(stream, b"", True)
        stream.fin_pending = False
        return True

    def _mark_local_ended(self, stream: _Stream) -> None:
        stream.local_ended = True
        if stream.remote_ended:
            self._remove(stream)

    def _remove(self, stream: _Stream) -> None:
        del self._streams[stream.id]
        self._granted -= stream.recv.size - self._initial_window

    # --- input --------------------------------------------------------------
    def receive_data(
        self, data: bytes | bytearray | memoryview, now: float = 0.0
    ) -> list[ev.Event]:
        """Feed bytes from the peer. Raises RemoteProtocolError if it broke the protocol;
        the transport then sends GOAWAY with `exc.code` and closes.

        `now` (monotonic seconds) refills the flood budget; at most `max_frames_per_call`
        frames are handled per call (see `has_backlog`)."""
        out: list[ev.Event] = []
        self._now = now
        self._batch += 1
        for frame in self._decoder.feed(data):
            self._dispatch(frame, out)
        return out

    def _dispatch(self, frame: Frame, out: list[ev.Event]) -> None:
        ftype = frame.type  # a plain int: compared with ==, not `is`
        sid = frame.stream_id
        if ftype == _DATA:
            self._on_data(frame, out)
        elif sid == 0:
            self._on_connection_frame(frame, out)
        elif ftype == _OPEN:
            self._on_open(frame, out)
        elif ftype == _WINDOW:
            increment = decode_u32(frame.payload, "WINDOW")
            stream = self._streams.get(self._known(sid))
            if stream is None:
                self.flood.spend(self._now, "WINDOW on a closed stream")
            else:
                if increment < limits.MIN_HONEST_WINDOW_INCREMENT:
                    self.flood.spend(self._now, "tiny WINDOW")
                stream.send.grant(increment)
                stream.blocked_sent = False
                if stream.pending and self._flush_pending(stream):
                    out.append(ev.StreamWritable(sid))
        elif ftype == _RESET:
            code = decode_u32(frame.payload, "RESET")
            stream = self._streams.get(self._known(sid))
            if stream is None:
                self.flood.spend(self._now, "RESET on a closed stream")
            else:
                self._remove(stream)
                out.append(ev.StreamReset(sid, code))
        elif ftype == _BLOCKED:
            self._on_blocked(self._known(sid))
        else:
            raise RemoteProtocolError(
                ErrorCode.PROTOCOL_ERROR, f"{FrameType(ftype).name} frame on stream {sid}"
            )

    def _known(self, sid: int) -> int:
        """Check that `sid` was opened at some point (it may be closed by now)."""
        ours = (sid % 2 == 0) == (self.role is Role.GATEWAY)
        if (ours and sid >= self._next_id) or (not ours and sid > self._highest_peer_id):
            raise RemoteProtocolError(ErrorCode.PROTOCOL_ERROR, f"stream {sid} was never opened")
        return sid

    def _on_data(self, frame: Frame, out: list[ev.Event]) -> None:
        sid = frame.stream_id
        if sid == 0:
            raise RemoteProtocolError(ErrorCode.PROTOCOL_ERROR, "DATA on stream 0")
        stream = self._streams.get(self._known(sid))
        size = len(frame.payload)
        if stream is None:
            # Closed or reset here while this was in flight: drop it. Bytes cost the
            # peer as much as us; an empty frame costs only us.
            if not size:
                self.flood.spend(self._now, "empty DATA on a closed stream")
            return
        if stream.remote_ended:
            self.reset_stream(sid, ErrorCode.STREAM_CLOSED)
            self.replies += 1
            out.append(ev.StreamReset(sid, ErrorCode.STREAM_CLOSED))
            return
        if not size and not frame.flags & FLAG_FIN:
            self.flood.spend(self._now, "empty DATA")
        if size:
            stream.recv.receive(size)
            if stream.fresh_batch != self._batch:
                stream.fresh_batch, stream.fresh = self._batch, 0
            stream.fresh += size
            out.append(ev.DataReceived(sid, bytes(frame.payload)))
        if frame.flags & FLAG_FIN:
            stream.remote_ended = True
            out.append(ev.StreamEnded(sid))
            if stream.local_ended:
                self._remove(stream)

    def _on_open(self, frame: Frame, out: list[ev.Event]) -> None:
        sid = frame.stream_id
        peer_parity = 1 if self.role is Role.GATEWAY else 0
        if sid % 2 != peer_parity or sid <= self._highest_peer_id:
            raise RemoteProtocolError(ErrorCode.PROTOCOL_ERROR, f"bad stream id {sid} in OPEN")
        self._highest_peer_id = sid
        if not self._peer_may_open or len(self._streams) >= self.max_streams or self.go_away_sent:
            self.flood.spend(self._now, "refused OPEN")
            self._frame(FrameType.RESET, sid, encode_u32(ErrorCode.REFUSED_STREAM))
            self.replies += 1
            return
        self._streams[sid] = _Stream(sid, self._initial_window, self._initial_window)
        out.append(ev.StreamOpened(sid, bytes(frame.payload)))

    def _on_blocked(self, sid: int) -> None:
        stream = self._streams.get(sid)
        # Honest BLOCKED comes when the sender's credit is spent; one that crossed our
        # WINDOW in flight is rare.
        if stream is None or stream.remote_ended or stream.recv.credit:
            self.flood.spend(self._now, "BLOCKED")
            if stream is None or stream.remote_ended:
                return
        if self.constrained:
            return  # memory pressure: no window grows
        budget = self._max_connection_window - self._granted
        # The sender puts BLOCKED right behind the data that used up its window, so
        # that data has not reached our consumer yet: judge the consumer without it.
        fresh = stream.fresh if stream.fresh_batch == self._batch else 0
        increment, used = stream.recv.grow(self._max_window, budget, fresh)
        self._granted += used
        if increment:
            self._frame(FrameType.WINDOW, sid, encode_u32(increment))

    def _on_connection_frame(self, frame: Frame, out: list[ev.Event]) -> None:
        ftype = frame.type
        if ftype == FrameType.PING:
            value = decode_u64(frame.payload, "PING")
            self.flood.spend(self._now, "PING")
            self._frame(FrameType.PONG, 0, encode_u64(value))
            self.replies += 1
        elif ftype == FrameType.PONG:
            value = decode_u64(frame.payload, "PONG")
            self.flood.spend(self._now, "PONG")
            out.append(ev.PongReceived(value))
        elif ftype == FrameType.CONTROL:
            if len(frame.payload) > limits.MAX_CONTROL_PAYLOAD:
                raise RemoteProtocolError(ErrorCode.FRAME_SIZE_ERROR, "control message too large")
            self.flood.spend(self._now, "CONTROL")
            out.append(ev.ControlReceived(decode_control(frame.payload)))
        elif ftype == FrameType.GOAWAY:
            if len(frame.payload) < 4:
                raise RemoteProtocolError(ErrorCode.FRAME_SIZE_ERROR, "GOAWAY payload too short")
            if self.go_away_received:
                self.flood.spend(self._now, "GOAWAY")
            code = decode_u32(frame.payload[:4], "GOAWAY")
            reason = bytes(frame.payload[4:]).decode(errors="replace")
            self.go_away_received = True
            out.append(ev.GoAwayReceived(code, reason))
        else:
            raise RemoteProtocolError(
                ErrorCode.PROTOCOL_ERROR, f"{FrameType(ftype).name} frame on stream 0"
            )
