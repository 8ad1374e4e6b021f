"""Where messages begin and end, shared by the request and response parsers.

llhttp validates every byte, but httptools never says *where* in a buffer a head or a
message ended, and the gateway must know that exactly: to cap head sizes by raw bytes,
to hand over what follows an upgrade, to report bytes after a response, and to split
pipelined requests without copying. So framing is decided here, in C-speed `find`
calls and per-line (never per-byte) Python work, and llhttp is fed exactly the same
bytes in lockstep: a byte it refuses is an error, and the parsers check that llhttp
saw each message end exactly where this module did, so the two can never disagree
silently (a disagreement is a smuggling vector; it is refused instead).
"""

from __future__ import annotations

import re
from typing import Any

from httptools import HttpParserError, HttpParserUpgrade

# RFC 9112 §2.2: a server SHOULD ignore at least one empty line before a request-line;
# llhttp skips any run of CR and LF there, and so do we (counting them as head bytes).
_BLANK = re.compile(rb"[\r\n]*")


class FramingError(Exception):
    """Bad chunked framing; `too_large` when the trailer section exceeds its bound."""

    def __init__(self, message: str, *, too_large: bool = False) -> None:
        super().__init__(message)
        self.too_large = too_large


class Sink:
    """llhttp's callbacks for one message.

    A separate object, not the parser itself: an httptools parser holds bound methods of
    its protocol, and a parser that was its own protocol would be a reference cycle left
    for the garbage collector on every connection.
    """

    __slots__ = ("begun", "complete", "head_done", "headers", "reason", "url")

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.url = b""
        self.reason = b""
        self.headers: list[tuple[bytes, bytes]] = []
        self.head_done = False
        self.complete = False
        self.begun = 0  # messages llhttp started: exactly one per head fed

    def on_message_begin(self) -> None:
        self.begun += 1

    def on_url(self, piece: bytes) -> None:
        self.url += piece  # a target cut between two reads arrives in pieces

    def on_status(self, piece: bytes) -> None:
        self.reason += piece

    def on_header(self, name: bytes, value: bytes) -> None:
        # llhttp drops leading OWS and keeps trailing OWS (RFC 9112 §5.1: excluded).
        # After the head, llhttp reports a chunked body's trailers here. We consume and
        # drop them (RFC 9110 §6.5.1: a recipient may discard trailer fields): nothing
        # downstream reads them, and the body is re-chunked without them.
        if not self.head_done:
            self.headers.append((name, value.rstrip(b" \t")))

    def on_headers_complete(self) -> None:
        self.head_done = True

    def on_message_complete(self) -> None:
        self.complete = True


class StatusSink:
    """llhttp's callbacks for a response head we only watch go by.

    No `on_header`: httptools then skips building a Python string pair per field, which
    was most of the cost of a response head. The three framing fields are read from the
    raw head instead (response.py).
    """

    __slots__ = ("begun", "complete", "head_done", "reason")

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.reason = b""
        self.head_done = False
        self.complete = False
        self.begun = 0

    def on_message_begin(self) -> None:
        self.begun += 1

    def on_status(self, piece: bytes) -> None:
        self.reason += piece

    def on_headers_complete(self) -> None:
        self.head_done = True

    def on_message_complete(self) -> None:
        self.complete = True


def feed_llhttp(parser: Any, sink: Sink | StatusSink, data: bytes | memoryview) -> bool:
    """Feed llhttp; True if it stopped after the head for a protocol switch.

    Raises httptools.HttpParserError for bytes llhttp refuses.
    """
    try:
        parser.feed_data(data)
    except HttpParserUpgrade:
        return True
    except HttpParserError:
        # llhttp pauses after every 101 head; httptools reports that pause as an error
        # unless the Upgrade/Connection pair was present. We feed no byte past a message
        # end, so an error after the message completed can only be that pause.
        if sink.complete:
            return True
        raise
    return False


def header_tokens(value: bytes) -> list[bytes]:
    """A comma-separated field value as lower-cased tokens (Connection, Transfer-Encoding)."""
    if b"," not in value:
        return [value.strip(b" \t").lower()]
    return [token.strip(b" \t").lower() for token in value.split(b",")]


def persistent(version: str, connection: bytes | None) -> bool:
    """RFC 9112 §9.3: HTTP/1.1 persists unless `close`; HTTP/1.0 only with `keep-alive`."""
    if connection is None:
        return version == "1.1"
    tokens = header_tokens(connection)
    return b"close" not in tokens and (version == "1.1" or b"keep-alive" in tokens)


class HeadFramer:
    """Finds the end of a head: the first CRLFCRLF after the start line.

    Sound because llhttp is strict: every head line ends in CRLF (a bare CR or LF is
    refused) and no field value holds CR or LF, so the first empty line ends the head.
    `size` counts raw bytes including blank lines skipped before the start line, so a
    head trickled in byte by byte is capped exactly like one sent whole.
    """

    __slots__ = ("_buffer", "_max_bytes", "_started", "size", "start")

    def __init__(self, max_bytes: int) -> None:
        self._max_bytes = max_bytes
        self.reset()

    def reset(self) -> None:
        self._buffer = bytearray()  # head bytes of earlier reads, while the head is cut
        self._started = False
        self.size = 0
        self.start = 0

    def scan(self, data: bytes, pos: int) -> int:
        """Return where the head ends in data (just past CRLFCRLF), or -1 if it goes on.

        Afterwards `start` is where the head's bytes in data begin and `size` counts all
        head bytes so far. Bytes of an unfinished head are kept only up to the limit; the
        caller refuses a head once `size` reaches it.
        """
        if not self._started:
            if data.startswith((b"\r", b"\n"), pos):
                blank = _BLANK.match(data, pos)
                assert blank is not None  # the pattern matches the empty string
                self.size += blank.end() - pos
                pos = blank.end()
            if pos == len(data):
                self.start = pos
                return -1
            self._started = True
        self.start = pos
        end = -1
        buffer = self._buffer
        if buffer:
            # The blank line may straddle the two reads: look at the seam first.
            tail = bytes(buffer[-3:])
            i = (tail + data[pos : pos + 3]).find(b"\r\n\r\n")
            if 0 <= i < len(tail):
                end = pos + i + 4 - len(tail)
        if end < 0:
            i = data.find(b"\r\n\r\n", pos)
            end = i + 4 if i >= 0 else -1
        if end < 0:
            self.size += len(data) - pos
            if self.size < self._max_bytes:
                buffer += memoryview(data)[pos:]
            return -1
        self.size += end - pos
        return end

    def pending(self) -> bytearray:
        """The bytes of an unfinished head kept from earlier reads."""
        return self._buffer

    def head(self, data: bytes, end: int) -> tuple[bytes, int]:
        """The raw head (without skipped blank lines) as (buffer, where it starts),
        copying only when the head was cut across reads."""
        if self._buffer:
            return bytes(self._buffer) + data[:end], 0
        return data, self.start


_SIZE, _DATA, _DATA_END, _TRAILER = range(4)
# A whole chunk-size line in one C call; its extensions are checked by llhttp, dropped here.
_SIZE_LINE = re.compile(rb"([0-9A-Fa-f]+)(?:;[^\r\n]*)?\r\n")


class ChunkedFramer:
    """Finds chunk data and the end of a chunked body (RFC 9112 §7.1).

    llhttp checks the syntax (chunk-size digits, extensions, CRLFs, trailer fields); this
    only needs to be right on input llhttp accepts, and bounds what it buffers: a
    chunk-size line or a trailer line (node caps chunk extensions at 16 KiB since
    CVE-2024-22019) and the trailer section as a whole, both to the head limit. A chunk
    that lies whole in one read costs one regex match and no copy.
    """

    __slots__ = ("_left", "_line", "_max_line", "_state", "_trailer_bytes")

    def __init__(self, max_line: int) -> None:
        self._max_line = max_line
        self.reset()

    def reset(self) -> None:
        self._state = _SIZE
        self._left = 0
        self._line = b""  # a line cut by the end of the previous read
        self._trailer_bytes = 0

    def scan(self, data: bytes, pos: int, spans: list[int] | None) -> int:
        """Return where the body ends in data, or -1 if it goes on past data.

        The start and stop offsets of chunk data found on the way are appended to spans.
        Raises FramingError.
        """
        n = len(data)
        while pos < n:
            state = self._state
            if state == _DATA:
                take = min(self._left, n - pos)
                if spans is not None:
                    spans += (pos, pos + take)
                pos += take
                self._left -= take
                if not self._left:
                    self._state = _DATA_END
                continue
            if state == _SIZE and not self._line:
                moved = self._whole_chunks(data, pos, spans)
                if moved != pos or self._state != _SIZE:
                    pos = moved
                    continue
            line_end = self._read_line(data, pos)
            if line_end is None:
                return -1
            text, pos = line_end
            if state == _SIZE:
                size = _SIZE_LINE.fullmatch(text + b"\r\n")
                if size is None:
                    raise FramingError("invalid chunk size line")
                pos = self._chunk(data, pos, int(size[1], 16), spans)
            elif state == _DATA_END:
                if text:
                    raise FramingError("chunk data not followed by CRLF")
                self._state = _SIZE
            elif text:
                self._trailer_bytes += len(text) + 2
                if self._trailer_bytes > self._max_line:
                    raise FramingError("trailer section too large", too_large=True)
            else:
                return pos
        return -1

    def _whole_chunks(self, data: bytes, pos: int, spans: list[int] | None) -> int:
        """Take the chunks lying whole in data from pos, in a tight loop (the common case);
        stop at the first that does not, or at a size line to be read the slow way."""
        match, bound, crlf_at = _SIZE_LINE.match, self._max_line + 2, data.startswith
        while (line := match(data, pos, pos + bound)) is not None:
            size, start = int(line[1], 16), line.end()
            end = start + size
            if not size or size >> 64 or not crlf_at(b"\r\n", end):
                return self._chunk(data, start, size, spans)
            if spans is not None:
                spans += (start, end)
            pos = end + 2
        return pos

    def _chunk(self, data: bytes, pos: int, size: int, spans: list[int] | None) -> int:
        """After a chunk-size line: take the chunk at once if it is all in data."""
        if size >> 64:
            raise FramingError("chunk size overflow")  # llhttp's bound too
        if not size:
            self._state = _TRAILER
            return pos
        end = pos + size
        if data.startswith(b"\r\n", end):
            if spans is not None:
                spans += (pos, end)
            return end + 2
        self._left = size
        self._state = _DATA
        return pos

    def _read_line(self, data: bytes, pos: int) -> tuple[bytes, int] | None:
        """The next line without its CRLF and the position after it; None if it is cut."""
        limit = self._max_line
        partial = self._line
        if partial:
            joined = partial + data[pos : pos + limit + 2]
            i = joined.find(b"\r\n", len(partial) - 1)  # partial may end with the CR
            if i < 0:
                if len(joined) > limit + 1:
                    raise FramingError("chunk line too long")
                self._line = joined
                return None
            self._line = b""
            line, pos = joined[:i], pos + i + 2 - len(partial)
        else:
            i = data.find(b"\r\n", pos, pos + limit + 2)
            if i < 0:
                if len(data) - pos > limit + 1:
                    raise FramingError("chunk line too long")
                self._line = data[pos:]
                return None
            line, pos = data[pos:i], i + 2
        if len(line) > limit:
            raise FramingError("chunk line too long")
        return line, pos
