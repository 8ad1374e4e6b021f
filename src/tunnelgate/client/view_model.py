"""What the client's live view shows, kept from the client's events: pure state, no terminal.

`ViewModel` is an `Output` (output.py): the agent and the relays report to it exactly as they
report to the text or JSON output, one call per event. It keeps what a screen needs and no
more: the session's status (and why it is not online), each tunnel's public URL, counts, and
the latest `MAX_RECENT` requests and TCP/TLS connections. Every change bumps `changes`, so the
view (live_view.py, which draws it with rich) redraws only when something moved, at most a
few times a second, however many requests arrive in between.

A request costs the data path one call here: a tuple appended to a bounded deque and a
counter. Formatting waits for the next redraw, and only the rows on screen are formatted.

This module does not import rich (live_view.py does), so `wanted()` can decide whether to
load it.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from typing import Final, Literal, NamedTuple, TextIO

MAX_RECENT: Final = 20  # requests and connections the view keeps (ngrok's inspector shows 20)

Status = Literal["connecting", "online", "reconnecting", "draining", "offline"]


def wanted(stream: TextIO, environ: Mapping[str, str]) -> bool:
    """Whether the live view may draw on `stream`: a terminal that can redraw in place.

    `NO_COLOR` (no-color.org: set and not empty) and `TERM=dumb` get the plain lines."""
    if environ.get("NO_COLOR") or environ.get("TERM") in ("dumb", "unknown"):
        return False
    try:
        return stream.isatty()
    except (OSError, ValueError):  # closed or detached
        return False


class RequestRow(NamedTuple):
    """A forwarded request, as the `request` event told it."""

    at: float  # wall-clock seconds (time.time()) when it ended
    tunnel: str
    method: str
    path: str
    status: int
    duration_ms: float


class ConnectionRow(NamedTuple):
    """A relayed TCP or TLS connection, once it ended (the `connection` event)."""

    at: float
    tunnel: str
    protocol: str
    client: str
    end: str
    duration_ms: float
    bytes_in: int
    bytes_out: int


class TunnelRow:
    """One tunnel: where it forwards to, and its public URL once the gateway gave one."""

    __slots__ = ("local", "name", "protocol", "ready", "url")

    def __init__(self, name: str, protocol: str, local: str) -> None:
        self.name = name
        self.protocol = protocol  # http, tcp or tls
        self.local = local
        self.url: str | None = None  # kept across reconnects (the same URL comes back)
        self.ready = False  # registered on the current connection

    def __repr__(self) -> str:
        return f"<TunnelRow {self.name} {self.url or '-'} -> {self.local} ready={self.ready}>"


class ViewModel:
    """The live view's state; an `Output`. `tunnels`: (name, protocol, local target) of each."""

    def __init__(
        self,
        server: str,
        tunnels: Iterable[tuple[str, str, str]],
        *,
        max_recent: int = MAX_RECENT,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.server = server
        self.tunnels = {name: TunnelRow(name, proto, local) for name, proto, local in tunnels}
        self.status: Status = "connecting"
        self.detail = ""  # why it is reconnecting or offline
        self.retry = ""  # while reconnecting: which attempt, and when
        self.requests = 0
        self.connections = 0
        self.open_streams = 0  # from the agent's statistics(), sampled per redraw
        self.rtt: float | None = None  # seconds, likewise
        self.recent: deque[RequestRow | ConnectionRow] = deque(maxlen=max_recent)
        self.changes = 0  # bumped by every change: a redraw is due when it moved
        self._clock = clock

    def __repr__(self) -> str:
        return (
            f"<ViewModel {self.status} tunnels={len(self.tunnels)} requests={self.requests} "
            f"connections={self.connections} changes={self.changes}>"
        )

    # --- Output ---------------------------------------------------------------------
    def connecting(self, server: str) -> None:
        self.server = server
        if self.status != "reconnecting":  # keep saying why until it is back online
            self.status, self.detail, self.retry = "connecting", "", ""
        self.changes += 1

    def tunnel_ready(self, name: str, url: str, local: str) -> None:
        row = self.tunnels.get(name)
        if row is None:
            row = self.tunnels[name] = TunnelRow(name, "http", local)
        row.url, row.ready = url, True
        if all(tunnel.ready for tunnel in self.tunnels.values()):
            self.status, self.detail, self.retry = "online", "", ""
        self.changes += 1

    def request(
        self,
        tunnel: str,
        method: str,
        path: str,
        status: int,
        duration_ms: float,
        bytes_in: int,
        bytes_out: int,
    ) -> None:
        self.recent.append(RequestRow(self._clock(), tunnel, method, path, status, duration_ms))
        self.requests += 1
        self.changes += 1

    def connection(
        self,
        tunnel: str,
        protocol: str,
        client: str,
        end: str,
        duration_ms: float,
        bytes_in: int,
        bytes_out: int,
    ) -> None:
        row = ConnectionRow(
            self._clock(), tunnel, protocol, client, end, duration_ms, bytes_in, bytes_out
        )
        self.recent.append(row)
        self.connections += 1
        self.changes += 1

    def reconnecting(self, attempt: int, delay: float, reason: str) -> None:
        self._set_offline("reconnecting", reason)
        self.retry = f"attempt {attempt} in {delay:.1f} s"

    def rejected(self, tunnel: str, reason: str, message: str) -> None:
        self._set_offline("offline", f"tunnel {tunnel} rejected: {message}")

    def closed(self, reason: str) -> None:
        self._set_offline("offline", f"closed by the gateway: {reason}")

    def draining(self, open_streams: int, timeout: float) -> None:
        """Stopping: the names are given up, the streams in flight may finish."""
        self.status, self.retry = "draining", ""
        self.detail = f"finishing what is in flight, up to {timeout:g} s (Ctrl+C again: now)"
        for tunnel in self.tunnels.values():
            tunnel.ready = False
        self.changes += 1

    def drained(self, ended: str, duration_ms: float, cut_streams: int) -> None:
        self.detail = "stopped" if not cut_streams else f"stopped, {cut_streams} cut off"
        self.changes += 1

    def error(self, message: str) -> None:
        """Errors are lines (live_view.py prints them above the view): some are warnings
        that change nothing, and the fatal ones are followed by the end of the view."""

    # --- from the view ----------------------------------------------------------------
    def sample(self, open_streams: int, rtt: float | None) -> None:
        """The agent's statistics, read at each redraw tick."""
        if (open_streams, rtt) != (self.open_streams, self.rtt):
            self.open_streams, self.rtt = open_streams, rtt
            self.changes += 1

    def ended(self) -> None:
        """The client is exiting: the last screen says so."""
        self._set_offline("offline", self.detail or "stopped")

    def _set_offline(self, status: Status, detail: str) -> None:
        self.status, self.detail, self.retry = status, detail, ""
        for tunnel in self.tunnels.values():
            tunnel.ready = False
        self.open_streams, self.rtt = 0, None
        self.changes += 1
