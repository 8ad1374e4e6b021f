"""The HTTPS listener's first say on each connection, before any TLS is spoken.

It reads the ClientHello (tls/clienthello.py) within `--handshake-timeout` of accept and
decides: a server name of an online TLS-passthrough tunnel is handed, unopened and
ClientHello first, to that tunnel (tcp.RawPublic); any other server name in the domain (or
none) is terminated here and served by the public HTTP edge with `X-Forwarded-Proto:
https`; plaintext HTTP gets a 400 saying so; junk, a malformed ClientHello or a name
outside the domain is dropped. Every failure is counted and logged with the peer and the
reason, rate-limited, and costs nothing to any other connection.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import cast

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
    ) -> None:
        self._services = services
        self._store = store
        self._counters = counters
        self._in_domain = in_domain
        self._transport: asyncio.Transport | None = None
        self._buffer = b""
        self._slot: str | None = None
        self._client = "?"
        self._started = 0.0
        self._app: PublicConnection | RawPublic | None = None
        self.deadline_tick = 0  # Timed (transport/deadlines.py)

    def __repr__(self) -> str:
        return f"<TlsFront {self._client} peeked={len(self._buffer)}>"

    # --- asyncio callbacks ------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport = cast(asyncio.Transport, transport)
        self._started = time.monotonic()
        peer = transport.get_extra_info("peername")
        ip = str(peer[0]) if peer else "?"
        self._client = f"{peer[0]}:{peer[1]}" if peer else "?"
        sock = transport.get_extra_info("socket")
        fd: int = sock.fileno() if sock is not None else -1
        self._slot = self._services.caps.admit(ip, fd, self._client)
        if self._slot is None:
            transport.abort()  # over a cap: counted and logged by the caps
            return
        self._services.deadlines.set(self, self._services.config.handshake_timeout)

    def data_received(self, data: bytes) -> None:
        if self._transport is None or self._app is not None:
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
            else:
                self._terminate()

    def eof_received(self) -> bool:
        self._fail("closed_before_client_hello")
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        if self._app is None:  # still ours: the TLS layer did not take over
            self._services.deadlines.clear(self)
            self._release()
            self._transport = None

    def on_deadline(self) -> None:
        if self._app is None and self._transport is not None:
            self._fail("client_hello_timeout")

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
            transport.close()
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
