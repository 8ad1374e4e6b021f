"""The measurements, the same for every system, each preceded by a route check.

For each system: memory at rest, a short warm-up, small GETs at each concurrency of the sweep
(with the CPU each process spent meanwhile, per request), bulk downloads (one, then several in
parallel), the integrity of the 1 MiB file, and memory after all that. For tunnelgate also the
memory of idle tunnels, on a fresh gateway. A step the time budget or a broken route does not
allow is skipped and named in ``skipped``; its value is null. Over HTTPS (:meth:`Plan.https`)
the sweep is 50 connections only, the systems are all started at once and their downloads
taken in turn (:func:`interleaved_bulk`), and the run records the TLS version and cipher
suite the server picked.
"""

from __future__ import annotations

import random
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Final

from .download import DownloadResult, download
from .loadgen import LoadGenerator, LoadResult
from .origin import Origin
from .probe import Target, answers, negotiated
from .procs import (
    BenchError,
    Interrupted,
    Processes,
    cpu_meter,
    hard_deadline,
    rss_kib,
)
from .systems import System, start_gateway
from .tunnels import open_tunnels

SETTLE: Final = 1.0  # seconds the gateway gets to settle before its memory is read
ROUTE_SAMPLE: Final = 50  # idle tunnels asked for a page after their memory was read
_T0: Final = time.monotonic()


def say(message: str) -> None:
    print(f"[{time.monotonic() - _T0:6.1f}s] {message}", file=sys.stderr, flush=True)


def run_bounded(
    seconds: float, body: Callable[[dict[str, Any]], None], result: dict[str, Any]
) -> bool:
    """Run `body(result)` under a hard deadline; a BenchError becomes an entry in
    result["errors"]. False if a signal interrupted it (every process was stopped)."""
    started = time.monotonic()
    try:
        with hard_deadline(seconds):
            body(result)
    except (KeyboardInterrupt, Interrupted):
        say("interrupted: every process started was stopped")
        return False
    except BenchError as exc:
        result["errors"].append(str(exc))
    finally:
        result["duration_s"] = round(time.monotonic() - started, 1)
    return True


@dataclass(frozen=True, slots=True)
class Plan:
    """How long and how much; `deadline` (time.monotonic) bounds the whole run."""

    deadline: float
    sweep: tuple[int, ...] = (1, 10, 50, 200)
    durations: dict[int, float] = field(default_factory=lambda: {1: 5.0, 50: 6.0})
    default_duration: float = 4.0
    warmup: float = 1.0
    bulk_repeats: int = 3
    bulk_limit: float = 15.0  # seconds for one bulk step (PageKite is cut short by it)
    parallel: int = 8
    tunnels: int = 2000
    interleaved_rounds: int = 5  # HTTPS: downloads from each system, taken in turn

    def duration(self, connections: int) -> float:
        return self.durations.get(connections, self.default_duration)

    def https(self) -> Plan:
        """The HTTPS rows: small GETs at 50 connections; no parallel downloads, and the single
        ones are taken in turn across the systems afterwards (:func:`interleaved_bulk`)."""
        return replace(self, sweep=(50,), parallel=0, bulk_repeats=0)

    def time_left(self) -> float:
        return self.deadline - time.monotonic()


class SystemRun:
    """Measures one system into a JSON-ready dict."""

    def __init__(self, system: System, origin: Origin, plan: Plan, load: LoadGenerator) -> None:
        self.system = system
        self.origin = origin
        self.plan = plan
        self.load = load
        self.route_failures = 0
        self.skipped: list[str] = []
        self.incidents: list[str] = []  # restarts, and routes lost during a step

    def _ready(self, step: str, needs: float) -> bool:
        """True if `step` may run: enough time left, and the route answers."""
        if self.plan.time_left() < needs:
            self.skipped.append(f"{step}: time budget")
            say(f"{self.system.name}: skipping {step} (time budget)")
            return False
        restarts = self.system.restarts
        routed = self.system.ensure_route()
        if self.system.restarts > restarts:
            self._incident(f"restarted {self.system.restarts - restarts}x before {step}")
        if not routed:
            self.route_failures += 1
            self.skipped.append(f"{step}: no route")
            say(f"{self.system.name}: skipping {step} (no route)")
            return False
        return True

    def _incident(self, what: str) -> None:
        self.incidents.append(what)
        say(f"{self.system.name}: {what}")

    def _rss(self) -> dict[str, int]:
        return {role: rss_kib(pid) for role, pid in self.system.rss_pids().items()}

    def run(self) -> dict[str, Any]:
        name = self.system.name
        rss_idle = self._rss()
        tls = self._tls()
        if self._ready("warm-up", self.plan.warmup + 10):
            self.load.run(self.system.target, self.origin.small_path, 10, self.plan.warmup)
        sweep = [self._small(c) for c in self.plan.sweep]
        single = self._bulk(1)
        parallel = self._bulk(self.plan.parallel) if self.plan.parallel else None
        integrity = self._integrity()
        rss_after = self._rss()
        say(f"{name}: done ({self.system.restarts} restarts, {self.route_failures} bad routes)")
        found: dict[str, Any] = {"tls": tls} if tls is not None else {}
        return found | {
            "sweep": [point for point in sweep if point is not None],
            "bulk_single": single,
            "bulk_parallel": parallel,
            "integrity": integrity,
            "rss_kib": {"idle": rss_idle, "after_load": rss_after},
            "restarts": self.system.restarts,
            "route_failures": self.route_failures,
            "skipped": self.skipped,
            "incidents": self.incidents,
        }

    def _tls(self) -> dict[str, Any] | None:
        """What the server negotiates with the benchmark's client (HTTPS targets only)."""
        if self.system.target.tls is None or not self._ready("TLS check", 10):
            return None
        found = negotiated(self.system.target)
        say(f"{self.system.name}: {found['version']} {found['cipher']}")
        return found

    def _small(self, connections: int) -> dict[str, Any] | None:
        duration = self.plan.duration(connections)
        if not self._ready(f"small GET c{connections}", duration + 20):
            return None
        restarts = self.system.restarts
        with cpu_meter(self.system.cpu_pids()) as used:
            result = self.load.run(
                self.system.target, self.origin.small_path, connections, duration
            )
        point = asdict(result)
        point["cpu_us_per_request"] = _per_request(used, result)
        point["restarts_during"] = self.system.restarts - restarts
        if point["restarts_during"]:
            self._incident(f"crashed and restarted itself during small GET c{connections}")
        say(
            f"{self.system.name} c{connections}: {result.rps:,.0f} req/s, "
            f"p50 {result.p50_ms} ms, p99 {result.p99_ms} ms, {result.errors} errors"
        )
        return point

    def fetch(self, parallel: int) -> tuple[DownloadResult, dict[str, float]] | None:
        """`parallel` downloads of the big file at once, and the CPU each process spent
        meanwhile; None when the budget or the route does not allow it."""
        if not self._ready(f"bulk x{parallel}", self.plan.bulk_limit + 10):
            return None
        with cpu_meter(self.system.cpu_pids()) as used:
            result = download(
                self.system.target, self.origin.big_path, parallel=parallel,
                limit=self.plan.bulk_limit,
            )  # fmt: skip
        return result, used

    def _bulk(self, parallel: int) -> dict[str, Any] | None:
        tally = BulkTally()
        for _ in range(self.plan.bulk_repeats):
            if not tally.add(self.fetch(parallel)):
                break
        return tally.summary(self.system.name, parallel)

    def _integrity(self) -> dict[str, Any] | None:
        if not self._ready("integrity", 30):
            return None
        result = download(self.system.target, self.origin.mid_path, digest=True, limit=20.0)
        ok = result.sha256 == self.origin.mid_sha256
        say(f"{self.system.name} integrity: {'ok' if ok else 'MISMATCH'}")
        return {"sha256": result.sha256, "expected": self.origin.mid_sha256, "ok": ok}


def _per_request(used: dict[str, float], result: LoadResult) -> dict[str, float | None]:
    if not result.requests:
        return {role: None for role in used}
    return {role: round(seconds * 1e6 / result.requests, 1) for role, seconds in used.items()}


class BulkTally:
    """Downloads of one system: the median one's figures, and the CPU per MiB over all of
    them (the /proc clock ticks at 10 ms, and one 100 MiB download is a few tenths of a
    second)."""

    def __init__(self) -> None:
        self.runs: list[DownloadResult] = []
        self.cpu: dict[str, float] = {}
        self.done = False  # no more: skipped, cut off by its time limit, or failed

    def add(self, fetched: tuple[DownloadResult, dict[str, float]] | None) -> bool:
        """Count one download; False when there should be no more (a slow system gets one
        time-limited try)."""
        if fetched is None:
            self.done = True
            return False
        result, used = fetched
        self.runs.append(result)
        for role, seconds in used.items():
            self.cpu[role] = self.cpu.get(role, 0.0) + seconds
        self.done = result.truncated or result.errors > 0
        return not self.done

    def summary(self, name: str, parallel: int) -> dict[str, Any] | None:
        if not self.runs:
            return None
        median = sorted(self.runs, key=lambda r: r.mb_per_s)[len(self.runs) // 2]
        speeds = [r.mb_per_s for r in self.runs]
        say(f"{name} bulk x{parallel}: {speeds} MB/s")
        per_mib = _per_mib(self.cpu, sum(r.bytes for r in self.runs))
        return {**asdict(median), "cpu_ms_per_mib": per_mib, "runs_mb_per_s": speeds}


def interleaved_bulk(
    runs: dict[str, SystemRun], rounds: int, errors: list[str]
) -> dict[str, dict[str, Any] | None]:
    """One download from each system in turn, `rounds` times (A B C A B C ...), all of them
    running meanwhile: the machine's load drifts over a run (other work on it), and
    downloads taken minutes apart made the ratios between systems move by a quarter from one
    run to the next; taken in turn, they share the same minutes."""
    tallies = {name: BulkTally() for name in runs}
    for _ in range(rounds):
        for name, run in runs.items():
            if tallies[name].done:
                continue
            try:
                tallies[name].add(run.fetch(1))
            except BenchError as exc:
                say(f"{name}: FAILED: {exc}")
                errors.append(f"{name} (interleaved downloads): {exc}")
                tallies[name].done = True
    return {name: tally.summary(runs[name].system.name, 1) for name, tally in tallies.items()}


def _per_mib(used: dict[str, float], received: int) -> dict[str, float | None]:
    """CPU milliseconds each process spent per MiB that reached the client."""
    mib = received / 2**20
    return {role: round(seconds * 1e3 / mib, 2) if mib else None for role, seconds in used.items()}


def idle_tunnels(procs: Processes, origin: Origin, count: int) -> dict[str, Any]:
    """Gateway memory per idle tunnel: a fresh gateway, before and after `count` tunnels."""
    per_address = ("--max-connections-per-address", str(2 * count))  # all from 127.0.0.1
    gateway, port = start_gateway(procs, "gateway-idle", nofile=4 * count + 1024, extra=per_address)
    try:
        time.sleep(SETTLE)
        before = rss_kib(gateway.pid)
        holders, ready = open_tunnels(procs, port, origin.port, count)
        time.sleep(SETTLE)
        after = rss_kib(gateway.pid)
        sample = random.sample(range(count), min(ROUTE_SAMPLE, count))
        routed = sum(
            answers(Target(port, f"t{i}.localhost"), origin.small_path, origin.small_body)
            for i in sample
        )
        for holder in holders:
            procs.stop(holder, timeout=15.0)
    finally:
        procs.stop(gateway)
    per_tunnel = (after - before) / count
    say(f"idle tunnels: {count} took {after - before:,} KiB, {per_tunnel:.1f} KiB each")
    return {
        "count": count,
        "rss_before_kib": before,
        "rss_after_kib": after,
        "per_tunnel_kib": round(per_tunnel, 2),
        "open_seconds": ready.get("seconds"),
        "sample_routed": routed,
        "sample_size": len(sample),
    }
