"""client/output.py: what the user and scripts see, line by line."""

from __future__ import annotations

import io
import json

import pytest

from tunnelgate.client.output import JsonOutput, Output, TextOutput, make_output


class Streams:
    def __init__(self) -> None:
        self.out = io.StringIO()
        self.err = io.StringIO()
        self.flushes = 0
        flush = self.out.flush

        def counting_flush() -> None:
            self.flushes += 1
            flush()

        self.out.flush = counting_flush  # type: ignore[method-assign]

    def out_lines(self) -> list[str]:
        return self.out.getvalue().splitlines()

    def err_lines(self) -> list[str]:
        return self.err.getvalue().splitlines()


def make(fmt: str) -> tuple[Output, Streams]:
    streams = Streams()
    assert fmt in ("text", "json")
    output = make_output("json" if fmt == "json" else "text", streams.out, streams.err)
    return output, streams


def every_event(output: Output) -> None:
    output.connecting("ws://127.0.0.1:8080/connect")
    output.tunnel_ready("http", "http://foo.localhost:8080", "http://127.0.0.1:3000")
    output.request("http", "GET", "/path?q=1", 200, 12.345, 10, 2000)
    output.connection("db", "tcp", "203.0.113.9:4000", "closed", 1503.25, 12, 3400)
    output.reconnecting(2, 1.5, "connection lost")
    output.rejected("web", "name_taken", "name foo is taken")
    output.closed("interrupted")
    output.draining(2, 10.0)
    output.drained("timeout", 10001.5, 1)
    output.error("cannot reach the gateway")


def test_make_output_picks_the_format() -> None:
    assert isinstance(make_output("text", io.StringIO(), io.StringIO()), TextOutput)
    assert isinstance(make_output("json", io.StringIO(), io.StringIO()), JsonOutput)


def test_json_lines_parse_and_have_the_fields() -> None:
    output, streams = make("json")
    every_event(output)
    events = [json.loads(line) for line in streams.out_lines()]
    assert [next(iter(event)) for event in events] == ["event"] * len(events)
    assert events == [
        {"event": "connecting", "server": "ws://127.0.0.1:8080/connect"},
        {
            "event": "tunnel_ready",
            "name": "http",
            "url": "http://foo.localhost:8080",
            "local": "http://127.0.0.1:3000",
        },
        {
            "event": "request",
            "tunnel": "http",
            "method": "GET",
            "path": "/path?q=1",
            "status": 200,
            "duration_ms": 12.345,
            "bytes_in": 10,
            "bytes_out": 2000,
        },
        {
            "event": "connection",
            "tunnel": "db",
            "protocol": "tcp",
            "client": "203.0.113.9:4000",
            "end": "closed",
            "duration_ms": 1503.25,
            "bytes_in": 12,
            "bytes_out": 3400,
        },
        {"event": "reconnecting", "attempt": 2, "delay": 1.5, "reason": "connection lost"},
        {
            "event": "rejected",
            "tunnel": "web",
            "reason": "name_taken",
            "message": "name foo is taken",
        },
        {"event": "closed", "reason": "interrupted"},
        {"event": "draining", "open_streams": 2, "timeout_s": 10.0},
        {"event": "drained", "ended": "timeout", "duration_ms": 10001.5, "cut_streams": 1},
        {"event": "error", "message": "cannot reach the gateway"},
    ]
    assert streams.err_lines() == [
        "tunnelgate: tunnel web rejected: name foo is taken (name_taken)",
        "tunnelgate: cannot reach the gateway",
    ]


def test_text_lines() -> None:
    output, streams = make("text")
    every_event(output)
    assert streams.out_lines() == [
        "Forwarding  http://foo.localhost:8080 -> http://127.0.0.1:3000",
        "GET /path?q=1 200 12.3 ms",
        "TCP 203.0.113.9:4000 closed 1503.2 ms in=12 out=3400",
    ]
    assert streams.err_lines() == [
        "Connecting to ws://127.0.0.1:8080/connect",
        "Connection lost (connection lost); reconnecting in 1.5 s (attempt 2)",
        "tunnelgate: tunnel web rejected: name foo is taken (name_taken)",
        "Closed: interrupted",
        "Stopping: no new requests; 2 in flight may finish within 10 s (Ctrl+C again to stop now)",
        "Stopped at the drain timeout: 1 in flight cut off (10001.5 ms)",
        "tunnelgate: cannot reach the gateway",
    ]


@pytest.mark.parametrize("fmt", ["text", "json"])
def test_rejection_is_one_stderr_line_in_both_formats(fmt: str) -> None:
    output, streams = make(fmt)
    output.rejected("db", "port_taken", "port 20001 is taken")
    assert streams.err_lines() == [
        "tunnelgate: tunnel db rejected: port 20001 is taken (port_taken)"
    ]


@pytest.mark.parametrize("fmt", ["text", "json"])
def test_every_stdout_line_is_flushed(fmt: str) -> None:
    output, streams = make(fmt)
    output.tunnel_ready("http", "http://a.localhost:8080", "http://127.0.0.1:1")
    output.request("http", "GET", "/", 200, 1.0, 0, 0)
    assert streams.flushes == 2


def test_text_names_the_tunnel_when_there_are_several() -> None:
    output, streams = make("text")
    output.tunnel_ready("web", "http://web.localhost:8080", "http://127.0.0.1:3000")
    output.tunnel_ready("db", "tcp://localhost:20001", "127.0.0.1:5432")
    output.request("web", "POST", "/form", 303, 4.0, 100, 0)
    assert streams.out_lines()[-1] == "[web] POST /form 303 4.0 ms"
    output.connection("db", "tcp", "[2001:db8::7]:4000", "local_reset", 2.0, 1, 0)
    assert streams.out_lines()[-1] == "[db] TCP [2001:db8::7]:4000 local_reset 2.0 ms in=1 out=0"


@pytest.mark.parametrize(
    ("path", "shown"),
    [
        ("/ok", "/ok"),
        ("/\x1b[31mred", "/\\x1b[31mred"),
        ("/a\r\nb", "/a\\r\\nb"),
        ("/" + "x" * 500, "/" + "x" * 196 + "..."),
    ],
)
def test_text_paths_cannot_drive_the_terminal(path: str, shown: str) -> None:
    output, streams = make("text")
    output.request("http", "GET", path, 200, 1.0, 0, 0)
    assert streams.out_lines() == [f"GET {shown} 200 1.0 ms"]


def test_json_escapes_control_characters() -> None:
    output, streams = make("json")
    output.request("http", "GET", "/\x1b[2J", 200, 1.0, 0, 0)
    (line,) = streams.out_lines()
    assert "\x1b" not in line
    assert json.loads(line)["path"] == "/\x1b[2J"


@pytest.mark.parametrize(
    ("ended", "cut", "line"),
    [
        ("idle", 0, "Stopped: all finished (12.0 ms)"),
        ("closed", 0, "Stopped: the gateway closed the connection (12.0 ms)"),
        ("signal", 3, "Stopped at once, on the second signal: 3 in flight cut off (12.0 ms)"),
    ],
)
def test_how_a_drain_ended_in_text(ended: str, cut: int, line: str) -> None:
    output, streams = make("text")
    output.drained(ended, 12.0, cut)
    assert streams.err_lines() == [line]
