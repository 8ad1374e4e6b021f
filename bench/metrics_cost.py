"""What counting costs a request, and what a scrape costs, with and without per-tunnel series.

    python -m bench.metrics_cost [--tunnels N ...] [--compiled]

Per request the gateway adds to a compiled `RequestCounters` (`request()`: status class,
bytes, the duration bucket) and to the `Route` it served (requests, bytes in and out: the
admin API's counts, and `--metrics-per-tunnel`'s, which exports them and adds nothing per
request). Both are timed from the interpreter, so each figure includes a Python-level call
or attribute access that the compiled caller (gateway/exchange.py) does not pay: an upper
bound, and a loose one for the three attribute additions. `--compiled` also times them as
the gateway runs them: from a loop compiled with mypyc together with counters.py and
routes.py (a throwaway build in a temporary directory, ~15 s), less the empty loop. A
scrape reads everything at once (gateway/metrics.py); it is timed for a number of live
tunnels with per-tunnel series off and on.

Run it on the compiled install (`make .venv/.installed`); on an interpreted one the
figures are the interpreter's.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import timeit
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

from prometheus_client import generate_latest

from tunnelgate.gateway import counters as counters_module
from tunnelgate.gateway.buffers import BufferBudget
from tunnelgate.gateway.caps import ConnectionCaps
from tunnelgate.gateway.counters import RawCounters, RequestCounters, TunnelCounters
from tunnelgate.gateway.link_out import ClusterCounters
from tunnelgate.gateway.metrics import make_registry
from tunnelgate.gateway.routes import Route
from tunnelgate.gateway.tls_front import HandshakeCounters
from tunnelgate.proto.mux import Role
from tunnelgate.transport.tunnel import TunnelConnection

LOOPS = 1_000_000
ROUNDS = 7
SCRAPES = 50


@dataclass
class _View:
    routes: list[Route]
    counters: RequestCounters = field(default_factory=RequestCounters)
    tunnel_counters: TunnelCounters = field(default_factory=TunnelCounters)
    raw_counters: RawCounters = field(default_factory=RawCounters)
    caps: ConnectionCaps = field(default_factory=lambda: ConnectionCaps(100, 10, 1024))
    buffers: BufferBudget = field(default_factory=lambda: BufferBudget(1 << 20))
    handshakes: HandshakeCounters = field(default_factory=HandshakeCounters)
    cluster_counters: ClusterCounters | None = None

    def live_routes(self) -> Iterator[Route]:
        yield from self.routes

    def open_streams(self) -> int:
        return 0

    def tunnel_connections(self) -> int:
        return len(self.routes)


class _NoHooks:
    def __getattr__(self, name: str) -> Any:
        return lambda *args: None


def _ns_per_loop(statement: str, env: dict[str, Any], loops: int) -> float:
    """The best of ROUNDS, in ns per execution, less an empty loop's cost."""
    timer = timeit.Timer(statement, globals=env)
    empty = timeit.Timer("pass", globals=env)
    best = min(timer.repeat(ROUNDS, loops)) / loops
    base = min(empty.repeat(ROUNDS, loops)) / loops
    return (best - base) * 1e9


def per_request(route: Route, loops: int = LOOPS) -> dict[str, float]:
    env: dict[str, Any] = {"counters": RequestCounters(), "route": route}
    request = "counters.request(200, 0.012, 350, 4200, False)"
    tunnel = "route.requests += 1; route.bytes_in += 350; route.bytes_out += 4200"
    return {
        "request() [global counters]": _ns_per_loop(request, env, loops),
        "route += [per-tunnel counts]": _ns_per_loop(tunnel, env, loops),
        "both": _ns_per_loop(f"{request}; {tunnel}", env, loops),
    }


# The loops of --compiled, built with mypyc beside the modules they call.
_HARNESS = """
from tunnelgate.gateway.counters import RequestCounters
from tunnelgate.gateway.routes import Route


def run(which: int, counters: RequestCounters, route: Route, n: int) -> int:
    total = 0
    for i in range(n):
        total += i & 1  # the loop's own work, also in the empty run
        if which & 1:
            counters.request(200, 0.012, 350, 4200, False)
        if which & 2:
            route.requests += 1
            route.bytes_in += 350
            route.bytes_out += 4200
    return total
"""
_RUNNER = """
import asyncio, json, sys, time
from tunnelgate.gateway import _counting_bench as bench
from tunnelgate.gateway.counters import RequestCounters
from tunnelgate.gateway.routes import Route
from tunnelgate.proto.mux import Role
from tunnelgate.transport.tunnel import TunnelConnection
assert bench.__file__.endswith(".so"), bench.__file__

class NoHooks:
    def __getattr__(self, name):
        return lambda *args: None

async def main(loops, rounds):
    connection = TunnelConnection(Role.GATEWAY, NoHooks())
    best = {}
    for which in (0, 1, 2, 3):
        times = []
        for _ in range(rounds):
            route = Route("web", 1, connection, "http://web.localhost", principal="p")
            started = time.perf_counter()
            bench.run(which, RequestCounters(), route, loops)
            times.append((time.perf_counter() - started) / loops * 1e9)
        best[which] = min(times)
    print(json.dumps({str(k): v - best[0] for k, v in best.items() if k}))

asyncio.run(main(int(sys.argv[1]), int(sys.argv[2])))
"""
_COMPILED = ("gateway/_counting_bench.py", "gateway/counters.py", "gateway/routes.py",
             "proto/codes.py")  # fmt: skip


def compiled_per_request(loops: int) -> dict[str, float]:
    """ns per request of each kind of counting, from compiled code, less the empty loop."""
    import tunnelgate

    source = Path(tunnelgate.__file__).parent
    with tempfile.TemporaryDirectory(prefix="metrics-cost-") as tmp:
        package = Path(tmp) / "tunnelgate"
        shutil.copytree(source, package, ignore=shutil.ignore_patterns("*.so", "__pycache__"))
        (package / "gateway" / "_counting_bench.py").write_text(_HARNESS)
        build = [sys.executable, "-m", "mypyc", *(f"tunnelgate/{m}" for m in _COMPILED)]
        subprocess.run(build, cwd=tmp, check=True, capture_output=True)
        env = {**os.environ, "PYTHONPATH": tmp}
        argv = [sys.executable, "-c", _RUNNER, str(loops), str(ROUNDS)]
        done = subprocess.run(argv, cwd=tmp, env=env, check=True, capture_output=True, text=True)
    ns = json.loads(done.stdout)
    return {
        "request() [global counters]": ns["1"],
        "route += [per-tunnel counts]": ns["2"],
        "both": ns["3"],
    }


def scrape_ms(routes: list[Route], per_tunnel: bool) -> float:
    registry = make_registry(cast(Any, _View(routes)), per_tunnel=per_tunnel)
    times = []
    for _ in range(SCRAPES):
        started = time.perf_counter()
        generate_latest(registry)
        times.append(time.perf_counter() - started)
    return statistics.median(times) * 1000


def main(argv: Sequence[str] | None = None) -> int:
    return asyncio.run(_main(argv))  # a TunnelConnection is made on a running loop


async def _main(argv: Sequence[str] | None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tunnels", type=int, nargs="*", default=[1, 100, 1000])
    parser.add_argument("--loops", type=int, default=LOOPS, help="executions per round")
    parser.add_argument("--compiled", action="store_true", help="also time compiled callers")
    args = parser.parse_args(argv)
    compiled = counters_module.__file__ is not None and not counters_module.__file__.endswith(".py")
    print(f"counters.py compiled: {compiled}")
    connection = TunnelConnection(Role.GATEWAY, cast(Any, _NoHooks()))
    route = Route("web", 1, connection, "http://web.localhost", principal="p")
    for name, ns in per_request(route, args.loops).items():
        print(f"{name:32} {ns:7.1f} ns  (from the interpreter)")
    if args.compiled:
        for name, ns in compiled_per_request(args.loops * 5).items():
            print(f"{name:32} {ns:7.1f} ns  (from compiled code)")
    for count in args.tunnels:
        routes = [
            Route(f"t{i}", 1, connection, f"http://t{i}.localhost", principal="p")
            for i in range(count)
        ]
        off, on = scrape_ms(routes, False), scrape_ms(routes, True)
        print(f"scrape, {count:5} tunnels: {off:7.2f} ms; with --metrics-per-tunnel {on:7.2f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
