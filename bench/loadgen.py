"""Load generators: wrk for the benchmark, a small asyncio one for the smoke test.

Both answer the same question the same way: keep `connections` keep-alive connections busy
with small GETs for `duration` seconds, and report requests, requests per second, median and
99th-percentile latency, and errors (socket errors and non-2xx answers). Over HTTPS each
connection makes one full handshake and then keeps it (wrk offers no session resumption).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Protocol

from .probe import Target
from .procs import BenchError

WRK_TIMEOUT: Final = 5  # seconds before wrk counts a request as timed out
WRK_GRACE: Final = 15.0  # seconds wrk may overrun its duration before we give up on it
MAX_WRK_THREADS: Final = 2  # the machine has 2 cores, shared with what is measured
CONNECT_TO_SCRIPT: Final = Path(__file__).with_name("wrk_connect_to.lua")


@dataclass(frozen=True, slots=True)
class LoadResult:
    tool: str
    connections: int
    duration_s: float
    requests: int
    rps: float
    p50_ms: float | None
    p99_ms: float | None
    errors: int


class LoadGenerator(Protocol):
    name: str

    def run(self, target: Target, path: str, connections: int, duration: float) -> LoadResult: ...


# --- wrk -------------------------------------------------------------------------
_UNITS: Final = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3, "h": 3600e3}
_LATENCY = re.compile(r"^\s*(50|99)(?:\.0+)?%\s+([\d.]+)(us|ms|s|m|h)\s*$", re.M)
_REQUESTS = re.compile(r"^\s*(\d+) requests in ([\d.]+)(us|ms|s|m|h)", re.M)
_SOCKET_ERRORS = re.compile(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)")
_NON_2XX = re.compile(r"Non-2xx or 3xx responses: (\d+)")


def parse_wrk(output: str, connections: int) -> LoadResult:
    """The numbers in `wrk --latency`'s report."""
    requests = _REQUESTS.search(output)
    if requests is None:
        raise BenchError(f"cannot read wrk's report:\n{output}")
    seconds = float(requests.group(2)) * _UNITS[requests.group(3)] / 1e3
    # Rounded: 0.574 ms, not 0.5740000000000001 after the unit conversion.
    latency = {m[1]: round(float(m[2]) * _UNITS[m[3]], 4) for m in _LATENCY.finditer(output)}
    count = int(requests.group(1))
    errors = 0
    if socket_errors := _SOCKET_ERRORS.search(output):
        # "read" errors are mostly peers closing idle keep-alive connections; count them all.
        errors += sum(int(g) for g in socket_errors.groups())
    if non_2xx := _NON_2XX.search(output):
        errors += int(non_2xx.group(1))
    return LoadResult(
        tool="wrk",
        connections=connections,
        duration_s=round(seconds, 3),
        requests=count,
        rps=round(count / seconds, 1) if seconds else 0.0,
        p50_ms=latency.get("50") if count else None,
        p99_ms=latency.get("99") if count else None,
        errors=errors,
    )


class Wrk:
    name = "wrk"

    def __init__(self) -> None:
        found = shutil.which("wrk")
        if found is None:
            raise BenchError("wrk is not installed (make bench installs it with apt)")
        self.path = found

    def run(self, target: Target, path: str, connections: int, duration: float) -> LoadResult:
        seconds = max(1, round(duration))
        argv = [
            self.path,
            f"-t{min(MAX_WRK_THREADS, connections)}",
            f"-c{connections}",
            f"-d{seconds}s",
            f"--timeout={WRK_TIMEOUT}s",
            "--latency",
            "-H",
            f"Host: {target.host_header}",
        ]
        env = None
        if target.tls is not None:  # https://NAME:PORT/ (SNI), connecting to the address
            argv += ["-s", str(CONNECT_TO_SCRIPT)]
            env = dict(os.environ, WRK_CONNECT_TO=target.address)
        argv.append(target.url(path))
        try:
            done = subprocess.run(
                argv, capture_output=True, text=True, timeout=seconds + WRK_GRACE, check=False,
                env=env,
            )  # fmt: skip
        except subprocess.TimeoutExpired as exc:
            raise BenchError(f"wrk did not finish within {seconds + WRK_GRACE:g} s") from exc
        if done.returncode != 0:
            raise BenchError(f"wrk failed ({done.returncode}): {done.stderr.strip()}")
        return parse_wrk(done.stdout, connections)


# --- the Python stand-in -----------------------------------------------------------
REQUEST_TIMEOUT: Final = 5.0  # seconds one request may take before it counts as an error
RETRY_PAUSE: Final = 0.01  # seconds between reconnects after an error


class _Counts:
    def __init__(self) -> None:
        self.latencies: list[float] = []
        self.errors = 0


def _content_length(head: bytes) -> tuple[int, int, bool]:
    """(status, Content-Length, close) of a response head; ValueError if unusable."""
    lines = head.split(b"\r\n")
    status = int(lines[0].split(b" ", 2)[1])
    length, close = -1, False
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"content-length":
            length = int(value)
        elif name == b"connection":
            close = b"close" in value.lower()
    if length < 0:
        raise ValueError("no Content-Length")
    return status, length, close


async def _one_connection(target: Target, request: bytes, deadline: float, counts: _Counts) -> None:
    loop = asyncio.get_running_loop()
    streams: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
    while loop.time() < deadline:
        started = loop.time()
        try:
            async with asyncio.timeout(REQUEST_TIMEOUT):
                if streams is None:
                    streams = await _open(target)
                reader, writer = streams
                writer.write(request)
                status, length, close = _content_length(await reader.readuntil(b"\r\n\r\n"))
                await reader.readexactly(length)
        except (OSError, TimeoutError, ValueError, IndexError, asyncio.IncompleteReadError):
            counts.errors += 1
            status, close = 0, True
            await asyncio.sleep(RETRY_PAUSE)
        else:
            counts.latencies.append(loop.time() - started)
            if not 200 <= status < 400:
                counts.errors += 1
        if close and streams is not None:
            streams[1].close()
            streams = None
    if streams is not None:
        streams[1].close()
        with contextlib.suppress(OSError):
            await streams[1].wait_closed()


async def _open(target: Target) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    if target.tls is None:
        return await asyncio.open_connection(target.address, target.port)
    return await asyncio.open_connection(
        target.address, target.port, ssl=target.tls.context(),
        server_hostname=target.tls.server_name,
    )  # fmt: skip


def _percentile(sorted_values: list[float], q: float) -> float | None:
    if not sorted_values:
        return None
    index = min(len(sorted_values) - 1, int(q * len(sorted_values)))
    return round(sorted_values[index] * 1e3, 3)


class PyLoad:
    """keep-alive GET loops on asyncio: slower than wrk, but needs nothing from apt."""

    name = "python"

    def run(self, target: Target, path: str, connections: int, duration: float) -> LoadResult:
        return asyncio.run(self._run(target, path, connections, duration))

    async def _run(
        self, target: Target, path: str, connections: int, duration: float
    ) -> LoadResult:
        request = f"GET {path} HTTP/1.1\r\nHost: {target.host_header}\r\n\r\n".encode()
        counts = _Counts()
        started = time.monotonic()
        deadline = asyncio.get_running_loop().time() + duration
        async with asyncio.TaskGroup() as group:
            for _ in range(connections):
                group.create_task(_one_connection(target, request, deadline, counts))
        elapsed = time.monotonic() - started
        latencies = sorted(counts.latencies)
        return LoadResult(
            tool=self.name,
            connections=connections,
            duration_s=round(elapsed, 3),
            requests=len(latencies),
            rps=round(len(latencies) / elapsed, 1),
            p50_ms=_percentile(latencies, 0.50),
            p99_ms=_percentile(latencies, 0.99),
            errors=counts.errors,
        )
