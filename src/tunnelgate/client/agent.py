"""The client agent: connect, register the tunnels, serve streams, reconnect.

A rejection by the gateway is final (exit status 2, one line on stderr). Every other failure
before all tunnels are registered (refused, reset, timed out, TLS, a bad answer to the
upgrade, a close before the registrations are answered) and a lost connection are retried
with exponential back-off and full jitter, up to `--max-retries` in a row; the names and
TCP ports the tunnels had are asked for again, so public URLs survive a reconnect.

SIGINT/SIGTERM end the client at once in every state: whatever it waits for (a connect
attempt, a back-off, the open connection) runs as a task the stop request cancels, and an
open connection then says goodbye (GOAWAY NO_ERROR) so the gateway frees the names at once.

The streams of a connection go to local relays through the `LocalDialer` (dialer.py),
whose connect tasks live in a TaskGroup no longer than that connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import secrets
import signal
import ssl
import sys
from collections.abc import Coroutine
from typing import Any, TypeVar

import uvloop
from picows import WSTransport

from tunnelgate import limits
from tunnelgate.allocator import tune_allocator
from tunnelgate.config import ClientConfig, TunnelSpec
from tunnelgate.errors import ConnectFailed, TunnelRejected, UnsupportedVersion
from tunnelgate.logs import configure_logging
from tunnelgate.proto.codes import ErrorCode
from tunnelgate.proto.messages import Register, Registered, Rejected
from tunnelgate.transport.deadlines import Deadlines
from tunnelgate.transport.tunnel import SUBPROTOCOL, StreamHandler, TunnelConnection

from .connect import open_websocket
from .dialer import LocalDialer
from .output import Output, make_output
from .session import ClientSession, SessionStatistics
from .upstream import LocalPool
from .view_model import wanted

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_REJECTED = 2
T = TypeVar("T")


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
        # What the gateway gave each tunnel, asked for again after a reconnect.
        self.names: dict[int, str] = {}
        self.ports: dict[int, int] = {}
        self.dialer: LocalDialer | None = None  # while running
        self.stopping = False
        self._waiting: asyncio.Task[Any] | None = None  # what a stop request cancels
        self._last_reason = ""
        self._tls: ssl.SSLContext | None = None  # for wss://, made once by run()
        self.current: ClientSession | None = None  # the latest connection's session

    # --- main loop ------------------------------------------------------------
    async def run(self) -> int:
        deadlines = Deadlines()
        pools = {tid: LocalPool(spec, deadlines) for tid, spec in self.specs.items()}
        self.dialer = LocalDialer(self.specs, pools, self.output)
        try:
            self._tls = self._ssl_context()
            return await self._reconnect_loop()
        except _Stop as stop:
            return stop.status
        finally:
            self.dialer = None
            for pool in pools.values():
                pool.close()
            deadlines.close()

    async def _reconnect_loop(self) -> int:
        retries = 0  # attempts since the tunnels were last all registered
        while not self.stopping:
            if await self._session():
                retries = 0
            if self.stopping:
                break
            limit = self.config.max_retries
            if limit is not None and retries >= limit:
                self.output.error(f"giving up after {limit} retries: {self._last_reason}")
                return EXIT_FAILED
            retries += 1
            delay = backoff_delay(retries)
            self.output.reconnecting(retries, round(delay, 2), self._last_reason)
            await self._unless_stopped(asyncio.sleep(delay))
        return EXIT_OK

    async def _session(self) -> bool:
        """One connection's life. True if every tunnel got registered on it."""
        self.output.connecting(self.config.server)
        session = self.current = ClientSession(
            self,
            self.specs.keys(),
            heartbeat_interval=self.config.heartbeat_interval,
            heartbeat_timeout=self.config.heartbeat_timeout,
        )
        try:
            ws = await self._unless_stopped(self._open(session))
        except ConnectFailed as exc:
            self._last_reason = str(exc)
            return False
        except TunnelRejected as exc:  # 401 to the upgrade
            self.output.rejected("*", exc.reason, str(exc))
            raise _Stop(EXIT_REJECTED) from exc
        except UnsupportedVersion as exc:  # a gateway of another protocol version
            self.output.error(str(exc))
            raise _Stop(EXIT_FAILED) from exc
        if ws is None:
            return False  # stopped while connecting
        if ws.response.headers.get("Sec-WebSocket-Protocol") != SUBPROTOCOL:
            self.output.error(f"the gateway does not speak {SUBPROTOCOL}")
            session.connection.close(ErrorCode.PROTOCOL_ERROR, "protocol version")
            raise _Stop(EXIT_FAILED)
        reason = await self._serve(session)
        if session.retry is not None:
            self._last_reason = session.retry
            return False
        if session.rejected:
            raise _Stop(EXIT_REJECTED)
        if session.final_close is not None:
            self.output.error(f"the gateway closed the tunnel: {session.final_close}")
            raise _Stop(EXIT_FAILED)
        self._last_reason = reason or "stopped"
        return session.all_registered

    async def _serve(self, session: ClientSession) -> str | None:
        """Register and serve streams until the connection ends (None: stopped)."""
        assert self.dialer is not None
        async with self.dialer.serving():
            for tid, spec in self.specs.items():
                session.connection.send_control(self._register_message(tid, spec))
            reason = await self._unless_stopped(session.wait_closed())
            if reason is None:  # stopped
                await session.say_goodbye("client shutting down")
        return reason

    async def _open(self, session: ClientSession) -> WSTransport:
        return await open_websocket(
            self.config.server,
            session.listener,
            ssl_context=self._tls,
            headers=self._headers(),
        )

    async def _unless_stopped(self, work: Coroutine[Any, Any, T]) -> T | None:
        """`work`, run as the task a stop request cancels; None if it was stopped."""
        if self.stopping:
            work.close()
            return None
        task = asyncio.get_running_loop().create_task(work)
        self._waiting = task
        try:
            return await task
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if current is not None and current.cancelling():
                raise  # we are cancelled ourselves, not stopped
            return None
        finally:
            self._waiting = None

    def statistics(self) -> SessionStatistics:
        """The current connection's open streams and round-trip time (for the live view)."""
        session = self.current
        if session is None or session.closed.done():
            return SessionStatistics(0, None)
        return session.statistics()

    def stop(self) -> None:
        """SIGINT/SIGTERM: stop waiting, whatever for; `_session` then says goodbye."""
        self.stopping = True
        if self._waiting is not None:
            self._waiting.cancel()

    # --- SessionOwner: what the sessions tell us ---------------------------------------
    def open_relay(
        self, connection: TunnelConnection, stream_id: int, metadata: bytes
    ) -> StreamHandler | None:
        return (
            None if self.dialer is None else self.dialer.open_relay(connection, stream_id, metadata)
        )

    def on_registered(self, message: Registered) -> None:
        spec = self.specs[message.id]
        if message.name is not None and spec.protocol != "tcp":
            self.names[message.id] = message.name
        if message.port is not None and spec.protocol == "tcp":
            self.ports[message.id] = message.port
        self.output.tunnel_ready(spec.name, message.url, spec.local_url)

    def on_rejected(self, message: Rejected) -> None:
        spec = self.specs.get(message.id)
        name = spec.name if spec else str(message.id)
        self.output.rejected(name, message.reason.value, message.message)

    def on_gateway_goodbye(self, reason: str) -> None:
        self.output.closed(reason)

    # --- helpers ------------------------------------------------------------------
    def _register_message(self, tid: int, spec: TunnelSpec) -> Register:
        host_header = spec.local_host_header if spec.host_header_rewrite else None
        tcp = spec.protocol == "tcp"
        return Register(
            id=tid,
            protocol=spec.protocol,
            name=None if tcp else self.names.get(tid, spec.subdomain),
            port=self.ports.get(tid, spec.remote_port) if tcp else None,
            host_header=host_header,
            client_id=self.client_id,
        )

    def _headers(self) -> dict[str, str]:
        headers = {"Sec-WebSocket-Protocol": SUBPROTOCOL, "User-Agent": "tunnelgate"}
        if self.config.token:
            headers["Authorization"] = f"Bearer {self.config.token}"
        return headers

    def _ssl_context(self) -> ssl.SSLContext | None:
        """For wss://: the system's trust store, or --ca's; made once (and --insecure said
        once, here, not per attempt)."""
        if not self.config.server.startswith("wss://"):
            return None
        try:
            context = ssl.create_default_context(cafile=self.config.ca)
        except (OSError, ssl.SSLError) as exc:
            self.output.error(f"--ca {self.config.ca}: cannot be read as PEM certificates: {exc}")
            raise _Stop(EXIT_FAILED) from exc
        if self.config.insecure:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
            self.output.error(
                "warning: --insecure: the gateway's certificate is not checked; anyone in "
                "between can read and change the tunnel's traffic"
            )
        return context


def backoff_delay(retry: int) -> float:
    """Seconds before retry number `retry` (1, 2, ...): exponential, with full jitter."""
    ceiling = min(limits.BACKOFF_MAX, limits.BACKOFF_INITIAL * 2 ** min(retry - 1, 16))
    return random.uniform(0.0, ceiling)  # clients dropped together must not return in step


def run_client(config: ClientConfig) -> int:
    view = None
    if config.log_format is None and wanted(sys.stdout, os.environ):
        # rich is loaded only for the live view (a tenth of a second at start-up).
        from .live_view import LiveView

        view = LiveView(config, sys.stdout, sys.stderr)
    fmt = config.log_format or "text"
    # The user-facing lines come from `output`; library logs only when something is wrong
    # (above the live view, if it is shown).
    log_stream = None if view is None else view.log_stream
    configure_logging(fmt, stream=log_stream, level=logging.WARNING)
    tune_allocator()
    output = make_output(fmt) if view is None else view

    async def main() -> int:
        agent = Agent(config, output)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, agent.stop)
        if view is None:
            return await agent.run()
        with view.showing(agent.statistics):
            return await agent.run()

    with contextlib.suppress(KeyboardInterrupt):
        return uvloop.run(main())
    return EXIT_OK
