"""The graceful drain on SIGTERM: hypercorn's and uvicorn's shutdown sequence, bounded.

    listeners closed            (app.py, before this: the kernel refuses new connections)
    drain_started               every tunnel connection hears GOAWAY SHUTDOWN and opens no
                                stream from then on; idle public connections are closed,
                                busy ones close after their response (`Connection: close`)
    ... wait ...                a tunnel connection whose last stream ended is closed, so
                                its client reconnects (elsewhere) while others still finish
    drain_finished              `idle`: nothing left; `timeout`: --drain-timeout passed;
                                `signal`: a second SIGTERM/SIGINT. What is still open then
                                is cut off: tunnel connections are aborted, which resets
                                every stream on them, and the public side of each is reset
                                or closed short of its framing (exchange.py's cut-off path,
                                logged `aborted`); public connections left are closed.

Names and ports are not freed during the drain: the tunnels end with SHUTDOWN, which holds
them for the reconnect grace like any drop (session.frees_names), so in a cluster the
same owner gets them back on another gateway.
"""

from __future__ import annotations

import asyncio
import contextlib
import time

from tunnelgate import limits
from tunnelgate.logs import EventLog

from .state import GatewayState

log = EventLog("tunnelgate.gateway")
DRAIN_REASON = "gateway draining: reconnect"


async def drain(live: GatewayState, drain_timeout: float) -> str:
    """Drain `live` for up to `drain_timeout` seconds or until it is cut short (a second signal:
    `live.cut_short()`); then cut off what is left. Returns how it ended: "idle",
    "timeout" or "signal"."""
    started = time.monotonic()
    log.info(
        "drain_started",
        timeout_s=drain_timeout,
        connections=len(live.connections),
        tunnels=len(live.sessions),
        streams=live.open_streams(),
    )
    live.start_draining(DRAIN_REASON)
    ended = await _wait_idle(live, started + drain_timeout)
    cut_tunnels, cut_streams = len(live.sessions), live.open_streams()
    cut_connections = len(live.connections)
    await _cut_off(live)
    log.info(
        "drain_finished",
        ended=ended,
        duration_s=round(time.monotonic() - started, 3),
        cut_connections=cut_connections,
        cut_tunnels=cut_tunnels,
        cut_streams=cut_streams,
    )
    return ended


async def _wait_idle(live: GatewayState, deadline: float) -> str:
    while True:
        live.close_idle_sessions()
        if live.idle:
            return "idle"
        if live.cut_requested:
            return "signal"
        left = deadline - time.monotonic()
        if left <= 0:
            return "timeout"
        # Woken by the second signal or a connection's end; else a look every interval
        # for tunnel connections whose last stream ended.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(min(left, limits.DRAIN_CHECK_INTERVAL)):
                await live.wait_changed()


async def _cut_off(live: GatewayState) -> None:
    """Abort the tunnel connections left (their streams' public sides are reset as for
    any lost tunnel), wait for them to be gone, then close the public connections left."""
    live.cut_off_sessions()
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(limits.SHUTDOWN_TIMEOUT):
            while live.sessions:
                await live.wait_changed()
    live.close_connections()
