"""The systems under test: the origin alone (direct), and tunnelgate's gateway plus client.

Each system gives the load generator a :class:`~bench.probe.Target`, checks its route before a
measurement (``ensure_route``) and names the processes whose CPU and memory count, by role:
``gateway`` (the public side) and ``client`` (the side next to the origin), plus ``origin``.
The nginx two-hop chain is in :mod:`bench.twohop`, PageKite in :mod:`bench.pagekite`.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from functools import partial
from pathlib import Path
from typing import Final, Protocol

from .origin import Origin
from .probe import Target, answers, get
from .procs import BenchError, ManagedProc, Processes, free_port, wait_until

START_TIMEOUT: Final = 15.0
START_ATTEMPTS: Final = 3  # another process may take the free port we picked first
SUBDOMAIN: Final = "bench"
DOMAIN: Final = "localhost"


class System(Protocol):
    name: str
    target: Target

    @property
    def restarts(self) -> int: ...

    def ensure_route(self) -> bool: ...
    def cpu_pids(self) -> dict[str, int]: ...
    def rss_pids(self) -> dict[str, int]: ...


class Direct:
    """The load generator straight to the origin: the yardstick."""

    name = "direct"

    def __init__(self, origin: Origin) -> None:
        self.origin = origin
        self.target = Target(origin.port, f"127.0.0.1:{origin.port}")
        self.restarts = 0

    def ensure_route(self) -> bool:
        return answers(self.target, self.origin.small_path, self.origin.small_body)

    def cpu_pids(self) -> dict[str, int]:
        return {"origin": self.origin.worker_pid}

    def rss_pids(self) -> dict[str, int]:
        return {}


def tunnelgate_argv(*args: str) -> list[str]:
    # BENCH_TUNNELGATE=path/to/other/.venv/bin/tunnelgate measures another build (say, the
    # commit before a change) with this harness, in the same run conditions.
    other = os.environ.get("BENCH_TUNNELGATE")
    if other:
        return [other, *args]
    script = Path(sys.executable).with_name("tunnelgate")
    base = [str(script)] if script.exists() else [sys.executable, "-m", "tunnelgate"]
    return [*base, *args]


def healthy(port: int) -> bool:
    try:
        return get(Target(port, f"127.0.0.1:{port}"), "/healthz", timeout=1.0).status == 200
    except OSError:
        return False


def start_gateway(
    procs: Processes, name: str = "gateway", *, nofile: int | None = None, extra: Sequence[str] = ()
) -> tuple[ManagedProc, int]:
    """``tunnelgate server --http 127.0.0.1:PORT`` on a free port, once /healthz answers."""
    for attempt in range(START_ATTEMPTS):
        port = free_port()
        argv = tunnelgate_argv("server", "--http", f"127.0.0.1:{port}", *extra)
        proc = procs.start(name, argv, nofile=nofile)
        try:
            wait_until("the gateway's /healthz", partial(healthy, port), START_TIMEOUT, proc)
        except BenchError:
            procs.stop(proc)
            if attempt + 1 < START_ATTEMPTS and "in use" in proc.log_text():
                continue
            raise
        return proc, port
    raise BenchError("unreachable")


def tunnel_ready(proc: ManagedProc) -> bool:
    return any(event.get("event") == "tunnel_ready" for event in proc.events())


def start_client(
    procs: Processes, gateway_port: int, origin_port: int, subdomain: str = SUBDOMAIN
) -> ManagedProc:
    """``tunnelgate http ORIGIN --subdomain NAME``, once it prints its tunnel_ready line."""
    server = f"ws://127.0.0.1:{gateway_port}/connect"
    argv = tunnelgate_argv(
        "http", str(origin_port), "--subdomain", subdomain, "--server", server,
        "--log-format", "json",
    )  # fmt: skip
    proc = procs.start("client", argv)
    wait_until("the client's tunnel_ready line", lambda: tunnel_ready(proc), START_TIMEOUT, proc)
    return proc


class Tunnelgate:
    """wrk -> gateway (Host bench.localhost) -> tunnel -> client -> origin."""

    name = "tunnelgate"

    def __init__(self, procs: Processes, origin: Origin) -> None:
        self.origin = origin
        self.gateway, port = start_gateway(procs)
        self.client = start_client(procs, port, origin.port)
        self.target = Target(port, f"{SUBDOMAIN}.{DOMAIN}")
        self.restarts = 0

    def ensure_route(self) -> bool:
        if not (self.gateway.alive and self.client.alive):
            tails = f"{self.gateway.log_tail()}\n{self.client.log_tail()}"
            raise BenchError(f"tunnelgate died:\n{tails}")
        return answers(self.target, self.origin.small_path, self.origin.small_body)

    def cpu_pids(self) -> dict[str, int]:
        return {
            "gateway": self.gateway.pid,
            "client": self.client.pid,
            "origin": self.origin.worker_pid,
        }

    def rss_pids(self) -> dict[str, int]:
        return {"gateway": self.gateway.pid, "client": self.client.pid}
