"""Hand an accepted HTTP connection over to picows once we decided to upgrade it.

The public listener serves tunnel traffic and `/connect` on one port, so picows cannot
own the listening socket. After our own parser has read and authorised the upgrade
request, we swap the connection's protocol for a server-side picows protocol and replay
the request head into it; picows then validates the upgrade and answers 101.
This uses picows' protocol class directly, hence the exact version pin.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

import picows
from picows import WSUpgradeRequest, WSUpgradeResponse, WSUpgradeResponseWithListener
from picows import picows as _picows_impl

from tunnelgate import limits
from tunnelgate.transport.listener import TunnelListener
from tunnelgate.transport.tunnel import SUBPROTOCOL, TunnelConnection

_logger = logging.getLogger("tunnelgate.picows")
_logger.setLevel(logging.WARNING)  # picows logs every accepted connection at INFO
# Given a Logger, picows makes a child Logger per connection (and keeps it): an adapter
# is used as it is, one for all connections.
_shared_logger = logging.LoggerAdapter(_logger, {})


class _HandedOverProtocol(_picows_impl.WSProtocol):  # type: ignore[misc,name-defined]
    """picows' server protocol (not in its stubs) that also says when the connection ends,
    however it ends: picows tells no listener when the upgrade itself fails (say, the
    request has no Sec-WebSocket-Key)."""

    __slots__ = ("on_lost",)
    on_lost: Callable[[], None]

    def connection_lost(self, exc: Exception | None) -> None:
        try:
            super().connection_lost(exc)
        finally:
            self.on_lost()


def hand_over(
    transport: asyncio.Transport,
    raw_head: bytes,
    listener: TunnelConnection,
    on_lost: Callable[[], None],
) -> None:
    """`on_lost` is called once the connection has closed, whether the upgrade succeeded."""

    def factory(request: WSUpgradeRequest) -> WSUpgradeResponseWithListener:
        response = WSUpgradeResponse.create_101_response(
            extra_headers={"Sec-WebSocket-Protocol": SUBPROTOCOL}
        )
        return WSUpgradeResponseWithListener(response, TunnelListener(listener))

    protocol = _HandedOverProtocol(
        None,  # host:port (client side only)
        None,  # path (client side only)
        False,  # is_client_side
        factory,
        _shared_logger,
        True,  # disconnect_on_exception
        limits.HANDSHAKE_TIMEOUT,
        False,  # our own heartbeats run in the mux (PING/PONG frames)
        20.0,
        20.0,
        picows.WSAutoPingStrategy.PING_WHEN_IDLE,
        True,  # answer WebSocket pings
        limits.MAX_TUNNEL_MESSAGE,
        None,  # extra headers (client side only)
        limits.TUNNEL_READ_BUFFER,  # initial read buffer; picows doubles it as needed
    )
    protocol.on_lost = on_lost
    transport.set_protocol(protocol)
    protocol.connection_made(transport)
    buffer = protocol.get_buffer(len(raw_head))
    buffer[: len(raw_head)] = raw_head
    protocol.buffer_updated(len(raw_head))
