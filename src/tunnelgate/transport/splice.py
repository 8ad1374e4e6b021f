"""Two sockets joined by one raw pipe (pipe.py): a cluster link and the public connection.

The pipe relays between a socket and a *stream*; here the stream is a second socket, the
link to the gateway that has the tunnel (`LinkEnd` is the pipe's StreamTarget). The pipe's
rules carry over unchanged:

- backpressure both ways: the link's write buffer over its high-water mark pauses reading
  the public socket (`send` returns False, `on_writable` resumes it); the public socket's
  paused writes withhold "credit", which here means the link is not read until it drains;
- half-closes: an EOF either way becomes the other socket's `write_eof`;
- resets: either socket lost with an error aborts the other with a TCP reset.
"""

from __future__ import annotations

import asyncio
from typing import cast

from tunnelgate import limits

from .pipe import Pipe, PipeOwner
from .reset import abort_with_reset

LINK = 1  # the one "stream" of a LinkEnd: the pipe wants an id


class PublicEnd(asyncio.Protocol):
    """The public socket as the pipe's PipeSocket (its protocol once it is spliced)."""

    def __init__(self, transport: asyncio.Transport) -> None:
        self.transport = transport
        self.write_paused = False
        self.pipe: Pipe | None = None
        self.reset_seen = False  # lost with an error: the public client reset

    def data_received(self, data: bytes) -> None:
        if self.pipe is not None:
            self.pipe.on_socket_data(data)

    def eof_received(self) -> bool:
        if self.pipe is not None:
            self.pipe.on_socket_eof()
        return True  # half-close: the other direction may still flow

    def connection_lost(self, exc: Exception | None) -> None:
        self.reset_seen = exc is not None
        if self.pipe is not None:
            self.pipe.on_socket_lost(exc)

    def pause_writing(self) -> None:
        self.write_paused = True

    def resume_writing(self) -> None:
        self.write_paused = False
        if self.pipe is not None:
            self.pipe.on_socket_drained()

    # --- PipeSocket --------------------------------------------------------------------
    def write(self, data: bytes) -> None:
        if not self.transport.is_closing():
            self.transport.write(data)

    def write_eof(self) -> None:
        if self.transport.can_write_eof():
            self.transport.write_eof()

    def can_write_eof(self) -> bool:
        return self.transport.can_write_eof()

    def pause_reading(self) -> None:
        if not self.transport.is_closing():
            self.transport.pause_reading()

    def resume_reading(self) -> None:
        if not self.transport.is_closing():
            self.transport.resume_reading()

    def close(self) -> None:
        self.transport.close()

    def abort(self) -> None:
        if not self.transport.is_closing():
            abort_with_reset(self.transport)


class LinkEnd(asyncio.Protocol):
    """The link socket as the pipe's stream. Made by `create_connection`; bytes the peer
    sends before `splice` are kept (a bounded read's worth: reading is paused then)."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.pipe: Pipe | None = None
        self.write_paused = False
        self.reset_seen = False  # lost with an error: the other gateway reset
        self.ended_first = False  # its EOF came before the public client's
        self.reading_paused = False
        self._early: list[bytes] = []
        self._early_end: bool | None = None  # ended before splice: None, clean, or reset

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport = cast(asyncio.Transport, transport)
        transport.set_write_buffer_limits(limits.WRITE_HIGH_WATER, limits.WRITE_LOW_WATER)

    def data_received(self, data: bytes) -> None:
        pipe = self.pipe
        if pipe is None:
            self._early.append(data)
            self._pause()
            return
        pipe.on_data(data)
        if pipe.socket.write_paused and not pipe.done:
            self._pause()  # until the public socket drains (acknowledge)

    def eof_received(self) -> bool:
        if self.pipe is None:
            self._early_end = False
            return True
        if not self.pipe.socket_ended:
            self.ended_first = True
        self.pipe.on_end()
        return True

    def connection_lost(self, exc: Exception | None) -> None:
        self.reset_seen = exc is not None
        pipe = self.pipe
        if pipe is None:
            self._early_end = exc is not None
            return
        if exc is not None:
            pipe.on_reset(0)
        elif not pipe.stream_ended:
            pipe.on_end()  # closed without an EOF first: the same end
        if not pipe.done:  # the public side still had bytes for a link that is gone
            pipe.abort(0)

    def pause_writing(self) -> None:
        self.write_paused = True

    def resume_writing(self) -> None:
        self.write_paused = False
        if self.pipe is not None:
            self.pipe.on_writable()

    def splice(self, pipe: Pipe) -> None:
        """From now on this link is `pipe`'s stream; what came before goes first."""
        self.pipe = pipe
        early, self._early = self._early, []
        for data in early:
            self.data_received(data)
        if self._early_end is not None:
            if self._early_end:
                pipe.on_reset(0)
            else:
                self.eof_received()
            return
        if not self.write_paused and not pipe.socket.write_paused:
            self._resume()

    # --- pipe.StreamTarget ---------------------------------------------------------------
    def send(self, stream_id: int, data: bytes | memoryview, end: bool = False) -> bool:
        transport = self.transport
        if transport is None or transport.is_closing():
            return True  # gone: connection_lost ends the pipe
        transport.write(data)
        if end:
            self.end(stream_id)
        return not self.write_paused

    def end(self, stream_id: int) -> None:
        transport = self.transport
        if transport is not None and not transport.is_closing() and transport.can_write_eof():
            transport.write_eof()

    def reset(self, stream_id: int, code: int) -> None:
        transport = self.transport
        if transport is not None and not transport.is_closing():
            abort_with_reset(transport)

    def acknowledge(self, stream_id: int, n: int) -> None:
        self._resume()  # the public socket took what the link sent

    def release(self, stream_id: int) -> None:
        transport = self.transport
        if transport is not None and not transport.is_closing():
            transport.close()

    def _pause(self) -> None:
        if not self.reading_paused and self.transport is not None:
            self.reading_paused = True
            self.transport.pause_reading()

    def _resume(self) -> None:
        transport = self.transport
        if self.reading_paused and transport is not None and not transport.is_closing():
            self.reading_paused = False
            transport.resume_reading()


def splice(
    public: asyncio.Transport, link: LinkEnd, owner: PipeOwner, first: bytes = b""
) -> tuple[Pipe, PublicEnd]:
    """Join `public` (whose reading the caller paused) to `link`: `first` (the preamble and
    the bytes already read from the public client) goes out on the link, then both relay."""
    end = PublicEnd(public)
    pipe = Pipe(link, LINK, end, owner, reset_code=0)
    end.pipe = pipe
    public.set_protocol(end)
    if link.transport is not None and first:
        link.transport.write(first)
    link.splice(pipe)
    if not pipe.done:
        public.resume_reading()
    return pipe, end
