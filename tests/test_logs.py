"""The per-request access line: same fields and quoting as any other event, in both formats."""

from __future__ import annotations

import io
import json

from tunnelgate.logs import AccessLog, configure_logging


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
