"""Gateway start-up and shutdown, and the state every public connection shares."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
from collections import Counter

import uvloop

from tunnelgate import limits
from tunnelgate.allocator import trim, tune_allocator
from tunnelgate.config import GatewayConfig
from tunnelgate.logs import EventLog, RateLimitedLog, configure_logging
from tunnelgate.proto.codes import ErrorCode
from tunnelgate.transport.deadlines import Deadlines

from .auth import TokenAuth
from .buffers import BufferBudget
from .caps import ConnectionCaps, raise_open_file_limit
from .ratelimit import FailedAuthLimiter
from .registry import MemoryRegistry, Tunnel

log = EventLog("tunnelgate.gateway")
warn = RateLimitedLog(log)


class Gateway:
    """Shared state: configuration, who may connect, and who owns which name."""

    def __init__(self, config: GatewayConfig, open_files: int) -> None:
        self.config = config
        max_connections = config.max_connections or limits.default_max_connections(open_files)
        self.caps = ConnectionCaps(max_connections, config.max_connections_per_address, open_files)
        self.registry = MemoryRegistry()
        self.auth = TokenAuth(config.tokens)
        self.auth_failures = FailedAuthLimiter(config.auth_fail_rate)
        self.reserved = frozenset(config.reserved)
        self.domain = config.domain.encode()
        self._suffix = b"." + self.domain
        self._gateway_hosts = {self.domain, b"tunnel" + self._suffix}
        self.http_port = config.http[1] if config.http else 80
        self.tunnels: set[Tunnel] = set()
        self.deadlines = Deadlines()
        self._per_token: Counter[str | None] = Counter()
        self.buffers = BufferBudget(limits.MAX_HELD_RESPONSE_BYTES, self._set_pressure)

    def _set_pressure(self, on: bool) -> None:
        """The buffer budget is spent (or recovered): tunnel windows stop growing and
        shrink back while it lasts (proto/mux.py `constrained`)."""
        for connection in {tunnel.connection for tunnel in self.tunnels}:
            connection.mux.constrained = on
        if on:
            warn.warning("buffer_pressure", held=self.buffers.held, limit=self.buffers.limit)
        else:
            log.info("buffer_pressure_over", held=self.buffers.held)

    def public_url(self, name: str) -> str:
        port = "" if self.http_port == 80 else f":{self.http_port}"
        return f"http://{name}.{self.config.domain}{port}"

    def tunnel_name(self, host: bytes) -> str | None:
        """The tunnel a Host header (lower-cased) addresses, or None for the gateway itself."""
        if host.startswith(b"["):  # IPv6 literal
            return None
        host = host.rsplit(b":", 1)[0] if b":" in host else host
        if host in self._gateway_hosts or not host.endswith(self._suffix):
            return None
        return host[: -len(self._suffix)].decode("ascii", "replace")

    def track(self, tunnel: Tunnel) -> None:
        self.tunnels.add(tunnel)
        self._per_token[tunnel.owner.token] += 1

    def untrack(self, tunnel: Tunnel) -> None:
        if tunnel in self.tunnels:
            self.tunnels.discard(tunnel)
            self._per_token[tunnel.owner.token] -= 1

    def token_has_room(self, token: str | None) -> bool:
        if token is None:
            return True  # anonymous mode is loopback-only by configuration
        return self._per_token[token] < self.config.max_tunnels_per_token


async def serve(config: GatewayConfig, stop: asyncio.Event, open_files: int) -> None:
    """Run the gateway until `stop` is set, then shut down in order. `open_files` is the
    soft RLIMIT_NOFILE (raise_open_file_limit)."""
    from .edge import PublicConnection  # edge imports this module's Gateway

    gateway = Gateway(config, open_files)
    loop = asyncio.get_running_loop()
    servers: list[asyncio.Server] = []
    if config.http is not None:
        host, port = config.http
        server = await loop.create_server(
            lambda: PublicConnection(gateway), host, port, backlog=4096, reuse_address=True
        )
        servers.append(server)
        bound = server.sockets[0].getsockname()
        log.info(
            "listening",
            listener="http",
            addr=f"{bound[0]}:{bound[1]}",
            domain=config.domain,
            auth="token" if config.tokens else "anonymous",
            max_connections=gateway.caps.max_connections,
            max_connections_per_address=gateway.caps.max_per_address,
            open_files=open_files,
        )
    trimmer = _Trimmer(gateway)
    await stop.wait()
    trimmer.cancel()
    # Shutdown: stop accepting, tell clients, give in-flight work a moment, then stop.
    for server in servers:
        server.close()
    for tunnel in list(gateway.tunnels):
        tunnel.connection.close(ErrorCode.SHUTDOWN, "gateway shutting down")
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(limits.SHUTDOWN_TIMEOUT):
            for server in servers:
                await server.wait_closed()
    gateway.deadlines.close()
    log.info("stopped")


class _Trimmer:
    """Give free heap back to the kernel now and then, while no slow reader holds data
    (allocator.trim): after an attack or a burst, RSS goes back near its baseline."""

    def __init__(self, gateway: Gateway) -> None:
        self._gateway = gateway
        self._loop = asyncio.get_running_loop()
        self._handle = self._loop.call_later(limits.TRIM_INTERVAL, self._run)

    def _run(self) -> None:
        if not self._gateway.buffers.held:
            trim()
        self._handle = self._loop.call_later(limits.TRIM_INTERVAL, self._run)

    def cancel(self) -> None:
        self._handle.cancel()


def run_gateway(config: GatewayConfig) -> int:
    configure_logging(config.log_format)
    tune_allocator()
    open_files = raise_open_file_limit()

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await serve(config, stop, open_files)

    try:
        uvloop.run(main())
    except OSError as exc:
        print(f"tunnelgate: cannot start: {exc}", file=sys.stderr)
        return 1
    return 0
