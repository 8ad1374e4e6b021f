"""The composition root: every part of the gateway is built and wired here, and nowhere else.

    Gateway(config)             the parts (EdgeServices, SessionServices), one of each
    await gateway.serve(stop)   listeners up until `stop`, then drain and shut down in order
    run_gateway(config)         the `tunnelgate server` process: logging, signals, loop

Where a new part plugs in: a listener is one more `create_server` in `_listen` (with its
protocol, or one that picks by the first bytes as `tls_front.TlsFront` does); an
authenticator joins the chain `_authenticator` builds (local checks first); a registry
backend replaces `MemoryRegistry` in `Gateway.__init__` (it must pass
tests/gateway/registry_contract.py), as `RedisRegistry` does in cluster mode (--redis):
then this node's name is its --advertise address.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import ssl
import sys
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import uvloop

from tunnelgate import limits
from tunnelgate.allocator import trim, tune_allocator
from tunnelgate.config import GatewayConfig, auth_methods, read_tokens_file, token_digest
from tunnelgate.config.parsers import format_address
from tunnelgate.errors import ConfigError
from tunnelgate.logs import EventLog, RateLimitedLog, configure_logging
from tunnelgate.proto.codes import ErrorCode, StreamKind
from tunnelgate.proto.link import LinkVerifier
from tunnelgate.transport.deadlines import Deadlines

from .acme import LETS_ENCRYPT, AcmeManager
from .admin import AdminConnection
from .auth import Anonymous, AuthChain, Authenticator, StaticTokens
from .buffers import BufferBudget
from .caps import ConnectionCaps, raise_open_file_limit
from .certs import CertificateSource, CertificateStore
from .cluster import Cluster
from .connect import TunnelAcceptor
from .counters import RawCounters, RequestCounters, TunnelCounters
from .drain import drain
from .edge import PublicConnection
from .hosts import HostRouter
from .jwt_auth import JwtTokens
from .jwt_keys import load_keys
from .link_in import Adoption, LinkIntake, LinkReceiver
from .link_out import ClusterCounters
from .metrics import make_registry
from .port_follow import PortFollower
from .ratelimit import FailedAuthLimiter
from .registry import Lease, MemoryRegistry, Registry
from .reservations import Reservations
from .routes import Route, RouteTable
from .selfsigned import default_state_dir
from .state import GatewayState
from .tcp import TcpPorts, ephemeral_port_range
from .tls_front import HandshakeCounters, TlsFront, in_domain

if TYPE_CHECKING:
    from .redis_registry import RedisRegistry

log = EventLog("tunnelgate.gateway")
warn = RateLimitedLog(log)


class Gateway:
    """The gateway's parts. Each consumer sees only the Protocol it declares
    (edge.EdgeServices, session.SessionServices); this object satisfies them all."""

    def __init__(self, config: GatewayConfig, open_files: int) -> None:
        self.config = config
        # In a cluster, the address other gateways reach this one at: a lease's node says
        # where its tunnel is.
        if config.advertise is not None:
            self.node = format_address(config.advertise)
        else:
            self.node = f"{socket.gethostname()}:{os.getpid()}"
        max_connections = config.max_connections or limits.default_max_connections(open_files)
        self.caps = ConnectionCaps(max_connections, config.max_connections_per_address, open_files)
        self.live = GatewayState()
        self.buffers = BufferBudget(
            limits.MAX_HELD_RESPONSE_BYTES,
            self._set_pressure,
            share=limits.MAX_HELD_RESPONSE_BYTES_PER_ADDRESS,
        )
        self.deadlines = Deadlines()
        https_port = config.https[1] if config.https else None
        self.hosts = HostRouter(config.domain, config.http[1] if config.http else None, https_port)
        self.acme = self._acme() if config.acme_email else None
        policy = self._acme_policy if self.acme is not None else None
        self.certificates = (
            CertificateStore(self._certificate_source(), policy=policy) if config.https else None
        )
        self.handshakes = HandshakeCounters()
        self.counters = RequestCounters()
        self.tunnel_counters = TunnelCounters()
        self.raw_counters = RawCounters()
        self.routes = RouteTable()
        self.cluster = self._cluster_registry() if config.redis is not None else None
        self.registry: Registry = self.cluster if self.cluster is not None else MemoryRegistry()
        # --workers N: every worker binds the public ports (and TCP tunnel ports) with
        # SO_REUSEPORT, and the kernel spreads new connections among them.
        self.shares_listeners = config.workers > 1
        ports = config.tcp_ports
        self.tcp = (
            TcpPorts(self, config.tcp_bind, ports[0], ports[1], reuse_port=self.shares_listeners)
            if ports
            else None
        )
        self.forwarder: Cluster | None = None
        if config.cluster_secret is not None and config.advertise is not None:
            secret = config.cluster_secret.encode()
            self.forwarder = Cluster(self, secret, config.grace_hold)
            if self.tcp is not None:
                self.tcp.forwarder = self.forwarder
        failures = FailedAuthLimiter(config.auth_fail_rate)  # /connect's and the controller's
        self.static_tokens = _static_tokens(config)
        self.auth = _authenticator(config, failures, self.static_tokens)
        self.tunnels = TunnelAcceptor(config, self.auth, failures, self, self.live)
        self.open_files = open_files

    def _cluster_registry(self) -> RedisRegistry:
        """The shared registry. Names of a node that dies are free after 1.5 x its
        liveness, the reconnect grace or LEASE_LIVENESS_MIN if longer (docs/cluster.md)."""
        # Imported here: redis.asyncio costs a gateway that does not use it 150 ms at start.
        from .redis_registry import RedisRegistry

        config = self.config
        assert config.redis is not None
        liveness = max(config.reconnect_grace, limits.LEASE_LIVENESS_MIN)
        return RedisRegistry(config.redis, self.node, liveness, on_lost=self._lease_lost)

    def _lease_lost(self, lease: Lease) -> None:
        """Another node took `lease`'s name while this one could not reach Redis: its
        tunnel here is closed (KICKED: the client is told why and does not come back
        for a name that is someone else's now)."""
        route: Route | None = None
        if lease.name.startswith("port:") and self.tcp is not None:
            route = self.tcp.route(int(lease.name.removeprefix("port:")))
        else:
            found = self.routes.get(lease.name, time.monotonic())
            route = found if isinstance(found, Route) else None
        if route is not None and not route.target.closed:
            reason = f"lease lost: {lease.name!r} was taken on another gateway"
            route.target.close(ErrorCode.KICKED, reason)

    def _certificate_source(self) -> CertificateSource:
        config = self.config
        return CertificateSource(
            config.domain,
            Path(config.tls_cert) if config.tls_cert else None,
            Path(config.tls_key) if config.tls_key else None,
            Path(config.state_dir) if config.state_dir else None,
        )

    def _acme(self) -> AcmeManager:
        config = self.config
        assert config.acme_email is not None
        state_dir = Path(config.state_dir) if config.state_dir else default_state_dir()
        directory = config.acme_directory or LETS_ENCRYPT
        return AcmeManager(
            domain=config.domain, email=config.acme_email, directory=directory, state_dir=state_dir
        )

    def _acme_policy(self, server_name: str | None) -> ssl.SSLContext | None:
        """In the handshake: a host's own ACME certificate, once there (else the default).
        Certificates are asked for only for names a tunnel has: anyone can send any SNI,
        and each order spends the CA's rate limits."""
        acme = self.acme
        if acme is None or server_name is None:
            return None
        name = self.hosts.tunnel_name(server_name.encode())
        if name is None or self.routes.get(name, time.monotonic()) is None:
            return None
        acme.ensure(server_name)
        return acme.context_for(server_name)

    def prepare_certificate(self, name: str) -> None:
        """A tunnel registered `name`: with ACME, get its certificate before the first
        handshake needs it."""
        if self.acme is not None:
            self.acme.ensure(f"{name}.{self.config.domain}")

    # --- what the admin API and the metrics read -------------------------------------------
    @property
    def draining(self) -> bool:
        return self.live.draining

    def live_routes(self) -> Iterator[Route]:
        yield from self.routes.routes()
        if self.tcp is not None:
            yield from self.tcp.routes()

    def open_streams(self) -> int:
        return sum(session.open_streams() for session in self.live.sessions)

    @property
    def cluster_counters(self) -> ClusterCounters | None:
        return self.forwarder.counters if self.forwarder is not None else None

    def tunnel_connections(self) -> int:
        return len(self.live.sessions)

    def describe_tunnels(self) -> Iterator[dict[str, Any]]:
        for route in self.live_routes():
            yield {
                "name": None if route.kind is StreamKind.TCP else route.name,
                "port": route.port or None,
                "protocol": route.kind.name.lower(),
                "url": route.url,
                "account": route.principal,
                "client_addr": route.client_addr,
                "connected_since": datetime.fromtimestamp(route.connected_since, UTC).isoformat(),
                "requests": route.requests,
                "bytes_in": route.bytes_in,
                "bytes_out": route.bytes_out,
            }

    def kick(self, name: str, reason: str) -> bool:
        """Close the connection of the tunnel `name` (or TCP port) with GOAWAY KICKED: the
        client hears why and does not reconnect. Its other tunnels go with it."""
        route: Route | None = None
        if name.isdigit() and self.tcp is not None:
            route = self.tcp.route(int(name))
        else:
            found = self.routes.get(name, time.monotonic())
            route = found if isinstance(found, Route) else None
        if route is None or route.target.closed:
            return False
        route.target.close(ErrorCode.KICKED, reason)
        return True

    def reload(self) -> None:
        """SIGHUP: a new certificate for new handshakes (open connections keep theirs) and
        the tokens file read again for new registrations (tunnels up stay up). A broken
        file is refused with a log line, and what was loaded before stays."""
        log.info("reload")
        if self.certificates is not None:
            self.certificates.reload()
        if self.static_tokens is not None and self.config.tokens_file is not None:
            self._reload_tokens(self.static_tokens, self.config.tokens_file)

    def _reload_tokens(self, tokens: StaticTokens, path: str) -> None:
        """The tokens file again, with the --token values. Tunnels of a token no longer
        accepted are kept, as ngrok and frp keep sessions (they were authenticated when
        they connected; DELETE /api/tunnels/NAME closes one), and counted in the log line;
        once one drops, its token is refused and its name freed after the grace."""
        try:
            from_file = read_tokens_file(path)
        except ConfigError as exc:
            log.warning("tokens_reload_failed", error=str(exc), kept=len(tokens))
            return
        before = tokens.principals()
        tokens.replace((*map(token_digest, self.config.tokens), *from_file))
        removed = before - tokens.principals()
        kept = sum(1 for route in self.live_routes() if route.principal in removed)
        log.info(
            "tokens_reloaded",
            count=len(tokens),
            added=len(tokens.principals() - before),
            removed=len(removed),
            kept_tunnels_of_removed=kept,
        )

    def _set_pressure(self, on: bool) -> None:
        self.live.set_pressure(on)
        if on:
            warn.warning("buffer_pressure", held=self.buffers.held, limit=self.buffers.limit)
        else:
            log.info("buffer_pressure_over", held=self.buffers.held)

    async def serve(self, stop: asyncio.Event, ready: Callable[[], None] | None = None) -> None:
        """Run until `stop` is set, then drain and shut down in order. `ready` is called
        once every listener is up (a worker tells its supervisor: workers.py)."""
        if self.acme is not None:
            await self.acme.start()
        if self.cluster is not None:
            self.cluster.start()  # an unreachable Redis is logged and retried, not fatal
            log.info("cluster_joined", node=self.node, redis=self.cluster.public_url)
        try:
            servers, admin = await self._listen()
        except BaseException:
            # A listener that cannot bind: what start-up began must end here (the
            # cluster's tasks, its lease keeper), not be left to the loop's exit, which
            # cancels them mid-call to Redis: the process hung there 2 runs in 5.
            await self.live.aclose()
            await self.registry.aclose()
            if self.acme is not None:
                await self.acme.aclose()
            raise
        if ready is not None:
            ready()
        trimmer = asyncio.get_running_loop().create_task(self._trim_when_quiet())
        try:
            await stop.wait()
        finally:
            trimmer.cancel()
            await self._shut_down(servers, admin)

    def signalled(self, stop: asyncio.Event) -> None:
        """SIGTERM/SIGINT: the first starts the drain (`stop`), a second cuts it short."""
        if stop.is_set():
            log.info("drain_cut_short")
            self.live.cut_short()
        else:
            stop.set()

    async def _listen(self) -> tuple[list[asyncio.Server], asyncio.Server | None]:
        """The public listeners, and the admin one (open until the drain is over)."""
        config, loop = self.config, asyncio.get_running_loop()
        servers: list[asyncio.Server] = []
        admin: asyncio.Server | None = None
        if config.http is not None:
            host, port = config.http
            server = await loop.create_server(
                lambda: PublicConnection(self),
                host,
                port,
                backlog=4096,
                reuse_address=True,
                reuse_port=self.shares_listeners,
            )
            servers.append(server)
            bound = server.sockets[0].getsockname()
            log.info(
                "listening",
                listener="http",
                addr=f"{bound[0]}:{bound[1]}",
                domain=config.domain,
                auth=",".join(auth_methods(config)) or "anonymous",
                max_connections=self.caps.max_connections,
                max_connections_per_address=self.caps.max_per_address,
                open_files=self.open_files,
            )
        if config.https is not None and self.certificates is not None:
            store, policy = self.certificates, in_domain(config.domain)
            host, port = config.https
            server = await loop.create_server(
                lambda: TlsFront(self, store, self.handshakes, policy, self.forwarder),
                host,
                port,
                backlog=4096,
                reuse_address=True,
                reuse_port=self.shares_listeners,
            )
            servers.append(server)
            bound = server.sockets[0].getsockname()
            log.info("listening", listener="https", addr=f"{bound[0]}:{bound[1]}")
        if self.tcp is not None:
            tcp = self.tcp
            low, high = ephemeral_port_range()
            if tcp.low <= high and low <= tcp.high:
                log.warning(
                    "tcp_ports_in_ephemeral_range",
                    tcp_ports=f"{tcp.low}-{tcp.high}",
                    ephemeral=f"{low}-{high}",
                    message="an outgoing connection may take a tunnel's port while its tunnel "
                    "reconnects; choose --tcp-ports outside net.ipv4.ip_local_port_range",
                )
            log.info("listening", listener="tcp", addr=f"{tcp.bind}:{tcp.low}-{tcp.high}")
        if self.forwarder is not None:
            servers.append(await self._listen_for_links())
        if config.admin is not None:
            registry = make_registry(self, per_tunnel=config.metrics_per_tunnel)
            token = config.admin_token
            host, port = config.admin
            admin = await loop.create_server(
                lambda: AdminConnection(self, registry, token), host, port, reuse_address=True
            )
            bound = admin.sockets[0].getsockname()
            log.info("listening", listener="admin", addr=f"{bound[0]}:{bound[1]}")
        return servers, admin

    async def _listen_for_links(self) -> asyncio.Server:
        """The --advertise listener (link_in.py), and the TCP ports of other nodes."""
        config, loop, cluster = self.config, asyncio.get_running_loop(), self.forwarder
        assert config.advertise is not None
        assert config.cluster_secret is not None
        assert cluster is not None
        verifier = LinkVerifier(
            config.cluster_secret.encode(),
            window=limits.LINK_CLOCK_WINDOW,
            max_nonces=limits.MAX_LINK_NONCES,
        )
        store, tls = self.certificates, None
        if config.https is not None and store is not None:
            policy = in_domain(config.domain)

            def tls() -> TlsFront:
                assert store is not None
                return TlsFront(self, store, self.handshakes, policy, self.forwarder)

        adoption = Adoption(self, cluster.counters, tls, self.tcp)
        receiver = LinkReceiver(verifier, adoption, self.deadlines, cluster.counters)
        host, port = config.advertise
        server = await loop.create_server(
            lambda: LinkIntake(receiver), host, port, backlog=4096, reuse_address=True
        )
        if self.tcp is not None:
            follower = PortFollower(self.registry, self.tcp, self.node)
            cluster.ports_changed = follower.poke
            self.live.spawn(follower.run(), "port follower")
        if config.redis is not None:
            # Imported here, as the registry is: redis costs a gateway without it at start.
            from .owner_watch import watch_owners

            watch = watch_owners(config.redis, cluster.owner_changed, cluster.resync)
            self.live.spawn(watch, "owner watch")
        log.info("listening", listener="cluster", addr=self.node)
        return server

    async def _shut_down(self, servers: list[asyncio.Server], admin: asyncio.Server | None) -> None:
        """Stop accepting (the kernel refuses new connections from now on), drain what is
        open for --drain-timeout (drain.py), then stop."""
        for server in servers:
            server.close()
        if self.tcp is not None:
            self.tcp.close_all()
        if self.forwarder is not None:
            self.forwarder.drain()
        await drain(self.live, self.config.drain_timeout)
        if admin is not None:
            admin.close()
            servers.append(admin)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(limits.SHUTDOWN_TIMEOUT):
                for server in servers:
                    await server.wait_closed()
        await self.live.aclose()
        if self.acme is not None:
            await self.acme.aclose()
        await self.registry.aclose()
        await self.auth.aclose()
        self.deadlines.close()
        log.info("stopped")

    async def _trim_when_quiet(self) -> None:
        """Give free heap back to the kernel now and then, while no slow reader holds data
        (allocator.trim): after an attack or a burst, RSS goes back near its baseline."""
        while True:
            await asyncio.sleep(limits.TRIM_INTERVAL)  # a period, not a wait for something
            if not self.buffers.held:
                trim()


def _static_tokens(config: GatewayConfig) -> StaticTokens | None:
    """--token and --tokens-file, by digest; None when neither is given."""
    if not config.tokens and config.tokens_file is None:
        return None
    return StaticTokens((*map(token_digest, config.tokens), *config.file_token_digests))


def _authenticator(
    config: GatewayConfig, failures: FailedAuthLimiter, static: StaticTokens | None
) -> Authenticator:
    """The configured methods in order, local checks first: static tokens (a constant-time
    compare), JWTs (a signature), then the controller (a network call, at each
    registration). The first that knows a token decides, so a token a local method
    accepts is never sent to the controller, and works while it is down; the names the
    controller reserved for its accounts bind every identity. With none configured,
    anonymous (loopback-only unless --allow-anonymous: config checks that).
    Raises ConfigError for a JWT key that cannot be used."""
    methods: list[Authenticator] = []
    if static is not None:
        methods.append(static)
    if config.jwt_secret is not None or config.jwt_public_key is not None:
        keys = load_keys(config.jwt_secret, config.jwt_public_key)
        methods.append(JwtTokens(keys, audience=config.jwt_audience, issuer=config.jwt_issuer))
    if config.controller is None:
        return AuthChain(methods) if methods else Anonymous()
    # Imported here: aiohttp is 40 % of the gateway's import time (180 ms), paid only by a
    # gateway that calls a controller.
    from .controller import ControllerClient
    from .controller_auth import ControllerAuth, ControllerPolicy

    reservations = Reservations()
    client = ControllerClient(config.controller, config.controller_timeout)
    policy = ControllerPolicy(cache_ttl=config.controller_cache_ttl)
    methods.append(ControllerAuth(client, reservations, failures, policy))
    return AuthChain(methods, check=reservations)


def run_gateway(
    config: GatewayConfig, *, worker: int | None = None, ready: Callable[[], None] | None = None
) -> int:
    """The gateway in this process, until it is signalled and has drained: the exit status.
    `worker`: this process is worker i of a supervisor (workers.py): each log line says
    so; `ready` is called once it listens."""
    configure_logging(config.log_format, context=None if worker is None else {"worker": worker})
    tune_allocator()
    open_files = raise_open_file_limit()

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        loop.set_exception_handler(_quiet_tls_failures)
        gateway = Gateway(config, open_files)
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, gateway.signalled, stop)
        loop.add_signal_handler(signal.SIGHUP, gateway.reload)
        await gateway.serve(stop, ready)

    try:
        uvloop.run(main())
    except ConfigError as exc:  # a certificate that cannot be served, say
        print(f"tunnelgate: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"tunnelgate: cannot start: {exc}", file=sys.stderr)
        return 1
    return 0


def _quiet_tls_failures(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
    """uvloop reports every failed TLS handshake as an error with a traceback; the HTTPS
    front end logs those itself, with the peer and reason, rate-limited (a client that
    sends junk must not write a traceback per connection). Everything else as usual."""
    message = str(context.get("message", ""))
    if message.startswith("SSL handshake failed"):
        return
    loop.default_exception_handler(context)
