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
"""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Final, Literal, TextIO

_FIELDS: Final = "tunnelgate_fields"  # the LogRecord attribute EventLog fills
_RESERVED: Final = frozenset({"ts", "level", "logger", "event"})


def _timestamp(record: logging.LogRecord) -> str:
    seconds = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
    return f"{seconds}.{int(record.msecs):03d}Z"


def _scrub(value: object) -> object:
    """What may be logged of a value: never payload bytes, only their size."""
    if isinstance(value, bytes | bytearray | memoryview):
        return f"<{len(value)} bytes>"
    return value


def _text_value(value: object) -> str:
    if isinstance(value, bool) or value is None:
        return json.dumps(value)
    if isinstance(value, int | float):
        return str(value)
    text = str(value)
    if not text or any(c in text for c in ' "=\\') or not text.isprintable():
        return json.dumps(text)
    return text


class EventFormatter(logging.Formatter):
    """Formats EventLog records, and anyone else's, as text or JSON lines."""

    def __init__(self, fmt: Literal["text", "json"]) -> None:
        super().__init__()
        self.json = fmt == "json"

    def _event(self, record: logging.LogRecord) -> tuple[str, dict[str, object]]:
        fields: dict[str, object] | None = getattr(record, _FIELDS, None)
        if fields is None:  # a plain logging call, from a library or elsewhere
            return "log", {"logger": record.name, "message": record.getMessage()}
        return record.msg, fields

    def format(self, record: logging.LogRecord) -> str:
        event, fields = self._event(record)
        trace = self.formatException(record.exc_info) if record.exc_info else None
        if self.json:
            line: dict[str, object] = {
                "ts": _timestamp(record),
                "level": record.levelname.lower(),
                "logger": record.name,
                "event": event,
            }
            for key, value in fields.items():
                line[f"field_{key}" if key in _RESERVED else key] = _scrub(value)
            if trace:
                line["traceback"] = trace
            return json.dumps(line, default=str)
        parts = [_timestamp(record), record.levelname, event]
        parts.extend(f"{key}={_text_value(_scrub(value))}" for key, value in fields.items())
        text = " ".join(parts)
        return f"{text}\n{trace}" if trace else text


class _Handler(logging.StreamHandler[TextIO]):
    """Marks the handler configure_logging installed, so a second call replaces it."""


def configure_logging(
    fmt: Literal["text", "json"], stream: TextIO | None = None, level: int = logging.INFO
) -> None:
    """Send every log record (ours and libraries') to `stream` (stderr) in `fmt`."""
    root = logging.getLogger()
    for handler in [h for h in root.handlers if isinstance(h, _Handler)]:
        root.removeHandler(handler)
    handler = _Handler(sys.stderr if stream is None else stream)
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
        # stacklevel=3: the record's file and line are the caller's, not this module's.
        self._logger.log(level, event, exc_info=exc, extra={_FIELDS: merged}, stacklevel=3)

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
