"""The front dispatcher: a listener's protocol is picked by a connection's first bytes.

An HTTPS listener will serve, on one port, TLS that the gateway terminates and TLS that it
passes through unopened by SNI, and may answer plain HTTP with a redirect: which protocol
a connection gets depends on what it sends first. `FrontDispatcher` reads until `choose`
can tell, hands the transport to the protocol it chose and replays the bytes into it
(as hypercorn's `ProtocolWrapper` picks HTTP/1 or HTTP/2). A listener that speaks one
protocol (the plain HTTP one) uses that protocol directly and pays nothing for this.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import cast

from tunnelgate import limits

# `choose(first_bytes)` -> the protocol for this connection, or None to read more first.
Chooser = Callable[[bytes], asyncio.Protocol | None]

TLS_HANDSHAKE = 0x16  # the first byte of a TLS record carrying a handshake (ClientHello)


def looks_like_tls(first: bytes) -> bool:
    return first[:1] == bytes([TLS_HANDSHAKE])


class FrontDispatcher(asyncio.Protocol):
    def __init__(self, choose: Chooser, *, max_peek: int = limits.MAX_HEADER_BYTES) -> None:
        self._choose = choose
        self._max_peek = max_peek
        self._buffer = b""
        self._transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        transport = self._transport
        if transport is None or transport.is_closing():
            return
        self._buffer += data
        chosen = self._choose(self._buffer)
        if chosen is None:
            if len(self._buffer) >= self._max_peek:
                transport.abort()  # still undecided after this much: not ours to serve
            return
        first, self._buffer = self._buffer, b""
        transport.set_protocol(chosen)
        chosen.connection_made(transport)
        chosen.data_received(first)

    def eof_received(self) -> bool:
        return False  # closed before it said what it speaks

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None
        self._buffer = b""
