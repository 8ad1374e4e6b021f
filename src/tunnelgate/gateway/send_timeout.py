"""The send timeout: a public client that takes nothing of what the gateway holds for it.

While a public connection's write buffer is over its high-water mark, a `SendWatch` looks
every limits.SEND_TIMEOUT seconds whether the client took any byte since the last look;
if not, the connection is given up (edge.py resets it: its response is cut off). This is
nginx's send_timeout: "if the client does not receive anything within this time, the
connection is closed". A client that reads, however slowly, is not ended here: the
held-bytes budget and its per-address share bound what slow readers cost (buffers.py).

A watch is made for a connection the first time its writes pause, so fast clients pay
nothing; it runs on the gateway's timer wheel (transport/deadlines.py), beside the
connection's own request timers.
"""

from __future__ import annotations

from typing import Protocol

from tunnelgate import limits
from tunnelgate.transport.deadlines import Deadlines


class Watched(Protocol):
    """A public connection, as its watch sees it (edge.PublicConnection)."""

    @property
    def held(self) -> int:
        """Bytes written to its buffer since its writes paused."""
        ...

    def unsent(self) -> int:
        """Bytes in its write buffer."""
        ...

    def send_timed_out(self) -> None: ...


class SendWatch:
    __slots__ = ("_conn", "_deadlines", "_taken", "deadline_tick")

    def __init__(self, conn: Watched, deadlines: Deadlines) -> None:
        self._conn = conn
        self._deadlines = deadlines
        self._taken = 0
        self.deadline_tick = 0  # Timed

    def __repr__(self) -> str:
        return f"<SendWatch {self._conn!r} armed={bool(self.deadline_tick)}>"

    def _sent(self) -> int:
        # Writes add to both `held` and the buffer; only what the client takes makes the
        # buffer shrink: so this grows exactly by the bytes sent since the pause.
        return self._conn.held - self._conn.unsent()

    def start(self) -> None:
        """The connection's writes paused: the client has SEND_TIMEOUT to take a byte."""
        self._taken = self._sent()
        self._deadlines.set(self, limits.SEND_TIMEOUT)

    def stop(self) -> None:
        self._deadlines.clear(self)

    def on_deadline(self) -> None:
        sent = self._sent()
        if sent > self._taken:
            self._taken = sent  # it took something: another SEND_TIMEOUT
            self._deadlines.set(self, limits.SEND_TIMEOUT)
        else:
            self._conn.send_timed_out()
