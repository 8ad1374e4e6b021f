"""The client agent: connect, register the tunnels, serve streams, reconnect.

A rejection by the gateway is final (exit status 2, one line on stderr). A lost or
unreachable gateway is retried with exponential back-off and jitter, and the names
the tunnels had are asked for again, so public URLs survive a reconnect.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import random
import secrets
import signal
import ssl
from collections.abc import Coroutine
from typing import Any

import picows
import uvloop

from tunnelgate import limits
from tunnelgate.allocator import tune_allocator
from tunnelgate.config import ClientConfig, TunnelSpec
from tunnelgate.errors import RemoteProtocolError, TunnelRejected
from tunnelgate.logs import configure_logging
from tunnelgate.proto.codes import ErrorCode, RejectReason, code_name
from tunnelgate.proto.messages import ControlMessage, OpenInfo, Register, Registered, Rejected
from tunnelgate.proto.mux import Role
from tunnelgate.transport.deadlines import Deadlines
from tunnelgate.transport.listener import TunnelListener
from tunnelgate.transport.tunnel import SUBPROTOCOL, StreamHandler, TunnelConnection

from .output import Output, make_output
from .upstream import LocalConnection, LocalPool, LocalRelay

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_REJECTED = 2
# Closed by the gateway for a reason reconnecting would only repeat (idle, or an operator
# closed it); a gateway shutting down (SHUTDOWN) or a lost connection is retried.
_FINAL_CLOSES = frozenset({ErrorCode.IDLE_TIMEOUT, ErrorCode.KICKED})


class _Stop(Exception):
    """Leave the connect loop with an exit status."""

    def __init__(self, status: int) -> None:
        self.status = status


class Agent:
    def __init__(self, config: ClientConfig, output: Output) -> None:
        self.config = config
        self.output = output
        self.client_id = secrets.token_hex(16)
        self.specs = dict(enumerate(config.tunnels, start=1))
        self.names: dict[int, str] = {}  # names the gateway gave us, kept across reconnects
        self.pools: dict[int, LocalPool] = {}
        self.connection: TunnelConnection | None = None
        self.stopping = False
        self._tasks: set[asyncio.Task[None]] = set()
        self._closed: asyncio.Future[str] | None = None
        self._rejection: TunnelRejected | None = None
        self._last_reason = ""
        self._final_close: str | None = None  # closed for a reason a retry would not fix
        self._stop_requested = asyncio.Event()

    # --- main loop ------------------------------------------------------------
    async def run(self) -> int:
        deadlines = Deadlines()
        self.pools = {tid: LocalPool(spec, deadlines) for tid, spec in self.specs.items()}
        failures = 0
        try:
            while not self.stopping:
                registered = await self._session()
                if self.stopping:
                    break
                failures = 0 if registered else failures + 1
                limit = self.config.max_retries
                if limit is not None and failures > limit:
                    self.output.error(f"giving up after {limit} retries")
                    return EXIT_FAILED
                delay = min(limits.BACKOFF_MAX, limits.BACKOFF_INITIAL * 2 ** min(failures, 16))
                delay *= random.uniform(0.5, 1.0)  # jitter: clients must not reconnect in step
                self.output.reconnecting(failures, round(delay, 2), self._last_reason)
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(delay):
                        await self._stop_requested.wait()
        except _Stop as stop:
            return stop.status
        finally:
            for pool in self.pools.values():
                pool.close()
            deadlines.close()
            for task in list(self._tasks):
                task.cancel()
        return EXIT_OK

    async def _session(self) -> bool:
        """One connection's life. True if every tunnel got registered on it."""
        self.output.connecting(self.config.server)
        loop = asyncio.get_running_loop()
        self._closed = loop.create_future()
        connection = TunnelConnection(Role.CLIENT, self)
        try:
            await picows.ws_connect(
                lambda: TunnelListener(connection),
                self.config.server,
                ssl_context=self._ssl_context(),
                websocket_handshake_timeout=limits.HANDSHAKE_TIMEOUT,
                max_frame_size=limits.MAX_TUNNEL_MESSAGE,
                extra_headers=self._headers(),
                use_aiofastnet=False,
            )
        except picows.WSHandshakeError as exc:
            status = exc.response.status if exc.response is not None else None
            if status == 401:
                self.output.rejected("*", RejectReason.AUTH_FAILED.value, "the token was refused")
                raise _Stop(EXIT_REJECTED) from exc
            self._last_reason = f"handshake failed: {exc}"
            return False
        except (OSError, TimeoutError, picows.WSError) as exc:
            self._last_reason = f"cannot reach {self.config.server}: {exc}"
            return False
        self.connection = connection
        if (
            connection.ws is not None
            and connection.ws.response.headers.get("Sec-WebSocket-Protocol") != SUBPROTOCOL
        ):
            self.output.error(f"the gateway does not speak {SUBPROTOCOL}")
            connection.close(ErrorCode.PROTOCOL_ERROR, "protocol version")
            raise _Stop(EXIT_FAILED)
        for tid, spec in self.specs.items():
            connection.send_control(self._register_message(tid, spec))
        if self.stopping:  # asked to stop while connecting: still say goodbye
            connection.close(ErrorCode.NO_ERROR, "client shutting down")
        reason = await self._closed
        self.connection = None
        if self._rejection is not None:
            raise _Stop(EXIT_REJECTED)
        if self._final_close is not None:
            self.output.error(f"the gateway closed the tunnel: {self._final_close}")
            raise _Stop(EXIT_FAILED)
        self._last_reason = reason
        return len(self.names) == len(self.specs)

    def stop(self) -> None:
        """SIGINT/SIGTERM: say goodbye so the gateway frees our names at once."""
        if self.stopping:
            return
        self.stopping = True
        self._stop_requested.set()
        if self.connection is not None and not self.connection.closed:
            self.connection.close(ErrorCode.NO_ERROR, "client shutting down")
        elif self._closed is not None and not self._closed.done():
            self._closed.set_result("stopped")

    # --- SessionHooks -----------------------------------------------------------
    def on_stream_opened(self, stream_id: int, metadata: bytes) -> StreamHandler | None:
        try:
            info = OpenInfo.decode(metadata)
        except RemoteProtocolError:
            return None
        spec = self.specs.get(info.tunnel_id)
        connection = self.connection
        if spec is None or connection is None:
            return None
        pool = self.pools[info.tunnel_id]
        relay = LocalRelay(self, connection, stream_id, spec, pool)
        local = pool.take()
        if local is not None:
            relay.attach(local)
        else:
            self._spawn(self._connect_local(relay, spec, pool))
        return relay

    def on_control(self, message: ControlMessage) -> None:
        if isinstance(message, Registered):
            spec = self.specs.get(message.id)
            if spec is None:
                return
            if message.name is not None:
                self.names[message.id] = message.name
            self.output.tunnel_ready(spec.name, message.url, spec.local_url)
        elif isinstance(message, Rejected):
            spec = self.specs.get(message.id)
            name = spec.name if spec else str(message.id)
            self.output.rejected(name, message.reason.value, message.message)
            self._rejection = TunnelRejected(message.reason.value, message.message)
            if self.connection is not None:
                self.connection.close(ErrorCode.NO_ERROR, "rejected")

    def on_go_away(self, code: int, reason: str) -> None:
        self.output.closed(reason or code_name(code))
        if code in _FINAL_CLOSES:
            self._final_close = reason or code_name(code)

    def on_closed(self, clean: bool, reason: str) -> None:
        if self._closed is not None and not self._closed.done():
            self._closed.set_result(reason)

    # --- helpers ------------------------------------------------------------------
    def _register_message(self, tid: int, spec: TunnelSpec) -> Register:
        host_header = spec.local_host_header if spec.host_header_rewrite else None
        return Register(
            id=tid,
            protocol=spec.protocol,
            name=self.names.get(tid, spec.subdomain),
            port=spec.remote_port,
            host_header=host_header,
            client_id=self.client_id,
        )

    def _headers(self) -> dict[str, str]:
        headers = {"Sec-WebSocket-Protocol": SUBPROTOCOL, "User-Agent": "tunnelgate"}
        if self.config.token:
            headers["Authorization"] = f"Bearer {self.config.token}"
        return headers

    @functools.cached_property
    def _local_tls(self) -> ssl.SSLContext:
        """TLS to an https:// local app. Not verified, as ngrok does not: a local dev
        server's certificate is self-signed or made for another name, and the hop never
        leaves this machine."""
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        return context

    def _ssl_context(self) -> ssl.SSLContext | None:
        if not self.config.server.startswith("wss://"):
            return None
        context = ssl.create_default_context(cafile=self.config.ca)
        if self.config.insecure:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        return context

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _connect_local(self, relay: LocalRelay, spec: TunnelSpec, pool: LocalPool) -> None:
        """Connect to the local app; a refused connection is retried briefly (dev servers
        restart), then the stream is reset and the gateway answers 502."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + limits.LOCAL_CONNECT_RETRY
        tls = self._local_tls if spec.local_scheme == "https" else None
        while not relay.done:
            try:
                async with asyncio.timeout(limits.LOCAL_CONNECT_TIMEOUT):
                    _, local = await loop.create_connection(
                        lambda: LocalConnection(pool),
                        spec.local_host,
                        spec.local_port,
                        ssl=tls,
                        server_hostname=spec.local_host if tls is not None else None,
                    )
            except (OSError, TimeoutError):
                if loop.time() >= deadline:
                    relay.fail_connect()
                    return
                await asyncio.sleep(limits.LOCAL_CONNECT_RETRY_INTERVAL)
                continue
            relay.attach(local)
            return


def run_client(config: ClientConfig) -> int:
    # The user-facing lines come from `output`; library logs only when something is wrong.
    configure_logging(config.log_format, level=logging.WARNING)
    tune_allocator()
    output = make_output(config.log_format)

    async def main() -> int:
        agent = Agent(config, output)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, agent.stop)
        return await agent.run()

    with contextlib.suppress(KeyboardInterrupt):
        return uvloop.run(main())
    return EXIT_OK
