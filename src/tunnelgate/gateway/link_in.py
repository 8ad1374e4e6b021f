"""The receiving side of cluster links: the --advertise listener.

Each connection must send a valid preamble (proto/link.py: MAC, clock window, fresh
nonce) within LINK_PREAMBLE_TIMEOUT, or it is closed and logged (`cluster_link_refused`,
rate-limited, with the peer and the reason). An accepted one is served by the code that
serves this gateway's own public connections of its kind, as if the public client had
connected here (its address from the preamble for logs, X-Forwarded-For, PROXY headers
and the per-address caps), marked `via` the forwarding node: it is never forwarded again.
"""

from __future__ import annotations

import asyncio
import time
from typing import Protocol, cast

from tunnelgate import limits
from tunnelgate.logs import EventLog, RateLimitedLog
from tunnelgate.proto.link import MAX_PREAMBLE, LinkKind, LinkRefused, LinkVerifier, Preamble
from tunnelgate.transport.deadlines import Deadlines

from .edge import EdgeServices, PublicConnection
from .link_out import ClusterCounters
from .tcp import TcpPorts
from .tls_front import TlsFront

log = EventLog("tunnelgate.gateway")
_refusals = RateLimitedLog(log)


class Adopter(Protocol):
    """Serves an accepted link as a public connection of its kind (cluster.py)."""

    def adopt(self, transport: asyncio.Transport, preamble: Preamble, rest: bytes) -> None: ...


class LinkReceiver:
    """What every link connection of this gateway shares."""

    def __init__(
        self,
        verifier: LinkVerifier,
        adopter: Adopter,
        deadlines: Deadlines,
        counters: ClusterCounters,
        *,
        max_pending: int = limits.MAX_PENDING_LINKS,
        preamble_timeout: float = limits.LINK_PREAMBLE_TIMEOUT,
    ) -> None:
        self.verifier = verifier
        self.adopter = adopter
        self.deadlines = deadlines
        self.counters = counters
        self.max_pending = max_pending
        self.preamble_timeout = preamble_timeout
        self.pending = 0  # links waiting for their preamble

    def refuse(self, peer: str, reason: str) -> None:
        self.counters.refuse(reason)
        _refusals.warning("cluster_link_refused", peer=peer, reason=reason)


class LinkIntake(asyncio.Protocol):
    """One link connection until its preamble is read; then it is handed on."""

    def __init__(self, receiver: LinkReceiver) -> None:
        self._receiver = receiver
        self._transport: asyncio.Transport | None = None
        self._buffer = b""
        self._peer = "?"
        self._counted = False
        self.deadline_tick = 0  # Timed

    def __repr__(self) -> str:
        return f"<LinkIntake {self._peer} read={len(self._buffer)}>"

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport = cast(asyncio.Transport, transport)
        peer = transport.get_extra_info("peername")
        self._peer = f"{peer[0]}:{peer[1]}" if peer else "?"
        receiver = self._receiver
        if receiver.pending >= receiver.max_pending:
            self._refuse("too_many_pending")
            return
        receiver.pending += 1
        self._counted = True
        receiver.deadlines.set(self, receiver.preamble_timeout)

    def data_received(self, data: bytes) -> None:
        transport = self._transport
        if transport is None:
            return
        self._buffer += data
        try:
            read = self._receiver.verifier.read(self._buffer[:MAX_PREAMBLE], time.time())
        except LinkRefused as refused:
            self._refuse(refused.reason)
            return
        if read is None:
            return
        preamble, end = read
        rest, self._buffer = self._buffer[end:], b""
        self._done()
        self._transport = None  # not ours any more
        self._receiver.counters.adopted += 1
        self._receiver.adopter.adopt(transport, preamble, rest)

    def eof_received(self) -> bool:
        self._refuse("closed_before_preamble")
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        if self._transport is not None:
            self._done()
            self._transport = None

    def on_deadline(self) -> None:
        if self._transport is not None:
            self._refuse("preamble_timeout")

    def _refuse(self, reason: str) -> None:
        self._receiver.refuse(self._peer, reason)
        self._done()
        if self._transport is not None:
            self._transport.abort()
            self._transport = None

    def _done(self) -> None:
        if self._counted:
            self._counted = False
            self._receiver.pending -= 1
            self._receiver.deadlines.clear(self)


def target_port(preamble: Preamble) -> int | None:
    """The TCP port a TCP link is for (None for another kind or a bad value)."""
    if preamble.kind is not LinkKind.TCP or not preamble.target.isdigit():
        return None
    port = int(preamble.target)
    return port if 0 < port < 65536 else None


def client_ip(client: str) -> str:
    """The address part of a preamble's "ip:port"."""
    return client.rpartition(":")[0] or client


class TlsFronts(Protocol):
    def __call__(self) -> TlsFront: ...


class Adoption:
    """Serves accepted links as this gateway's own public connections (the Adopter)."""

    def __init__(
        self,
        edge: EdgeServices,
        receiver_counters: ClusterCounters,
        tls: TlsFronts | None,
        tcp: TcpPorts | None,
    ) -> None:
        self._edge = edge
        self._counters = receiver_counters
        self._tls = tls
        self._tcp = tcp

    def adopt(self, transport: asyncio.Transport, preamble: Preamble, rest: bytes) -> None:
        kind = preamble.kind
        if kind is LinkKind.HTTP or kind is LinkKind.HTTPS:
            conn = PublicConnection(self._edge, "https" if kind is LinkKind.HTTPS else "http")
            conn.via, conn.client_addr = preamble.via, preamble.client
            conn.client_ip = client_ip(preamble.client)
            transport.set_protocol(conn)
            conn.connection_made(transport)
            if rest and not conn.closing:
                conn.data_received(rest)
            return
        port = target_port(preamble)
        if kind is LinkKind.TLS and self._tls is not None:
            self._tls().adopt(transport, preamble.client, preamble.via, rest)
        elif port is not None and self._tcp is not None:
            self._tcp.adopt(transport, port, preamble.client, preamble.via, rest)
        else:  # a node configured otherwise (no HTTPS or TCP listener here)
            self._counters.refuse("kind_not_served")
            _refusals.warning(
                "cluster_link_refused", peer=preamble.via, reason="kind_not_served", kind=kind.name
            )
            transport.abort()
