"""The client's side of a TCP or TLS-passthrough stream: one public connection's bytes,
relayed raw to a connection of its own to the local service.

The relay is the stream's handler from the moment the gateway opens it. Until the local
connection is up it keeps what the stream brings (credit withheld, so at most one window)
and its FIN. Once connected it writes the PROXY header, if the tunnel asks for one, then
what it kept, and from then on the stream and the socket are one `transport.pipe.Pipe`:
credit, half-closes both ways, resets. Local connections are not pooled: each carries one
public connection, and the local service sees it end when the public client's does.

The PROXY header's source is the public client (the OPEN metadata's address); its
destination is the local service's address as this client connected to it (the socket's
peer), not the gateway's public address: the client knows that only as a domain name (the
gateway may listen on a wildcard or behind NAT), the header needs numeric addresses of one
family, and a made-up one would be worse than a true local one. Services use the source.

For TLS passthrough the stream's first bytes are the public client's ClientHello (the
gateway read it to route by SNI and passes it on whole): to the relay they are bytes like
any others, and the local service terminates TLS with its own key.

When the relay is done it reports the connection once (`ConnectionSink`): client address,
bytes each way, duration, and how it ended (`CLOSED`, `RESET`, `LOCAL_RESET`, `REFUSED`).
"""

from __future__ import annotations

import asyncio
import time
from typing import Final, Protocol, cast

from tunnelgate import limits, proxy_header
from tunnelgate.config import TunnelSpec
from tunnelgate.proto.codes import ErrorCode
from tunnelgate.proto.messages import OpenInfo
from tunnelgate.transport.pipe import Pipe, StreamTarget
from tunnelgate.transport.reset import abort_with_reset

# How a relayed connection ended, as the `connection` event says.
CLOSED: Final = "closed"  # both sides closed their direction cleanly
RESET: Final = "reset"  # the public side went away (or the tunnel did): the stream was reset
LOCAL_RESET: Final = "local_reset"  # the local service reset or broke the connection
REFUSED: Final = "refused"  # the local service could not be reached (connect retried first)


class ConnectionSink(Protocol):
    """Where a relay reports its connection once it ended (the client's Output)."""

    def connection(
        self,
        tunnel: str,
        protocol: str,
        client: str,
        end: str,
        duration_ms: float,
        bytes_in: int,
        bytes_out: int,
    ) -> None: ...


class RawConnection(asyncio.Protocol):
    """A connection to the local service for one stream, and the socket end of its pipe
    (transport.pipe.PipeSocket). It knows its relay from the start, so bytes a service
    sends first (an SSH or SMTP greeting) have somewhere to go."""

    def __init__(self, relay: RawRelay) -> None:
        self.relay: RawRelay | None = relay
        self.transport: asyncio.Transport | None = None
        self.peername: object = None  # the local service's address, as we connected to it
        self.write_paused = False

    def __repr__(self) -> str:
        state = "unbound" if self.relay is None else "bound"
        return f"<RawConnection {self.peername!r} {state}>"

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports do not subclass asyncio.Transport, but implement it.
        self.transport = transport = cast(asyncio.Transport, transport)
        transport.set_write_buffer_limits(limits.WRITE_HIGH_WATER, limits.WRITE_LOW_WATER)
        self.peername = transport.get_extra_info("peername")
        if self.relay is not None:
            self.relay.attach(self)

    def data_received(self, data: bytes) -> None:
        if self.relay is not None:
            self.relay.on_local_data(data)

    def eof_received(self) -> bool:
        if self.relay is not None:
            return self.relay.on_local_eof()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        relay, self.relay = self.relay, None
        if relay is not None:
            relay.on_local_lost(exc)

    def pause_writing(self) -> None:
        self.write_paused = True

    def resume_writing(self) -> None:
        self.write_paused = False
        if self.relay is not None:
            self.relay.on_local_drained()

    # --- PipeSocket -------------------------------------------------------------------
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

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def abort(self) -> None:
        """A reset, so the local service can tell the public side was cut, not ended."""
        if self.transport is not None:
            abort_with_reset(self.transport)


class RawRelay:
    """StreamHandler of one TCP or TLS stream, and the PipeOwner of its pipe."""

    def __init__(
        self,
        target: StreamTarget,
        sid: int,
        info: OpenInfo,
        spec: TunnelSpec,
        sink: ConnectionSink,
    ) -> None:
        self.target = target
        self.sid = sid
        self.info = info
        self.spec = spec
        self.sink = sink
        self.local: RawConnection | None = None
        self.pipe: Pipe | None = None  # once connected
        self.done = False
        self.ending: str = CLOSED  # how it ended (final once done)
        self._waiting: list[bytes] = []  # stream bytes that came before the local socket
        self._bytes_waited = 0
        self._stream_ended = False  # the FIN came before the local socket
        self._started = time.monotonic()

    def __repr__(self) -> str:
        state = self.ending if self.done else "piped" if self.pipe else "connecting"
        return f"<RawRelay {self.spec.name} sid={self.sid} {self.info.client_addr} {state}>"

    # --- stream side (StreamHandler) ----------------------------------------
    def on_data(self, data: bytes) -> None:
        pipe = self.pipe
        if pipe is not None:
            pipe.on_data(data)
        elif not self.done:
            self._waiting.append(data)  # not acknowledged: the peer stops after one window
            self._bytes_waited += len(data)

    def on_end(self) -> None:
        if self.pipe is not None:
            self.pipe.on_end()
        else:
            self._stream_ended = True

    def on_reset(self, code: int) -> None:
        if self.done:
            return
        self.ending = RESET
        if self.pipe is not None:
            self.pipe.on_reset(code)
        else:
            self._finish()  # still connecting: the connect's result is closed on arrival

    def on_writable(self) -> None:
        if self.pipe is not None:
            self.pipe.on_writable()

    # --- local side -----------------------------------------------------------
    def attach(self, local: RawConnection) -> None:
        """The local connection is up (from its connection_made): PROXY header, the bytes
        kept meanwhile, then the pipe."""
        if self.done:  # the stream was reset while we connected
            local.relay = None
            local.close()
            return
        self.local = local
        first, self._waiting = self._waiting, []
        version = self.spec.proxy_protocol
        if version is not None:
            source = proxy_header.parse_endpoint(self.info.client_addr)
            destination = proxy_header.sockaddr_endpoint(local.peername)
            first.insert(0, proxy_header.encode(version, source, destination))
        if first and local.transport is not None:
            local.transport.writelines(first)
        pipe = Pipe(
            self.target,
            self.sid,
            local,
            self,
            reset_code=ErrorCode.CONNECT_ERROR,
            unacked=self._bytes_waited,
        )
        self.pipe = pipe
        if not local.write_paused:
            pipe.on_socket_drained()  # the socket took them: their credit goes back
        if self._stream_ended:
            pipe.on_end()

    def on_local_data(self, data: bytes) -> None:
        if self.pipe is not None:
            self.pipe.on_socket_data(data)

    def on_local_eof(self) -> bool:
        if self.pipe is not None:
            self.pipe.on_socket_eof()
        return True  # half-close: the other direction may still flow

    def on_local_lost(self, exc: Exception | None) -> None:
        self.local = None
        pipe = self.pipe
        if pipe is None or self.done:
            return
        if exc is not None:
            self.ending = LOCAL_RESET
        pipe.on_socket_lost(exc)

    def on_local_drained(self) -> None:
        if self.pipe is not None:
            self.pipe.on_socket_drained()

    def fail_connect(self) -> None:
        """The local service cannot be reached: the gateway closes the public connection."""
        if not self.done:
            self.ending = REFUSED
            self.target.reset(self.sid, ErrorCode.CONNECT_ERROR)
            self._finish()

    # --- PipeOwner ------------------------------------------------------------------
    def pipe_finished(self, aborted: bool) -> None:
        local, self.local = self.local, None
        if local is not None:
            local.relay = None  # closed or aborted by the pipe: nothing more to hear
        if aborted and self.ending == CLOSED:
            self.ending = RESET
        self._finish()

    # --- internals --------------------------------------------------------------
    def _finish(self) -> None:
        if self.done:
            return
        self.done = True
        self._waiting = []
        self.target.release(self.sid)
        pipe = self.pipe
        bytes_in = self._bytes_waited + (pipe.bytes_from_stream if pipe is not None else 0)
        bytes_out = pipe.bytes_from_socket if pipe is not None else 0
        self.sink.connection(
            self.spec.name,
            self.spec.protocol,
            self.info.client_addr,
            self.ending,
            round((time.monotonic() - self._started) * 1000, 2),
            bytes_in,
            bytes_out,
        )
