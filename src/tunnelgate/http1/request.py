"""Strict parsing of public HTTP/1.1 requests, the gateway's first line of defence.

Anything a front end and a back end could read two ways (the root of request smuggling)
is refused with 400 and the connection closed, before a byte reaches a tunnel. llhttp in
strict mode (no leniency turned on) refuses most of it; the checks it leaves to its user
are made here, each citing its rule. Framing is decided in `_framing`, so events carry
slices of the caller's bytes and a body read whole is passed on without a copy.
"""

from __future__ import annotations

import re
from typing import Any

import httptools
from httptools import HttpParserError

from tunnelgate.errors import HTTPError
from tunnelgate.limits import MAX_HEADER_BYTES, MAX_HEADER_COUNT

from ._framing import ChunkedFramer, FramingError, HeadFramer, Sink, feed_llhttp, persistent
from .events import BodyData, RequestComplete, RequestEvent, RequestHead, UpgradeData
from .serialize import serialize_head, split_absolute_form

__all__ = [
    "BodyData",
    "RequestComplete",
    "RequestEvent",
    "RequestHead",
    "RequestParser",
    "UpgradeData",
    "serialize_head",
]


_HEAD, _BODY, _CHUNKED, _UPGRADED, _CLOSED = range(5)
_STATE_NAMES = ("head", "body", "chunked", "upgraded", "closed")
_HOST, _CONTENT_LENGTH, _TRANSFER_ENCODING, _CONNECTION, _UPGRADE, _EXPECT = range(6)
_SPECIAL = {
    b"host": _HOST,
    b"content-length": _CONTENT_LENGTH,
    b"transfer-encoding": _TRANSFER_ENCODING,
    b"connection": _CONNECTION,
    b"upgrade": _UPGRADE,
    b"expect": _EXPECT,
}
# RFC 9110 §7.2 / RFC 3986 §3.2.2: uri-host [ ":" port ]; reg-name or an IP literal.
_HOST_RE = re.compile(rb"(?:\[[0-9A-Fa-f:.]+\]|[0-9A-Za-z\-._~!$&'()*+,;=%]+)(?::[0-9]*)?")


def _view(data: bytes, start: int, stop: int) -> Any:
    """data[start:stop] without a copy (httptools reads a memoryview in place)."""
    if start == 0 and stop == len(data):
        return data
    return memoryview(data)[start:stop]


class RequestParser:
    """Feed bytes of one public connection; get events for as many requests as they hold.

    Raises HTTPError (400, 405 or 431) on anything refused; the parser is then dead.
    After a request that does not keep the connection alive, further bytes are ignored
    (the gateway closes after answering, as nginx does after `Connection: close`).
    """

    __slots__ = (
        "_chunks",
        "_error",
        "_framer",
        "_keep_alive",
        "_left",
        "_ll",
        "_max_header_bytes",
        "_max_header_count",
        "_raw_chunks",
        "_sink",
        "_state",
    )

    def __init__(
        self,
        max_header_bytes: int = MAX_HEADER_BYTES,
        max_header_count: int = MAX_HEADER_COUNT,
        *,
        raw_chunks: bool = False,
    ) -> None:
        """`raw_chunks`: a chunked body comes as it was sent (validated), extensions and
        trailers included, for a proxy to pass on; else de-chunked."""
        self._raw_chunks = raw_chunks
        self._max_header_bytes = max_header_bytes
        self._max_header_count = max_header_count
        self._sink = Sink()
        self._framer = HeadFramer(max_header_bytes)
        self._chunks = ChunkedFramer(max_header_bytes)
        self._ll: Any = httptools.HttpRequestParser(self._sink)
        self._state = _HEAD
        self._left = 0  # Content-Length bytes still to come
        self._keep_alive = True
        self._error: HTTPError | None = None

    def __repr__(self) -> str:
        return f"<RequestParser {_STATE_NAMES[self._state]}{' dead' if self._error else ''}>"

    @property
    def head_pending(self) -> bool:
        """True while part of a request head has arrived and the rest has not."""
        return self._state == _HEAD and self._framer.size > 0

    @property
    def reading_request(self) -> bool:
        """True while a request is only partly read (its head, its body), or after a refusal
        (the rest of the bad request may still come); not after an upgrade."""
        state = self._state
        return (
            state == _BODY
            or state == _CHUNKED
            or self._error is not None
            or (state == _HEAD and self._framer.size > 0)
        )

    def unparsed(self) -> bytes:
        """Bytes fed and not yet given out in an event: a head cut mid-way (cluster mode
        sends them on with the rest when it hands a connection to another gateway)."""
        return bytes(self._framer.pending()) if self._state == _HEAD else b""

    def feed(self, data: bytes) -> list[RequestEvent]:
        if self._error is not None:
            raise HTTPError(self._error.status, self._error.code, str(self._error))
        events: list[RequestEvent] = []
        pos, n = 0, len(data)
        try:
            while pos < n:
                state = self._state
                if state == _HEAD:
                    pos = self._feed_head(data, pos, events)
                elif state == _BODY:
                    pos = self._feed_body(data, pos, events)
                elif state == _CHUNKED:
                    pos = self._feed_chunked(data, pos, events)
                elif state == _UPGRADED:
                    events.append(UpgradeData(data if pos == 0 else data[pos:]))
                    break
                else:
                    break  # _CLOSED
        except HTTPError as exc:
            self._error = exc
            raise
        return events

    # --- one step each; each returns the position it got to -----------------
    def _feed_head(self, data: bytes, pos: int, events: list[RequestEvent]) -> int:
        framer, sink = self._framer, self._sink
        end = framer.scan(data, pos)
        # nginx large_client_header_buffers / node max_header_size: the whole raw head,
        # blank line included (an unfinished head of `size` bytes will have more). Checked
        # first, so llhttp (and its per-field Python callbacks) never sees more than that.
        limit = self._max_header_bytes
        if framer.size > limit or (end < 0 and framer.size == limit):
            raise HTTPError(431, "header_too_large", f"request head larger than {limit} bytes")
        stop = len(data) if end < 0 else end
        upgraded = False
        if framer.start < stop:  # fed as it comes, so that garbage is refused at once
            try:
                upgraded = feed_llhttp(self._ll, sink, _view(data, framer.start, stop))
            except HttpParserError as exc:
                raise _refused(exc) from None
        if len(sink.headers) > self._max_header_count:
            raise HTTPError(431, "too_many_headers", f"more than {self._max_header_count} headers")
        if end < 0:
            return len(data)
        head = self._make_head(*framer.head(data, end), upgraded)
        # Lockstep: llhttp ended the head where we did, started no second message, and
        # framed the body as we will (no body: it completed the message already).
        no_body = upgraded or not (head.chunked or head.content_length)
        if not sink.head_done or sink.begun != 1 or sink.complete != no_body:
            raise HTTPError(400, "bad_request", "the request framing is ambiguous")
        events.append(head)
        framer.reset()
        self._keep_alive = head.keep_alive
        if upgraded:
            events.append(RequestComplete())
            self._state = _UPGRADED
        elif head.chunked:
            self._chunks.reset()
            self._state = _CHUNKED
        elif head.content_length:
            self._left = head.content_length
            self._state = _BODY
        else:
            self._complete(events)
        return end

    def _feed_body(self, data: bytes, pos: int, events: list[RequestEvent]) -> int:
        take = min(self._left, len(data) - pos)
        events.append(BodyData(data if take == len(data) else data[pos : pos + take]))
        self._left -= take
        if not self._left:
            self._complete(events)
        return pos + take

    def _feed_chunked(self, data: bytes, pos: int, events: list[RequestEvent]) -> int:
        spans: list[int] | None = None if self._raw_chunks else []
        try:
            end = self._chunks.scan(data, pos, spans)
        except FramingError as exc:
            if exc.too_large:
                raise HTTPError(431, "header_too_large", str(exc)) from None
            raise HTTPError(400, "bad_chunk", str(exc)) from None
        stop = len(data) if end < 0 else end
        try:
            feed_llhttp(self._ll, self._sink, _view(data, pos, stop))
        except HttpParserError as refused:  # its own name: compiled code types it
            raise HTTPError(400, "bad_chunk", f"invalid chunked body: {refused}") from None
        if self._sink.complete != (end >= 0):  # llhttp and _framing must agree on the end
            raise HTTPError(400, "bad_chunk", "the chunked body is ambiguous")
        if spans:  # one event per read, however small the chunks: a copy, but only one
            events.append(BodyData(_gather(data, spans)))
        elif spans is None and stop > pos:  # raw: every byte of the body, as it came
            events.append(BodyData(data if pos == 0 and stop == len(data) else data[pos:stop]))
        if end < 0:
            return len(data)
        self._complete(events)
        return end

    def _complete(self, events: list[RequestEvent]) -> None:
        events.append(RequestComplete())
        if self._keep_alive:
            self._sink.reset()
            self._ll = httptools.HttpRequestParser(self._sink)
            self._state = _HEAD
        else:
            self._state = _CLOSED

    # --- the checks llhttp leaves to us -------------------------------------
    def _make_head(self, buf: bytes, start: int, upgraded: bool) -> RequestHead:
        sink = self._sink
        method: bytes = self._ll.get_method()
        version = _request_version(buf, start, method, sink.url)
        if method == b"CONNECT":  # llhttp takes it; nginx (since 1.21.1) answers 405
            raise HTTPError(405, "method_not_allowed", "CONNECT is not served: not a proxy")
        fields = _special_fields(sink.headers)
        upgrade = fields[_UPGRADE]
        if upgraded:
            if version == "1.0" or not upgrade:
                # RFC 9110 §7.8: Upgrade in HTTP/1.0 must be ignored, but llhttp has already
                # stopped at the head as for a switch; refuse rather than guess.
                raise HTTPError(400, "bad_request", "invalid Upgrade request")
            upgrade = upgrade.lower()
        else:
            upgrade = None
        # llhttp has refused duplicates, non-digits and overflow (RFC 9112 §6.3 rule 5).
        length = fields[_CONTENT_LENGTH]
        expect = fields[_EXPECT]
        return RequestHead(
            method,
            sink.url,
            version,
            sink.headers,
            _check_host(sink.url, fields[_HOST], version, method),
            persistent(version, fields[_CONNECTION]),
            upgrade,
            # RFC 9110 §10.1.1: a 100-continue expectation in HTTP/1.0 is ignored
            expect is not None and version == "1.1" and expect.lower() == b"100-continue",
            _check_transfer_encoding(fields[_TRANSFER_ENCODING], version),
            int(length) if length is not None else None,
            self._framer.size,
        )


def _special_fields(headers: list[tuple[bytes, bytes]]) -> list[bytes | None]:
    """The values of the fields the parser reads, indexed by _HOST etc."""
    fields: list[bytes | None] = [None] * 6
    for name, value in headers:
        kind = _SPECIAL.get(name.lower())
        if kind is None:
            continue
        seen = fields[kind]
        if seen is not None:
            # RFC 9112 §3.2: more than one Host line -> 400 (nginx: "duplicate host header")
            if kind == _HOST:
                raise HTTPError(400, "bad_host", "more than one Host header")
            # llhttp takes a `gzip` line then a `chunked` line; see _check_transfer_encoding
            if kind == _TRANSFER_ENCODING:
                raise HTTPError(400, "ambiguous_framing", "more than one Transfer-Encoding")
            value = seen + b", " + value  # a list field split over lines (RFC 9110 §5.3)
        fields[kind] = value
    return fields


def _gather(data: bytes, spans: list[int]) -> bytes:
    """The bytes of data[a:b] for each (a, b) in spans, copied once (or not at all)."""
    if len(spans) == 2:
        start, stop = spans
        return data if start == 0 and stop == len(data) else data[start:stop]
    view = memoryview(data)
    return b"".join([view[spans[i] : spans[i + 1]] for i in range(0, len(spans), 2)])


def _refused(exc: HttpParserError) -> HTTPError:
    message = str(exc)
    if "Content-Length" in message or "Transfer-Encoding" in message:
        return HTTPError(400, "ambiguous_framing", f"invalid request framing: {message}")
    return HTTPError(400, "bad_request", f"malformed request: {message}")


def _request_version(buf: bytes, start: int, method: bytes, target: bytes) -> str:
    """RFC 9112 §3: method SP request-target SP HTTP-version CRLF, one SP each (lenient
    whitespace "can result in request smuggling", ibid.). llhttp also takes runs of
    spaces, `RTSP/1.0`, `ICE/1.0`, `HTTP/2.0` and HTTP/0.9's bare `GET /`; like h11 we
    take only the grammar (nginx refuses RTSP and answers 505 to HTTP/2.0 as well)."""
    at = start + len(method) + 1  # llhttp checked the method and the SP after it
    end = at + len(target)
    if buf.startswith(target, at):
        if buf.startswith(b" HTTP/1.1\r\n", end):
            return "1.1"
        if buf.startswith(b" HTTP/1.0\r\n", end):
            return "1.0"
    raise HTTPError(400, "bad_request", "the request line must be `METHOD target HTTP/1.x`")


def _check_host(target: bytes, host: bytes | None, version: str, method: bytes) -> bytes:
    authority = None
    if not target.startswith(b"/"):
        if target == b"*":
            if method != b"OPTIONS":  # RFC 9112 §3.2.4: asterisk-form is for OPTIONS only
                raise HTTPError(400, "bad_request", "`*` is a target for OPTIONS only")
        else:
            # RFC 9112 §3.2.2 absolute-form. llhttp takes any scheme and userinfo; only
            # http(s) names a host of ours, and userinfo is deprecated (RFC 9110 §4.2.4).
            authority, _ = split_absolute_form(target)
            if not authority or b"@" in authority or not _HOST_RE.fullmatch(authority):
                raise HTTPError(400, "bad_request", "the request target must be http(s)")
    # RFC 9112 §3.2: a 1.1 request without Host, or with an invalid one -> 400; llhttp
    # checks neither. nginx does both ("client sent HTTP/1.1 request without Host",
    # ngx_http_validate_host); the gateway routes on this value.
    if host is None:
        if version == "1.1":
            raise HTTPError(400, "bad_host", "missing Host header")
    elif host and _HOST_RE.fullmatch(host) is None:
        raise HTTPError(400, "bad_host", "invalid Host header")
    return (authority or host or b"").lower()


def _check_transfer_encoding(value: bytes | None, version: str) -> bool:
    if value is None:
        return False
    # RFC 9112 §6.1: Transfer-Encoding in an HTTP/1.0 message is faulty framing; llhttp
    # takes it. nginx refuses it too ("client sent HTTP/1.0 request with Transfer-Encoding").
    if version == "1.0":
        raise HTTPError(400, "ambiguous_framing", "Transfer-Encoding in an HTTP/1.0 request")
    # llhttp refuses codings after `chunked` and unknown ones, but takes `gzip, chunked`
    # and `,chunked`. We take exactly `chunked` (any case, OWS around it): no other
    # request coding is in use, and every hop must frame alike. nginx does the same (501
    # for any other value), h11 too.
    if value.lower() != b"chunked":
        raise HTTPError(400, "ambiguous_framing", "Transfer-Encoding other than `chunked`")
    return True
