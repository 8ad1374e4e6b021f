"""One public request and its response, carried over one tunnel stream.

The request head is re-serialised (hop-by-hop headers out, X-Forwarded-* in) and the
body streamed with the tunnel's credit as backpressure. The response comes back as
the local app wrote it; a parser finds where it ends (for keep-alive) and whether it
switched protocols (then bytes are relayed raw both ways). Each head goes out whole,
through public_head: hop-by-hop fields out, the gateway's own Connection decision in;
an HTTP/1.0 client gets no 1xx and a de-chunked body (issue 13).
Credit for response bytes goes back to the client only while the public socket
drains, so a public client that stops reading stops only its own stream.
"""

from __future__ import annotations

import asyncio
import time

from tunnelgate.errors import HTTPError, LocalProtocolError
from tunnelgate.http1.request import RequestHead, serialize_head
from tunnelgate.http1.response import (
    ResponseComplete,
    ResponseHead,
    ResponseParser,
    public_head,
)
from tunnelgate.limits import MAX_HEADER_BYTES
from tunnelgate.logs import AccessLog, EventLog, RateLimitedLog
from tunnelgate.proto.codes import ErrorCode
from tunnelgate.proto.messages import OpenInfo
from tunnelgate.transport.pipe import Pipe

from .counters import RequestCounters
from .pages import error_page
from .routes import Route

access_log = AccessLog("tunnelgate.gateway")
log = EventLog("tunnelgate.gateway")
_share_refusals = RateLimitedLog(log)  # one address's flood must not flood the log
MAX_UPGRADE_EARLY_DATA = 64 * 1024  # bytes a client may send before the 101 arrives
# Why reading a public connection is paused (bits: several can hold at once).
PAUSE_PIPELINE = 1  # a pipelined request waits for the response in flight
PAUSE_CREDIT = 2  # the request body's stream is out of tunnel credit
PAUSE_UPGRADE = 4  # bytes after an upgrade request wait for the 101
PAUSE_DRAIN = 8  # the next request waits until a slow reader drained our buffer


class Downstream(asyncio.Protocol):
    """The public connection a request came on, as an exchange uses it (edge.py's
    PublicConnection implements it); after a 101 it is also the socket end of a raw pipe
    (transport.pipe.PipeSocket).

    A base class, not a Protocol: the exchange calls it several times per request, and
    compiled code calls a native class's methods directly, an object's of unknown type
    through a Python-level lookup (measured: about 5 % of the gateway's time per request).
    """

    def __init__(self, scheme: str, counters: RequestCounters) -> None:
        self.scheme = scheme  # "http" or "https": X-Forwarded-Proto
        self.counters = counters  # the gateway's, for metrics
        self.transport: asyncio.Transport | None = None
        self.client_ip = "?"
        self.client_addr = "?"
        # What per-address limits count this connection under (caps.address_key).
        self.address = "?"
        # Another gateway of the cluster forwarded this connection (its advertise address);
        # client_addr is then the public client's, from the link's preamble.
        self.via: str | None = None
        self.write_paused = False  # our write buffer is over its high-water mark
        # The gateway drains: the response in flight is this connection's last (it says
        # `Connection: close` if its head is still to come) and no new stream is opened.
        self.draining = False

    def pause_reading_for(self, reason: int) -> None:
        raise NotImplementedError

    def resume_reading_for(self, reason: int) -> None:
        raise NotImplementedError

    def arm_response_timeout(self) -> None:
        raise NotImplementedError

    def await_body(self) -> None:
        """The request's body is the public client's to send: its idle timeout runs."""
        raise NotImplementedError

    def disarm(self) -> None:
        raise NotImplementedError

    def hold(self, n: int) -> None:
        """`n` bytes of a response were written while paused (see buffers.py)."""
        raise NotImplementedError

    def reset(self) -> None:
        """Abort with a TCP reset: the response was cut off."""
        raise NotImplementedError

    def resume_requests(self) -> None:
        raise NotImplementedError

    def exchange_finished(self, keep_alive: bool) -> None:
        raise NotImplementedError

    def wait_for_tunnel(self, exchange: Exchange) -> bool:
        """The exchange's stream could not be opened: its tunnel is gone. True if the
        connection takes the request back to wait for the tunnel's owner (--grace-hold)."""
        raise NotImplementedError

    # transport.pipe.PipeSocket, after a 101
    def write(self, data: bytes) -> None:
        raise NotImplementedError

    def write_eof(self) -> None:
        raise NotImplementedError

    def can_write_eof(self) -> bool:
        raise NotImplementedError

    def pause_reading(self) -> None:
        raise NotImplementedError

    def resume_reading(self) -> None:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    def abort(self) -> None:
        raise NotImplementedError


class Exchange:
    def __init__(self, conn: Downstream, head: RequestHead, tunnel: Route) -> None:
        self.conn = conn
        self.head = head
        self.tunnel = tunnel
        self.tc = tunnel.target
        self.sid = 0
        self.request_done = False
        self.response_started = False  # bytes of the response reached the public client
        self.pipe: Pipe | None = None  # after 101 Switching Protocols: bytes both ways
        self.finished = False
        self.status = 0
        self._response_keep_alive = False
        self._in_body = False  # the final head is out: what comes is the body
        self.bytes_in = 0
        self.bytes_out = 0
        self._unacked = 0
        self._parser = ResponseParser()
        self._parser.expect(head.method)
        # An HTTP/1.0 client gets no chunked coding: the parser notes where chunk data is
        # (known before the head is: it may come in the same read as the body).
        self._dechunk = False
        if head.version == "1.0":
            self._parser.spans = []
        self._early: list[bytes] = []  # upgrade bytes sent before the 101
        self._early_size = 0
        self._started = time.monotonic()
        self._share: str | None = None  # the address whose stream share this holds

    def __repr__(self) -> str:
        state = "raw" if self.pipe else ("response" if self.request_done else "request")
        return f"<Exchange {self.tunnel.name} sid={self.sid} {state} status={self.status}>"

    # --- request side -------------------------------------------------------
    def start(self) -> None:
        head, conn = self.head, self.conn
        if self.tc.closed:
            if not conn.wait_for_tunnel(self):
                self._gateway_error(502, "tunnel_offline", "the tunnel is offline")
            return
        meta = OpenInfo(
            self.tunnel.tunnel_id,
            conn.client_addr,
            method=head.method,
            target=head.target,
            http_version=head.version,
        ).encode()
        address = conn.address
        shares = self.tunnel.shares
        if not shares.take(address):
            self._over_share(shares.limit)
            return
        try:
            self.sid = self.tc.open_stream(meta, self)
        except LocalProtocolError:
            shares.give(address)
            mux = self.tc.mux
            if self.tc.closed or mux.go_away_received or mux.go_away_sent:
                if conn.wait_for_tunnel(self):  # its tunnel is going: wait for the next
                    return
            if conn.draining:  # the tunnel heard GOAWAY: no new stream on it
                self._gateway_error(
                    503, "gateway_draining", "the gateway is shutting down; retry shortly"
                )
            else:
                self._gateway_error(
                    503, "tunnel_busy", "the tunnel has too many requests in flight"
                )
            return
        wire = serialize_head(
            head,
            client_ip=conn.client_ip,
            proto=conn.scheme,
            public_host=head.host,
            host_override=self.tunnel.host_header,
        )
        self._share = address
        no_body = not head.chunked and not head.content_length and head.upgrade is None
        self.request_done = no_body
        self.tc.send(self.sid, wire, end=no_body)
        self.tunnel.requests += 1
        if no_body or head.upgrade is not None or head.expect_continue:
            conn.arm_response_timeout()  # the app's turn (to send 100 Continue, say)
        else:
            conn.await_body()

    def _over_share(self, limit: int) -> None:
        """This address holds its share of the tunnel's streams (shares.py)."""
        _share_refusals.warning(
            "request_refused",
            reason="address_stream_share",
            tunnel=self.tunnel.name,
            client=self.conn.client_addr,
            limit=limit,
        )
        message = "too many requests from your address are in flight on this tunnel"
        self._gateway_error(503, "tunnel_busy", message)

    def send_body(self, data: bytes) -> None:
        # A chunked body comes as the client framed it (the edge's parser keeps the
        # framing, validated), so extensions and trailers reach the app.
        self.bytes_in += len(data)
        if not self.tc.send(self.sid, data):
            self.conn.pause_reading_for(PAUSE_CREDIT)

    def end_request(self) -> None:
        if self.request_done:
            return  # no body: the head went out with FIN
        self.request_done = True
        if self.finished:
            return
        if self.head.upgrade is None:
            self.tc.end(self.sid)

    def upgrade_data(self, data: bytes) -> None:
        if self.pipe is not None:
            self.pipe.on_socket_data(data)
            return
        self._early.append(data)
        self._early_size += len(data)
        if self._early_size > MAX_UPGRADE_EARLY_DATA:
            self.conn.pause_reading_for(PAUSE_UPGRADE)

    def abort_request(self, status: int = 499) -> None:
        """The public side broke off the request (gone: 499, or a bad body: 400)."""
        self.tc.reset(self.sid, ErrorCode.CANCEL)
        started = self.response_started
        self._finish(keep_alive=False, status=None if started else status, aborted=started)

    def public_lost(self, exc: Exception | None) -> None:
        if self.pipe is not None:
            self.pipe.on_socket_lost(exc)
        elif not self.finished:
            self.tc.reset(self.sid, ErrorCode.CANCEL)
            started = self.response_started
            self._finish(keep_alive=False, status=None if self.status else 499, aborted=started)

    def public_resumed(self) -> None:
        if self.pipe is not None:
            self.pipe.on_socket_drained()
        elif self._unacked:
            n, self._unacked = self._unacked, 0
            self.tc.acknowledge(self.sid, n)

    # --- StreamHandler: the response side -------------------------------------
    def on_data(self, data: bytes) -> None:
        if self.finished:
            return
        if self.pipe is not None:
            self.pipe.on_data(data)
            return
        spans = self._parser.spans  # an HTTP/1.0 client's: where chunk data is
        if spans is not None:
            spans.clear()
        try:
            events = self._parser.feed(data)
        except HTTPError as exc:
            self._bad_response(exc)
            return
        # Heads are sent as public_head makes them (hop-by-hop fields out), never before
        # they are whole (the parser holds a cut one); body bytes as they came, or for an
        # HTTP/1.0 client the chunk data only. `out` stays empty while data goes unchanged.
        n = len(data)
        out: list[bytes] = []
        keep = pos = 0  # data[keep:pos] goes out as it is; past pos is not looked at yet
        end = n  # where the response ends in data
        in_body = self._in_body
        complete = switched = False
        for event in events:
            if isinstance(event, ResponseHead):
                wire = self._on_head(event)
                if wire is not event.raw or event.end - len(wire) != pos:
                    if pos > keep:
                        out.append(data[keep:pos])
                    if wire:
                        out.append(wire)
                    keep = event.end
                pos = event.end
                in_body = not event.interim
            elif isinstance(event, ResponseComplete):
                if self.status == 101:
                    switched = True  # what follows the 101 head is the new protocol
                else:
                    end -= event.leftover  # bytes past the response: the app misbehaved
                    complete = True
        self._in_body = in_body
        stop = end if in_body else pos  # the bytes of a head still coming wait
        if spans is not None and self._dechunk and in_body:  # the chunk data, nothing else
            if pos > keep:
                out.append(data[keep:pos])
            out += [data[spans[i] : spans[i + 1]] for i in range(0, len(spans), 2)]
            keep = stop
        if out:
            if stop > keep:
                out.append(data[keep:stop])
            self._write_pieces(out, end)
        else:
            self._write(data if keep == 0 and stop == n else data[keep:stop], end)
        if switched:
            self._switch_protocols()
        elif complete:
            self._finish(keep_alive=self._response_keep_alive and end == n)

    def on_end(self) -> None:
        if self.finished:
            return
        if self.pipe is not None:
            self.pipe.on_end()
            return
        try:
            events = self._parser.feed_eof()
        except HTTPError as exc:
            self._bad_response(exc)
            return
        if any(isinstance(e, ResponseComplete) for e in events):
            self._finish(keep_alive=False)  # close-delimited body: close marks its end
        else:
            self._bad_response(HTTPError(502, "bad_response", "the local app sent no response"))

    def on_reset(self, code: int) -> None:
        if self.finished:
            return
        if self.pipe is not None:
            self.pipe.on_reset(code)
            return
        if self.response_started:
            self._abort_public()
            return
        if code == ErrorCode.REFUSED_STREAM and self.tc.mux.go_away_received:
            # The OPEN crossed the client's goodbye (it is stopping, its names freed): the
            # app saw nothing, and the tunnel is gone as a lost one is.
            message = "the tunnel closed before the request reached it"
            self._gateway_error(502, "tunnel_offline", message)
        elif code == ErrorCode.REFUSED_STREAM:
            self._gateway_error(503, "tunnel_busy", "the tunnel refused the request")
        elif code == ErrorCode.CONNECT_ERROR:
            self._gateway_error(502, "local_unreachable", "the local app is not answering")
        elif code == ErrorCode.HEAD_TOO_LARGE:
            self._head_too_large()
        else:
            self._gateway_error(502, "tunnel_error", "the tunnel dropped the request")

    def on_writable(self) -> None:
        if self.pipe is not None:
            self.pipe.on_writable()
        else:
            self.conn.resume_reading_for(PAUSE_CREDIT)

    # --- transport.pipe.PipeOwner ------------------------------------------------
    def pipe_finished(self, aborted: bool) -> None:
        pipe = self.pipe
        assert pipe is not None
        self.bytes_in += pipe.bytes_from_socket
        self.bytes_out += pipe.bytes_from_stream
        self._finish(keep_alive=False, aborted=aborted)

    # --- internals ------------------------------------------------------------
    def _on_head(self, head: ResponseHead) -> bytes:
        """What to send the public client for this head, and the gateway's decision on
        the connection (kept after the response, or closed: then the head says so)."""
        self.conn.disarm()  # the app answered: the response timeout is over
        http10 = self.head.version == "1.0"
        if head.interim and not self.request_done and self.head.upgrade is None:
            self.conn.await_body()  # 100 Continue, say: the body is the client's to send
        if head.interim:
            # RFC 9110 §15.2: no 1xx to an HTTP/1.0 client (101 is not interim here, and
            # an HTTP/1.0 request cannot ask for an upgrade: the edge refuses it).
            return b"" if http10 else public_head(head, False, False)
        self.status = head.status
        if head.switching:
            return public_head(head, False, False)
        self._dechunk = dechunk = http10 and head.chunked  # RFC 9112 §6.1
        # An early response (the app answered before the request body is all here) ends
        # the connection, and says so: the rest of the body is read only to be dropped, for
        # a bounded time, so the client can finish sending and read the answer (the edge's
        # lingering close, transport/linger.py). Keeping the connection would mean reading
        # a whole upload first; a client told `Connection: close` simply opens another.
        keep = (
            head.keep_alive
            and self.head.keep_alive
            and self.request_done
            and not dechunk  # the close ends the body
            and not self.conn.draining  # RFC 9112 §9.6: the last response says close
        )
        self._response_keep_alive = keep
        return public_head(head, not keep, http10)

    def _write(self, data: bytes, consumed: int) -> None:
        """Send `data` to the public client for `consumed` bytes of the stream: their
        credit goes back to the client once the public socket takes them."""
        transport = self.conn.transport
        if transport is None or transport.is_closing():
            return
        if data:
            self.response_started = True
            self.bytes_out += len(data)
            transport.write(data)
        self._credit(len(data), consumed)

    def _write_pieces(self, pieces: list[bytes], consumed: int) -> None:
        transport = self.conn.transport
        if transport is None or transport.is_closing():
            return
        size = sum(len(piece) for piece in pieces)
        if size:
            self.response_started = True
            self.bytes_out += size
            transport.writelines(pieces)
        self._credit(size, consumed)

    def _credit(self, written: int, consumed: int) -> None:
        if self.conn.write_paused:
            # Held for a slow reader: its credit waits until the socket drains.
            self._unacked += consumed
            self.conn.hold(written)
        elif consumed:
            self.tc.acknowledge(self.sid, consumed)

    def _switch_protocols(self) -> None:
        """After the 101: the public connection and the stream become one raw pipe, with
        the credit still withheld for bytes the public socket has not taken."""
        unacked, self._unacked = self._unacked, 0
        self.pipe = pipe = Pipe(
            self.tc, self.sid, self.conn, self, reset_code=ErrorCode.CANCEL, unacked=unacked
        )
        self.conn.resume_reading_for(PAUSE_UPGRADE)
        early, self._early = self._early, []
        for chunk in early:
            pipe.on_socket_data(chunk)
        self.conn.resume_requests()  # upgrade bytes the parser queued go to the pipe

    def response_timeout(self) -> None:
        if not self.response_started and not self.finished:
            self.tc.reset(self.sid, ErrorCode.CANCEL)
            self._gateway_error(504, "response_timeout", "the local app did not answer in time")

    def _head_too_large(self) -> None:
        limit = MAX_HEADER_BYTES  # the client's ResponseParser's, which found it
        log.warning(
            "response_head_too_large",
            tunnel=self.tunnel.name,
            path=self.head.target[:200].decode("latin-1"),
            limit=limit,
            client=self.conn.client_addr,
        )
        message = f"the local app's response head is over the limit of {limit} bytes"
        self._gateway_error(502, "response_head_too_large", message)

    def _bad_response(self, exc: HTTPError) -> None:
        self.tc.reset(self.sid, ErrorCode.PROTOCOL_ERROR)
        if exc.code == "response_head_too_large" and not self.response_started:
            self._head_too_large()  # found here: a client older than the code
            return
        if self.response_started:
            self._abort_public()
        else:
            self._gateway_error(502, "bad_response", f"the local app's response: {exc}")

    def _gateway_error(self, status: int, code: str, message: str) -> None:
        host = self.head.host.decode("ascii", "replace")
        transport = self.conn.transport
        if transport is not None and not transport.is_closing():
            transport.write(error_page(status, code, f"{message} ({host})"))
        self._finish(keep_alive=False, status=status)

    def _abort_public(self) -> None:
        """The response is cut off: the public client must be able to tell. A reset, not
        a close: after a close-delimited body a FIN would read as its proper end (the
        abort must come first: a close would send the FIN at once)."""
        self.conn.reset()
        self._finish(keep_alive=False, aborted=True)

    def _finish(
        self, *, keep_alive: bool, status: int | None = None, aborted: bool = False
    ) -> None:
        if self.finished:
            return
        self.finished = True
        if status is not None:
            self.status = status
        if self._share is not None:
            self.tunnel.shares.give(self._share)
            self._share = None
        self.tc.release(self.sid)
        if not self.request_done and self.tc.is_open(self.sid):
            self.tc.reset(self.sid, ErrorCode.CANCEL)  # the app answered before the body ended
        tunnel = self.tunnel
        tunnel.bytes_in += self.bytes_in
        tunnel.bytes_out += self.bytes_out
        elapsed = time.monotonic() - self._started
        self.conn.counters.request(self.status, elapsed, self.bytes_in, self.bytes_out, aborted)
        head = self.head
        access_log.request(
            head.host.decode("ascii", "replace"),
            head.method.decode("ascii", "replace"),
            head.target.decode("latin-1")[:200],
            self.status,
            self.bytes_in,
            self.bytes_out,
            round(elapsed * 1000, 2),
            self.conn.client_addr,
            tunnel.name,
            aborted,
            self.conn.via,
        )
        self.conn.exchange_finished(keep_alive)
