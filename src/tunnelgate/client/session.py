"""One tunnel connection of the client, and what happened on it.

A `ClientSession` is the SessionHooks of one TunnelConnection: it records which tunnels got
registered on that connection, a rejection, and a close a retry would not fix, and passes
what the user must see to its owner (the agent). It lives for one connection only, so nothing
of an earlier connection is taken for this one's: a reconnect that fails before its tunnels
are registered again is a failure, although the agent still knows their names.
"""

from __future__ import annotations

import asyncio
from collections.abc import Collection
from typing import Any, NamedTuple, Protocol

from tunnelgate import limits
from tunnelgate.proto.codes import ErrorCode, RejectReason, code_name
from tunnelgate.proto.messages import ControlMessage, Registered, Rejected
from tunnelgate.proto.mux import Role
from tunnelgate.transport.listener import TunnelListener
from tunnelgate.transport.tunnel import ConnectionEnd, StreamHandler, TunnelConnection

# Closed by the gateway for a reason reconnecting would only repeat (idle, or an operator
# closed it); a gateway shutting down (SHUTDOWN) or a lost connection is retried.
_FINAL_CLOSES = frozenset({ErrorCode.IDLE_TIMEOUT, ErrorCode.KICKED})
# Rejections that say nothing about what the user asked for, only that the gateway could not
# check it now (its shared registry is away): the client backs off and tries again, as after
# a lost connection, instead of exiting 2 (a reconnecting laptop must outlive a Redis restart).
RETRIED_REJECTIONS = frozenset({RejectReason.REGISTRY_UNAVAILABLE})


class SessionStatistics(NamedTuple):
    """A snapshot of one connection, for the live view (trio's `statistics()`)."""

    open_streams: int  # requests in flight and TCP/TLS connections being relayed
    rtt: float | None  # seconds, the latest PING's round trip; None until one is answered


class SessionOwner(Protocol):
    """What a session tells the agent (declared here: the agent imports this module)."""

    def open_relay(
        self, connection: TunnelConnection, stream_id: int, metadata: bytes
    ) -> StreamHandler | None: ...
    def on_registered(self, message: Registered) -> None: ...
    def on_rejected(self, message: Rejected) -> None: ...
    def on_gateway_goodbye(self, reason: str) -> None: ...


class ClientSession:
    def __init__(
        self,
        owner: SessionOwner,
        tunnel_ids: Collection[int],
        *,
        heartbeat_interval: float = limits.HEARTBEAT_INTERVAL,
        heartbeat_timeout: float = limits.HEARTBEAT_TIMEOUT,
    ) -> None:
        self.owner = owner
        self.tunnel_ids = tunnel_ids
        self.connection = TunnelConnection(
            Role.CLIENT,
            self,
            heartbeat_interval=heartbeat_interval,
            heartbeat_timeout=heartbeat_timeout,
        )
        self.closed: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self.registered: set[int] = set()
        self.rejected = False
        # A rejection a later attempt may not get (the gateway's registry was away): why.
        self.retry: str | None = None
        self.final_close: str | None = None  # closed for a reason a retry would not fix
        self.leaving = False  # we are closing it: what the gateway says now changes nothing

    def __repr__(self) -> str:
        state = "leaving" if self.leaving else "closed" if self.closed.done() else "open"
        registered = f"{len(self.registered)}/{len(self.tunnel_ids)}"
        return f"<ClientSession {state} registered={registered}>"

    @property
    def all_registered(self) -> bool:
        return self.registered.issuperset(self.tunnel_ids)

    def statistics(self) -> SessionStatistics:
        return SessionStatistics(len(self.connection.handlers), self.connection.rtt)

    def listener(self) -> TunnelListener:
        """The picows listener factory of this session's WebSocket."""
        return TunnelListener(self.connection)

    async def wait_closed(self) -> str:
        """Until the connection has closed: why. Cancelling this leaves the connection be."""
        return await asyncio.shield(self.closed)

    async def drain(self, reason: str, drain_timeout: float, cut: asyncio.Event) -> str:
        """GOAWAY NO_ERROR with the connection kept: the gateway frees our names and opens
        no new stream, and ours may finish (docs/protocol.md §8, "A client leaving").
        Returns when none is left ("idle"), the connection ended first ("closed"),
        `drain_timeout` passed ("timeout") or `cut` was set ("signal"); `say_goodbye` then
        closes."""
        self.leaving = True
        self.connection.go_away(ErrorCode.NO_ERROR, reason)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + drain_timeout
        cutting = loop.create_task(cut.wait())
        try:
            while True:
                if not self.connection.mux.open_streams:
                    return "idle"  # (the gateway may have closed the connection since)
                if self.closed.done():
                    return "closed"
                if cut.is_set():
                    return "signal"
                left = deadline - loop.time()
                if left <= 0:
                    return "timeout"
                # Woken by the connection's end or the second signal; else a look every
                # interval for the last stream's end.
                wait = min(left, limits.CLIENT_DRAIN_CHECK_INTERVAL)
                woken: set[asyncio.Future[Any]] = {self.closed, cutting}
                await asyncio.wait(woken, timeout=wait)
        finally:
            cutting.cancel()

    async def say_goodbye(self, reason: str) -> None:
        """GOAWAY NO_ERROR (unless `drain` said it), so the gateway frees our names at
        once, and the WebSocket close, which cuts off the streams still open; the socket
        is dropped if that has not gone out within GOODBYE_TIMEOUT."""
        self._leave(reason)
        _, pending = await asyncio.wait({self.closed}, timeout=limits.GOODBYE_TIMEOUT)
        if pending:
            self.connection.abort()

    def _leave(self, reason: str) -> None:
        self.leaving = True
        self.connection.close(ErrorCode.NO_ERROR, reason)

    # --- SessionHooks ---------------------------------------------------------------
    def on_stream_opened(self, stream_id: int, metadata: bytes) -> StreamHandler | None:
        if self.leaving:
            return None
        return self.owner.open_relay(self.connection, stream_id, metadata)

    def on_control(self, message: ControlMessage) -> None:
        if self.leaving:  # e.g. the rest of the batch that carried a rejection
            return
        if isinstance(message, Registered) and message.id in self.tunnel_ids:
            self.registered.add(message.id)
            self.owner.on_registered(message)
            if self.all_registered:
                self.connection.ping()  # the round-trip time now, not a heartbeat later
        elif isinstance(message, Rejected) and message.reason in RETRIED_REJECTIONS:
            self.retry = f"{message.message} ({message.reason.value})"
            self._leave(message.reason.value)
        elif isinstance(message, Rejected):
            self.rejected = True
            self.owner.on_rejected(message)
            self._leave("rejected")

    def on_go_away(self, code: int, reason: str) -> None:
        if self.leaving:  # e.g. the gateway closing after it rejected our tunnels
            return
        text = reason or code_name(code)
        self.owner.on_gateway_goodbye(text)
        if code in _FINAL_CLOSES:
            self.final_close = text

    def on_closed(self, end: ConnectionEnd) -> None:
        if not self.closed.done():
            self.closed.set_result(end.reason)
