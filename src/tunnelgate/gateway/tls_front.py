"""The HTTPS listener's first say on each connection, before any TLS is spoken.

It reads the ClientHello (tls/clienthello.py) within `--handshake-timeout` of accept and
decides: a server name of an online TLS-passthrough tunnel is handed, unopened and
ClientHello first, to that tunnel (tcp.RawPublic); any other server name in the domain (or
none) is terminated here and served by the public HTTP edge with `X-Forwarded-Proto:
https`; plaintext HTTP gets a 400 saying so; junk, a malformed ClientHello or a name
outside the domain is dropped. Every failure is counted and logged with the peer and the
reason, rate-limited, and costs nothing to any other connection.

In cluster mode, a server name of no tunnel here is asked of the cluster (`TlsForwarder`):
if another node has it, the connection goes there unopened, ClientHello first, and that
node decides as above (pass it through, or terminate it and serve HTTP).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol, cast

from tunnelgate.logs import EventLog, RateLimitedLog
from tunnelgate.proto.codes import StreamKind
from tunnelgate.tls.clienthello import (
    MAX_CLIENT_HELLO,
    ClientHello,
    Malformed,
    NeedMore,
    NotTLS,
    peek_client_hello,
)
from tunnelgate.transport.linger import Linger
from tunnelgate.transport.tls_handoff import start_tls

from .certs import CertificateStore
from .edge import EdgeServices, PublicConnection
from .pages import error_page
from .routes import Route
from .tcp import RawPublic

log = EventLog("tunnelgate.gateway")
_failures = RateLimitedLog(log)
_MAX_PEEK = MAX_CLIENT_HELLO + 1024  # the ClientHello and its record headers
_HTTP_METHOD_START = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ")


class TlsForwarder(Protocol):
    """Sends a connection whose server name is another node's to that node (cluster.py);
    it answers with the front's `cluster_*` methods."""

    def forward_tls(self, front: TlsFront, name: str, client: str) -> None: ...


@dataclass(slots=True)
class HandshakeCounters:
    """Handshakes that completed, and those that failed, by reason (for metrics)."""

    completed: int = 0
    passed_through: int = 0  # handed to TLS-passthrough tunnels unopened
    failed: dict[str, int] | None = None

    def fail(self, reason: str) -> None:
        if self.failed is None:
            self.failed = {}
        self.failed[reason] = self.failed.get(reason, 0) + 1


class TlsFront(asyncio.Protocol):
    def __init__(
        self,
        services: EdgeServices,
        store: CertificateStore,
        counters: HandshakeCounters,
        in_domain: Callable[[str | None], bool],
        forwarder: TlsForwarder | None = None,
    ) -> None:
        self._services = services
        self._forwarder = forwarder
        self.via: str | None = None  # another node forwarded this connection here
        self._asking = False  # the cluster is asked where the server name's tunnel is
        self._store = store
        self._counters = counters
        self._in_domain = in_domain
        self._transport: asyncio.Transport | None = None
        self._buffer = b""
        self._slot: str | None = None
        self._client = "?"
        self._started = 0.0
        self._app: PublicConnection | RawPublic | object | None = None
        self._linger: Linger | None = None  # plain HTTP answered: its request is dropped
        self.deadline_tick = 0  # Timed (transport/deadlines.py)

    def __repr__(self) -> str:
        return f"<TlsFront {self._client} peeked={len(self._buffer)}>"

    # --- asyncio callbacks ------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport = cast(asyncio.Transport, transport)
        self._started = time.monotonic()
        if self.via is None:
            peer = transport.get_extra_info("peername")
            self._client = f"{peer[0]}:{peer[1]}" if peer else "?"
        ip = self._client.rpartition(":")[0] or self._client
        sock = transport.get_extra_info("socket")
        fd: int = sock.fileno() if sock is not None else -1
        self._slot = self._services.caps.admit(ip, fd, self._client)
        if self._slot is None:
            transport.abort()  # over a cap: counted and logged by the caps
            return
        self._services.deadlines.set(self, self._services.config.handshake_timeout)

    def adopt(self, transport: asyncio.Transport, client: str, via: str, first: bytes) -> None:
        """A connection another node forwarded, its ClientHello (`first`) read there."""
        self.via, self._client = via, client
        transport.set_protocol(self)
        self.connection_made(transport)
        if first and self._transport is not None:
            self.data_received(first)

    def data_received(self, data: bytes) -> None:
        if self._linger is not None:
            self._linger.data_received(len(data))
            return
        if self._transport is None or self._app is not None or self._asking:
            return
        self._buffer += data
        result = peek_client_hello(self._buffer)
        if isinstance(result, NeedMore):
            if len(self._buffer) > _MAX_PEEK:
                self._fail("client_hello_too_large")
            return
        if isinstance(result, NotTLS):
            self._not_tls()
        elif isinstance(result, Malformed):
            self._fail("bad_client_hello", detail=result.reason)
        elif isinstance(result, ClientHello):
            if not self._in_domain(result.server_name):
                self._fail("sni_outside_domain", detail=result.server_name)
                return
            route = self._passthrough(result.server_name)
            if route is not None:
                self._pass_through(route)
            elif not self._ask_cluster(result.server_name):
                self._terminate()

    def eof_received(self) -> bool:
        if self._linger is None:
            self._fail("closed_before_client_hello")
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        if self._linger is not None:
            self._linger.stop()
        if self._app is None:  # still ours: the TLS layer did not take over
            self._services.deadlines.clear(self)
            self._release()
            self._transport = None

    def on_deadline(self) -> None:
        if self._app is None and self._transport is not None and self._linger is None:
            self._fail("client_hello_timeout")

    # --- the cluster ------------------------------------------------------------------
    def _ask_cluster(self, server_name: str | None) -> bool:
        """True if the cluster is asked about a tunnel name that no tunnel here serves."""
        forwarder = self._forwarder
        if forwarder is None or self.via is not None or server_name is None:
            return False
        name = self._services.hosts.tunnel_name(server_name.encode())
        if name is None or self._services.routes.get(name, time.monotonic()) is not None:
            return False
        assert self._transport is not None
        self._asking = True
        self._transport.pause_reading()  # the handshake deadline still runs
        forwarder.forward_tls(self, name, self._client)
        return True

    def cluster_local(self, name: str) -> None:
        """The name is not on another node: terminated (or passed through) here."""
        if not self._asking or self._transport is None:
            return
        self._asking = False
        self._transport.resume_reading()
        hello = peek_client_hello(self._buffer)
        route = self._passthrough(hello.server_name) if isinstance(hello, ClientHello) else None
        if route is not None:
            self._pass_through(route)
        else:
            self._terminate()

    def cluster_answer(self, status: int, code: str, message: str) -> None:
        """No HTTP answer can be given before TLS: dropped, counted with the reason."""
        if self._asking and self._transport is not None:
            self._asking = False
            self._fail(code)

    def cluster_handover(self) -> tuple[asyncio.Transport, str | None, bytes] | None:
        transport = self._transport
        if not self._asking or transport is None or transport.is_closing():
            return None
        self._asking = False
        self._services.deadlines.clear(self)
        first, self._buffer = self._buffer, b""
        slot, self._slot = self._slot, None
        self._transport = None
        self._app = _FORWARDED
        return transport, slot, first

    # --- decisions --------------------------------------------------------------------
    def _passthrough(self, server_name: str | None) -> Route | None:
        """The TLS-passthrough tunnel the server name routes to, if one is online."""
        if server_name is None:
            return None
        name = self._services.hosts.tunnel_name(server_name.encode())
        if name is None:
            return None
        route = self._services.routes.get(name, time.monotonic())
        if isinstance(route, Route) and route.kind is StreamKind.TLS:
            return route
        return None

    def _pass_through(self, route: Route) -> None:
        """The connection goes to the tunnel unopened, its ClientHello first: the user's
        server terminates the TLS with its own key."""
        transport = self._transport
        assert transport is not None
        self._services.deadlines.clear(self)
        first, self._buffer = self._buffer, b""
        raw = RawPublic(self._services)
        raw.via = self.via
        self._app = raw  # not ours any more, nor is its slot
        slot, self._slot = self._slot, None
        transport.set_protocol(raw)
        raw.start(transport, route, StreamKind.TLS, slot, self._client, first)
        self._counters.passed_through += 1

    def _terminate(self) -> None:
        transport = self._transport
        assert transport is not None
        self._services.deadlines.clear(self)
        first, self._buffer = self._buffer, b""
        self._app = app = PublicConnection(self._services, "https", self._slot)
        if self.via is not None:  # forwarded: the client is the one the preamble named
            app.via, app.client_addr = self.via, self._client
            app.client_ip = self._client.rpartition(":")[0] or self._client
        left = self._services.config.handshake_timeout - (time.monotonic() - self._started)

        def handshake_ended(exc: BaseException | None) -> None:
            if exc is None and app.transport is not None:
                self._counters.completed += 1
                return
            # The TLS layer closed the connection; the edge never had it: its slot is ours.
            self._release()
            self._count(_reason(exc))

        start_tls(transport, first, app, self._store.context, left, handshake_ended)

    def _not_tls(self) -> None:
        transport = self._transport
        assert transport is not None
        if self._buffer[:1] and self._buffer[0] in _HTTP_METHOD_START:
            message = "this is the HTTPS port: use https://"
            transport.write(error_page(400, "plain_http_on_https", message))
            # The rest of the request (a body, say) is read and dropped: else its unread
            # bytes would reset the connection, and the answer with it.
            self._services.deadlines.clear(self)
            self._linger = Linger(transport, self._services.deadlines)
            self._count("plain_http")
            return
        self._fail("not_tls")

    def _fail(self, reason: str, *, detail: str | None = None) -> None:
        if self._transport is not None:
            self._transport.abort()
        self._count(reason, detail)

    def _count(self, reason: str, detail: str | None = None) -> None:
        self._counters.fail(reason)
        _failures.warning("tls_handshake_failed", reason=reason, client=self._client, detail=detail)

    def _release(self) -> None:
        slot, self._slot = self._slot, None
        if slot is not None:
            self._services.caps.release(slot)


_FORWARDED = object()  # TlsFront._app once the cluster took the connection


def _reason(exc: BaseException | None) -> str:
    """A short reason for a failed handshake: the OpenSSL reason, or the error's name."""
    if exc is None:
        return "closed_during_handshake"
    reason = getattr(exc, "reason", None)
    if isinstance(reason, str) and reason:
        return reason.lower()
    if isinstance(exc, ConnectionAbortedError):
        return "handshake_timeout"
    return type(exc).__name__


def in_domain(domain: str) -> Callable[[str | None], bool]:
    """The SNI policy: no server name (an address), the domain, or one label under it."""
    suffix = "." + domain

    def check(server_name: str | None) -> bool:
        if server_name is None or server_name == domain:
            return True
        return server_name.endswith(suffix) and "." not in server_name[: -len(suffix)]

    return check
