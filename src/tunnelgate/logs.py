"""Structured logs for both sides, on top of the stdlib `logging` module.

    log = EventLog("tunnelgate.gateway")
    log.info("request", host="foo.localhost", method="GET", status=200)

comes out, with `configure_logging("text")`, as

    2026-11-25T07:45:58.123Z INFO request host=foo.localhost method=GET status=200

and with `configure_logging("json")` as one object a line:

    {"ts": "2026-11-25T07:45:58.123Z", "level": "info", "logger": "tunnelgate.gateway",
     "event": "request", "host": "foo.localhost", "method": "GET", "status": 200}

Records from other libraries (picows, asyncio) go through the same formatter, as the
event "log" with their text in a `message` field. Payloads are never logged: a bytes-like
field value is shown only as its length.

A request line is written for every public request, so our own events skip the stdlib
machinery (record objects, caller lookup) and lines are written once per event-loop turn
(`LineWriter`), not once each: a line cost 25-30 us that way, about 4 us this way.
"""

from __future__ import annotations

import asyncio
import atexit
import json
import logging
import re
import select
import sys
import time
import weakref
from collections.abc import Callable, Mapping
from typing import Final, Literal, TextIO

_FIELDS: Final = "tunnelgate_fields"  # the LogRecord attribute EventLog fills
_RESERVED: Final = frozenset({"ts", "level", "logger", "event"})


_NEEDS_QUOTES: Final = re.compile(r'[\s"=\\]|[^\x20-\x7e]')
_LEVEL_NAMES: Final = {
    logging.DEBUG: "DEBUG",
    logging.INFO: "INFO",
    logging.WARNING: "WARNING",
    logging.ERROR: "ERROR",
}


class _Clock:
    """ISO timestamps, with the seconds part formatted once a second, not once a line."""

    def __init__(self) -> None:
        self._second = -1
        self._prefix = ""

    def stamp(self, created: float) -> str:
        second = int(created)
        if second != self._second:
            self._second = second
            self._prefix = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        return f"{self._prefix}.{int((created - second) * 1000):03d}Z"


_clock = _Clock()


def _timestamp(record: logging.LogRecord) -> str:
    return _clock.stamp(record.created)


class LineWriter:
    """Lines for one stream, written together at the end of the event-loop turn.

    Outside a running loop (start-up, shutdown, tests) each line is written at once.
    """

    # Weak: a writer replaced by a later configure_logging (or a test's) is not kept alive.
    _all: Final[weakref.WeakSet[LineWriter]] = weakref.WeakSet()

    def __init__(self, stream: TextIO, *, shared: bool = False) -> None:
        self.stream = stream
        # Other processes (the workers of one supervisor) write to the same stream: each
        # write then holds whole lines and at most PIPE_BUF bytes, which POSIX writes to a
        # pipe in one piece, so no line is torn by another process's. Lines are ASCII
        # (format_event escapes the rest), so characters count bytes.
        self._max_write = select.PIPE_BUF if shared else 0
        self._lines: list[str] = []
        LineWriter._all.add(self)

    def write(self, line: str) -> None:
        if not self._lines:
            try:
                asyncio.get_running_loop().call_soon(self.flush)
            except RuntimeError:  # no loop running: nothing would flush later
                self._write_now(line + "\n")
                return
        self._lines.append(line)

    def flush(self) -> None:
        if self._lines:
            lines, self._lines = self._lines, []
            lines.append("")
            text = "\n".join(lines)
            if self._max_write and len(text) > self._max_write:
                self._write_pieces(text)
            else:
                self._write_now(text)

    def _write_pieces(self, text: str) -> None:
        """`text` in writes of whole lines, each at most `_max_write` long (a longer line
        alone: it cannot be written in one piece anyway)."""
        start, end, most = 0, len(text), self._max_write
        while end - start > most:
            cut = text.rfind("\n", start, start + most) + 1
            if cut <= start:
                cut = text.find("\n", start + most) + 1 or end
            self._write_now(text[start:cut])
            start = cut
        if start < end:
            self._write_now(text[start:])

    def _write_now(self, text: str) -> None:
        try:
            self.stream.write(text)
            self.stream.flush()
        except (OSError, ValueError):
            pass  # a closed or broken stream must not take the service down

    @classmethod
    def flush_all(cls) -> None:
        for writer in list(cls._all):
            writer.flush()


atexit.register(LineWriter.flush_all)


_BYTES_TYPES: Final = (bytes, bytearray, memoryview)


def _scrub(value: object) -> object:
    """What may be logged of a value: never payload bytes, only their size."""
    if isinstance(value, _BYTES_TYPES):
        return f"<{len(value)} bytes>"
    return value


def _text_value(value: object) -> str:
    kind = type(value)
    if kind is int or kind is float:
        return str(value)
    if kind is str:
        text: str = value  # type: ignore[assignment]
    elif value is None or kind is bool:
        return json.dumps(value)
    else:
        text = str(_scrub(value))
    if not text or _NEEDS_QUOTES.search(text):
        return json.dumps(text)
    return text


def format_event(
    json_format: bool,
    stamp: str,
    level: str,
    logger: str,
    event: str,
    fields: dict[str, object],
    trace: str | None = None,
) -> str:
    # One line per public request comes through here: the common cases are inlined.
    if json_format:
        line: dict[str, object] = {
            "ts": stamp,
            "level": level.lower(),
            "logger": logger,
            "event": event,
        }
        for key, value in fields.items():
            if key in _RESERVED:
                key = f"field_{key}"
            line[key] = f"<{len(value)} bytes>" if isinstance(value, _BYTES_TYPES) else value
        if trace:
            line["traceback"] = trace
        return json.dumps(line, default=str)
    parts = [stamp, level, event]
    for key, value in fields.items():
        kind = type(value)
        if (
            kind is int
            or kind is float
            or (
                kind is str and value and not _NEEDS_QUOTES.search(value)  # type: ignore[call-overload]
            )
        ):
            parts.append(f"{key}={value}")
        else:
            parts.append(f"{key}={_text_value(value)}")
    text = " ".join(parts)
    return f"{text}\n{trace}" if trace else text


class EventFormatter(logging.Formatter):
    """Formats EventLog records, and anyone else's, as text or JSON lines."""

    def __init__(self, fmt: Literal["text", "json"]) -> None:
        super().__init__()
        self.json = fmt == "json"

    def _event(self, record: logging.LogRecord) -> tuple[str, dict[str, object]]:
        fields: dict[str, object] | None = getattr(record, _FIELDS, None)
        if fields is None:  # a plain logging call, from a library or elsewhere
            return "log", {**_config.context, "logger": record.name, "message": record.getMessage()}
        return record.msg, fields

    def format(self, record: logging.LogRecord) -> str:
        event, fields = self._event(record)
        trace = self.formatException(record.exc_info) if record.exc_info else None
        return format_event(
            self.json, _timestamp(record), record.levelname, record.name, event, fields, trace
        )


class _Handler(logging.Handler):
    """Library records, formatted like ours, into the same LineWriter."""

    def __init__(self, writer: LineWriter) -> None:
        super().__init__()
        self.writer = writer

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.writer.write(self.format(record))
        except Exception:  # logging must never raise into the caller
            self.handleError(record)


class _Config:
    """What configure_logging chose; EventLog reads it on every event."""

    writer: LineWriter | None = None
    json = False
    level = logging.INFO
    # Fields every line of this process carries first (a worker's `worker=i`), and the
    # same as text, for the access log's preformatted line.
    context: dict[str, object] = {}  # noqa: RUF012 - replaced whole, never mutated
    context_text = ""


_config = _Config()


def configure_logging(
    fmt: Literal["text", "json"],
    stream: TextIO | None = None,
    level: int = logging.INFO,
    *,
    context: Mapping[str, int | str] | None = None,
) -> None:
    """Send every log record (ours and libraries') to `stream` (stderr) in `fmt`.

    `context`: fields every line carries, first (a worker's `worker=i`); the stream is
    then taken to be shared with sibling processes (LineWriter's `shared`)."""
    root = logging.getLogger()
    for handler in [h for h in root.handlers if isinstance(h, _Handler)]:
        root.removeHandler(handler)
    if _config.writer is not None:
        _config.writer.flush()
    writer = LineWriter(sys.stderr if stream is None else stream, shared=bool(context))
    _config.writer = writer
    _config.json = fmt == "json"
    _config.level = level
    _config.context = dict(context or {})
    _config.context_text = "".join(f" {k}={_text_value(v)}" for k, v in _config.context.items())
    handler = _Handler(writer)
    handler.setFormatter(EventFormatter(fmt))
    root.addHandler(handler)
    root.setLevel(level)


class EventLog:
    """A named source of structured events: `log.info("registered", name=..., url=...)`."""

    __slots__ = ("_context", "_logger")

    def __init__(self, name: str) -> None:
        self._logger = logging.getLogger(name)
        self._context: dict[str, object] = {}

    def bind(self, **context: object) -> EventLog:
        """The same log with `context` fields added to every event (tunnel=..., client=...)."""
        child = EventLog(self._logger.name)
        child._context = {**self._context, **context}
        return child

    def _emit(self, level: int, event: str, fields: dict[str, object], exc: bool = False) -> None:
        merged = {**self._context, **fields} if self._context else fields
        if _config.context:
            merged = {**_config.context, **merged}
        writer = _config.writer
        if writer is None or exc:
            # Not configured (library use), or a traceback to render: the stdlib path.
            # stacklevel=3: the record's file and line are the caller's, not this module's.
            self._logger.log(level, event, exc_info=exc, extra={_FIELDS: merged}, stacklevel=3)
            return
        writer.write(
            format_event(
                _config.json,
                _clock.stamp(time.time()),
                _LEVEL_NAMES.get(level, "INFO"),
                self._logger.name,
                event,
                merged,
            )
        )

    def debug(self, event: str, /, **fields: object) -> None:
        if self._logger.isEnabledFor(logging.DEBUG):
            self._emit(logging.DEBUG, event, fields)

    def info(self, event: str, /, **fields: object) -> None:
        if self._logger.isEnabledFor(logging.INFO):
            self._emit(logging.INFO, event, fields)

    def warning(self, event: str, /, **fields: object) -> None:
        if self._logger.isEnabledFor(logging.WARNING):
            self._emit(logging.WARNING, event, fields)

    def error(self, event: str, /, **fields: object) -> None:
        if self._logger.isEnabledFor(logging.ERROR):
            self._emit(logging.ERROR, event, fields)

    def exception(self, event: str, /, **fields: object) -> None:
        """An error with the traceback of the exception being handled."""
        if self._logger.isEnabledFor(logging.ERROR):
            self._emit(logging.ERROR, event, fields, exc=True)

    def __repr__(self) -> str:
        return f"<EventLog {self._logger.name!r}>"


def _plain(text: str) -> str:
    return text if text and not _NEEDS_QUOTES.search(text) else json.dumps(text)


class AccessLog:
    """The line per public request, formatted in one go: it is written at the request
    rate, where the generic per-field formatting cost a tenth of the gateway's time."""

    __slots__ = ("_events", "_name")

    def __init__(self, name: str) -> None:
        self._name = name
        self._events = EventLog(name)  # the general path, when not configured

    def request(
        self,
        host: str,
        method: str,
        path: str,
        status: int,
        bytes_in: int,
        bytes_out: int,
        duration_ms: float,
        client: str,
        tunnel: str | None,
        aborted: bool = False,
        via: str | None = None,
    ) -> None:
        """`aborted`: the response was cut off before its end (the public client saw
        a reset or a short body, never a complete response). `via`: the gateway that
        forwarded the connection here (cluster mode); the field is left out when None."""
        writer = _config.writer
        if writer is None:
            self._events.info(
                "request",
                host=host,
                method=method,
                path=path,
                status=status,
                bytes_in=bytes_in,
                bytes_out=bytes_out,
                duration_ms=duration_ms,
                client=client,
                tunnel=tunnel,
                aborted=aborted,
                **({} if via is None else {"via": via}),
            )
            return
        if _config.level > logging.INFO:
            return
        stamp = _clock.stamp(time.time())
        if _config.json:
            fields: dict[str, object] = {
                "ts": stamp,
                "level": "info",
                "logger": self._name,
                "event": "request",
                **_config.context,
                "host": host,
                "method": method,
                "path": path,
                "status": status,
                "bytes_in": bytes_in,
                "bytes_out": bytes_out,
                "duration_ms": duration_ms,
                "client": client,
                "tunnel": tunnel,
                "aborted": aborted,
            }
            if via is not None:
                fields["via"] = via
            line = json.dumps(fields)
        else:
            line = (
                f"{stamp} INFO request{_config.context_text} host={_plain(host)} "
                f"method={_plain(method)} "
                f"path={_plain(path)} status={status} bytes_in={bytes_in} "
                f"bytes_out={bytes_out} duration_ms={duration_ms} client={_plain(client)} "
                f"tunnel={'null' if tunnel is None else _plain(tunnel)}"
                f"{' aborted=true' if aborted else ''}"
                f"{'' if via is None else ' via=' + _plain(via)}"
            )
        writer.write(line)


class RateLimitedLog:
    """Warnings an attacker can trigger at will (refused connections, timeouts, floods):
    at most `burst` lines per event name in each `interval` seconds. What is held back is
    counted and reported as `suppressed=N` on the next line of that event that goes out,
    so an attack shows in the log without turning into a log flood."""

    __slots__ = ("_burst", "_clock", "_interval", "_log", "_windows")

    def __init__(
        self,
        log: EventLog,
        *,
        interval: float = 10.0,
        burst: int = 5,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._log = log
        self._clock = clock
        self._interval = interval
        self._burst = burst
        # event -> [window start, lines written in it, lines suppressed since the last one]
        self._windows: dict[str, list[float]] = {}

    def warning(self, event: str, /, **fields: object) -> bool:
        """Log `event` unless its budget is spent; True if a line was written."""
        now = self._clock()
        window = self._windows.get(event)
        if window is None:
            window = self._windows[event] = [now, 0, 0]
        elif now - window[0] >= self._interval:
            window[0], window[1] = now, 0
        if window[1] >= self._burst:
            window[2] += 1
            return False
        window[1] += 1
        suppressed, window[2] = int(window[2]), 0
        if suppressed:
            fields["suppressed"] = suppressed
        self._log.warning(event, **fields)
        return True
