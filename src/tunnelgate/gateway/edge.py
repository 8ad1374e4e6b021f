"""The public HTTP/1.1 edge: one protocol object per public connection.

Requests are parsed strictly (http1.request) and answered in order; each one becomes
its own tunnel stream (gateway/exchange.py). Hosts that are not tunnels are the
gateway itself: `/connect` (tunnel clients), `/healthz`, else 404. With --grace-hold, a
request for a name held for its owner waits for the owner (routes.RouteTable.wait), its
connection unread meanwhile.

Slow clients (docs/reliability.md, slowhttptest): a request body that stops gets 408
(limits.BODY_IDLE_TIMEOUT); a client that takes nothing of its response is reset
(send_timeout.py); bytes held for slow readers count against their address's share of
the gateway's budget, past which the connection is reset (buffers.py); one address's
share of a tunnel's streams is the exchange's (shares.py).
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable
from typing import Protocol, cast

from tunnelgate import limits
from tunnelgate.config import GatewayConfig
from tunnelgate.errors import HTTPError
from tunnelgate.http1.request import (
    BodyData,
    RequestComplete,
    RequestHead,
    RequestParser,
    UpgradeData,
)
from tunnelgate.http1.serialize import restate_head
from tunnelgate.logs import EventLog, RateLimitedLog
from tunnelgate.proto.codes import StreamKind
from tunnelgate.transport.deadlines import Deadlines
from tunnelgate.transport.linger import Linger
from tunnelgate.transport.reset import abort_with_reset

from .buffers import BufferBudget
from .caps import ConnectionCaps
from .counters import RawCounters, RequestCounters
from .exchange import PAUSE_CREDIT, PAUSE_DRAIN, PAUSE_PIPELINE, Downstream, Exchange, access_log
from .hosts import HostRouter
from .pages import error_page, plain_page, redirect_page
from .routes import Held, Route, RouteTable
from .send_timeout import SendWatch

log = EventLog("tunnelgate.gateway")
# Clients trigger these at will: one budget of warning lines per cause.
_head_timeouts = RateLimitedLog(log)
_silent_closes = RateLimitedLog(log)
_body_timeouts = RateLimitedLog(log)
_send_timeouts = RateLimitedLog(log)
_sheds = RateLimitedLog(log)
_NO_TIMER, _KEEPALIVE, _HEAD, _RESPONSE, _HOLD, _BODY = range(6)
# Why reading is paused, beside exchange.PAUSE_*: a request waits for its tunnel's owner,
# or for the cluster to say where its tunnel is.
PAUSE_HOLD = 16
PAUSE_CLUSTER = 32

RequestEvent = RequestHead | BodyData | RequestComplete | UpgradeData
# HTTP-01 challenges are asked for over plain HTTP on the tunnel's own host (RFC 8555 §8.3).
ACME_CHALLENGE = b"/.well-known/acme-challenge/"


# What a connection handed over to the tunnel layer keeps as its parser: one, shared.
_HANDED_OVER = RequestParser()


class _Wait:
    """A request waiting for its name's owner (--grace-hold): kept across a retry, so a
    tunnel that comes back and dies again does not restart the wait."""

    __slots__ = ("head", "name", "until")

    def __init__(self, head: RequestHead, name: str, until: float) -> None:
        self.head = head
        self.name = name
        self.until = until  # monotonic seconds: then the held-name 502


class TunnelAcceptor(Protocol):
    """Takes a `/connect` upgrade off the edge (connect.py)."""

    def accept(
        self,
        transport: asyncio.Transport,
        head: RequestHead,
        early_data: bytes,
        client_addr: str,
        release_slot: Callable[[], None],
    ) -> None: ...


class ClusterRouter(Protocol):
    """Where a name no tunnel of this gateway serves is served (gateway/cluster.py). It
    answers later with one of the connection's `cluster_*` methods."""

    def forward_http(self, conn: PublicConnection, head: RequestHead, name: str) -> None: ...


class ChallengeResponder(Protocol):
    """ACME HTTP-01 (gateway/acme.py): the key authorization for a pending token."""

    def challenge_response(self, token: str) -> bytes | None: ...


class LiveConnections(Protocol):
    """Where live public connections are tracked (state.GatewayState)."""

    def connection_opened(self, connection: PublicConnection) -> None: ...
    def connection_closed(self, connection: PublicConnection) -> None: ...


class EdgeServices(Protocol):
    """What a public connection needs of the gateway; built by app.py."""

    @property
    def config(self) -> GatewayConfig: ...
    @property
    def caps(self) -> ConnectionCaps: ...
    @property
    def buffers(self) -> BufferBudget: ...
    @property
    def deadlines(self) -> Deadlines: ...
    @property
    def hosts(self) -> HostRouter: ...
    @property
    def routes(self) -> RouteTable: ...
    @property
    def tunnels(self) -> TunnelAcceptor: ...
    @property
    def live(self) -> LiveConnections: ...
    @property
    def acme(self) -> ChallengeResponder | None: ...
    @property
    def counters(self) -> RequestCounters: ...
    @property
    def raw_counters(self) -> RawCounters: ...  # TLS passthrough's (tcp.RawPublic)
    @property
    def forwarder(self) -> ClusterRouter | None: ...  # None: one gateway alone


class PublicConnection(Downstream):
    def __init__(
        self, gateway: EdgeServices, scheme: str = "http", slot: str | None = None
    ) -> None:
        """`slot`: the place under the caps a TLS front end already took for this
        connection at accept (see tls_front.py); else it is taken here."""
        super().__init__(scheme, gateway.counters)
        self.gateway = gateway
        config = gateway.config
        self.parser = RequestParser(max_header_bytes=config.max_header_bytes, raw_chunks=True)
        self.exchange: Exchange | None = None
        # Events of requests not yet started: a list, not a deque (600 bytes per idle
        # connection); it holds at most one read's worth, so pop(0) stays cheap.
        self.queue: list[RequestEvent] = []
        self.closing = False
        self.eof = False  # the public client will send no more
        self._paused_for = 0  # bits of _PAUSE_*: reading stops while any is set
        self.held = 0  # bytes written while paused, counted in gateway.buffers
        self._drain_before_next = False  # the next request waits for our buffer to drain
        self.deadline_tick = 0  # Timed, for gateway.deadlines
        self._timer_kind = _NO_TIMER
        self.slot = slot  # held under gateway.caps until released
        self.wait: _Wait | None = None  # the request waiting for its tunnel, if any
        self._body_seen = 0.0  # monotonic: while a body comes, when a byte of it last came
        self.linger: Linger | None = None  # closing, the client's last bytes dropped meanwhile
        self._send_watch: SendWatch | None = None  # made when writes first pause
        # A request (and what came after it) waiting for the cluster to say where its
        # tunnel is; reading is paused meanwhile.
        self.forwarding: tuple[RequestHead, list[RequestEvent]] | None = None

    def __repr__(self) -> str:
        return f"<PublicConnection {self.client_addr} exchange={self.exchange!r}>"

    # --- asyncio callbacks --------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports do not subclass asyncio.Transport, but implement it.
        self.transport = transport = cast(asyncio.Transport, transport)
        if self.via is None:  # else another gateway forwarded it: the client is set already
            peer = transport.get_extra_info("peername")
            if peer:
                self.client_ip = str(peer[0])
                self.client_addr = f"{peer[0]}:{peer[1]}"
        if self.slot is None:
            sock = transport.get_extra_info("socket")  # uvloop made it for peername: cached
            fd: int = sock.fileno() if sock is not None else -1
            self.slot = self.gateway.caps.admit(self.client_ip, fd, self.client_addr)
            if self.slot is None:
                self.closing = True
                transport.abort()  # over a cap: no bytes, no waiting
                return
        self.address = self.slot
        transport.set_write_buffer_limits(limits.WRITE_HIGH_WATER, limits.WRITE_LOW_WATER)
        # The head timeout counts from accept (from the handshake's end, under TLS): a
        # connection that sends nothing is closed.
        self.arm(self.gateway.config.head_timeout, _HEAD)
        self.gateway.live.connection_opened(self)  # draining: it is closed at once

    def data_received(self, data: bytes) -> None:
        if self.closing:
            if self.linger is not None:
                self.linger.data_received(len(data))
            return
        exchange = self.exchange
        if exchange is not None and exchange.pipe is not None:
            exchange.pipe.on_socket_data(data)  # after a 101: raw bytes
            return
        try:
            events = self.parser.feed(data)
        except HTTPError as exc:
            self._refuse(exc)
            return
        self.queue.extend(events)
        self._pump()
        if self._timer_kind == _BODY:
            self._arm_body_wait()  # bytes came: the body's idle time starts again
        if (
            self.parser.head_pending
            and self.exchange is None
            and self.wait is None
            and self._timer_kind != _HEAD
        ):
            self.arm(self.gateway.config.head_timeout, _HEAD)  # a head is coming

    def eof_received(self) -> bool:
        if self.linger is not None:
            return False  # the client is done too: close
        exchange = self.exchange
        if exchange is not None and exchange.pipe is not None:
            exchange.pipe.on_socket_eof()
            return True  # keep our write side open: the tunnel may still answer
        self.eof = True
        if self.exchange is not None and not self.exchange.request_done:
            self.exchange.abort_request()
        if self.exchange is None and self.wait is None:
            return False
        return True  # let the response in flight finish, then close

    def connection_lost(self, exc: Exception | None) -> None:
        self.closing = True
        self.disarm()
        if self.linger is not None:
            self.linger.stop()
        self.release_slot()
        self.gateway.live.connection_closed(self)
        if self.wait is not None:
            self._abandon_wait()
        if self.write_paused:
            self.write_paused = False
            self.gateway.buffers.give(limits.WRITE_HIGH_WATER + self.held, self.address)
            self.held = 0
        if self._send_watch is not None:
            self._send_watch.stop()
        if self.exchange is not None:
            self.exchange.public_lost(exc)
            self.exchange = None
        self.queue.clear()

    def pause_writing(self) -> None:
        # What sits in our buffer counts against the gateway-wide budget (buffers.py).
        self.write_paused = True
        if not self.gateway.buffers.take(limits.WRITE_HIGH_WATER, self.address):
            # Called from inside the transport's write: reset it once that returned.
            asyncio.get_running_loop().call_soon(self._shed)
        self._watch_sending()

    def resume_writing(self) -> None:
        self.write_paused = False
        self.gateway.buffers.give(limits.WRITE_HIGH_WATER + self.held, self.address)
        self.held = 0
        watch = self._send_watch
        if watch is not None:
            if self.closing:
                watch.start()  # it took bytes; the watch sees the last ones out
            else:
                watch.stop()
        if self.exchange is not None:
            self.exchange.public_resumed()
        if self._drain_before_next:
            self._drain_before_next = False
            self.resume_reading_for(PAUSE_DRAIN)
            self._pump()

    def hold(self, n: int) -> None:
        """`n` bytes of a response were written while paused (see buffers.py)."""
        self.held += n
        if not self.gateway.buffers.take(n, self.address):
            self._shed()

    def _shed(self) -> None:
        """This connection took its address past its share of the held-bytes budget:
        reset it (its response is cut off), so one address cannot take what all share."""
        buffers = self.gateway.buffers
        held = buffers.by_address.get(self.address, 0)
        if self.closing or held <= buffers.share:
            return  # gone already, or others from its address drained meanwhile
        _sheds.warning(
            "connection_shed",
            reason="address_held_share",
            client=self.client_addr,
            held=held,
            limit=buffers.share,
        )
        self.reset()

    # --- send_timeout.Watched ---------------------------------------------------------
    def unsent(self) -> int:
        transport = self.transport
        return 0 if transport is None else transport.get_write_buffer_size()

    def send_timed_out(self) -> None:
        """The client took nothing for SEND_TIMEOUT while we had bytes for it: reset, as
        what is in flight is cut off (its exchange logs it `aborted`). A transport that
        is closing (flushing its last bytes) is aborted too: else it would wait forever."""
        transport = self.transport
        if transport is None:
            return
        _send_timeouts.warning(
            "connection_timed_out",
            reason="send_timeout",
            client=self.client_addr,
            unsent=self.unsent(),
            timeout_s=limits.SEND_TIMEOUT,
        )
        self.closing = True
        self.disarm()
        abort_with_reset(transport)

    # --- flow of requests ---------------------------------------------------
    def resume_requests(self) -> None:
        """Go on with requests queued behind an exchange (after its upgrade, say)."""
        self._pump()

    def _pump(self) -> None:
        """Feed queued parser events to the current exchange, starting new ones in order."""
        while self.queue and not self.closing and self.wait is None:
            event = self.queue[0]
            if isinstance(event, RequestHead):
                if self.exchange is not None:
                    # A pipelined request waits for this response; hold at most one read.
                    self.pause_reading_for(PAUSE_PIPELINE)
                    return
                self.queue.pop(0)
                self._start(event)
                continue
            self.queue.pop(0)
            exchange = self.exchange
            if exchange is None:
                continue  # the rest of a request the gateway answered itself
            if isinstance(event, BodyData):
                exchange.send_body(event.data)
            elif isinstance(event, RequestComplete):
                exchange.end_request()
                kind = self._timer_kind
                if kind == _BODY or (kind == _RESPONSE and exchange.head.expect_continue):
                    self.arm_response_timeout()  # the body is in: the app's turn, from now
            else:
                exchange.upgrade_data(event.data)
        if not self.queue:
            self.resume_reading_for(PAUSE_PIPELINE)

    def _start(self, head: RequestHead) -> None:
        self.disarm()
        if head.target.startswith(ACME_CHALLENGE) and self.gateway.acme is not None:
            self._answer_challenge(head)  # on any Host: the CA asks for the tunnel's own
            return
        name = self.gateway.hosts.tunnel_name(head.host)
        if name is None:
            self._serve_gateway(head)
            return
        if self.scheme == "http" and self.gateway.config.redirect_http:
            if not head.target.startswith(ACME_CHALLENGE):
                self._redirect_to_https(head)
                return
        self._route(head, name, self.via is None)

    def _route(self, head: RequestHead, name: str, may_forward: bool) -> None:
        """Send the request down the tunnel of `name`, or answer it. `may_forward`: a name
        not served here may be asked of the cluster (never for a forwarded connection)."""
        route = self.gateway.routes.get(name, time.monotonic())
        if route is None or (type(route) is Route and route.kind != StreamKind.HTTP):
            if route is None and may_forward and self.gateway.forwarder is not None:
                self._forward(head, name)
                return
            host = head.host.decode("ascii", "replace")
            self._answer_error(head, 404, "no_tunnel", f"no HTTP tunnel is registered for {host}")
        elif isinstance(route, Held):
            if may_forward and self.gateway.forwarder is not None:
                self._forward(head, name)  # its owner may be back on another gateway
                return
            self._wait_for_owner(head, name, route.expires_at, route.kind is StreamKind.HTTP)
        elif self.gateway.buffers.over:
            host = head.host.decode("ascii", "replace")
            # Slow readers hold the gateway's whole buffer budget: no new streams now.
            self._answer_error(
                head, 503, "gateway_busy", f"the gateway is busy; retry {host} shortly"
            )
        else:
            self.exchange = Exchange(self, head, route)
            self.exchange.start()

    # --- the tunnel is on another gateway (cluster.py) -----------------------------------
    def _forward(self, head: RequestHead, name: str) -> None:
        """Ask the cluster where `name` is; this connection is not read meanwhile, and what
        it already sent waits here (to go to the other gateway, or to be served here)."""
        cluster = self.gateway.forwarder
        assert cluster is not None
        self.forwarding = (head, self.queue)
        self.queue = []
        self.pause_reading_for(PAUSE_CLUSTER)
        cluster.forward_http(self, head, name)

    def cluster_local(self, name: str) -> None:
        """The cluster says `name` is not on another gateway: served (or answered) here."""
        pending = self.forwarding
        if pending is None or self.closing:
            return
        self.forwarding = None
        head, events = pending
        self.queue = events + self.queue
        self.resume_reading_for(PAUSE_CLUSTER)
        self._route(head, name, False)
        self._pump()

    def cluster_answer(self, status: int, code: str, message: str) -> None:
        """The cluster could not send the request on: the gateway's answer, then close."""
        pending = self.forwarding
        if pending is None or self.closing:
            return
        self.forwarding = None
        self._answer_error(pending[0], status, code, message)

    def cluster_handover(self) -> tuple[asyncio.Transport, str | None, bytes] | None:
        """Give this connection to the cluster's link: its transport (reading paused), its
        slot under the caps, and every byte it read that was not served, restated (the
        request head, what followed it, a head cut mid-way). None if it is gone."""
        pending, transport = self.forwarding, self.transport
        if pending is None or self.closing or transport is None:
            return None
        self.forwarding = None
        head, events = pending
        parts = [restate_head(head)]
        for event in events + self.queue:
            if isinstance(event, RequestHead):
                parts.append(restate_head(event))
            elif isinstance(event, (BodyData, UpgradeData)):
                parts.append(event.data)
        parts.append(self.parser.unparsed())
        self.queue = []
        self.closing = True  # this object is done; the transport moves on
        self.disarm()
        self.gateway.live.connection_closed(self)
        slot, self.slot = self.slot, None
        self.parser = _HANDED_OVER
        return transport, slot, b"".join(parts)

    # --- waiting for a tunnel's owner (--grace-hold) -----------------------------------
    def _wait_for_owner(
        self, head: RequestHead, name: str, expires_at: float, http: bool = True
    ) -> None:
        """A request for `name`, whose owner is away until `expires_at`: the held-name 502
        at once, or with --grace-hold it waits for the owner's return, at most that long
        and no longer than the hold; this connection is not read meanwhile. `http`: the
        name was an HTTP tunnel's (a TLS-passthrough name is not waited for)."""
        grace_hold, now = self.gateway.config.grace_hold, time.monotonic()
        wait = self.wait
        until = now + grace_hold if wait is None else wait.until
        if grace_hold <= 0 or self.draining or min(until, expires_at) <= now or not http:
            self.wait = None
            host = head.host.decode("ascii", "replace")
            self._answer_error(head, 502, "tunnel_offline", f"the tunnel for {host} is offline")
            return
        if not self.gateway.routes.wait(name, self):
            self.wait = None
            host = head.host.decode("ascii", "replace")
            message = f"too many requests are waiting for the tunnel for {host}; retry shortly"
            self._answer_error(head, 503, "hold_queue_full", message)
            return
        if wait is None:
            self.wait = _Wait(head, name, until)
            waiting = self.gateway.routes.waiting(name)
            log.info("request_waiting", name=name, client=self.client_addr, waiting=waiting)
        self.pause_reading_for(PAUSE_HOLD)
        self.arm(min(until, expires_at) - now, _HOLD)

    def wait_for_tunnel(self, exchange: Exchange) -> bool:
        """`exchange` could not open its stream: its tunnel died (or is going away) in
        between, and the app saw nothing of the request. With --grace-hold the request
        waits for the tunnel's owner as one for a held name does, and True says this
        connection took it back from the exchange; False: the exchange answers it."""
        if self.gateway.config.grace_hold <= 0 or self.draining:
            return False
        self.exchange = None
        self._wait_for_owner(exchange.head, exchange.tunnel.name, math.inf)
        return True

    def tunnel_returned(self, route: Route) -> None:
        """routes.Waiter: the owner is back; the request goes to its new tunnel."""
        wait = self.wait
        if wait is None or self.closing:
            return
        self.disarm()
        host = wait.head.host.decode("ascii", "replace")
        if route.kind is not StreamKind.HTTP:  # the name came back as another kind
            self._end_wait(404, "no_tunnel", f"no HTTP tunnel is registered for {host}")
            return
        if self.gateway.buffers.over:
            self._end_wait(503, "gateway_busy", f"the gateway is busy; retry {host} shortly")
            return
        exchange = self.exchange = Exchange(self, wait.head, route)
        exchange.start()
        if self.exchange is None and not self.closing:
            return  # that tunnel went too before the stream opened: the wait goes on
        self.wait = None
        if self.exchange is not None:
            self.resume_reading_for(PAUSE_HOLD)
            self._pump()  # what came of the request while it waited (its body)
            if self.eof and self.exchange is not None and not self.exchange.request_done:
                self.exchange.abort_request()  # as eof_received would have

    def hold_ended(self) -> None:
        """routes.Waiter: the name's hold ended before its owner came back."""
        if self.wait is not None:
            host = self.wait.head.host.decode("ascii", "replace")
            self._end_wait(502, "tunnel_offline", f"the tunnel for {host} is offline")

    def _end_wait(self, status: int, code: str, message: str) -> None:
        wait, self.wait = self.wait, None
        if wait is not None:
            self.gateway.routes.stop_waiting(wait.name, self)  # if the table has not let go
            if not self.closing:
                self._answer_error(wait.head, status, code, message)

    def _abandon_wait(self) -> None:
        """The public client went away while its request waited: logged as 499."""
        wait, self.wait = self.wait, None
        if wait is not None:
            self.gateway.routes.stop_waiting(wait.name, self)
            head = wait.head
            access_log.request(
                head.host.decode("ascii", "replace"),
                head.method.decode("ascii", "replace"),
                head.target.decode("latin-1")[:200],
                499,
                0,
                0,
                0.0,
                self.client_addr,
                None,
                False,
                self.via,
            )

    def _serve_gateway(self, head: RequestHead) -> None:
        path = head.target.split(b"?", 1)[0]
        if path == b"/connect" and head.upgrade is not None:
            if self.draining:  # no new tunnels: the client retries elsewhere
                message = "the gateway is shutting down; connect to another"
                self._answer_error(head, 503, "gateway_draining", message)
                return
            transport = self.transport
            assert transport is not None
            rest = [e.data for e in self.queue if isinstance(e, UpgradeData)]
            self.queue.clear()
            self.closing = True  # this object is done; the transport moves on
            self.disarm()
            # The tunnel layer takes over the transport and, with it, this connection's
            # slot, released when the tunnel connection ends; if /connect is refused
            # before the hand-over, connection_lost here releases it as usual.
            self.gateway.live.connection_closed(self)  # the tunnel layer tracks it now
            self.gateway.tunnels.accept(
                transport, head, b"".join(rest), self.client_addr, self.release_slot
            )
            # The transport may keep a reference to this object for the tunnel's life:
            # let go of the parser and its buffers (they were 2 KiB per tunnel).
            self.parser = _HANDED_OVER
            return
        if path == b"/healthz" and head.method in (b"GET", b"HEAD"):
            close = self._closes_after(head)
            self._write_final(plain_page(200, b"ok\n", close=close), head, 200)
            return
        self._answer_error(head, 404, "not_found", f"{path.decode('latin-1')} is not served here")

    def _answer_challenge(self, head: RequestHead) -> None:
        acme = self.gateway.acme
        assert acme is not None
        token = head.target[len(ACME_CHALLENGE) :].decode("ascii", "replace")
        answer = acme.challenge_response(token)
        if answer is None:
            self._answer_error(head, 404, "no_challenge", "no such ACME challenge here")
            return
        close = self._closes_after(head)
        self._write_final(plain_page(200, answer, close=close), head, 200)

    def _redirect_to_https(self, head: RequestHead) -> None:
        host = head.host.rsplit(b":", 1)[0].decode("ascii", "replace")
        target = head.target.decode("latin-1")
        location = self.gateway.hosts.https_url(host, target if target.startswith("/") else "/")
        close = self._closes_after(head)
        self._write_final(redirect_page(location, close=close), head, 308)

    def _answer_error(self, head: RequestHead, status: int, code: str, message: str) -> None:
        self._write_final(error_page(status, code, message), head, status)
        self.close()

    def _write_final(self, response: bytes, head: RequestHead, status: int) -> None:
        """A response the gateway makes itself; the request body, if any, is not read."""
        assert self.transport is not None
        self.transport.write(response)
        access_log.request(
            head.host.decode("ascii", "replace"),
            head.method.decode("ascii", "replace"),
            head.target.decode("latin-1")[:200],
            status,
            0,
            len(response),
            0.0,
            self.client_addr,
            None,
            False,
            self.via,
        )
        if self._closes_after(head):
            self.close()
        else:
            self._arm_between_requests()

    def _closes_after(self, head: RequestHead) -> bool:
        """Whether the connection ends after an answer the gateway makes itself (which
        then says `Connection: close`): the request said so, the gateway drains, or the
        request has a body, which is not read."""
        return bool(head.content_length or head.chunked or not head.keep_alive or self.draining)

    def _refuse(self, exc: HTTPError) -> None:
        if self.transport is None or self.closing:
            return
        exchange = self.exchange
        if exchange is None or not exchange.response_started:
            self.transport.write(error_page(exc.status, exc.code, str(exc)))
        if exchange is not None:
            exchange.abort_request(exc.status)  # a bad chunk mid-body: the stream is reset
        log.info(
            "request_refused",
            status=exc.status,
            code=exc.code,
            error=str(exc),
            client=self.client_addr,
        )
        self.close()

    def exchange_finished(self, keep_alive: bool) -> None:
        """Called by the exchange once its response is completely written."""
        self.exchange = None
        if not keep_alive or self.closing or self.eof or self.draining:
            self.close()
            return
        self._arm_between_requests()
        if self.write_paused:
            # A client that does not read its responses gets no more of them: each
            # would add up to a window to our buffer (pipelined requests wait here).
            self._drain_before_next = True
            self.pause_reading_for(PAUSE_DRAIN)
            return
        self._pump()

    def _arm_between_requests(self) -> None:
        """Keep-alive idle time until the next request's first byte, then the head
        timeout; part of the next head may already be here (pipelined)."""
        if self.parser.head_pending:
            self.arm(self.gateway.config.head_timeout, _HEAD)
        else:
            self.arm(limits.KEEPALIVE_TIMEOUT, _KEEPALIVE)

    def release_slot(self) -> None:
        """Give back this connection's place under the caps; once, whoever calls first
        (the tunnel layer calls it for a connection it took over)."""
        slot = self.slot
        if slot is not None:
            self.slot = None
            self.gateway.caps.release(slot)

    # --- state.LiveConnection ------------------------------------------------------
    def drain(self) -> None:
        """The gateway drains: close between requests, never in the middle of one. Idle
        now; else after the response in flight (or to the request whose head is coming),
        which says `Connection: close` if its head is still to be written."""
        self.draining = True
        if self.closing:
            return
        if self.wait is not None:  # its owner cannot come back here now
            host = self.wait.head.host.decode("ascii", "replace")
            message = f"the gateway is shutting down; retry {host} shortly"
            self._end_wait(503, "gateway_draining", message)
            return
        if (
            self.exchange is None
            and self.forwarding is None
            and not self.queue
            and not self.parser.head_pending
        ):
            self.close()

    def cut_off(self) -> None:
        """The drain is over: a response still in flight is reset, never left looking
        complete (its exchange logs it `aborted`); else a plain close."""
        if self.linger is not None:
            self.linger.end()
        elif self.exchange is not None:
            self.reset()
        else:
            self.close()

    # --- reading, closing, timers -------------------------------------------
    def pause_reading_for(self, reason: int) -> None:
        """Stop reading the public socket until every reason to has been lifted."""
        if not self._paused_for and self.transport is not None and not self.closing:
            self.transport.pause_reading()
        self._paused_for |= reason

    def resume_reading_for(self, reason: int) -> None:
        if not self._paused_for & reason:
            return
        self._paused_for &= ~reason
        if not self._paused_for and self.transport is not None and not self.closing:
            self.transport.resume_reading()
            if self._timer_kind == _BODY:
                self._arm_body_wait()  # the body's idle time counts from now: we held it

    def close(self) -> None:
        """Close after what is already written has been sent (if the client takes it:
        else the send timeout ends it). Every answer given before the request was all read
        ends here: then the close lingers (transport/linger.py), else a client still
        sending would lose the answer to the reset its unread bytes cause."""
        if self.linger is not None:
            return  # lingering: it closes when done
        self.closing = True
        self.disarm()
        transport = self.transport
        if transport is not None:
            closing = transport.is_closing()
            if transport.get_write_buffer_size() and not closing:
                self._watch_sending()
            if not closing and not self.eof and (self._paused_for or self.parser.reading_request):
                self.linger = Linger(transport, self.gateway.deadlines)
            else:
                transport.close()

    def _watch_sending(self) -> None:
        """The client has bytes of ours to take: SEND_TIMEOUT to take any (send_timeout.py)."""
        watch = self._send_watch
        if watch is None:
            watch = self._send_watch = SendWatch(self, self.gateway.deadlines)
        watch.start()

    # --- transport.pipe.PipeSocket: this connection after a 101 ---------------------
    def write(self, data: bytes) -> None:
        transport = self.transport
        if transport is not None and not transport.is_closing():
            transport.write(data)
            if self.write_paused:
                self.hold(len(data))

    def write_eof(self) -> None:
        if self.transport is not None and self.transport.can_write_eof():
            self.transport.write_eof()

    def can_write_eof(self) -> bool:
        return self.transport is not None and self.transport.can_write_eof()

    def pause_reading(self) -> None:
        self.pause_reading_for(PAUSE_CREDIT)

    def resume_reading(self) -> None:
        self.resume_reading_for(PAUSE_CREDIT)

    def abort(self) -> None:
        self.reset()

    def reset(self) -> None:
        """Abort with a TCP reset: a response cut off before its end must not look
        complete, and a FIN after a close-delimited body reads as its proper end."""
        self.closing = True
        self.disarm()
        transport = self.transport
        if transport is not None and not transport.is_closing():
            abort_with_reset(transport)

    def arm(self, delay: float, kind: int) -> None:
        """One timeout at a time: keep-alive idle, head in progress, or response awaited."""
        self._timer_kind = kind
        if delay > 0:
            self.gateway.deadlines.set(self, delay)
        else:
            self.gateway.deadlines.clear(self)

    def arm_response_timeout(self) -> None:
        self.arm(self.gateway.config.response_timeout, _RESPONSE)

    def await_body(self) -> None:
        """The request body is the client's to send: it may pause up to BODY_IDLE_TIMEOUT
        between reads, for as long as it keeps coming; the response timeout counts from
        its end (nginx's proxy_read_timeout, from the last write upstream)."""
        self._arm_body_wait()

    def _arm_body_wait(self) -> None:
        self._body_seen = time.monotonic()
        self.arm(limits.BODY_IDLE_TIMEOUT, _BODY)

    def _body_held_back(self) -> None:
        """The body's idle time is up while the tunnel holds the body back: the app is not
        reading it. Its time to do so is the response timeout from the last byte that came
        (nginx's proxy_send_timeout), seen at the first idle check past it, then 504."""
        exchange = self.exchange
        timeout = self.gateway.config.response_timeout
        left = timeout - (time.monotonic() - self._body_seen)
        if timeout <= 0:
            self.arm(limits.BODY_IDLE_TIMEOUT, _BODY)  # no response timeout: none here either
        elif left > 0:
            self.arm(min(limits.BODY_IDLE_TIMEOUT, left), _BODY)
        elif exchange is not None:
            exchange.response_timeout()

    def disarm(self) -> None:
        self._timer_kind = _NO_TIMER
        self.gateway.deadlines.clear(self)

    def on_deadline(self) -> None:
        kind, self._timer_kind = self._timer_kind, _NO_TIMER
        if kind == _RESPONSE:
            if self.exchange is not None:
                self.exchange.response_timeout()
        elif kind == _HEAD:
            if self.exchange is None and self.transport is not None:
                self._head_timed_out()
        elif kind == _KEEPALIVE and self.exchange is None:
            self.close()
        elif kind == _HOLD:
            self.hold_ended()
        elif kind == _BODY:
            exchange = self.exchange
            if exchange is None or exchange.request_done or exchange.status:
                return  # (a 1xx may have gone out: the final answer is still ours to give)
            if self._paused_for & PAUSE_CREDIT:
                self._body_held_back()  # the tunnel holds the body back, not the client
            else:
                self._body_timed_out(exchange)

    def _body_timed_out(self, exchange: Exchange) -> None:
        """No byte of the request body for BODY_IDLE_TIMEOUT: 408, and the stream is
        reset, so the app sees the body cut off, never complete."""
        assert self.transport is not None
        self.transport.write(error_page(408, "body_timeout", "request body not sent in time"))
        _body_timeouts.warning(
            "connection_timed_out",
            reason="body_timeout",
            status=408,
            client=self.client_addr,
            timeout_s=limits.BODY_IDLE_TIMEOUT,
        )
        exchange.abort_request(408)
        self.close()

    def _head_timed_out(self) -> None:
        assert self.transport is not None
        timeout = self.gateway.config.head_timeout
        if self.parser.head_pending:
            self.transport.write(error_page(408, "head_timeout", "request head not sent in time"))
            _head_timeouts.warning(
                "connection_timed_out",
                reason="head_timeout",
                status=408,
                client=self.client_addr,
                timeout_s=timeout,
            )
        else:  # not a byte of a request: nobody to answer
            _silent_closes.warning(
                "connection_timed_out",
                reason="no_request",
                client=self.client_addr,
                timeout_s=timeout,
            )
        self.close()
