"""``make bench``: tunnelgate against direct nginx, the nginx two-hop chain and PageKite,
in one bounded run.

    python -m bench.run                 # nginx + wrk + PageKite; writes bench/results/latest.*
    python -m bench.run --smoke --results DIR --workdir DIR
                                        # the Python origin, relays and load generator, tiny
                                        # durations

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
from pathlib import Path
from typing import Any, Final

from . import report
from .loadgen import LoadGenerator, PyLoad, Wrk
from .measure import Plan, SystemRun, idle_tunnels, run_bounded, say
from .origin import MID_SIZE, Origin, start_nginx, start_python_origin
from .pagekite import PageKite
from .procs import (
    ROOT,
    BenchError,
    Processes,
    raise_nofile,
    raise_on_signals,
)
from .systems import Direct, System, Tunnelgate
from .twohop import TwoHop

RESULTS: Final = ROOT / "bench" / "results"
WORKDIR: Final = ROOT / "bench" / ".work"
BUDGET: Final = 420.0  # seconds (+ HARD_MARGIN): make bench, bootstrap included, within 10 min
SMOKE_BUDGET: Final = 60.0
HARD_MARGIN: Final = 60.0  # seconds past the budget before the run is cut off, whatever it does
ALL_SYSTEMS: Final = ("direct", "twohop", "tunnelgate", "pagekite")
SMOKE_SYSTEMS: Final = ("direct", "twohop", "tunnelgate")  # PageKite needs apt


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
    with Processes(args.workdir) as procs:
        if args.smoke:
            origin = start_python_origin(procs, big_size=MID_SIZE)
        else:
            origin = start_nginx(procs, args.workdir)
        result["config"].update(origin=origin.kind, big_bytes=origin.big_size)
        say(f"origin: {origin.kind} on port {origin.port}")
        for name in args.systems:
            say(f"{name}: starting")
            try:
                system = _start_system(name, procs, origin, args)
                result["systems"][name] = SystemRun(system, origin, plan, load).run()
            except BenchError as exc:
                say(f"{name}: FAILED: {exc}")
                result["errors"].append(f"{name}: {exc}")
            for proc in list(procs.procs):
                if proc is not origin.proc:
                    procs.stop(proc)  # one system at a time on the machine
        if "tunnelgate" in args.systems and plan.time_left() > 10 + plan.tunnels / 100:
            try:
                result["idle_tunnels"] = idle_tunnels(procs, origin, plan.tunnels)
            except BenchError as exc:
                result["errors"].append(f"idle tunnels: {exc}")


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
    result["ratios"] = report.ratios(result)
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
    args = parser.parse_args(argv)
    if args.budget is None:
        args.budget = SMOKE_BUDGET if args.smoke else BUDGET
    default = SMOKE_SYSTEMS if args.smoke else ALL_SYSTEMS
    args.systems = tuple(args.systems.split(",")) if args.systems else default
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
    problems = write(result, args.results)
    say(f"results in {args.results} after {result['duration_s']} s")
    print((args.results / "latest.md").read_text())
    for problem in problems:
        say(f"problem: {problem}")
    return 1 if problems or result["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
