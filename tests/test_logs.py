"""The per-request access line: same fields and quoting as any other event, in both formats."""

from __future__ import annotations

import io
import json

import pytest

from tunnelgate.logs import AccessLog, EventLog, RateLimitedLog, configure_logging


def _line(fmt: str, path: str, tunnel: str | None) -> str:
    stream = io.StringIO()
    configure_logging("json" if fmt == "json" else "text", stream=stream)
    try:
        AccessLog("tunnelgate.gateway").request(
            "foo.localhost", "GET", path, 200, 12, 345, 1.5, "127.0.0.1:5000", tunnel
        )  # outside an event loop: written at once
    finally:
        configure_logging("text")
    return stream.getvalue()


def test_access_line_json_has_every_field() -> None:
    record = json.loads(_line("json", "/a b", "foo"))
    assert record["event"] == "request"
    assert record["level"] == "info"
    assert {k: record[k] for k in ("host", "method", "path", "status", "tunnel")} == {
        "host": "foo.localhost",
        "method": "GET",
        "path": "/a b",
        "status": 200,
        "tunnel": "foo",
    }
    assert (record["bytes_in"], record["bytes_out"], record["duration_ms"]) == (12, 345, 1.5)
    assert record["client"] == "127.0.0.1:5000"


def test_access_line_text_quotes_only_what_needs_it() -> None:
    line = _line("text", '/x"y z', None)
    assert " INFO request host=foo.localhost method=GET " in line
    assert 'path="/x\\"y z"' in line  # spaces and quotes are JSON-quoted
    assert "status=200 bytes_in=12 bytes_out=345 duration_ms=1.5 client=127.0.0.1:5000" in line
    assert line.rstrip().endswith("tunnel=null")


def test_access_line_says_when_the_response_was_cut_off() -> None:
    stream = io.StringIO()
    configure_logging("json", stream=stream)
    try:
        log = AccessLog("tunnelgate.gateway")
        log.request("a.localhost", "GET", "/", 200, 0, 10, 1.0, "127.0.0.1:1", "a")
        log.request("a.localhost", "GET", "/", 200, 0, 10, 1.0, "127.0.0.1:1", "a", True)
    finally:
        configure_logging("text")
    first, second = (json.loads(line) for line in stream.getvalue().splitlines())
    assert first["aborted"] is False
    assert second["aborted"] is True


@pytest.mark.parametrize("fmt", ["json", "text"])
def test_access_line_names_the_forwarding_node_only_when_there_is_one(fmt: str) -> None:
    stream = io.StringIO()
    configure_logging("json" if fmt == "json" else "text", stream=stream)
    try:
        log = AccessLog("tunnelgate.gateway")
        log.request("a.localhost", "GET", "/", 200, 0, 10, 1.0, "203.0.113.9:1", "a")
        log.request("a.localhost", "GET", "/", 200, 0, 10, 1.0, "203.0.113.9:1", "a", via="n:1")
    finally:
        configure_logging("text")
    first, second = stream.getvalue().splitlines()
    if fmt == "json":
        assert "via" not in json.loads(first)
        assert json.loads(second)["via"] == "n:1"
    else:
        assert "via=" not in first
        assert second.endswith(" via=n:1")


class _Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_rate_limited_warnings_hold_back_bursts_and_count_them() -> None:
    stream = io.StringIO()
    configure_logging("json", stream=stream)
    clock = _Clock()
    try:
        limited = RateLimitedLog(EventLog("tunnelgate.test"), interval=10.0, burst=2, clock=clock)
        written = [limited.warning("refused", n=i) for i in range(50)]
        assert limited.warning("other") is True  # each event has its own budget
        clock.now += 10.0
        assert limited.warning("refused", n=50) is True
    finally:
        configure_logging("text")
    assert written == [True, True] + [False] * 48
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert [(line["event"], line.get("suppressed")) for line in lines] == [
        ("refused", None),
        ("refused", None),
        ("other", None),
        ("refused", 48),
    ]
