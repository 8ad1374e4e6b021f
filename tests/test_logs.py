"""The per-request access line: same fields and quoting as any other event, in both formats."""

from __future__ import annotations

import io
import json
import logging
import select

import pytest

from tunnelgate.logs import AccessLog, EventLog, LineWriter, RateLimitedLog, configure_logging


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


# --- a worker's lines (--workers N): context fields, whole lines per write ----------------


class _Writes(io.StringIO):
    """A stream that keeps each write apart, as a pipe's reader would see them."""

    def __init__(self) -> None:
        super().__init__()
        self.writes: list[str] = []

    def write(self, text: str) -> int:
        self.writes.append(text)
        return super().write(text)


def test_a_workers_every_line_carries_its_index_first() -> None:
    for fmt in ("text", "json"):
        stream = io.StringIO()
        configure_logging(fmt, stream=stream, context={"worker": 3})
        try:
            EventLog("tunnelgate.gateway").info("listening", addr="127.0.0.1:1")
            AccessLog("tunnelgate.gateway").request(
                "a.localhost", "GET", "/", 200, 0, 1, 1.0, "127.0.0.1:1", "a"
            )
            logging.getLogger("picows").warning("from a library")
        finally:
            configure_logging("text")
        lines = stream.getvalue().splitlines()
        assert len(lines) == 3
        if fmt == "json":
            assert [json.loads(line)["worker"] for line in lines] == [3, 3, 3]
        else:
            assert " INFO listening worker=3 addr=127.0.0.1:1" in lines[0]
            assert " INFO request worker=3 host=a.localhost " in lines[1]
            assert " WARNING log worker=3 logger=picows " in lines[2]


def test_without_context_no_worker_field() -> None:
    assert "worker" not in _line("text", "/", None)
    assert "worker" not in json.loads(_line("json", "/", None))


async def test_a_shared_stream_gets_whole_lines_of_at_most_pipe_buf() -> None:
    stream = _Writes()
    configure_logging("text", stream=stream, context={"worker": 0})
    try:
        log = EventLog("tunnelgate.gateway")
        for i in range(200):  # one event-loop turn: held, then flushed together
            log.info("event", i=i, pad="x" * 100)
        assert stream.writes == []
        LineWriter.flush_all()  # what the end of the turn does
    finally:
        configure_logging("text")
    assert len(stream.writes) > 1
    assert all(len(text) <= select.PIPE_BUF for text in stream.writes)
    assert all(text.endswith("\n") for text in stream.writes)
    lines = stream.getvalue().splitlines()
    assert [line.split(" i=")[1].split()[0] for line in lines] == [str(i) for i in range(200)]


async def test_a_line_longer_than_pipe_buf_is_written_alone_and_whole() -> None:
    stream = _Writes()
    writer = LineWriter(stream, shared=True)
    long = "x" * (select.PIPE_BUF + 10)
    for line in ("a", long, "b"):
        writer.write(line)  # in a running loop: held for the end of the turn
    writer.flush()
    assert stream.writes == ["a\n", long + "\n", "b\n"]
