"""Start tunnelgate's processes for end-to-end tests, and find free ports for them.

Only the documented command line and JSON log lines are relied upon (SPEC.md "Client"), never
the gateway's or the client's internals. Every helper that starts a process terminates it
itself if the process fails to become ready, so a failing start leaks nothing.

The raw HTTP client is re-exported here so an end-to-end test needs one import.
"""

from __future__ import annotations

import random
import socket
import sys
import time
from collections.abc import Mapping, Sequence

from tunnelgate.gateway.tcp import ephemeral_port_range
from tunnelgate.testing.http_client import (
    RawConnection,
    RawResponse,
    build_request,
    chunked,
    http_request,
    open_connection,
)
from tunnelgate.testing.proc import (
    JsonObject,
    Proc,
    ProcExited,
    WaitTimeout,
    json_object,
    poll_until,
    poll_until_async,
    terminate_all,
)

__all__ = [
    "Proc",
    "ProcExited",
    "RawConnection",
    "RawResponse",
    "WaitTimeout",
    "build_request",
    "chunked",
    "free_port",
    "free_port_range",
    "http_request",
    "open_connection",
    "poll_until",
    "poll_until_async",
    "start_client",
    "start_gateway",
    "start_gateway_at",
    "start_local_app_proc",
    "terminate_all",
    "wait_ready",
    "wait_ready_async",
]

START_TIMEOUT = 10.0
"""Seconds a gateway or the local app gets to become ready."""
POLL_INTERVAL = 0.05
"""Seconds between /healthz probes while a gateway starts (each bounded by START_TIMEOUT)."""
START_ATTEMPTS = 3
"""Gateway starts tried when the free port we picked was taken before the gateway bound it."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def free_port_range(count: int, attempts: int = 50) -> tuple[int, int]:
    """``(lo, hi)``, ``count`` consecutive ports that were all free a moment ago.

    Taken below the kernel's ephemeral range: a port in it that a tunnel's listener lets go
    (a dropped tunnel's port during its grace) can become the local port of any outgoing
    connection on the machine, and the owner's return could not listen there again. Free
    as a server binds them (SO_REUSEADDR, as the gateway's listeners do)."""
    ephemeral_low = ephemeral_port_range()[0]
    for _ in range(attempts):
        lo = random.randrange(10_000, ephemeral_low - count)
        socks: list[socket.socket] = []
        try:
            for port in range(lo, lo + count):
                sock = socket.socket()
                socks.append(sock)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                sock.bind(("127.0.0.1", port))
            return lo, lo + count - 1
        except OSError:
            continue
        finally:
            for sock in socks:
                sock.close()
    raise RuntimeError(f"no {count} consecutive free ports found in {attempts} attempts")


# Sets RLIMIT_NOFILE (soft and hard) in a small Python that then becomes tunnelgate (exec:
# same PID). preexec_fn would do it in the child of a process with threads, which is unsafe.
_WITH_OPEN_FILES = (
    "import os, resource, sys; n = int(sys.argv[1]); "
    "resource.setrlimit(resource.RLIMIT_NOFILE, (n, n)); "
    "os.execv(sys.executable, [sys.executable, '-m', 'tunnelgate', *sys.argv[2:]])"
)


def tunnelgate_argv(*args: str, open_files: int | None = None) -> list[str]:
    """``python -m tunnelgate *args``; with ``open_files``, under that open-file limit."""
    if open_files is not None:
        return [sys.executable, "-c", _WITH_OPEN_FILES, str(open_files), *args]
    return [sys.executable, "-m", "tunnelgate", *args]


def start_gateway(
    *args: str,
    env: Mapping[str, str] | None = None,
    timeout: float = START_TIMEOUT,
    open_files: int | None = None,
    port: int | None = None,
) -> tuple[Proc, int]:
    """``tunnelgate server --http 127.0.0.1:PORT --log-format json *args`` on a free port
    (or on ``port``: a gateway restarted where another was), returned once ``GET /healthz``
    answers 200 there. ``open_files``: its RLIMIT_NOFILE, soft and hard (so the gateway
    cannot raise it)."""
    wanted = port
    for attempt in range(START_ATTEMPTS):
        port = free_port() if wanted is None else wanted
        argv = ["server", "--http", f"127.0.0.1:{port}", "--log-format", "json", *args]
        proc = Proc(tunnelgate_argv(*argv, open_files=open_files), env=env)
        try:
            _wait_healthy(proc, port, timeout)
        except ProcExited:
            proc.terminate()
            lost_race = any("in use" in line for line in proc.stderr_lines)
            if lost_race and wanted is None and attempt + 1 < START_ATTEMPTS:
                continue
            raise
        except BaseException:
            proc.terminate()
            raise
        return proc, port
    raise AssertionError("unreachable")


def _wait_healthy(proc: Proc, port: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not _healthz_ok(port):
        if proc.returncode is not None:
            raise ProcExited(f"gateway exited before /healthz answered\n{proc.output()}")
        if time.monotonic() >= deadline:
            raise WaitTimeout(f"/healthz on port {port} not 200 after {timeout}s\n{proc.output()}")
        time.sleep(POLL_INTERVAL)  # poll interval; the deadline above bounds the wait


def _healthz_ok(port: int) -> bool:
    request = f"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n"
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1.0) as sock:
            sock.sendall(request.encode("ascii"))
            return sock.recv(64).startswith((b"HTTP/1.1 200 ", b"HTTP/1.0 200 "))
    except OSError:
        return False


def start_gateway_at(
    listen: str,
    *args: str,
    prefix: Sequence[str] = (),
    env: Mapping[str, str] | None = None,
    timeout: float = START_TIMEOUT,
) -> Proc:
    """``[prefix] tunnelgate server --http LISTEN --log-format json *args``, returned once it
    logs that it listens. For a gateway the test cannot probe: one inside a network namespace
    (``prefix``: :attr:`tunnelgate.testing.netns.NetNamespace.prefix`), whose ports are all
    free, so ``listen`` names a fixed one."""
    argv = ["server", "--http", listen, "--log-format", "json", *args]
    proc = Proc([*prefix, *tunnelgate_argv(*argv)], env=env)
    try:
        proc.wait_for_line(_is_http_listening, timeout, stream="stderr")  # logs go to stderr
    except BaseException:
        proc.terminate()
        raise
    return proc


def _is_http_listening(line: str) -> bool:
    obj = json_object(line)
    return obj is not None and obj.get("event") == "listening" and obj.get("listener") == "http"


def start_client(
    *args: str, env: Mapping[str, str] | None = None, prefix: Sequence[str] = ()
) -> Proc:
    """``tunnelgate *args --log-format json``, e.g. ``start_client("http", "3000", "--server",
    f"ws://127.0.0.1:{port}/connect")``; ``prefix`` goes before it (``ip netns exec NS``).
    Wait for it with :func:`wait_ready`."""
    return Proc([*prefix, *tunnelgate_argv(*args, "--log-format", "json")], env=env)


def _is_ready(obj: JsonObject) -> bool:
    return obj.get("event") == "tunnel_ready"


def wait_ready(proc: Proc, timeout: float = START_TIMEOUT, *, after: int = 0) -> JsonObject:
    """The client's ``{"event": "tunnel_ready", "url": ...}`` line (from stdout index ``after``)."""
    return proc.wait_for_json(_is_ready, timeout, after=after)


async def wait_ready_async(
    proc: Proc,
    timeout: float = START_TIMEOUT,  # noqa: ASYNC109 - a deadline for the output, by design
    *,
    after: int = 0,
) -> JsonObject:
    """``wait_ready`` that lets the event loop run meanwhile (for in-process local apps)."""
    return await proc.wait_for_json_async(_is_ready, timeout, after=after)


def start_local_app_proc(
    timeout: float = START_TIMEOUT, *, prefix: Sequence[str] = ()
) -> tuple[Proc, int]:
    """``python -m tunnelgate.testing.local_app --port 0``, once it has said where it listens;
    ``prefix`` goes before it (``ip netns exec NS``)."""
    proc = Proc([*prefix, sys.executable, "-m", "tunnelgate.testing.local_app", "--port", "0"])
    try:
        line = proc.wait_for_json(lambda obj: obj.get("event") == "listening", timeout)
    except BaseException:
        proc.terminate()
        raise
    return proc, int(line["port"])
