"""One raw pipe: a socket and a tunnel stream, bytes relayed both ways.

Used wherever a stream carries a connection's bytes as they are: an HTTP connection
after `101 Switching Protocols` (on the client now, in the gateway's exchange next),
and TCP and TLS-passthrough tunnels on both sides.

- **Credit.** Stream bytes written to the socket are acknowledged (credit goes back to
  the peer) only while the socket takes them: while its writes are paused, credit is
  withheld until it drains. A socket that does not read stops its own stream only.
- **Backpressure.** When the stream has no credit left for the socket's bytes, the
  socket's reading is paused until the stream is writable again.
- **Half-close.** Socket EOF becomes the stream's FIN, the stream's FIN the socket's
  EOF (`write_eof`, where the socket can); with both, the pipe is done and closes the
  socket.
- **Resets.** A stream reset aborts the socket; a socket lost with an error resets the
  stream (`reset_code`). A socket closed cleanly after its EOF lets the stream finish.

The pipe owns neither end: the socket's protocol object forwards its callbacks
(`on_socket_*`), and the stream's handler its events (`on_data`, ...), or registers the
pipe as the handler itself.
"""

from __future__ import annotations

from typing import Protocol


class StreamTarget(Protocol):
    """What a pipe uses of the tunnel transport (TunnelConnection implements it)."""

    def send(self, stream_id: int, data: bytes | memoryview, end: bool = False) -> bool: ...
    def end(self, stream_id: int) -> None: ...
    def reset(self, stream_id: int, code: int) -> None: ...
    def acknowledge(self, stream_id: int, n: int) -> None: ...
    def release(self, stream_id: int) -> None: ...


class PipeSocket(Protocol):
    """The socket end of a pipe, as its asyncio protocol object sees its transport."""

    @property
    def write_paused(self) -> bool:
        """True between the transport's pause_writing() and resume_writing()."""
        ...

    def write(self, data: bytes) -> None: ...
    def write_eof(self) -> None: ...
    def can_write_eof(self) -> bool: ...
    def pause_reading(self) -> None: ...
    def resume_reading(self) -> None: ...
    def close(self) -> None: ...
    def abort(self) -> None: ...


class PipeOwner(Protocol):
    def pipe_finished(self, aborted: bool) -> None:
        """Both directions have ended (aborted: by a reset either way); the socket is
        closed or aborted and the stream released."""
        ...


class Pipe:
    def __init__(
        self,
        target: StreamTarget,
        stream_id: int,
        socket: PipeSocket,
        owner: PipeOwner,
        *,
        reset_code: int,
        unacked: int = 0,
    ) -> None:
        """`reset_code` resets the stream when the socket fails. `unacked`: stream bytes
        already written to the socket and not yet acknowledged (credit the pipe returns
        when the socket drains), when the pipe takes over a stream mid-way."""
        self.target = target
        self.stream_id = stream_id
        self.socket = socket
        self.owner = owner
        self.reset_code = reset_code
        self.bytes_from_stream = 0
        self.bytes_from_socket = 0
        self.stream_ended = False  # the peer's FIN arrived
        self.socket_ended = False  # the socket's EOF went out as our FIN
        self.socket_gone = False  # closed: nothing more can be written to it
        self.done = False
        self._unacked = unacked

    def __repr__(self) -> str:
        state = "done" if self.done else "open"
        ends = ("stream-fin " if self.stream_ended else "") + (
            "socket-eof" if self.socket_ended else ""
        )
        return (
            f"<Pipe sid={self.stream_id} {state} {ends.strip() or '-'} "
            f"in={self.bytes_from_stream} out={self.bytes_from_socket}>"
        )

    # --- stream side (a StreamHandler) ------------------------------------------
    def on_data(self, data: bytes) -> None:
        if self.done:
            return
        n = len(data)
        self.bytes_from_stream += n
        if self.socket_gone:
            self.target.acknowledge(self.stream_id, n)  # nowhere to go: do not block the peer
            return
        self.socket.write(data)
        if self.socket.write_paused:
            self._unacked += n  # credit waits until the socket drains
        else:
            self.target.acknowledge(self.stream_id, n)

    def on_end(self) -> None:
        if self.done:
            return
        self.stream_ended = True
        if not self.socket_gone and self.socket.can_write_eof():
            self.socket.write_eof()
        if self.socket_ended:
            self._finish(aborted=False)

    def on_reset(self, code: int) -> None:
        if not self.done:
            self._finish(aborted=True)

    def on_writable(self) -> None:
        if not self.done and not self.socket_gone:
            self.socket.resume_reading()

    # --- socket side ---------------------------------------------------------------
    def on_socket_data(self, data: bytes) -> None:
        if self.done or not data:
            return
        self.bytes_from_socket += len(data)
        if not self.target.send(self.stream_id, data):
            self.socket.pause_reading()  # until on_writable

    def on_socket_eof(self) -> None:
        """The socket's peer will send no more: our FIN. (Its protocol's eof_received
        returns True, to keep writing.)"""
        if self.done or self.socket_ended:
            return
        self.socket_ended = True
        self.target.end(self.stream_id)
        if self.stream_ended:
            self._finish(aborted=False)

    def on_socket_drained(self) -> None:
        """The socket's writes resumed: the credit withheld meanwhile goes back."""
        if self._unacked and not self.done:
            n, self._unacked = self._unacked, 0
            self.target.acknowledge(self.stream_id, n)

    def on_socket_lost(self, exc: Exception | None) -> None:
        self.socket_gone = True
        if self.done:
            return
        if exc is not None:
            self.abort(self.reset_code)
            return
        # Closed cleanly: as an EOF. The stream may still bring bytes, which are
        # acknowledged and dropped until the peer ends it.
        if self._unacked:
            n, self._unacked = self._unacked, 0
            self.target.acknowledge(self.stream_id, n)
        self.on_socket_eof()

    # --- commands --------------------------------------------------------------------
    def abort(self, code: int) -> None:
        """Reset the stream with `code` and abort the socket."""
        if not self.done:
            self.target.reset(self.stream_id, code)
            self._finish(aborted=True)

    def _finish(self, aborted: bool) -> None:
        self.done = True
        self.target.release(self.stream_id)
        if not self.socket_gone:
            self.socket_gone = True
            if aborted:
                self.socket.abort()
            else:
                self.socket.close()
        self.owner.pipe_finished(aborted)
