"""The cross-node row (issue 12): what a second gateway's hop costs.

Two gateways share one redis-server (started here on a free loopback port, `--save ""`);
the client holds the tunnel on gateway A. **same-node**: the load goes to A, which has the
tunnel. **cross-node**: the load goes to B, which has not: B forwards each public connection
over the cluster link to A (docs/cluster.md, Forwarding). Small GETs (50 connections, the
plain-HTTP rows' load) on each in turn for `rounds` rounds, the order rotated every round;
then one 100 MiB download through each, taken in turn (:func:`bench.measure.interleaved_bulk`).
Reported: each side's median req/s and MB/s, and cross/same ratios (of the medians, and the
median of the per-round ratios); the CPU each process spent per request.
"""

from __future__ import annotations

import shutil
import statistics
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Final

from .loadgen import LoadGenerator
from .measure import Plan, SystemRun, interleaved_bulk, say
from .origin import Origin
from .probe import Target, answers
from .procs import BenchError, ManagedProc, Processes, cpu_meter, free_port, wait_until
from .systems import DOMAIN, SUBDOMAIN, start_client, start_gateway

CONNECTIONS: Final = 50
SECRET: Final = "bench-cluster-secret-0123456789abcdef"
REDIS_START: Final = 10.0  # seconds


@dataclass(frozen=True, slots=True)
class ClusterPlan:
    rounds: int = 5
    duration: float = 3.0  # seconds of load per side per round
    warmup: float = 1.0
    bulk_rounds: int = 3


class ClusterSide:
    """A bench System: the same tunnel, reached through gateway `port`."""

    def __init__(self, name: str, port: int, procs: dict[str, ManagedProc], origin: Origin):
        self.name = name
        self.target = Target(port, f"{SUBDOMAIN}.{DOMAIN}")
        self.procs = procs
        self.origin = origin
        self.restarts = 0

    def ensure_route(self) -> bool:
        dead = [name for name, proc in self.procs.items() if not proc.alive]
        if dead:
            raise BenchError(f"cluster row: {', '.join(dead)} died")
        return answers(self.target, self.origin.small_path, self.origin.small_body)

    def cpu_pids(self) -> dict[str, int]:
        return {**{name: proc.pid for name, proc in self.procs.items()},
                "origin": self.origin.worker_pid}  # fmt: skip

    def rss_pids(self) -> dict[str, int]:
        return {name: proc.pid for name, proc in self.procs.items() if name != "redis"}


def start_redis(procs: Processes) -> tuple[ManagedProc, int]:
    server = shutil.which("redis-server")
    if server is None:
        raise BenchError("cluster row: redis-server is not installed (apt install redis-server)")
    port = free_port()
    argv = [server, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
            "--appendonly", "no"]  # fmt: skip
    proc = procs.start("redis", argv)
    wait_until("redis-server", lambda: _listening(port), REDIS_START, proc)
    return proc, port


def _listening(port: int) -> bool:
    import socket

    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def start_pair(procs: Processes, origin: Origin) -> tuple[ClusterSide, ClusterSide]:
    redis, redis_port = start_redis(procs)
    gateways: dict[str, tuple[ManagedProc, int]] = {}
    for name in ("gateway", "gateway2"):
        advertise = f"127.0.0.1:{free_port()}"
        extra = ["--redis", f"redis://127.0.0.1:{redis_port}/0",
                 "--cluster-secret", SECRET, "--advertise", advertise]  # fmt: skip
        gateways[name] = start_gateway(procs, name, extra=extra)
    client = start_client(procs, gateways["gateway"][1], origin.port)
    members = {"gateway": gateways["gateway"][0], "gateway2": gateways["gateway2"][0],
               "client": client, "redis": redis}  # fmt: skip
    same = ClusterSide("same-node", gateways["gateway"][1], members, origin)
    cross = ClusterSide("cross-node", gateways["gateway2"][1], members, origin)
    return same, cross


def _median(values: list[float]) -> float | None:
    return round(statistics.median(values), 3) if values else None


def _ratio(top: float | None, bottom: float | None) -> float | None:
    return round(top / bottom, 4) if top and bottom else None


def measure_cluster(
    procs: Processes, origin: Origin, load: LoadGenerator, plan: ClusterPlan, deadline: float
) -> dict[str, Any]:
    same, cross = start_pair(procs, origin)
    sides = (same, cross)
    for side in sides:
        if not side.ensure_route():
            raise BenchError(f"cluster row: no route through {side.name}")
        load.run(side.target, origin.small_path, 10, plan.warmup)
    points: dict[str, list[dict[str, Any]]] = {side.name: [] for side in sides}
    ratios: list[float] = []
    for index in range(plan.rounds):
        order = sides if index % 2 == 0 else sides[::-1]
        rps: dict[str, float] = {}
        for side in order:
            with cpu_meter(side.cpu_pids()) as used:
                result = load.run(side.target, origin.small_path, CONNECTIONS, plan.duration)
            point = asdict(result)
            point["cpu_us_per_request"] = {
                role: round(s * 1e6 / result.requests, 1) if result.requests else None
                for role, s in used.items()
            }
            points[side.name].append(point)
            rps[side.name] = result.rps
            say(f"cluster {side.name}: {result.rps:,.0f} req/s, {result.errors} errors")
        if (quotient := _ratio(rps["cross-node"], rps["same-node"])) is not None:
            ratios.append(quotient)
    bulk_plan = Plan(deadline=deadline, bulk_repeats=0, parallel=0)
    runs = {side.name: SystemRun(side, origin, bulk_plan, load) for side in sides}
    errors: list[str] = []
    bulk = interleaved_bulk(runs, plan.bulk_rounds, errors)
    summary: dict[str, Any] = {}
    for side in sides:
        mine = points[side.name]
        summary[side.name] = {
            "rps": _median([p["rps"] for p in mine]),
            "runs_rps": [p["rps"] for p in mine],
            "p99_ms": _median([p["p99_ms"] for p in mine if p["p99_ms"] is not None]),
            "errors": sum(p["errors"] for p in mine),
            "cpu_us_per_request": {
                role: _median([v for p in mine if (v := p["cpu_us_per_request"][role]) is not None])
                for role in mine[0]["cpu_us_per_request"]
            } if mine else {},
            "bulk": bulk.get(side.name),
        }  # fmt: skip
    same_bulk, cross_bulk = summary["same-node"]["bulk"], summary["cross-node"]["bulk"]
    found = {
        "config": {
            **asdict(plan),
            "connections": CONNECTIONS,
            "load_generator": load.name,
            "big_bytes": origin.big_size,
        },
        **summary,
        "rps_cross_over_same": _ratio(summary["cross-node"]["rps"], summary["same-node"]["rps"]),
        "rps_round_ratios": ratios,
        "rps_cross_over_same_paired": _median(ratios),
        "bulk_cross_over_same": _ratio(
            cross_bulk["mb_per_s"] if cross_bulk else None,
            same_bulk["mb_per_s"] if same_bulk else None,
        ),
        "errors": errors,
    }
    say(
        f"cluster cross/same: req/s {found['rps_cross_over_same']} (medians), "
        f"{found['rps_cross_over_same_paired']} (paired); bulk {found['bulk_cross_over_same']}"
    )
    return found


def main() -> int:
    """`python -m bench.cluster_row`: the row alone, briefly, on the Python origin."""
    import argparse
    import json
    import sys

    from .loadgen import PyLoad, Wrk
    from .origin import MID_SIZE, start_nginx, start_python_origin

    parser = argparse.ArgumentParser(prog="python -m bench.cluster_row", description=__doc__)
    parser.add_argument("--smoke", action="store_true", help="Python origin and load, short")
    parser.add_argument("--workdir", type=Path, default=Path("bench/.work-cluster"))
    args = parser.parse_args()
    plan = (
        ClusterPlan(rounds=2, duration=1.0, warmup=0.3, bulk_rounds=1)
        if args.smoke
        else (ClusterPlan())
    )
    load: LoadGenerator = PyLoad() if args.smoke else Wrk()
    with Processes(args.workdir.resolve()) as procs:
        if args.smoke:
            origin = start_python_origin(procs, big_size=MID_SIZE)
        else:
            origin = start_nginx(procs, args.workdir.resolve())
        found = measure_cluster(procs, origin, load, plan, time.monotonic() + 300)
    json.dump(found, sys.stdout, indent=2)
    print()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
