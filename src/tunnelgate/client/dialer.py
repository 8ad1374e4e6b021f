"""Streams to local relays: which tunnel a stream is for, and the local connection it needs.

For each stream the gateway opens, the dialer reads its OPEN metadata, makes a
`LocalRelay`, and gives it a pooled keep-alive connection to the local app or connects
one. Connects run as tasks of a TaskGroup that lives exactly as long as one tunnel
connection (`serving()`): when the connection ends, the ones still trying are cancelled
and awaited, so no task outlives the connection whose streams it served.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping

from tunnelgate import limits
from tunnelgate.config import TunnelSpec
from tunnelgate.errors import RemoteProtocolError
from tunnelgate.logs import EventLog
from tunnelgate.proto.codes import StreamKind
from tunnelgate.proto.messages import OpenInfo

from .upstream import LocalConnection, LocalPool, LocalRelay, RequestSink, StreamTarget

log = EventLog("tunnelgate.client")
# Opens a connection to a tunnel's local app; raises OSError or TimeoutError on failure.
Connect = Callable[[TunnelSpec, LocalPool], Awaitable[LocalConnection]]


class LocalDialer:
    def __init__(
        self,
        specs: Mapping[int, TunnelSpec],
        pools: Mapping[int, LocalPool],
        sink: RequestSink,
        *,
        connect: Connect | None = None,
        retry_for: float = limits.LOCAL_CONNECT_RETRY,
    ) -> None:
        """`connect` opens a local connection (TCP, or TLS for https://, by default);
        refused connections are retried for `retry_for` seconds."""
        self.specs = specs
        self.pools = pools
        self.sink = sink
        self._connect = self._connect_tcp if connect is None else connect
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
    ) -> LocalRelay | None:
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
        if spec is None or info.kind is not StreamKind.HTTP:
            return None  # only http tunnels so far
        pool = self.pools[info.tunnel_id]
        relay = LocalRelay(target, stream_id, info, spec, pool, self.sink)
        local = pool.take()
        if local is not None:
            relay.attach(local)
        else:
            task = group.create_task(self._dial(relay, spec, pool))
            self._connecting.add(task)
            task.add_done_callback(self._connecting.discard)
        return relay

    async def _dial(self, relay: LocalRelay, spec: TunnelSpec, pool: LocalPool) -> None:
        """Connect for `relay`; a refused connection is retried briefly (dev servers
        restart), then the stream is reset (CONNECT_ERROR) and the gateway answers 502."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._retry_for
        try:
            while not relay.done:
                try:
                    local = await self._connect(spec, pool)
                except (OSError, TimeoutError):
                    if loop.time() >= deadline:
                        relay.fail_connect()
                        return
                    await asyncio.sleep(limits.LOCAL_CONNECT_RETRY_INTERVAL)
                    continue
                relay.attach(local)
                return
        except Exception:  # the root of this task: a bug fails this stream only
            log.exception("local_connect_failed", tunnel=spec.name)
            relay.fail_connect()

    async def _connect_tcp(self, spec: TunnelSpec, pool: LocalPool) -> LocalConnection:
        loop = asyncio.get_running_loop()
        tls = self._local_tls if spec.local_scheme == "https" else None
        async with asyncio.timeout(limits.LOCAL_CONNECT_TIMEOUT):
            _, local = await loop.create_connection(
                lambda: LocalConnection(pool),
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
