"""TCP tunnels: a public port per tunnel, each accepted connection relayed as one stream.

`TcpPorts` listens on the ports tunnels were given (`--tcp-ports LO-HI` on `--tcp-bind`):
it opens a port's listener when a tunnel takes the port and closes it when the tunnel ends
or drops (so during the reconnect grace new connections are refused by the kernel at once,
not left hanging), and opens it again when the owner takes the port back. Which tunnel owns
a port is the registry's business (leases keyed `port:N`); this is the node-local side.

`TcpPublic` is one public connection: it takes its place under the connection caps, opens a
stream of kind TCP on the tunnel, and relays bytes both ways through the one raw pipe
(transport/pipe.py), half-closes and resets included. One log line when it ends.

In cluster mode a node also listens on the ports other nodes' tunnels hold (`follow`, kept
up to date by port_follow.py), and hands each connection to one of them to the cluster
(`TcpForwarder`), which relays it to that node; the node that has the tunnel takes it as its
own (`adopt`).
"""

from __future__ import annotations

import asyncio
import random
import time
from typing import Protocol, cast

from tunnelgate import limits
from tunnelgate.errors import LocalProtocolError
from tunnelgate.logs import EventLog
from tunnelgate.proto.codes import ErrorCode, StreamKind
from tunnelgate.proto.messages import OpenInfo
from tunnelgate.transport.deadlines import Deadlines
from tunnelgate.transport.pipe import Pipe
from tunnelgate.transport.reset import abort_with_reset

from .caps import ConnectionCaps
from .counters import RawCounters
from .routes import Route

log = EventLog("tunnelgate.gateway")


class TcpForwarder(Protocol):
    """Sends a connection to a port another node holds to that node (cluster.py); it
    answers with the connection's `cluster_*` methods."""

    def forward_tcp(self, public: TcpPublic, port: int, client: str) -> None: ...


class TcpServices(Protocol):
    """What TCP tunnels need of the gateway; built by app.py."""

    @property
    def caps(self) -> ConnectionCaps: ...
    @property
    def deadlines(self) -> Deadlines: ...
    @property
    def raw_counters(self) -> RawCounters: ...


def ephemeral_port_range() -> tuple[int, int]:
    """The kernel's range of local ports for outgoing connections (Linux; else IANA's).
    A tunnel port inside it may be taken by some outgoing connection while its tunnel is
    away (the listener is closed during the grace), and its owner could not listen again."""
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as file:
            low, high = file.read().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 49152, 65535


def port_key(port: int) -> str:
    """The registry key of a TCP port's lease."""
    return f"port:{port}"


class TcpPorts:
    def __init__(
        self, services: TcpServices, bind: str, low: int, high: int, *, reuse_port: bool = False
    ) -> None:
        self._services = services
        self.bind = bind
        self.low = low
        self.high = high
        # --workers N: SO_REUSEPORT, so the other workers can listen on a port too (to
        # forward its connections to the worker with the tunnel).
        self.reuse_port = reuse_port
        self._servers: dict[int, asyncio.Server] = {}
        self._routes: dict[int, Route] = {}
        self.forwarder: TcpForwarder | None = None  # cluster mode
        self.followed: set[int] = set()  # ports listened on for tunnels of other nodes

    def __repr__(self) -> str:
        return f"<TcpPorts {self.bind}:{self.low}-{self.high} open={len(self._servers)}>"

    def in_range(self, port: int) -> bool:
        return self.low <= port <= self.high

    def candidates(self) -> list[int]:
        """Ports to try for a tunnel that asked for none, in random order (a sample of a
        large range: TCP_PORT_TRIES)."""
        ports = range(self.low, self.high + 1)
        return random.sample(ports, min(len(ports), limits.TCP_PORT_TRIES))

    def route(self, port: int) -> Route | None:
        return self._routes.get(port)

    def routes(self) -> list[Route]:
        return list(self._routes.values())

    async def open(self, route: Route) -> OSError | None:
        """Start listening on `route.port` for it; the error if the port cannot be bound
        (another program has it)."""
        port = route.port
        self._routes[port] = route
        self.followed.discard(port)  # ours now
        if port in self._servers:
            return None  # the owner took a held port back, or it was followed, before closing
        loop = asyncio.get_running_loop()
        try:
            self._servers[port] = await loop.create_server(
                lambda: TcpPublic(self._services, self, port),
                self.bind,
                port,
                backlog=limits.TCP_BACKLOG,
                reuse_address=True,
                reuse_port=self.reuse_port,
            )
        except OSError as exc:
            self._routes.pop(port, None)
            return exc
        return None

    def close(self, route: Route) -> None:
        """`route` no longer serves its port: stop listening (open connections carry on
        until they end; the stream layer tears them down with the tunnel)."""
        port = route.port
        if self._routes.get(port) is not route:
            return  # the owner already took it back on a new connection
        del self._routes[port]
        server = self._servers.pop(port, None)
        if server is not None:
            server.close()

    def close_all(self) -> None:
        for server in self._servers.values():
            server.close()
        self._servers.clear()
        self._routes.clear()
        self.followed.clear()

    # --- cluster mode ------------------------------------------------------------------
    async def follow(self, port: int) -> OSError | None:
        """Listen on `port`, which a tunnel on another node holds, to forward there."""
        if port in self._servers:
            if port not in self._routes:
                self.followed.add(port)
            return None
        loop = asyncio.get_running_loop()
        try:
            server = await loop.create_server(
                lambda: TcpPublic(self._services, self, port),
                self.bind,
                port,
                backlog=limits.TCP_BACKLOG,
                reuse_address=True,
                reuse_port=self.reuse_port,  # --workers: the holder's worker listens there too
            )
        except OSError as exc:
            return exc
        if port in self._servers:  # a local tunnel took it meanwhile: its listener serves
            server.close()
            return None
        self._servers[port] = server
        self.followed.add(port)
        return None

    def unfollow(self, port: int) -> None:
        """No other node holds `port` now: stop listening, unless a tunnel here has it."""
        if port not in self.followed:
            return
        self.followed.discard(port)
        if port not in self._routes:
            server = self._servers.pop(port, None)
            if server is not None:
                server.close()

    def adopt(
        self, transport: asyncio.Transport, port: int, client: str, via: str, first: bytes
    ) -> None:
        """A connection another node forwarded for `port`: served as one accepted here."""
        public = TcpPublic(self._services, self, port)
        public.via = via
        transport.set_protocol(public)
        public.adopt(transport, client, first)


class RawPublic(asyncio.Protocol):
    """A public connection relayed raw on one stream: the socket end of a pipe, and its
    stream's handler. A TCP tunnel's connections (below), and TLS passthrough
    connections, which the HTTPS listener hands over after reading their ClientHello."""

    def __init__(self, services: TcpServices) -> None:
        self._services = services
        self.transport: asyncio.Transport | None = None
        self.pipe: Pipe | None = None
        self.write_paused = False
        self.port = 0
        self._slot: str | None = None
        self._client = "?"
        self._tunnel = ""
        self._route: Route | None = None  # its counters are the admin API's per tunnel
        self._started = time.monotonic()
        self._cut = "reset"  # how a reset came, for the log: which side cut the connection
        self.via: str | None = None  # the cluster node that forwarded it here, if any

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self._client} -> {self._tunnel} {self.pipe!r}>"

    def start(
        self,
        transport: asyncio.Transport,
        route: Route,
        kind: StreamKind,
        slot: str | None,
        client: str,
        first: bytes = b"",
    ) -> None:
        """Relay `transport` on a new stream of `route`'s tunnel; `first`: bytes already
        read from it (a ClientHello), sent ahead of the rest. `slot` is this connection's
        place under the caps, released when it ends."""
        self.transport, self._slot, self._client = transport, slot, client
        if route.target.closed:
            self._end_now("tunnel_offline")
            return
        transport.set_write_buffer_limits(limits.WRITE_HIGH_WATER, limits.WRITE_LOW_WATER)
        self._tunnel = route.name
        info = OpenInfo(route.tunnel_id, client, kind)
        try:
            sid = route.target.open_stream(info.encode(), self)
        except LocalProtocolError:
            self._end_now("tunnel_busy")
            return
        self.pipe = pipe = Pipe(route.target, sid, self, self, reset_code=ErrorCode.CANCEL)
        self._route = route
        route.requests += 1
        if first:
            pipe.on_socket_data(first)

    def data_received(self, data: bytes) -> None:
        if self.pipe is not None:
            self.pipe.on_socket_data(data)

    def eof_received(self) -> bool:
        if self.pipe is not None:
            self.pipe.on_socket_eof()
            return True  # half-close: the other direction may still flow
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        if self.pipe is not None:
            if exc is not None:
                self._cut = "client_reset"
            self.pipe.on_socket_lost(exc)
        self.transport = None
        slot, self._slot = self._slot, None
        if slot is not None:
            self._services.caps.release(slot)

    def pause_writing(self) -> None:
        self.write_paused = True

    def resume_writing(self) -> None:
        self.write_paused = False
        if self.pipe is not None:
            self.pipe.on_socket_drained()

    # --- the stream's handler: everything goes to the pipe ---------------------------------
    def on_data(self, data: bytes) -> None:
        if self.pipe is not None:
            self.pipe.on_data(data)

    def on_end(self) -> None:
        if self.pipe is not None:
            self.pipe.on_end()

    def on_reset(self, code: int) -> None:
        if self.pipe is not None:
            # CONNECT_ERROR: the client could not reach the local service, or it reset;
            # anything else: the tunnel went away (or its client gave up on the stream).
            self._cut = "local_error" if code == ErrorCode.CONNECT_ERROR else "tunnel_reset"
            self.pipe.on_reset(code)

    def on_writable(self) -> None:
        if self.pipe is not None:
            self.pipe.on_writable()

    # --- transport.pipe.PipeSocket ----------------------------------------------------
    def write(self, data: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    def write_eof(self) -> None:
        if self.transport is not None and self.transport.can_write_eof():
            self.transport.write_eof()

    def can_write_eof(self) -> bool:
        return self.transport is not None and self.transport.can_write_eof()

    def pause_reading(self) -> None:
        if self.transport is not None:
            self.transport.pause_reading()

    def resume_reading(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.resume_reading()

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def abort(self) -> None:
        """A reset, so the public client can tell the connection was cut, not ended."""
        transport = self.transport
        if transport is not None and not transport.is_closing():
            abort_with_reset(transport)

    # --- transport.pipe.PipeOwner --------------------------------------------------------
    def pipe_finished(self, aborted: bool) -> None:
        pipe = self.pipe
        assert pipe is not None
        if self._route is not None:
            self._route.bytes_in += pipe.bytes_from_socket
            self._route.bytes_out += pipe.bytes_from_stream
        self._log(
            self._cut if aborted else "closed", pipe.bytes_from_socket, pipe.bytes_from_stream
        )

    def _end_now(self, why: str) -> None:
        self.abort()
        self._log(why, 0, 0)

    def _log(self, ended: str, bytes_in: int, bytes_out: int) -> None:
        self._services.raw_counters.connection(not self.port, ended, bytes_in, bytes_out)
        log.info(
            "tcp_connection" if self.port else "tls_connection",
            port=self.port or None,
            tunnel=self._tunnel or None,
            client=self._client,
            bytes_in=bytes_in,
            bytes_out=bytes_out,
            duration_ms=round((time.monotonic() - self._started) * 1000, 2),
            ended=ended,
            **({} if self.via is None else {"via": self.via}),
        )


class TcpPublic(RawPublic):
    """One connection to a TCP tunnel's public port."""

    def __init__(self, services: TcpServices, ports: TcpPorts, port: int) -> None:
        super().__init__(services)
        self._ports = ports
        self.port = port
        self._forwarding = False  # the cluster is finding the port's node
        self._ahead = b""  # what the client sent meanwhile (one read: reading pauses)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport = cast(asyncio.Transport, transport)
        peer = transport.get_extra_info("peername")
        self.adopt(transport, f"{peer[0]}:{peer[1]}" if peer else "?")

    def adopt(self, transport: asyncio.Transport, client: str, first: bytes = b"") -> None:
        """Serve `transport` for `client` (accepted here, or forwarded by another node
        with `first`, bytes the client sent there)."""
        self.transport = transport
        self._client = client
        ip = client.rpartition(":")[0] or client
        sock = transport.get_extra_info("socket")
        fd: int = sock.fileno() if sock is not None else -1
        slot = self._services.caps.admit(ip, fd, client)
        if slot is None:
            transport.abort()
            return
        self._slot = slot
        route = self._ports.route(self.port)
        forwarder = self._ports.forwarder
        if route is None and self.via is None and forwarder is not None:
            if self.port in self._ports.followed:
                # Reading pauses at the first read (data_received): uvloop starts reading
                # after connection_made whatever it asked.
                self._forwarding = True
                forwarder.forward_tcp(self, self.port, client)
                return
        if route is None:
            self._end_now("tunnel_offline")
            return
        self._slot = None
        self.start(transport, route, StreamKind.TCP, slot, client, first)

    def data_received(self, data: bytes) -> None:
        if self._forwarding:
            self._ahead += data
            if self.transport is not None:
                self.transport.pause_reading()  # until the link is up
            return
        super().data_received(data)

    # --- cluster.Handover: the port's tunnel is on another node -----------------------
    def cluster_local(self, name: str) -> None:
        """The port is not held elsewhere after all (it moved): served or refused here."""
        self._forwarding = False
        transport, slot = self.transport, self._slot
        if transport is None or transport.is_closing():
            return
        route = self._ports.route(self.port)
        if route is None:
            self._end_now("tunnel_offline")
            return
        self._slot = None
        ahead, self._ahead = self._ahead, b""
        transport.resume_reading()
        self.start(transport, route, StreamKind.TCP, slot, self._client, ahead)

    def cluster_answer(self, status: int, code: str, message: str) -> None:
        self._forwarding = False
        if self.transport is not None and not self.transport.is_closing():
            self._end_now(code)

    def cluster_handover(self) -> tuple[asyncio.Transport, str | None, bytes] | None:
        transport, slot = self.transport, self._slot
        if transport is None or transport.is_closing():
            return None
        self.transport, self._slot = None, None
        self._forwarding = False
        ahead, self._ahead = self._ahead, b""
        return transport, slot, ahead
