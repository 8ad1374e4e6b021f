"""The metrics row (issue 10): small-GET req/s with the admin API on and scraped, over off.

The gateway counts always; ``--admin 127.0.0.1:PORT`` adds the admin API and its /metrics.
Three tunnelgate systems (gateway and client each) run side by side in front of the same
origin: **off**, no admin API; **on**, ``--admin`` with /metrics fetched every 0.5 s (on a
fresh connection, as Prometheus without keep-alive would) from a thread of this process while
the load runs; and **control**, a second *off*, the A/A yardstick: what two identical pairs
differ by here (on the shared 2-core machine, up to tens of percent in one round). The same
small-GET load as the plain-HTTP rows (50 connections) is run on each in turn for ``rounds``
rounds, the order rotated every round so that no side always goes first; reported: each
side's median req/s, the on/off (and control/off) ratio of the medians, the median of the
per-round ratios (the sides of one round are seconds apart, rounds are a minute apart), and
the gateway's CPU per request on each side. Issue 10 wants on within 3 % of off.
"""

from __future__ import annotations

import http.client
import statistics
import threading
from dataclasses import asdict, dataclass
from typing import Any, Final

from .loadgen import LoadGenerator
from .measure import say
from .origin import Origin
from .probe import Target, get
from .procs import BenchError, Processes, cpu_meter
from .systems import Tunnelgate

SCRAPE_INTERVAL: Final = 0.5  # seconds between /metrics fetches, as issue 10 says
COST_SCRAPES: Final = 100  # back-to-back scrapes of the idle gateway, to price one
CONNECTIONS: Final = 50
WITHIN: Final = 0.03  # issue 10: on within 3 % of off


@dataclass(frozen=True, slots=True)
class MetricsPlan:
    # Many short pairs rather than a few long ones: on the shared machine the load moves by
    # tens of percent within a minute, and only the two halves of one pair share it.
    rounds: int = 9
    duration: float = 3.0  # seconds of load per system per round
    warmup: float = 1.0


class Scraper:
    """GET /metrics every `SCRAPE_INTERVAL` s until stopped; counts answers and failures."""

    def __init__(self, port: int) -> None:
        self.target = Target(port, f"127.0.0.1:{port}")
        self.stopped = threading.Event()
        self.ok = 0
        self.failed = 0
        self.last_bytes = 0
        self.thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Scraper:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopped.set()
        self.thread.join(10.0)

    def _run(self) -> None:
        while not self.stopped.wait(SCRAPE_INTERVAL):
            try:
                answer = get(self.target, "/metrics", timeout=2.0)
            except (OSError, http.client.HTTPException):
                self.failed += 1
                continue
            if answer.status == 200 and answer.body:
                self.ok += 1
                self.last_bytes = len(answer.body)
            else:
                self.failed += 1


class _Side:
    def __init__(self, name: str, system: Tunnelgate) -> None:
        self.name, self.system = name, system
        self.points: list[dict[str, Any]] = []
        self.scrapes = {"ok": 0, "failed": 0, "last_bytes": 0}
        self.gateway_cpu = 0.0  # seconds, over all its loaded runs

    def measure(self, load: LoadGenerator, path: str, duration: float) -> float:
        if not self.system.ensure_route():
            raise BenchError(f"metrics {self.name}: no route")
        port = self.system.admin_port
        with cpu_meter(self.system.cpu_pids()) as used:
            if port is None:
                result = load.run(self.system.target, path, CONNECTIONS, duration)
            else:
                with Scraper(port) as scraper:
                    result = load.run(self.system.target, path, CONNECTIONS, duration)
                self.scrapes["ok"] += scraper.ok
                self.scrapes["failed"] += scraper.failed
                self.scrapes["last_bytes"] = scraper.last_bytes
        self.gateway_cpu += used.get("gateway", 0.0)
        point = asdict(result)
        point["cpu_us_per_request"] = {
            role: round(s * 1e6 / result.requests, 1) if result.requests else None
            for role, s in used.items()
        }
        self.points.append(point)
        say(f"metrics {self.name}: {result.rps:,.0f} req/s, {result.errors} errors")
        return result.rps

    def summary(self) -> dict[str, Any]:
        rps = [p["rps"] for p in self.points]
        gateway = [p["cpu_us_per_request"].get("gateway") for p in self.points]
        found: dict[str, Any] = {
            "rps": _median(rps),
            "runs_rps": rps,
            "p99_ms": _median([p["p99_ms"] for p in self.points if p["p99_ms"] is not None]),
            "errors": sum(p["errors"] for p in self.points),
            "gateway_cpu_us_per_request": _median([g for g in gateway if g is not None]),
        }
        if self.system.admin_port is not None:
            found["scrapes"] = self.scrapes
            found["scrape_cpu_us"] = self._scrape_cost()
            if found["scrape_cpu_us"] is not None and self.gateway_cpu:
                spent = found["scrape_cpu_us"] * 1e-6 * self.scrapes["ok"]
                found["scrape_share_of_gateway_cpu"] = round(spent / self.gateway_cpu, 5)
        return found

    def _scrape_cost(self) -> float | None:
        """The gateway's CPU per /metrics scrape (µs), over back-to-back scrapes, idle."""
        port = self.system.admin_port
        assert port is not None
        target = Target(port, f"127.0.0.1:{port}")
        try:
            with cpu_meter({"gateway": self.system.gateway.pid}) as used:
                for _ in range(COST_SCRAPES):
                    get(target, "/metrics", timeout=2.0)
        except (OSError, http.client.HTTPException):
            return None
        return round(used["gateway"] * 1e6 / COST_SCRAPES, 1)


def _median(values: list[float]) -> float | None:
    return round(statistics.median(values), 3) if values else None


def _ratio(top: float | None, bottom: float | None) -> float | None:
    return round(top / bottom, 4) if top and bottom else None


def measure_metrics(
    procs: Processes, origin: Origin, load: LoadGenerator, plan: MetricsPlan
) -> dict[str, Any]:
    """All three sides started, warmed up, then measured in turn, the order rotated each
    round; `control` is a second `off`, whose ratio to `off` shows what two identical
    gateway+client pairs differ by on this machine (the noise the on/off ratio sits in)."""
    sides = [_Side("off", Tunnelgate(procs, origin)),
             _Side("control", Tunnelgate(procs, origin)),
             _Side("on", Tunnelgate(procs, origin, admin=True))]  # fmt: skip
    for side in sides:
        load.run(side.system.target, origin.small_path, 10, plan.warmup)
    ratios: dict[str, list[float]] = {"on": [], "control": []}
    for index in range(plan.rounds):
        shift = index % len(sides)
        rps = {}
        for side in sides[shift:] + sides[:shift]:
            rps[side.name] = side.measure(load, origin.small_path, plan.duration)
        for name, found in ratios.items():
            if (quotient := _ratio(rps[name], rps["off"])) is not None:
                found.append(quotient)
    off, control, on = (side.summary() for side in sides)
    of_medians = _ratio(on["rps"], off["rps"])
    paired = _median(ratios["on"])
    say(f"metrics on/off: {of_medians} (medians), {paired} (median of the rounds' ratios); "
        f"control/off: {_median(ratios['control'])}")  # fmt: skip
    return {
        "config": {
            "rounds": plan.rounds,
            "duration_s": plan.duration,
            "connections": CONNECTIONS,
            "load_generator": load.name,
            "scrape_interval_s": SCRAPE_INTERVAL,
        },
        "off": off,
        "on": on,
        "control": control,
        "on_over_off": of_medians,
        "round_ratios": ratios["on"],
        "on_over_off_paired": paired,
        "control_over_off": _ratio(control["rps"], off["rps"]),
        "control_round_ratios": ratios["control"],
        "control_over_off_paired": _median(ratios["control"]),
        "within": WITHIN,
    }
