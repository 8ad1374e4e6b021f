"""The systems under test: the origin alone (direct), and tunnelgate's gateway plus client.

Each system gives the load generator a :class:`~bench.probe.Target`, checks its route before a
measurement (``ensure_route``) and names the processes whose CPU and memory count, by role:
``gateway`` (the public side) and ``client`` (the side next to the origin), plus ``origin``.
The nginx two-hop chain is in :mod:`bench.twohop`, PageKite in :mod:`bench.pagekite`.

For the HTTPS rows the same systems are started with the run's test certificate: the origin
answers HTTPS itself (direct), and tunnelgate's gateway serves its public side on ``--https``
with ``--tls-cert``/``--tls-key`` (the tunnel itself stays ``ws://`` on loopback, as the nginx
chain's inner hops stay plain HTTP).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import Final, Protocol

from .origin import Origin, ServerCertificate
from .probe import ClientTls, Target, answers, get
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
    """The load generator straight to the origin: the yardstick (over HTTPS with
    `client_tls`, to the origin's TLS port)."""

    name = "direct"

    def __init__(self, origin: Origin, client_tls: ClientTls | None = None) -> None:
        self.origin = origin
        if client_tls is None:
            self.target = Target(origin.port, f"127.0.0.1:{origin.port}")
        elif origin.tls_port is None:
            raise BenchError(f"the {origin.kind} origin serves no HTTPS")
        else:
            self.target = Target(origin.tls_port, client_tls.server_name, tls=client_tls)
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
    procs: Processes,
    name: str = "gateway",
    *,
    nofile: int | None = None,
    extra: Sequence[str] = (),
    https: Callable[[], Sequence[str]] | None = None,
) -> tuple[ManagedProc, int]:
    """``tunnelgate server --http 127.0.0.1:PORT`` on a free port, once /healthz answers;
    `https` gives more arguments at each attempt (a fresh --https port)."""
    for attempt in range(START_ATTEMPTS):
        port = free_port()
        more = https() if https is not None else ()
        argv = tunnelgate_argv("server", "--http", f"127.0.0.1:{port}", *extra, *more)
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
    """wrk -> gateway (Host bench.localhost) -> tunnel -> client -> origin; with `tls`, the
    public side is the gateway's HTTPS listener serving that certificate to `client_tls`;
    with `admin`, the gateway also serves its admin API (/metrics) on `admin_port`; `extra`:
    more gateway options (``--workers 2`` and the cluster's, bench.workers_ab)."""

    name = "tunnelgate"

    def __init__(
        self,
        procs: Processes,
        origin: Origin,
        *,
        tls: ServerCertificate | None = None,
        client_tls: ClientTls | None = None,
        admin: bool = False,
        extra: Sequence[str] = (),
    ) -> None:
        self.origin = origin
        https_port = 0
        self.admin_port: int | None = None

        def https() -> list[str]:
            nonlocal https_port
            more: list[str] = []
            if admin:
                self.admin_port = free_port()
                more = ["--admin", f"127.0.0.1:{self.admin_port}"]
            if tls is None:
                return more
            https_port = free_port()
            return [*more, "--https", f"127.0.0.1:{https_port}", "--tls-cert",
                    str(tls.chain_file), "--tls-key", str(tls.key_file)]  # fmt: skip

        self.gateway, port = start_gateway(procs, extra=extra, https=https)
        self.client = start_client(procs, port, origin.port)
        host = f"{SUBDOMAIN}.{DOMAIN}"
        if tls is None:
            self.target = Target(port, host)
        else:
            self.target = Target(https_port, host, tls=client_tls)
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
