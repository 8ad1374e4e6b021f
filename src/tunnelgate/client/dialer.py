"""Streams to local relays: which tunnel a stream is for, and the local connection it needs.

For each stream the gateway opens, the dialer reads its OPEN metadata and checks that the
stream's kind is the one its tunnel carries (HTTP on http tunnels, TCP on tcp, TLS on tls;
anything else is refused). An HTTP stream gets a `LocalRelay` with a pooled keep-alive
connection to the local app, or a new one; a TCP or TLS stream a `RawRelay` with a new
connection of its own. Connects run as tasks of a TaskGroup that lives exactly as long as
one tunnel connection (`serving()`): when the connection ends, the ones still trying are
cancelled and awaited, so no task outlives the connection whose streams it served.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Final, Protocol, TypeVar

from tunnelgate import limits
from tunnelgate.config import TunnelSpec
from tunnelgate.errors import RemoteProtocolError
from tunnelgate.logs import EventLog
from tunnelgate.proto.codes import StreamKind
from tunnelgate.proto.messages import OpenInfo

from .raw import ConnectionSink, RawConnection, RawRelay
from .upstream import LocalConnection, LocalPool, LocalRelay, RequestSink, StreamTarget

log = EventLog("tunnelgate.client")
P = TypeVar("P", bound=asyncio.Protocol)
# The kind of stream each tunnel protocol carries (docs/protocol.md §7).
_KIND: Final = {"http": StreamKind.HTTP, "tcp": StreamKind.TCP, "tls": StreamKind.TLS}


class Connect(Protocol):
    """Opens a connection to a tunnel's local service with the protocol object `factory`
    makes, and returns that object; raises OSError or TimeoutError on failure."""

    def __call__(self, spec: TunnelSpec, factory: Callable[[], P]) -> Awaitable[P]: ...


class Sink(RequestSink, ConnectionSink, Protocol):
    """Where relays report (the client's Output): requests and raw connections."""


class _Dialing(Protocol):
    """What the connect loop needs of a relay waiting for its local connection."""

    @property
    def done(self) -> bool: ...
    def fail_connect(self) -> None: ...


class LocalDialer:
    def __init__(
        self,
        specs: Mapping[int, TunnelSpec],
        pools: Mapping[int, LocalPool],
        sink: Sink,
        *,
        connect: Connect | None = None,
        retry_for: float = limits.LOCAL_CONNECT_RETRY,
    ) -> None:
        """`connect` opens a local connection (TCP, or TLS for an https:// local app, by
        default); refused connections are retried for `retry_for` seconds."""
        self.specs = specs
        self.pools = pools
        self.sink = sink
        self._connect: Connect = self._connect_tcp if connect is None else connect
        self._retry_for = retry_for
        self._group: asyncio.TaskGroup | None = None
        self._connecting: set[asyncio.Task[None]] = set()

    def __repr__(self) -> str:
        state = "serving" if self._group is not None else "idle"
        return f"<LocalDialer {state} connecting={len(self._connecting)}>"

    @contextlib.asynccontextmanager
    async def serving(self) -> AsyncIterator[None]:
        """The life of one tunnel connection: streams get relays only inside it, and on
        the way out the connects still pending are cancelled and awaited."""
        async with asyncio.TaskGroup() as group:
            self._group = group
            try:
                yield
            finally:
                self._group = None
                for task in self._connecting:
                    task.cancel()

    def open_relay(
        self, target: StreamTarget, stream_id: int, metadata: bytes
    ) -> LocalRelay | RawRelay | None:
        """The relay for a new stream; None refuses it (REFUSED_STREAM): bad metadata, an
        unknown tunnel or a kind of stream the tunnel does not carry."""
        group = self._group
        if group is None:
            return None
        try:
            info = OpenInfo.decode(metadata)
        except RemoteProtocolError:
            return None
        spec = self.specs.get(info.tunnel_id)
        if spec is None or info.kind is not _KIND[spec.protocol]:
            return None
        if info.kind is not StreamKind.HTTP:
            raw = RawRelay(target, stream_id, info, spec, self.sink)
            # Its connection attaches itself (RawConnection.connection_made).
            self._start(
                raw, spec, functools.partial(self._connect, spec, lambda: RawConnection(raw))
            )
            return raw
        pool = self.pools[info.tunnel_id]
        relay = LocalRelay(target, stream_id, info, spec, pool, self.sink)
        local = pool.take()
        if local is not None:
            relay.attach(local)
        else:
            self._start(relay, spec, functools.partial(self._attach_new, relay, spec, pool))
        return relay

    def _start(
        self, relay: _Dialing, spec: TunnelSpec, connect: Callable[[], Awaitable[object]]
    ) -> None:
        assert self._group is not None
        task = self._group.create_task(self._dial(relay, spec, connect))
        self._connecting.add(task)
        task.add_done_callback(self._connecting.discard)

    async def _attach_new(self, relay: LocalRelay, spec: TunnelSpec, pool: LocalPool) -> None:
        relay.attach(await self._connect(spec, lambda: LocalConnection(pool)))

    async def _dial(
        self, relay: _Dialing, spec: TunnelSpec, connect: Callable[[], Awaitable[object]]
    ) -> None:
        """Connect for `relay`; a refused connection is retried briefly (dev servers
        restart), then the stream is reset (CONNECT_ERROR): the gateway answers 502, or
        closes the public TCP connection."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._retry_for
        try:
            while not relay.done:
                try:
                    await connect()
                except (OSError, TimeoutError):
                    if loop.time() >= deadline:
                        relay.fail_connect()
                        return
                    await asyncio.sleep(limits.LOCAL_CONNECT_RETRY_INTERVAL)
                    continue
                return
        except Exception:  # the root of this task: a bug fails this stream only
            log.exception("local_connect_failed", tunnel=spec.name)
            relay.fail_connect()

    async def _connect_tcp(self, spec: TunnelSpec, factory: Callable[[], P]) -> P:
        loop = asyncio.get_running_loop()
        tls = self._local_tls if spec.local_scheme == "https" else None
        async with asyncio.timeout(limits.LOCAL_CONNECT_TIMEOUT):
            _, local = await loop.create_connection(
                factory,
                spec.local_host,
                spec.local_port,
                ssl=tls,
                server_hostname=spec.local_host if tls is not None else None,
            )
        return local

    @functools.cached_property
    def _local_tls(self) -> ssl.SSLContext:
        """TLS to an https:// local app. Not verified, as ngrok does not: a local dev
        server's certificate is self-signed or made for another name, and the hop never
        leaves this machine."""
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        return context
