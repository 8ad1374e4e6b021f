"""Ending a relayed TCP connection with a reset (RST) instead of a FIN.

A relay that loses one side mid-way must not let the other side take the cut for a proper
end: a FIN reads as "that was all" (after a close-delimited response, or in a raw stream
where a truncated upload would look whole). With SO_LINGER on and a zero timeout, closing
the socket discards what is unsent and sends RST.
"""

from __future__ import annotations

import asyncio
import socket
import struct

_LINGER_RESET = struct.pack("ii", 1, 0)  # SO_LINGER on, 0 s


def abort_with_reset(transport: asyncio.WriteTransport) -> None:
    """Abort `transport`; its peer sees a reset, where the socket still takes the option."""
    sock = transport.get_extra_info("socket")
    if sock is not None:
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RESET)
        except OSError:
            pass  # already gone: there is nothing left to tell the peer
    transport.abort()
