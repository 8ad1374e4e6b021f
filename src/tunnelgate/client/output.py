"""What the client tells its user: tunnel URLs, forwarded requests and connections,
connection trouble.

Two renderings behind one `Output` protocol:

- "text", for people: `Forwarding  http://foo.localhost:8080 -> http://127.0.0.1:3000`,
  then one line per request (`GET /path 200 12.3 ms`) or, for TCP and TLS tunnels, per
  public connection once it ended (`TCP 203.0.113.9:4000 closed 1503.2 ms in=12 out=3400`)
  on stdout; connection news on stderr.
- "json", for scripts: one JSON object a line on stdout, "event" first:
  `{"event": "tunnel_ready", "name": "http", "url": "...", "local": "..."}`,
  `{"event": "request", ...}`, `{"event": "connection", "tunnel", "protocol", "client",
  "end", "duration_ms", "bytes_in", "bytes_out"}`; on SIGINT/SIGTERM `{"event": "draining",
  "open_streams", "timeout_s"}`, then `{"event": "drained", "ended": "idle"|"closed"|
  "timeout"|"signal", "duration_ms", "cut_streams"}`.

A rejection is always also one line on stderr, `tunnelgate: tunnel NAME rejected: ...`, so
it is seen whichever format was asked for. Lines are flushed at the end of each event-loop turn:
scripts and the end-to-end tests read stdout line by line from a pipe.

Paths and methods come from the public internet: in text they are shown with control
characters escaped and long paths cut, so a request cannot write to the user's terminal.
"""

from __future__ import annotations

import json
import sys
from typing import Final, Literal, Protocol, TextIO

from tunnelgate.logs import LineWriter

MAX_SHOWN_PATH: Final = 200  # characters of a request path a text line shows


class Output(Protocol):
    def connecting(self, server: str) -> None: ...

    def tunnel_ready(self, name: str, url: str, local: str) -> None: ...

    def request(
        self,
        tunnel: str,
        method: str,
        path: str,
        status: int,
        duration_ms: float,
        bytes_in: int,
        bytes_out: int,
    ) -> None: ...

    def connection(
        self,
        tunnel: str,
        protocol: str,
        client: str,
        end: str,
        duration_ms: float,
        bytes_in: int,
        bytes_out: int,
    ) -> None: ...

    def reconnecting(self, attempt: int, delay: float, reason: str) -> None: ...

    def rejected(self, tunnel: str, reason: str, message: str) -> None: ...

    def closed(self, reason: str) -> None: ...

    def draining(self, open_streams: int, timeout: float) -> None: ...

    def drained(self, ended: str, duration_ms: float, cut_streams: int) -> None: ...

    def error(self, message: str) -> None: ...


_writers: dict[int, LineWriter] = {}


def _write(stream: TextIO, line: str) -> None:
    """Lines go out once per event-loop turn (a request line each would be a syscall each)."""
    writer = _writers.get(id(stream))
    if writer is None or writer.stream is not stream:
        writer = _writers[id(stream)] = LineWriter(stream)
    writer.write(line)


def _rejection(tunnel: str, reason: str, message: str) -> str:
    return (
        f"tunnelgate: tunnel {tunnel} rejected: {printable(message, 500)} ({printable(reason, 64)})"
    )


def draining_text(open_streams: int, timeout: float) -> str:
    """What a person sees when the client starts its drain (text lines, live view)."""
    return (
        f"Stopping: no new requests; {open_streams} in flight may finish within {timeout:g} s "
        "(Ctrl+C again to stop now)"
    )


def drained_text(ended: str, duration_ms: float, cut_streams: int) -> str:
    why = {"idle": "all finished", "closed": "the gateway closed the connection"}
    if ended in why:
        return f"Stopped: {why[ended]} ({duration_ms:.1f} ms)"
    cause = "at once, on the second signal" if ended == "signal" else "at the drain timeout"
    return f"Stopped {cause}: {cut_streams} in flight cut off ({duration_ms:.1f} ms)"


def printable(text: str, limit: int = MAX_SHOWN_PATH) -> str:
    """`text` with non-printable characters escaped and cut to `limit` characters."""
    if text.isprintable() and len(text) <= limit:
        return text
    escaped = "".join(c if c.isprintable() else ascii(c)[1:-1] for c in text)
    return escaped if len(escaped) <= limit else escaped[: limit - 3] + "..."


class TextOutput:
    """Lines for a person at a terminal."""

    def __init__(self, stdout: TextIO, stderr: TextIO) -> None:
        self._out = stdout
        self._err = stderr
        self._tunnels: set[str] = set()

    def connecting(self, server: str) -> None:
        _write(self._err, f"Connecting to {server}")

    def tunnel_ready(self, name: str, url: str, local: str) -> None:
        self._tunnels.add(name)
        _write(self._out, f"Forwarding  {url} -> {local}")

    def request(
        self,
        tunnel: str,
        method: str,
        path: str,
        status: int,
        duration_ms: float,
        bytes_in: int,
        bytes_out: int,
    ) -> None:
        # With several tunnels on one connection, say which one served the request.
        prefix = f"[{tunnel}] " if len(self._tunnels) > 1 else ""
        line = f"{prefix}{printable(method, 32)} {printable(path)} {status} {duration_ms:.1f} ms"
        _write(self._out, line)

    def connection(
        self,
        tunnel: str,
        protocol: str,
        client: str,
        end: str,
        duration_ms: float,
        bytes_in: int,
        bytes_out: int,
    ) -> None:
        prefix = f"[{tunnel}] " if len(self._tunnels) > 1 else ""
        line = (
            f"{prefix}{protocol.upper()} {printable(client, 64)} {end} {duration_ms:.1f} ms "
            f"in={bytes_in} out={bytes_out}"
        )
        _write(self._out, line)

    def reconnecting(self, attempt: int, delay: float, reason: str) -> None:
        _write(self._err, f"Connection lost ({reason}); reconnecting in {delay:.1f} s "
                          f"(attempt {attempt})")  # fmt: skip

    def rejected(self, tunnel: str, reason: str, message: str) -> None:
        _write(self._err, _rejection(tunnel, reason, message))

    def closed(self, reason: str) -> None:
        _write(self._err, f"Closed: {reason}")

    def draining(self, open_streams: int, timeout: float) -> None:
        _write(self._err, draining_text(open_streams, timeout))

    def drained(self, ended: str, duration_ms: float, cut_streams: int) -> None:
        _write(self._err, drained_text(ended, duration_ms, cut_streams))

    def error(self, message: str) -> None:
        _write(self._err, f"tunnelgate: {message}")


class JsonOutput:
    """One JSON object a line on stdout, "event" first."""

    def __init__(self, stdout: TextIO, stderr: TextIO) -> None:
        self._out = stdout
        self._err = stderr

    def _event(self, event: str, **fields: object) -> None:
        _write(self._out, json.dumps({"event": event, **fields}))

    def connecting(self, server: str) -> None:
        self._event("connecting", server=server)

    def tunnel_ready(self, name: str, url: str, local: str) -> None:
        self._event("tunnel_ready", name=name, url=url, local=local)

    def request(
        self,
        tunnel: str,
        method: str,
        path: str,
        status: int,
        duration_ms: float,
        bytes_in: int,
        bytes_out: int,
    ) -> None:
        self._event(
            "request",
            tunnel=tunnel,
            method=method,
            path=path,
            status=status,
            duration_ms=round(duration_ms, 3),
            bytes_in=bytes_in,
            bytes_out=bytes_out,
        )

    def connection(
        self,
        tunnel: str,
        protocol: str,
        client: str,
        end: str,
        duration_ms: float,
        bytes_in: int,
        bytes_out: int,
    ) -> None:
        self._event(
            "connection",
            tunnel=tunnel,
            protocol=protocol,
            client=client,
            end=end,
            duration_ms=round(duration_ms, 3),
            bytes_in=bytes_in,
            bytes_out=bytes_out,
        )

    def reconnecting(self, attempt: int, delay: float, reason: str) -> None:
        self._event("reconnecting", attempt=attempt, delay=round(delay, 3), reason=reason)

    def rejected(self, tunnel: str, reason: str, message: str) -> None:
        self._event("rejected", tunnel=tunnel, reason=reason, message=message)
        _write(self._err, _rejection(tunnel, reason, message))

    def closed(self, reason: str) -> None:
        self._event("closed", reason=reason)

    def draining(self, open_streams: int, timeout: float) -> None:
        self._event("draining", open_streams=open_streams, timeout_s=timeout)

    def drained(self, ended: str, duration_ms: float, cut_streams: int) -> None:
        self._event("drained", ended=ended, duration_ms=duration_ms, cut_streams=cut_streams)

    def error(self, message: str) -> None:
        self._event("error", message=message)
        _write(self._err, f"tunnelgate: {message}")


def make_output(
    fmt: Literal["text", "json"], stdout: TextIO | None = None, stderr: TextIO | None = None
) -> Output:
    """The Output for `fmt`, writing to `stdout`/`stderr` (the process's, by default)."""
    out = sys.stdout if stdout is None else stdout
    err = sys.stderr if stderr is None else stderr
    return JsonOutput(out, err) if fmt == "json" else TextOutput(out, err)
