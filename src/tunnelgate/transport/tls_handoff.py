"""Hand a connection whose first bytes were already read to TLS: uvloop's TLS protocol.

The HTTPS listener reads the ClientHello itself before anyone answers it (to choose a
route by its SNI, and to refuse junk, plaintext and names outside the domain at once), so
`loop.start_tls` cannot be used: it cannot take bytes already read. As `handoff.py` does
for picows, we build uvloop's own `SSLProtocol` (Cython, not in its public API, hence the
exact uvloop pin), put it on the transport and replay the bytes into it. Its waiter tells
how the handshake ended, which the listener logs and counts.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Callable

from uvloop.loop import SSLProtocol  # type: ignore[attr-defined]  # not in its stubs

# Seconds a TLS shutdown (close_notify both ways) may take before the socket is just
# closed: as asyncio's default (SSL_SHUTDOWN_TIMEOUT), but shorter: nothing waits on it.
SHUTDOWN_TIMEOUT = 5.0


def start_tls(
    transport: asyncio.Transport,
    first: bytes,
    app_protocol: asyncio.BaseProtocol,
    context: ssl.SSLContext,
    handshake_timeout: float,
    on_handshake: Callable[[BaseException | None], None],
) -> None:
    """Terminate TLS on `transport` for `app_protocol`, starting with `first` (bytes read
    off the socket already). `on_handshake(exc)` when the handshake has ended: None if it
    completed, or its exception. Careful: uvloop also says None when the peer closed during
    the handshake; only an app protocol that got connection_made saw it complete."""
    loop = asyncio.get_running_loop()
    waiter: asyncio.Future[None] = loop.create_future()
    waiter.add_done_callback(lambda done: on_handshake(done.exception()))
    protocol = SSLProtocol(
        loop,
        app_protocol,
        context,
        waiter,
        server_side=True,
        ssl_handshake_timeout=max(handshake_timeout, 0.001),
        ssl_shutdown_timeout=SHUTDOWN_TIMEOUT,
    )
    transport.set_protocol(protocol)
    protocol.connection_made(transport)
    view = memoryview(first)
    while view:
        buffer = protocol.get_buffer(len(view))
        n = min(len(buffer), len(view))
        buffer[:n] = view[:n]
        protocol.buffer_updated(n)
        view = view[n:]
