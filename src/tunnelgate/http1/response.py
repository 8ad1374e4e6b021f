"""Where the local app's responses begin and end, for byte-exact passthrough.

Both ends forward the app's bytes unchanged; this parser only watches them go by, to
learn the status, whether the connection can be reused and where each response ends
(RFC 9112 §6.3). The app is the developer's own, so a response we cannot frame is a
502 to the public client, never a guess. llhttp validates; framing is decided here,
because llhttp cannot know which request a response answers (HEAD, CONNECT).
"""

from __future__ import annotations

import re
from typing import Any, ClassVar, Final, NoReturn

import httptools
from httptools import HttpParserError

from tunnelgate.errors import HTTPError
from tunnelgate.event import Event
from tunnelgate.limits import MAX_HEADER_BYTES, MAX_HEADER_COUNT

from ._framing import (
    ChunkedFramer,
    FramingError,
    HeadFramer,
    StatusSink,
    feed_llhttp,
    header_tokens,
    persistent,
)

__all__ = [
    "ResponseComplete",
    "ResponseEvent",
    "ResponseHead",
    "ResponseParser",
    "public_head",
]


class ResponseHead(Event):
    """A response head. `interim`: a 1xx other than 101, the final head follows;
    `switching`: 101, the connection speaks another protocol after this head."""

    __slots__ = (
        "_raw",
        "chunked",
        "connection",
        "content_length",
        "end",
        "hop",
        "interim",
        "keep_alive",
        "reason",
        "status",
        "switching",
        "version",
    )
    fields: ClassVar[tuple[str, ...]] = (
        "chunked",
        "content_length",
        "headers",
        "interim",
        "keep_alive",
        "reason",
        "status",
        "switching",
        "version",
    )

    def __init__(
        self,
        status: int,
        reason: bytes,
        version: str,
        raw: bytes,
        keep_alive: bool,
        interim: bool,
        switching: bool,
        chunked: bool,
        content_length: int | None,
        hop: bool = False,
        connection: bytes | None = None,
    ) -> None:
        self.status = status
        self.reason = reason
        self.version = version
        self._raw = raw  # the whole head; fields are split out only if asked for
        self.keep_alive = keep_alive
        self.interim = interim
        self.switching = switching
        self.chunked = chunked
        self.content_length = content_length
        # The head has a hop-by-hop field other than Connection, or Trailer (public_head
        # finds where they are only when it has to rewrite the head).
        self.hop = hop
        self.connection = connection  # the Connection field's value(s), lower-cased
        # Where the head ends in the bytes last fed, which completed it (0: it ended
        # with the previous feed's bytes); set by the parser.
        self.end = 0

    @property
    def raw(self) -> bytes:
        """The head as the app sent it, CRLFCRLF included."""
        return self._raw

    @property
    def headers(self) -> list[tuple[bytes, bytes]]:
        """The fields as sent (name case kept, value without surrounding whitespace)."""
        lines = self._raw.split(b"\r\n")[1:-2]
        return [
            (name, value.strip(b" \t")) for name, _, value in (f.partition(b":") for f in lines)
        ]

    def __repr__(self) -> str:  # field values elided: they hold cookies
        framing = "chunked" if self.chunked else f"length={self.content_length}"
        return (
            f"<ResponseHead HTTP/{self.version} {self.status} {framing}"
            f" headers={len(self.headers)} keep_alive={self.keep_alive}>"
        )


class ResponseComplete(Event):
    """The response ended; `leftover` bytes at the end of the data just fed come after it
    (after a 101 or a 2xx to CONNECT: the new protocol's first bytes)."""

    __slots__ = ("leftover",)
    fields: ClassVar[tuple[str, ...]] = ("leftover",)

    def __init__(self, leftover: int) -> None:
        self.leftover = leftover


ResponseEvent = ResponseHead | ResponseComplete

_IDLE, _HEAD, _BODY, _CHUNKED, _UNTIL_EOF, _STOPPED = range(6)
_STATE_NAMES = ("idle", "head", "body", "chunked", "until-eof", "stopped")
_VERSIONS = {b"HTTP/1.1 ": "1.1", b"HTTP/1.0 ": "1.0"}
# The fields passthrough framing needs, and the hop-by-hop ones the gateway takes out of a
# response (public_head), read from the lower-cased raw head in one C-speed scan (llhttp
# has already refused whitespace before a colon, obs-fold and bare CR/LF).
_SPECIAL_FIELDS: Final = re.compile(
    rb"\r\n(content-length|transfer-encoding|connection|keep-alive|proxy-connection|te"
    rb"|upgrade|trailer):([^\r]*)"
)
_CONTENT_LENGTH, _TRANSFER_ENCODING, _CONNECTION, _KEEP_ALIVE, _PROXY_CONNECTION, _TE = range(6)
_UPGRADE, _TRAILER = 6, 7
_KINDS: Final = {
    b"content-length": _CONTENT_LENGTH,
    b"transfer-encoding": _TRANSFER_ENCODING,
    b"connection": _CONNECTION,
    b"keep-alive": _KEEP_ALIVE,
    b"proxy-connection": _PROXY_CONNECTION,
    b"te": _TE,
    b"upgrade": _UPGRADE,
    b"trailer": _TRAILER,
}
_SAY_UPGRADE: Final = b"Connection: upgrade\r\n"
_SAY_CLOSE: Final = b"Connection: close\r\n"
_SAY_KEEP_ALIVE: Final = b"Connection: keep-alive\r\n"
# Connection options that name no field, and fields a Connection option cannot take out:
# the framing the gateway forwards depends on them.
_NOT_FIELDS: Final = frozenset({b"close", b"keep-alive", b"upgrade"})
_FRAMING: Final = frozenset({b"content-length", b"transfer-encoding"})
_FIELD_LINE: Final = re.compile(rb"\r\n([^:\r]*):[^\r]*")


def _bad(message: str) -> HTTPError:
    return HTTPError(502, "bad_response", message)


def _view(data: bytes, start: int, stop: int) -> Any:
    if start == 0 and stop == len(data):
        return data
    return memoryview(data)[start:stop]


class ResponseParser:
    """Call `expect(method)` before each response, then `feed` its bytes and `feed_eof`
    when the app closes. Raises HTTPError(502, "bad_response", ...); then it is dead."""

    __slots__ = (
        "_chunks",
        "_error",
        "_framer",
        "_left",
        "_ll",
        "_max_header_bytes",
        "_max_header_count",
        "_method",
        "_sink",
        "_state",
        "spans",
    )

    def __init__(
        self, max_header_bytes: int = MAX_HEADER_BYTES, max_header_count: int = MAX_HEADER_COUNT
    ) -> None:
        self._max_header_bytes = max_header_bytes
        self._max_header_count = max_header_count
        self._sink = StatusSink()
        self._framer = HeadFramer(max_header_bytes)
        self._chunks = ChunkedFramer(max_header_bytes)
        self._ll: Any = None
        self._method = b""
        self._state = _IDLE
        self._left = 0
        self._error: HTTPError | None = None
        # When a list: the start and stop offsets, in the data being fed, of a chunked
        # body's chunk data are appended to it (for de-chunking; the caller empties it).
        self.spans: list[int] | None = None

    def __repr__(self) -> str:
        method = self._method.decode("ascii", "replace")
        dead = " dead" if self._error else ""
        return f"<ResponseParser {_STATE_NAMES[self._state]} to {method or '-'}{dead}>"

    @property
    def head_size(self) -> int:
        """Bytes of the response head read so far (the current one, while in a head)."""
        return self._framer.size

    def expect(self, method: bytes) -> None:
        """A request with this method was sent: its response comes next."""
        if self._state != _IDLE:
            raise RuntimeError(f"expect() while the parser is {_STATE_NAMES[self._state]}")
        self._method = method
        self._start_head()

    def feed(self, data: bytes) -> list[ResponseEvent]:
        self._check_alive()
        if self._state == _IDLE and data:
            self._fail(_bad("the local app sent bytes with no request outstanding"))
        events: list[ResponseEvent] = []
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
                else:
                    break  # until EOF: all body; stopped: not HTTP any more; idle: complete
        except HTTPError as exc:
            self._fail(exc)
        return events

    def feed_eof(self) -> list[ResponseEvent]:
        """The app closed its side. Ends a body delimited by the close (RFC 9112 §6.3
        rule 8); anything else unfinished is a 502."""
        self._check_alive()
        state = self._state
        if state == _UNTIL_EOF:
            self._state = _IDLE
            return [ResponseComplete(0)]
        if state == _IDLE or state == _STOPPED:
            return []
        if state == _HEAD and self._framer.size == 0:
            self._fail(_bad("the local app closed the connection without a response"))
        self._fail(_bad("the local app closed the connection in the middle of a response"))

    # --- steps -------------------------------------------------------------
    def _feed_head(self, data: bytes, pos: int, events: list[ResponseEvent]) -> int:
        framer, sink, n = self._framer, self._sink, len(data)
        end = framer.scan(data, pos)
        limit = self._max_header_bytes  # as for requests; nginx proxy_buffer_size is 4-8 KiB
        if framer.size > limit or (end < 0 and framer.size == limit):
            # Its own code: the client tells the gateway (RESET HEAD_TOO_LARGE), which
            # answers 502 response_head_too_large rather than a vague tunnel_error.
            raise HTTPError(
                502,
                "response_head_too_large",
                f"response head of {framer.size} bytes or more, over the limit of {limit}",
            )
        stop = n if end < 0 else end
        if framer.start < stop:
            try:
                feed_llhttp(self._ll, sink, _view(data, framer.start, stop))
            except HttpParserError as exc:
                raise _bad(f"invalid response head: {exc}") from None
        if end < 0:
            return n
        if not sink.head_done or sink.begun != 1:  # llhttp must end the head where we do
            raise _bad("the response head is ambiguous")
        buf, start = framer.head(data, end)
        raw = buf[start:end] if buf is data else buf
        if raw.count(b"\r\n") - 2 > self._max_header_count:  # less the start and blank lines
            raise _bad(f"response head with more than {self._max_header_count} headers")
        head = self._make_head(raw)
        head.end = end
        events.append(head)
        status = head.status
        if head.interim:
            self._start_head()  # the final response follows
            return end
        if head.switching or (self._method == b"CONNECT" and status < 300):
            events.append(ResponseComplete(n - end))
            self._state = _STOPPED
            return n
        if not _has_body(self._method, status):
            return self._complete(events, end, n)
        if head.chunked:
            self._chunks.reset()
            self._state = _CHUNKED
        elif head.content_length is not None:
            if not head.content_length:
                return self._complete(events, end, n)
            self._left = head.content_length
            self._state = _BODY
        else:
            self._state = _UNTIL_EOF
            return n
        return end

    def _feed_body(self, data: bytes, pos: int, events: list[ResponseEvent]) -> int:
        n = len(data)
        if n - pos < self._left:
            self._left -= n - pos
            return n
        end, self._left = pos + self._left, 0
        return self._complete(events, end, n)

    def _feed_chunked(self, data: bytes, pos: int, events: list[ResponseEvent]) -> int:
        try:
            end = self._chunks.scan(data, pos, self.spans)
        except FramingError as exc:
            raise _bad(f"invalid chunked body: {exc}") from None
        n = len(data)
        stop = n if end < 0 else end
        try:
            feed_llhttp(self._ll, self._sink, _view(data, pos, stop))
        except HttpParserError as refused:  # its own name: compiled code types it
            raise _bad(f"invalid chunked body: {refused}") from None
        if self._sink.complete != (end >= 0):  # llhttp and _framing must agree on the end
            raise _bad("the chunked body is ambiguous")
        return n if end < 0 else self._complete(events, end, n)

    def _complete(self, events: list[ResponseEvent], end: int, n: int) -> int:
        events.append(ResponseComplete(n - end))
        self._state = _IDLE
        return n

    def _start_head(self) -> None:
        self._sink.reset()
        self._framer.reset()
        # A fresh llhttp per head: it cannot be told that a response to HEAD has no body.
        self._ll = httptools.HttpResponseParser(self._sink)
        self._state = _HEAD

    def _make_head(self, raw: bytes) -> ResponseHead:
        version = _VERSIONS.get(raw[:9])
        if version is None:  # llhttp also takes RTSP/ and ICE/, and HTTP/2.0
            raise _bad("the local app answered in a version other than HTTP/1.x")
        status: int = self._ll.get_status_code()
        if not 100 <= status <= 599:  # RFC 9110 §15: llhttp takes any three digits
            raise _bad(f"status {status} is out of range")
        length = encoding = connection = None
        hop = False
        for key, value in _SPECIAL_FIELDS.findall(raw.lower()):
            value = value.strip(b" \t")
            if key == b"content-length":
                length = value  # llhttp refused duplicates and non-digits
            elif key == b"transfer-encoding":
                encoding = value  # the last line ends the list
            elif key == b"connection":
                connection = value if connection is None else connection + b"," + value
            else:
                hop = True
        # RFC 9112 §6.3: chunked only when it is the final coding, else close-delimited
        chunked = encoding is not None and header_tokens(encoding)[-1] == b"chunked"
        keep_alive = persistent(version, connection)
        switching = status == 101
        if switching or (self._method == b"CONNECT" and 200 <= status < 300):
            keep_alive = False  # the connection now carries another protocol
        elif not chunked and length is None and _has_body(self._method, status):
            keep_alive = False  # the body ends when the app closes
        return ResponseHead(
            status,
            self._sink.reason,
            version,
            raw,
            keep_alive,
            status < 200 and not switching,
            switching,
            chunked,
            int(length) if length is not None else None,
            hop,
            connection,
        )

    def _check_alive(self) -> None:
        if self._error is not None:
            raise HTTPError(self._error.status, self._error.code, str(self._error))

    def _fail(self, exc: HTTPError) -> NoReturn:
        self._error = exc
        raise exc


def _has_body(method: bytes, status: int) -> bool:
    """RFC 9112 §6.3 rules 1-2: no body after HEAD, 1xx, 204, 304 or a 2xx to CONNECT."""
    if method == b"HEAD" or status < 200 or status == 204 or status == 304:
        return False
    return not (method == b"CONNECT" and status < 300)


def public_head(head: ResponseHead, close: bool, http10: bool) -> bytes:
    """`head` as the gateway sends it to the public client, whose server it is.

    Hop-by-hop fields are taken out (RFC 9110 §7.6.1: Connection, the fields it names,
    Keep-Alive, Proxy-Connection, TE, and Upgrade outside a 101), as serialize_head does
    for requests; then the gateway states its own decision: `Connection: close` when it
    closes after this response (`close`), `Connection: keep-alive` to an HTTP/1.0 client
    it keeps, `Connection: upgrade` on a 101. For an HTTP/1.0 client (`http10`) a chunked
    body is de-chunked to a close-delimited one (RFC 9112 §6.1), so Transfer-Encoding and
    Trailer go too (its trailers cannot be sent). Returns `head.raw` itself when nothing
    changes: the common case costs no copy. That includes an app's lone `Connection:
    keep-alive` on a response the gateway keeps (or `close` on one it closes): the app's
    option for its hop, but exactly what the gateway may say of its own, so the bytes are
    the same as dropped and restated (nginx and Node send it on every response).
    """
    raw = head.raw
    interim = head.interim
    switching = head.switching
    dechunk = http10 and head.chunked
    if switching:
        extra = _SAY_UPGRADE
    elif interim:
        extra = b""
    elif close:
        extra = _SAY_CLOSE
    elif http10:
        extra = _SAY_KEEP_ALIVE
    else:
        extra = b""
    connection = head.connection
    if not head.hop and not dechunk and not switching:
        # The common cases, decided without looking at the head again: no hop-by-hop
        # field, or only a Connection that already says what the gateway would.
        if connection is None:
            if not extra:
                return raw
        elif connection == b"keep-alive" and not close and not interim:
            return raw  # true of the public hop too: it is kept (and HTTP/1.0 is told)
        elif connection == b"close" and close and not interim:
            return raw
    drop: list[int] = []
    for match in _SPECIAL_FIELDS.finditer(raw.lower()):
        kind = _KINDS[match[1]]
        if kind == _CONTENT_LENGTH or kind == _TRANSFER_ENCODING or kind == _TRAILER:
            if not dechunk:
                continue  # the body goes as it came, framing and trailers with it
        elif kind == _UPGRADE and switching:
            continue
        drop += (match.start(), match.end())
    if connection is not None:
        _drop_named(raw, connection, drop)
    if not drop and not extra:
        return raw  # only framing fields, kept
    parts: list[bytes] = []
    at = 0
    for i in range(0, len(drop), 2):
        parts.append(raw[at : drop[i]])
        at = drop[i + 1]
    parts += (raw[at:-2], extra, b"\r\n")
    return b"".join(parts)


def _drop_named(raw: bytes, connection: bytes, drop: list[int]) -> None:
    """Add the lines of the fields `connection` names to `drop`, kept in order (rare: one
    more scan of the head, only when the app names a field of its own)."""
    named = {token for token in header_tokens(connection) if token}
    named -= _NOT_FIELDS | _FRAMING
    named -= _KINDS.keys()  # dropped already, or kept on purpose
    if not named:
        return
    for match in _FIELD_LINE.finditer(raw.lower()):
        if match[1] in named:
            drop += (match.start(), match.end())
    pairs = sorted(zip(drop[::2], drop[1::2], strict=True))
    drop[:] = [x for pair in pairs for x in pair]
