"""``make soak``: 2,000 keep-alive connections over 20 tunnels for 10 minutes, with faults.

Real processes: one gateway (``--reconnect-grace``, ``--grace-hold``, ``--drain-timeout``,
JSON logs, an admin listener to count tunnels), 20 ``tunnelgate http`` clients (``s0`` ...
``s19``, one token) in front of one app (:mod:`bench.soak_app`, which checks every request
body against its seed and answers a seeded body), and the public side in this process
(:mod:`bench.soak_load`: N connections from several 127.0.0.x addresses, paced to ``--rate``
requests a second in all, each answer checked).

Faults, on a schedule drawn from ``--seed``: ``--kills`` times a tunnel client is killed,
alternately with SIGKILL (its name is held for it: requests wait up to the grace hold) and
SIGTERM (a clean close: the name is freed at once), and restarted 0.5-5 s later; once, at
``--restart-at`` of the run, the gateway is drain-restarted: SIGTERM, its exit status must be
0, then a new gateway on the same ports, to which the clients reconnect.

The gateway's RSS and open descriptors are sampled every ``SAMPLE_INTERVAL``. The verdict
(:mod:`bench.soak_verdict`): no request corrupted, lost or failed outside a fault window, and
each gateway process flat after its warm-up; exit status 1 otherwise. Writes
``bench/results/soak.{json,md,svg}`` (:mod:`bench.soak_report`). Bounded: a hard deadline of
the duration plus ``SETUP_BUDGET``.

    python -m bench.soak [--duration 600] [--connections 2000] [--clients 20] [--rate 150]
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import os
import random
import signal
import sys
import time
from dataclasses import asdict
from functools import partial
from pathlib import Path
from typing import Any, Final

import uvloop

from .measure import run_bounded, say
from .procs import (
    BenchError,
    Processes,
    cpu_seconds,
    open_fds,
    raise_nofile,
    raise_on_signals,
    rss_kib,
)
from .run import RESULTS, WORKDIR, machine
from .soak_load import LoadPlan, run_load
from .soak_procs import NOFILE, START_TIMEOUT, SoakProcesses, poll
from .soak_report import write_results
from .soak_verdict import Sample, Tally, Window, flatness_by_life, judge
from .systems import tunnel_ready

SAMPLE_INTERVAL: Final = 2.0  # seconds between /proc samples of the gateway
WINDOW_MARGIN: Final = 5.0  # seconds a fault window stays open after all is back
BACK_TIMEOUT: Final = 90.0  # seconds for every client to be registered after the restart
DOWNTIME: Final = (0.5, 5.0)  # seconds a killed client stays down; under the grace hold
SETUP_BUDGET: Final = 300.0  # seconds for everything but the run itself


class Soak:
    """One run: the fault schedule, the samples, the load, the results."""

    def __init__(self, args: argparse.Namespace, procs: Processes) -> None:
        self.args = args
        self.procs = procs
        self.p = SoakProcesses(args, procs)
        self.rng = random.Random(args.seed)
        self.life = 0  # which gateway process: 0, then 1 after the restart
        self.draining = False  # from the SIGTERM until the new gateway answers
        self.windows: list[Window] = []
        self.samples: list[Sample] = []
        self.events: list[dict[str, Any]] = []  # the faults, for the report and the plot
        self.errors: list[str] = []
        self.gateway_cpu: dict[int, float] = {}
        self.started = 0.0

    def now(self) -> float:
        return time.monotonic() - self.started

    # --- faults -------------------------------------------------------------------------
    def schedule(self) -> list[tuple[float, str]]:
        """(time, "kill" | "restart"), in order: kills spread at random over the run after
        the ramp and before the quiet end, none within 20 s of the gateway restart."""
        a = self.args
        begin, end = a.ramp, a.duration - min(30.0, a.duration / 5)
        restart = a.restart_at * a.duration if a.restart_at > 0 else None
        actions: list[tuple[float, str]] = [(restart, "restart")] if restart is not None else []
        apart = min(20.0, a.duration / 10)  # no kill this close to the gateway restart
        kills: list[float] = []
        for _ in range(1000 * a.kills):  # bounded: a short run may have no room left
            if len(kills) == a.kills or end <= begin:
                break
            t = self.rng.uniform(begin, end)
            if restart is None or abs(t - restart) > apart:
                kills.append(t)
        return sorted(actions + [(t, "kill") for t in kills])

    async def run_faults(self) -> None:
        kills = 0
        for at, action in self.schedule():
            await asyncio.sleep(max(0.0, at - self.now()))  # the schedule's pacing
            if action == "restart":
                await self.restart_gateway()
            else:
                await self.kill_client(kills)
                kills += 1

    async def kill_client(self, number: int) -> None:
        tunnel = self.rng.randrange(len(self.p.clients))
        sig = signal.SIGKILL if number % 2 == 0 else signal.SIGTERM
        old = self.p.clients[tunnel]
        began = self.now()
        os.kill(old.pid, sig)
        await poll(f"client s{tunnel} to exit", lambda: not old.alive, START_TIMEOUT)
        self.procs.stop(old)  # gone already: only forgotten
        down = self.rng.uniform(*DOWNTIME)
        await asyncio.sleep(down)  # the outage being simulated
        new = self.p.clients[tunnel] = self.p.start_client(tunnel)
        await poll(
            f"client s{tunnel} back", lambda: tunnel_ready(new) or not new.alive, START_TIMEOUT
        )
        if not new.alive:
            raise BenchError(f"client s{tunnel} did not come back:\n{new.log_tail()}")
        self.windows.append(Window(began, self.now() + WINDOW_MARGIN, tunnel, sig.name))
        self.events.append(
            {
                "t": round(began, 2),
                "what": f"{sig.name} s{tunnel}",
                "exit": old.popen.returncode,
                "down_s": round(down, 2),
                "back_s": round(self.now() - began, 2),
            }
        )
        say(f"{sig.name} client s{tunnel}: back after {self.now() - began:.1f} s")

    async def restart_gateway(self) -> None:
        old = self.p.gateway
        assert old is not None
        began = self.now()
        self.draining = True
        with_cpu = cpu_seconds(old.pid)
        os.kill(old.pid, signal.SIGTERM)
        await poll(
            "the drained gateway to exit",
            lambda: not old.alive,
            self.args.drain_timeout + START_TIMEOUT,
        )
        exited = self.now()
        self.gateway_cpu[self.life] = with_cpu
        rc = old.popen.returncode
        if rc != 0:
            self.errors.append(f"the drained gateway exited with status {rc}")
        self.procs.stop(old)
        self.life += 1
        await self.p.start_gateway()
        self.draining = False  # the new process's samples from here: its warm-up included
        listening = self.now()
        count = len(self.p.clients)
        await poll(
            "every client registered again", lambda: self.p.tunnels_up() == count, BACK_TIMEOUT
        )
        back = self.now()
        self.windows.append(Window(began, back + WINDOW_MARGIN, None, "gateway drain-restart"))
        self.events.append(
            {
                "t": round(began, 2),
                "what": "gateway SIGTERM (drain) + restart",
                "exit": rc,
                "drained_s": round(exited - began, 2),
                "listening_s": round(listening - began, 2),
                "all_tunnels_back_s": round(back - began, 2),
            }
        )
        say(
            f"gateway drained in {exited - began:.1f} s (exit {rc}), all tunnels back "
            f"{back - began:.1f} s after the SIGTERM"
        )

    # --- sampling -------------------------------------------------------------------------
    async def sample(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            gateway = self.p.gateway
            if gateway is not None and gateway.alive:
                try:
                    self.samples.append(
                        Sample(
                            round(self.now(), 2),
                            -1 if self.draining else self.life,
                            rss_kib(gateway.pid),
                            open_fds(gateway.pid),
                            os.getloadavg()[0],
                        )
                    )
                    self.gateway_cpu[self.life] = cpu_seconds(gateway.pid)
                except (OSError, BenchError):
                    pass  # exited between the check and the read: the next sample tells
            try:
                async with asyncio.timeout(SAMPLE_INTERVAL):
                    await stop.wait()
            except TimeoutError:
                pass

    async def run(self, result: dict[str, Any]) -> None:
        await self.p.start_all()
        a = self.args
        sources = tuple(f"127.0.0.{2 + k}" for k in range(a.sources))
        hosts = tuple(f"s{k}.localhost:{self.p.port}" for k in range(a.clients))
        self.started = time.monotonic()
        plan = LoadPlan(
            port=self.p.port, hosts=hosts, sources=sources, connections=a.connections,
            rate=a.rate, ramp=a.ramp, started=self.started, ends=a.duration, seed=a.seed,
        )  # fmt: skip
        tally = Tally()
        cpu_before = time.process_time()
        say(
            f"{a.connections} connections over {a.clients} tunnels from {a.sources} addresses, "
            f"{a.rate:g} req/s, {a.duration:g} s"
        )
        stop = asyncio.Event()
        try:
            async with asyncio.TaskGroup() as group:
                group.create_task(self.sample(stop))
                group.create_task(self.run_faults())
                await run_load(plan, tally)
                stop.set()
        finally:
            result["ran_s"] = round(self.now(), 1)
            result["harness_cpu_s"] = round(time.process_time() - cpu_before, 1)
            self.finish(result, tally)

    def finish(self, result: dict[str, Any], tally: Tally) -> None:
        a = self.args
        # Warm-up: the connections are all open, and a minute more at most.
        warmup = min(60.0, max(a.ramp, a.duration / 10))
        window = min(60.0, a.duration / 10)
        live = [s for s in self.samples if s.life >= 0]
        logged = self.p.gateway_answers(tally.to_look_up())
        result["verdict"] = judge(tally, self.windows, logged)
        result["flatness"] = flatness_by_life(live, warmup, window) if live else []
        result["warmup_s"], result["window_s"] = warmup, window
        result["faults"] = self.events
        result["windows"] = [asdict(w) for w in self.windows]
        result["samples"] = [asdict(s) for s in self.samples]
        result["gateway_cpu_s"] = round(sum(self.gateway_cpu.values()), 1)
        if self.p.app is not None and self.p.app.alive:
            result["app_cpu_s"] = round(cpu_seconds(self.p.app.pid), 1)
        loads = [s.loadavg for s in self.samples] or [0.0]
        result["loadavg_1m"] = {
            "start": round(loads[0], 2),
            "mean": round(sum(loads) / len(loads), 2),
            "max": round(max(loads), 2),
            "end": round(os.getloadavg()[0], 2),
        }
        result["errors"] += self.errors


def _leaves(group: BaseExceptionGroup[BaseException]) -> list[BaseException]:
    found: list[BaseException] = []
    for exc in group.exceptions:
        found += _leaves(exc) if isinstance(exc, BaseExceptionGroup) else [exc]
    return found


def body(args: argparse.Namespace, result: dict[str, Any]) -> None:
    raise_nofile(NOFILE)
    with Processes(args.workdir / "soak") as procs:
        try:
            uvloop.run(Soak(args, procs).run(result))
        except BaseExceptionGroup as group:  # the task group's: a failed step is a BenchError
            leaves = _leaves(group)
            for exc in leaves:
                if not isinstance(exc, Exception):  # Ctrl-C, SIGTERM: unwind as they are
                    raise exc from None
            if all(isinstance(exc, BenchError) for exc in leaves):
                raise BenchError("; ".join(map(str, leaves))) from None
            raise


def passed(result: dict[str, Any], finished: bool) -> bool:
    lives = result.get("flatness", [])
    return (
        finished
        and not result["errors"]
        and bool(result.get("verdict", {}).get("passed"))
        and all(life["flat"] for life in lives)
        and any(life["judged"] for life in lives)
    )


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m bench.soak",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--duration", type=float, default=600.0, help="seconds of load")
    p.add_argument("--connections", type=int, default=2000)
    p.add_argument("--clients", type=int, default=20, help="tunnels, one client process each")
    p.add_argument("--rate", type=float, default=150.0, help="requests a second, in all")
    p.add_argument("--sources", type=int, default=8, help="source addresses 127.0.0.2...")
    p.add_argument("--ramp", type=float, default=30.0, help="seconds to open the connections")
    p.add_argument("--kills", type=int, default=None, help="client kills (default 1 / 20 s)")
    p.add_argument("--restart-at", type=float, default=0.4, help="fraction of the run; 0: none")
    p.add_argument("--drain-timeout", type=float, default=20.0)
    p.add_argument("--grace-hold", type=float, default=10.0)
    p.add_argument("--reconnect-grace", type=float, default=30.0)
    p.add_argument("--corrupt-every", type=int, default=0, help="the app damages answers")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--results", type=Path, default=RESULTS)
    p.add_argument("--workdir", type=Path, default=WORKDIR)
    args = p.parse_args(argv)
    if args.kills is None:
        args.kills = round(args.duration / 20)
    args.ramp = min(args.ramp, args.duration / 5)
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    raise_on_signals()
    command = "python -m bench.soak " + " ".join(sys.argv[1:] if argv is None else argv)
    result: dict[str, Any] = {
        "command": command.strip(),
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": machine(),
        "config": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "errors": [],
    }
    finished = run_bounded(args.duration + SETUP_BUDGET, partial(body, args), result)
    result["passed"] = passed(result, finished)
    write_results(result, args.results)
    say(f"verdict: {'PASSED' if result['passed'] else 'FAILED'}; see {args.results}/soak.md")
    return 0 if result["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
