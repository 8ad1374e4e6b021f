"""``make bench``: tunnelgate against direct nginx, the nginx two-hop chain and PageKite,
in one bounded run, then the HTTPS rows.

    python -m bench.run                 # nginx + wrk + PageKite; writes bench/results/latest.*
    python -m bench.run --smoke --results DIR --workdir DIR
                                        # the Python origin, relays and load generator, tiny
                                        # durations

HTTPS rows (``--https``): one test certificate for the run (:mod:`bench.tlscert`) served by
nginx's origin itself (direct), by the front hop of the nginx two-hop chain, and by
tunnelgate's ``--https`` listener; small GETs at 50 connections and one 100 MiB download
each, reported beside the plain-HTTP rows as ratios. These systems are started together, and
their downloads taken in turn, five each (:func:`bench.measure.interleaved_bulk`). The smoke
run measures tunnelgate's HTTPS listener only (its Python origin and relays speak no TLS) and
says so in the result.

TCP rows (issue 9, :mod:`bench.tcprows`): one 100 MiB transfer and new connections per second
through a TCP tunnel, against the local TCP service alone and against socat, in turn. Metrics
row (issue 10, :mod:`bench.metrics_ab`): small GETs through tunnelgate with the admin API off,
and on with /metrics scraped every 0.5 s, in turn. Workers row (issue 12,
:mod:`bench.workers_ab`): small GETs through ``--workers 2`` and ``--workers 1``, in turn.

    python -m bench.run --only tcp,metrics
                                        # just those phases (about 2 minutes); writes
                                        # bench/results/phases.{json,md}, not latest.*

The run stops by itself within ``--budget`` seconds (steps that no longer fit are skipped
and named), and every process it started is stopped by PID on the way out, also on error,
Ctrl-C or SIGTERM. Exit status: 0 when the results were written and are well formed (missed
targets are reported, not failed), 1 otherwise, 130 when interrupted.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict
from functools import partial
from pathlib import Path
from typing import Any, Final

from . import report
from .cluster_row import ClusterPlan, measure_cluster
from .loadgen import LoadGenerator, PyLoad, Wrk
from .measure import Plan, SystemRun, idle_tunnels, interleaved_bulk, run_bounded, say
from .metrics_ab import MetricsPlan, measure_metrics
from .origin import MID_SIZE, Origin, start_nginx, start_python_origin
from .pagekite import PageKite
from .procs import (
    ROOT,
    BenchError,
    Processes,
    raise_nofile,
    raise_on_signals,
)
from .systems import DOMAIN, SUBDOMAIN, Direct, System, Tunnelgate
from .tcprows import SMOKE_TRANSFER_BYTES, TcpPlan, measure_tcp
from .tcprows import SYSTEMS as TCP_SYSTEMS
from .tlscert import BenchCertificate, make_certificate
from .twohop import TwoHop
from .workers_ab import WorkersPlan, measure_workers

RESULTS: Final = ROOT / "bench" / "results"
WORKDIR: Final = ROOT / "bench" / ".work"
BUDGET: Final = 420.0  # seconds (+ HARD_MARGIN): make bench, bootstrap included, within 10 min
SMOKE_BUDGET: Final = 60.0
HARD_MARGIN: Final = 60.0  # seconds past the budget before the run is cut off, whatever it does
ALL_SYSTEMS: Final = ("direct", "twohop", "tunnelgate", "pagekite")
SMOKE_SYSTEMS: Final = ("direct", "twohop", "tunnelgate")  # PageKite needs apt
HTTPS_SYSTEMS: Final = ("direct", "twohop", "tunnelgate")
SMOKE_HTTPS_SYSTEMS: Final = ("tunnelgate",)
PHASES: Final = ("http", "https", "tcp", "metrics", "cluster", "workers")  # --only picks
ONLY_STEM: Final = "phases"  # --only writes phases.{json,md}: latest.* stays a whole run
SMOKE_TCP: Final = TcpPlan(rounds=1, transfer_bytes=SMOKE_TRANSFER_BYTES, duration=0.3)
SMOKE_METRICS: Final = MetricsPlan(rounds=1, duration=1.2, warmup=0.2)  # >= 2 scrapes
SMOKE_WORKERS: Final = WorkersPlan(rounds=1, duration=0.5, warmup=0.2)
TCP_NEEDS: Final = 60.0  # seconds left before the TCP phase is started (it takes ~40)
METRICS_NEEDS: Final = 110.0  # seconds left before the metrics phase is started (~95)
WORKERS_NEEDS: Final = 45.0  # seconds left before the workers phase is started (~38)
CLUSTER_NEEDS: Final = 75.0  # seconds left before the cross-node row is started (~60)
SMOKE_CLUSTER: Final = ClusterPlan(rounds=1, duration=0.5, warmup=0.2, bulk_rounds=1)
NO_TLS_IN_SMOKE: Final = (
    "not measured in the smoke run: its Python origin and relays speak no TLS "
    "(nginx terminates TLS in make bench)"
)


def machine() -> dict[str, Any]:
    model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "nproc": os.cpu_count(),
        "cpu_model": model,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "mem_total_mib": os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2**20,
        # Other work on the machine skews every number; the load average at the start says how much.
        "loadavg_1m": round(os.getloadavg()[0], 2),
    }


def _output(argv: list[str]) -> str | None:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=10, cwd=ROOT)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def software() -> dict[str, Any]:
    versions: dict[str, Any] = {}
    if shutil.which("dpkg-query"):
        for package in ("nginx", "wrk", "pagekite"):
            versions[package] = _output(["dpkg-query", "-W", "-f=${Version}", package])
    versions["commit"] = _output(["git", "rev-parse", "--short", "HEAD"])
    dirty = _output(["git", "status", "--porcelain", "--", "src"])
    versions["src_modified"] = bool(dirty)  # src/ differs from the commit (work in progress)
    return versions


def _plan(args: argparse.Namespace) -> Plan:
    deadline = time.monotonic() + args.budget
    if not args.smoke:
        return Plan(deadline=deadline)
    return Plan(
        deadline=deadline,
        durations={},
        default_duration=0.5,
        warmup=0.2,
        bulk_repeats=1,
        bulk_limit=5.0,
        parallel=2,
        tunnels=20,
        interleaved_rounds=1,
    )


def _start_system(name: str, procs: Processes, origin: Origin, args: argparse.Namespace) -> System:
    if name == "direct":
        return Direct(origin)
    if name == "twohop":
        return TwoHop(procs, origin, args.workdir, _twohop_kind(args))
    if name == "tunnelgate":
        return Tunnelgate(procs, origin)
    if name == "pagekite":
        return PageKite(procs, origin)
    raise BenchError(f"unknown system {name!r}")


def _start_https_system(
    name: str, procs: Processes, origin: Origin, args: argparse.Namespace, cert: BenchCertificate
) -> System:
    client = cert.client(f"{SUBDOMAIN}.{DOMAIN}")
    if name == "direct":
        return Direct(origin, client)
    if name == "twohop":
        return TwoHop(procs, origin, args.workdir, _twohop_kind(args), tls=cert, client_tls=client)
    if name == "tunnelgate":
        return Tunnelgate(procs, origin, tls=cert, client_tls=client)
    raise BenchError(f"no HTTPS variant of {name!r}")


def _twohop_kind(args: argparse.Namespace) -> str:
    """nginx proxies, or Python relays where the origin is Python too (the smoke run)."""
    return "python" if args.smoke else "nginx"


def measure_all(args: argparse.Namespace, result: dict[str, Any]) -> None:
    plan = _plan(args)
    load: LoadGenerator = PyLoad() if args.smoke else Wrk()
    result["config"] = {
        **asdict(plan),
        "load_generator": load.name,
        "systems": list(args.systems),
        "twohop": _twohop_kind(args),
    }
    del result["config"]["deadline"]
    result["config"]["https_systems"] = list(args.https)
    result["config"]["phases"] = list(args.only)
    cert = make_certificate(args.workdir, DOMAIN, f"{SUBDOMAIN}.{DOMAIN}") if args.https else None
    with Processes(args.workdir) as procs:
        if args.only == ("tcp",):  # no origin needed
            measure_tcp_phase(args, procs, plan, result)
            return
        if args.smoke:
            origin = start_python_origin(procs, big_size=MID_SIZE)
        else:
            origin = start_nginx(procs, args.workdir, tls=cert)
        result["config"].update(origin=origin.kind, big_bytes=origin.big_size)
        say(f"origin: {origin.kind} on port {origin.port}")
        for name in args.systems if "http" in args.only else ():
            start = partial(_start_system, name, procs, origin, args)
            system = _measure(name, start, procs, origin, plan, load, result["errors"])
            if system is not None:
                result["systems"][name] = system
        if cert is not None and "https" in args.only:
            result["https"] = _https_header(args, cert, load)
            measure_https(args, cert, procs, origin, plan, load, result)
        idle = "http" in args.only and "tunnelgate" in args.systems
        if idle and plan.time_left() > 10 + plan.tunnels / 100:
            try:
                result["idle_tunnels"] = idle_tunnels(procs, origin, plan.tunnels)
            except BenchError as exc:
                result["errors"].append(f"idle tunnels: {exc}")
        if "metrics" in args.only:
            measure_metrics_phase(args, procs, origin, plan, load, result)
        if "cluster" in args.only:
            measure_cluster_phase(args, procs, origin, plan, load, result)
        if "workers" in args.only:
            measure_workers_phase(args, procs, origin, plan, load, result)
        if "tcp" in args.only:
            _stop_all_but(procs, origin)
            measure_tcp_phase(args, procs, plan, result)


def _stop_all_but(procs: Processes, origin: Origin) -> None:
    for proc in list(procs.procs):
        if proc is not origin.proc:
            procs.stop(proc)


def measure_tcp_phase(
    args: argparse.Namespace, procs: Processes, plan: Plan, result: dict[str, Any]
) -> None:
    """The TCP rows; every process they started is stopped afterwards."""
    if plan.time_left() < TCP_NEEDS and not args.smoke:
        result["errors"].append("TCP rows: skipped (time budget)")
        return
    say(f"TCP rows: {', '.join(TCP_SYSTEMS)}, in turn")
    before = set(procs.procs)
    try:
        tcp_plan = SMOKE_TCP if args.smoke else TcpPlan()
        result["tcp"] = measure_tcp(procs, tcp_plan, TCP_SYSTEMS, result["errors"])
    except BenchError as exc:
        result["errors"].append(f"TCP rows: {exc}")
    finally:
        for proc in list(procs.procs):
            if proc not in before:
                procs.stop(proc)


def _origin_row(
    key: str,
    label: str,
    needs: float,
    measure: Callable[[], dict[str, Any]],
    args: argparse.Namespace,
    procs: Processes,
    origin: Origin,
    plan: Plan,
    result: dict[str, Any],
) -> None:
    """One row measured against the origin (metrics, cluster, workers): skipped when the
    time budget is short, its failure recorded, every process but the origin stopped after."""
    if plan.time_left() < needs and not args.smoke:
        result["errors"].append(f"{key} row: skipped (time budget)")
        return
    say(f"{key} row: {label}")
    try:
        result[key] = measure()
    except BenchError as exc:
        result["errors"].append(f"{key} row: {exc}")
    finally:
        _stop_all_but(procs, origin)


def measure_cluster_phase(
    args: argparse.Namespace,
    procs: Processes,
    origin: Origin,
    plan: Plan,
    load: LoadGenerator,
    result: dict[str, Any],
) -> None:
    """The cross-node row (issue 12)."""
    cluster_plan = SMOKE_CLUSTER if args.smoke else ClusterPlan()
    _origin_row(
        "cluster", "one tunnel, reached through its own gateway and through a second one",
        CLUSTER_NEEDS, lambda: measure_cluster(procs, origin, load, cluster_plan, plan.deadline),
        args, procs, origin, plan, result,
    )  # fmt: skip


def measure_metrics_phase(
    args: argparse.Namespace,
    procs: Processes,
    origin: Origin,
    plan: Plan,
    load: LoadGenerator,
    result: dict[str, Any],
) -> None:
    """The metrics on/off row."""
    metrics_plan = SMOKE_METRICS if args.smoke else MetricsPlan()
    _origin_row(
        "metrics", "tunnelgate with the admin API off and on (scraped), in turn",
        METRICS_NEEDS, lambda: measure_metrics(procs, origin, load, metrics_plan),
        args, procs, origin, plan, result,
    )  # fmt: skip


def measure_workers_phase(
    args: argparse.Namespace,
    procs: Processes,
    origin: Origin,
    plan: Plan,
    load: LoadGenerator,
    result: dict[str, Any],
) -> None:
    """The --workers 2 over --workers 1 row."""
    workers_plan = SMOKE_WORKERS if args.smoke else WorkersPlan()
    _origin_row(
        "workers", "tunnelgate with --workers 1 and --workers 2, in turn",
        WORKERS_NEEDS, lambda: measure_workers(procs, origin, load, workers_plan),
        args, procs, origin, plan, result,
    )  # fmt: skip


def _measure(
    label: str,
    start: Callable[[], System],
    procs: Processes,
    origin: Origin,
    plan: Plan,
    load: LoadGenerator,
    errors: list[str],
) -> dict[str, Any] | None:
    """Start one system and measure it (None if it failed: the error is in `errors`), then
    stop every process but the origin: one system at a time on the machine."""
    say(f"{label}: starting")
    try:
        return SystemRun(start(), origin, plan, load).run()
    except BenchError as exc:
        say(f"{label}: FAILED: {exc}")
        errors.append(f"{label}: {exc}")
        return None
    finally:
        _stop_all_but(procs, origin)


def measure_https(
    args: argparse.Namespace,
    cert: BenchCertificate,
    procs: Processes,
    origin: Origin,
    plan: Plan,
    load: LoadGenerator,
    result: dict[str, Any],
) -> None:
    """The HTTPS systems, all started at once: small GETs one system after the other (the
    others idle), then the downloads taken in turn (measure.interleaved_bulk)."""
    found, errors = result["https"]["systems"], result["errors"]
    runs: dict[str, SystemRun] = {}
    try:
        for name in args.https:
            say(f"{name} (HTTPS): starting")
            try:
                system = _start_https_system(name, procs, origin, args, cert)
            except BenchError as exc:
                say(f"{name} (HTTPS): FAILED: {exc}")
                errors.append(f"{name} (HTTPS): {exc}")
                continue
            runs[name] = SystemRun(system, origin, plan.https(), load)
        for name, run in list(runs.items()):
            try:
                found[name] = run.run()
            except BenchError as exc:
                say(f"{name} (HTTPS): FAILED: {exc}")
                errors.append(f"{name} (HTTPS): {exc}")
                del runs[name]
        say(f"HTTPS downloads, in turn: {', '.join(runs)}")
        for name, bulk in interleaved_bulk(runs, plan.interleaved_rounds, errors).items():
            found[name]["bulk_single"] = bulk
    finally:
        for proc in list(procs.procs):
            if proc is not origin.proc:
                procs.stop(proc)


def _https_header(
    args: argparse.Namespace, cert: BenchCertificate, load: LoadGenerator
) -> dict[str, Any]:
    left_out = [name for name in HTTPS_SYSTEMS if name not in args.https] if args.smoke else []
    small = "wrk (verifies no certificate)" if load.name == "wrk" else f"the {load.name} one"
    return {
        "certificate": cert.describe(),
        "clients": f"small GETs: {small}; downloads and checks: Python's ssl, verifying "
        "against the run's CA",
        "systems": {},
        "not_measured": dict.fromkeys(left_out, NO_TLS_IN_SMOKE),
    }


def write(result: dict[str, Any], results: Path, stem: str = "latest") -> list[str]:
    """latest.json, latest.md and (with matplotlib, from the bench extra) latest.png."""
    results.mkdir(parents=True, exist_ok=True)
    render: Callable[[report.Result, Path], None] | None
    try:
        from .chart import render
    except ImportError:  # `make test` installs only the dev extra; `make bench` adds bench
        render = None
        result["chart"] = "not drawn: matplotlib is missing (pip install -e '.[bench]')"
    else:
        result["chart"] = f"{stem}.png"
    if not result["systems"]:  # --only without the plain-HTTP phase: nothing to draw
        render = None
        result["chart"] = "not drawn: no plain-HTTP rows in this run"
    result["ratios"] = report.ratios(result)
    if "tcp" in result:
        result["tcp"]["ratios"] = report.tcp_ratios(result)
    if "https" in result:
        result["https"]["ratios"] = report.https_ratios(result)
    problems = report.validate(result)
    result["problems"] = problems
    (results / f"{stem}.json").write_text(json.dumps(result, indent=2) + "\n")
    scale = report.load(results / "scale.json")
    (results / f"{stem}.md").write_text(report.markdown(result, scale))
    if render is not None:
        render(result, results / f"{stem}.png")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__)
    parser.add_argument("--smoke", action="store_true", help="Python pieces, tiny durations")
    parser.add_argument("--results", type=Path, default=RESULTS)
    parser.add_argument("--workdir", type=Path, default=WORKDIR)
    parser.add_argument("--budget", type=float, default=None, help="seconds for the whole run")
    parser.add_argument("--systems", default=None, help=f"comma-separated, of {ALL_SYSTEMS}")
    parser.add_argument(
        "--https", default=None,
        help=f"comma-separated, of {HTTPS_SYSTEMS} (smoke: {SMOKE_HTTPS_SYSTEMS}), or none",
    )  # fmt: skip
    parser.add_argument(
        "--only", default=None,
        help=f"comma-separated phases, of {PHASES}; writes {ONLY_STEM}.* instead of latest.*",
    )  # fmt: skip
    args = parser.parse_args(argv)
    args.only = tuple(args.only.split(",")) if args.only else PHASES
    if unknown := set(args.only) - set(PHASES):
        parser.error(f"unknown phases {sorted(unknown)}; choose among {PHASES}")
    stem = "latest" if args.only == PHASES else ONLY_STEM
    if args.budget is None:
        args.budget = SMOKE_BUDGET if args.smoke else BUDGET
    default = SMOKE_SYSTEMS if args.smoke else ALL_SYSTEMS
    args.systems = tuple(args.systems.split(",")) if args.systems else default
    https_default = SMOKE_HTTPS_SYSTEMS if args.smoke else HTTPS_SYSTEMS
    if args.https is None:
        args.https = https_default
    else:
        args.https = () if args.https == "none" else tuple(args.https.split(","))
    if "https" not in args.only:
        args.https = ()
    if "http" not in args.only:
        args.systems = ()
    args.workdir = args.workdir.resolve()
    raise_on_signals()
    raise_nofile(65536)
    result: dict[str, Any] = {
        "schema": report.SCHEMA,
        "kind": "smoke" if args.smoke else "bench",
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": machine(),
        "software": software(),
        "systems": {},
        "errors": [],
    }
    if not run_bounded(args.budget + HARD_MARGIN, lambda r: measure_all(args, r), result):
        return 130
    problems = write(result, args.results, stem)
    say(f"results in {args.results} after {result['duration_s']} s")
    print((args.results / f"{stem}.md").read_text())
    for problem in problems:
        say(f"problem: {problem}")
    return 1 if problems or result["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
