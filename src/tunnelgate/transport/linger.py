"""Lingering close (RFC 9112 §9.6): end a connection whose client may still be sending.

A server that answers before it has read the whole request (an error page, a local app's
early response) and then simply closes leaves unread bytes in the kernel, which then sends
a reset; a client still uploading loses the answer with it, unread. As nginx does
(lingering_close), the write side is shut down once the answer is out and what the client
still sends is read and dropped, until it closes its side or a bound is reached
(limits.LINGER_TIME in all, LINGER_TIMEOUT without a byte, LINGER_MAX_BYTES): then the
connection is closed. The protocol that owns the transport keeps it (and its place under
the connection caps) meanwhile, and hands this object what it reads.
"""

from __future__ import annotations

import asyncio

from tunnelgate import limits

from .deadlines import Deadlines


class Linger:
    """Drops what a half-closed connection still reads, within the bounds; closes it after."""

    __slots__ = ("_deadlines", "_left", "_transport", "_until", "deadline_tick", "dropped")

    def __init__(self, transport: asyncio.Transport, deadlines: Deadlines) -> None:
        self._transport = transport
        self._deadlines = deadlines
        self._until = deadlines.time() + limits.LINGER_TIME
        self._left = limits.LINGER_MAX_BYTES
        self.dropped = 0  # bytes read and dropped
        self.deadline_tick = 0  # Timed
        if transport.can_write_eof():  # TLS cannot half-close: the answer said close
            transport.write_eof()  # after what is buffered: the answer goes out first
        transport.resume_reading()  # reading may have been paused (credit, pipelining)
        deadlines.set(self, min(limits.LINGER_TIMEOUT, limits.LINGER_TIME))

    def __repr__(self) -> str:
        return f"<Linger dropped={self.dropped} left={self._until - self._deadlines.time():.1f}s>"

    def data_received(self, n: int) -> None:
        """`n` more bytes were read (and are dropped)."""
        self.dropped += n
        self._left -= n
        left = self._until - self._deadlines.time()
        if self._left <= 0 or left <= 0:
            self.end()
        else:
            self._deadlines.set(self, min(limits.LINGER_TIMEOUT, left))

    def on_deadline(self) -> None:
        self.end()

    def end(self) -> None:
        """A bound is reached: close (the kernel resets it if the client is still sending)."""
        self._deadlines.clear(self)
        self._transport.close()

    def stop(self) -> None:
        """The connection is gone (the client closed its side, say): nothing left to do."""
        self._deadlines.clear(self)
