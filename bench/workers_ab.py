"""The workers row (issue 12): small-GET req/s through ``--workers 2`` over ``--workers 1``.

Two tunnelgate systems (gateway and client each) side by side in front of the same origin:
**1**, the default single process; **2**, ``--workers 2`` with the cluster options and a
redis-server the run starts (N > 1 needs the shared namespace). One tunnel each, as in the
other rows: with two workers the client's connection lands on one of them, and the public
connections the kernel hands to the other are forwarded to it over the internal link (the
cluster's hop), so this row is what one busy tunnel gains from a second process, not N
tunnels on N cores. The same small-GET load as the plain-HTTP rows (50 connections) is run
on each in turn for ``rounds`` rounds, the order swapped every round; reported: each side's
median req/s, the 2/1 ratio of the medians and the median of the per-round ratios, the
gateway's CPU per request (the supervisor and its workers summed) and how the 2-worker
side's requests split between its workers.
"""

from __future__ import annotations

import contextlib
import socket
import statistics
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Final

from .loadgen import LoadGenerator
from .measure import say
from .origin import Origin
from .procs import BenchError, ManagedProc, Processes, cpu_meter, free_port, wait_until
from .systems import START_TIMEOUT, Tunnelgate

CONNECTIONS: Final = 50
WORKERS: Final = 2
CLUSTER_SECRET: Final = "bench-cluster-secret-0123456789abcdef"


@dataclass(frozen=True, slots=True)
class WorkersPlan:
    rounds: int = 5
    duration: float = 3.0  # seconds of load per side per round
    warmup: float = 1.0


def start_redis(procs: Processes) -> int:
    """A redis-server on a free loopback port, nothing kept on disk; its port."""
    port = free_port()
    argv = ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
            "--appendonly", "no"]  # fmt: skip
    proc = procs.start("redis", argv)
    wait_until("redis-server's port", lambda: _accepts(port), START_TIMEOUT, proc)
    return port


def free_ports(count: int, attempts: int = 50) -> int:
    """The first of `count` consecutive loopback ports that were all free a moment ago:
    worker i's --advertise is the given port + i."""
    for _ in range(attempts):
        first = free_port()
        if first + count - 1 > 65535:
            continue
        with contextlib.ExitStack() as held:
            try:
                for port in range(first, first + count):
                    sock = held.enter_context(socket.socket())
                    sock.bind(("127.0.0.1", port))
            except OSError:
                continue
        return first
    raise BenchError(f"no {count} consecutive free ports in {attempts} attempts")


def _accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1.0):
            return True
    except OSError:
        return False


def worker_pids(gateway: ManagedProc) -> dict[int, int]:
    """Each worker's pid, from the supervisor's `worker_started` lines (text log)."""
    pids: dict[int, int] = {}
    for line in gateway.log_text().splitlines():
        if " worker_started " in line:
            fields = dict(part.split("=", 1) for part in line.split()[3:] if "=" in part)
            pids[int(fields["worker"])] = int(fields["pid"])
    return pids


def requests_by_worker(log_path: Path) -> dict[int, int]:
    """Requests by the worker that accepted their connection: the worker with the tunnel
    logs each request, with `via=NODE` when another worker (that node) forwarded it."""
    text = log_path.read_text(errors="replace")
    nodes: dict[str, int] = {}
    counts = dict.fromkeys(range(WORKERS), 0)
    for line in text.splitlines():
        if " INFO cluster_joined worker=" in line:
            fields = dict(part.split("=", 1) for part in line.split()[3:] if "=" in part)
            nodes[fields["node"]] = int(fields["worker"])
        elif " INFO request worker=" in line:
            worker = int(line.split(" worker=", 1)[1].split(" ", 1)[0])
            if " via=" in line:
                worker = nodes.get(line.rsplit(" via=", 1)[1].split(" ", 1)[0], -1)
            counts[worker] = counts.get(worker, 0) + 1
    return counts


class _Side:
    def __init__(self, name: str, system: Tunnelgate) -> None:
        self.name, self.system = name, system
        self.points: list[dict[str, Any]] = []

    def gateway_pids(self) -> dict[str, int]:
        pids = {"gateway": self.system.gateway.pid}
        for index, pid in worker_pids(self.system.gateway).items():
            pids[f"worker{index}"] = pid
        return pids

    def measure(self, load: LoadGenerator, path: str, duration: float) -> float:
        if not self.system.ensure_route():
            raise BenchError(f"workers {self.name}: no route")
        with cpu_meter(self.gateway_pids()) as used:
            result = load.run(self.system.target, path, CONNECTIONS, duration)
        point = asdict(result)
        spent = sum(used.values())
        point["gateway_cpu_us_per_request"] = (
            round(spent * 1e6 / result.requests, 1) if result.requests else None
        )
        self.points.append(point)
        say(f"workers {self.name}: {result.rps:,.0f} req/s, {result.errors} errors")
        return result.rps

    def summary(self) -> dict[str, Any]:
        rps = [p["rps"] for p in self.points]
        cpu = [p["gateway_cpu_us_per_request"] for p in self.points]
        return {
            "rps": _median(rps),
            "runs_rps": rps,
            "p99_ms": _median([p["p99_ms"] for p in self.points if p["p99_ms"] is not None]),
            "errors": sum(p["errors"] for p in self.points),
            "gateway_cpu_us_per_request": _median([c for c in cpu if c is not None]),
        }


def _median(values: list[float]) -> float | None:
    return round(statistics.median(values), 3) if values else None


def _ratio(top: float | None, bottom: float | None) -> float | None:
    return round(top / bottom, 4) if top and bottom else None


def measure_workers(
    procs: Processes, origin: Origin, load: LoadGenerator, plan: WorkersPlan
) -> dict[str, Any]:
    """Both sides started and warmed up, then measured in turn, the order swapped each
    round."""
    redis_port = start_redis(procs)
    redis, advertise = f"redis://127.0.0.1:{redis_port}", f"127.0.0.1:{free_ports(WORKERS)}"
    cluster = ("--workers", str(WORKERS), "--redis", redis,
               "--cluster-secret", CLUSTER_SECRET, "--advertise", advertise)  # fmt: skip
    one = _Side("1", Tunnelgate(procs, origin))
    two = _Side("2", Tunnelgate(procs, origin, extra=cluster))
    gateway = two.system.gateway
    wait_until(
        "both workers' worker_ready lines",
        lambda: all(f"worker_ready worker={i} " in gateway.log_text() for i in range(WORKERS)),
        START_TIMEOUT,
        gateway,
    )
    sides = [one, two]
    for side in sides:
        load.run(side.system.target, origin.small_path, 10, plan.warmup)
    ratios: list[float] = []
    for index in range(plan.rounds):
        rps = {}
        for side in sides if index % 2 == 0 else sides[::-1]:
            rps[side.name] = side.measure(load, origin.small_path, plan.duration)
        if (quotient := _ratio(rps["2"], rps["1"])) is not None:
            ratios.append(quotient)
    single, double = one.summary(), two.summary()
    double["requests_by_worker"] = requests_by_worker(gateway.log_path)
    of_medians = _ratio(double["rps"], single["rps"])
    say(f"workers 2/1: {of_medians} (medians), {_median(ratios)} (median of the rounds' ratios)")
    return {
        "config": {
            "rounds": plan.rounds,
            "duration_s": plan.duration,
            "connections": CONNECTIONS,
            "load_generator": load.name,
            "workers": WORKERS,
        },
        "one": single,
        "two": double,
        "two_over_one": of_medians,
        "round_ratios": ratios,
        "two_over_one_paired": _median(ratios),
    }
