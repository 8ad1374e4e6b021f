"""``make bench-reconnect``: 500 clients cut off at once come back spread out, not in one burst.

One gateway (JSON logs) and N tunnel clients, the real client code (:mod:`bench.tunnels`: N
:class:`tunnelgate.client.agent.Agent` objects on one event loop, one WebSocket each, tunnels
``t0`` ... named explicitly). For each downtime asked for (``--down``, seconds), the gateway is
killed with SIGKILL (every client sees its connection reset at the same moment), left down
that long, and started again on the same port, with an empty registry. Each client then
reconnects with its own back-off (full jitter: retry n waits a random time in
[0, min(30 s, 0.5 s x 2^(n-1))], reset by a successful registration) and asks for its name
again. The new gateway's ``tunnel_registered`` lines, timestamped to the millisecond, say
when each client came back; reported per downtime:

- whether all N came back and took back their own names (each ``tN`` once);
- the arrival times after the kill and after the new gateway listened: p50, p90, max;
- a per-second histogram (counted from the new gateway's start) and its peak second, and the
  busiest 100 ms, against what one burst would be (all N in one instant);
- a few names asked for a page through the new gateway (the origin behind them answers).

Bounded: each downtime waits at most ``RETURN_TIMEOUT`` for the clients; the whole run stops
after ``--budget`` seconds. Writes ``bench/results/reconnect-burst.{json,md}``.

    python -m bench.reconnect_burst [--clients 500] [--down 0,10,30] [--budget 400]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import signal
import sys
import time
from collections import Counter
from functools import partial
from pathlib import Path
from typing import Any, Final

from .measure import run_bounded, say
from .origin import start_python_origin
from .probe import Target, answers
from .procs import BenchError, ManagedProc, Processes, raise_on_signals, wait_until
from .run import RESULTS, WORKDIR, machine
from .systems import healthy, start_gateway, tunnelgate_argv
from .tunnels import open_tunnels

RETURN_TIMEOUT: Final = 120.0  # seconds after the restart for every client to be back
START_TIMEOUT: Final = 10.0  # seconds for the restarted gateway's /healthz
SERVE_SAMPLE: Final = 20  # names asked for a page after each restart
GATEWAY_ARGS: Final = ("--log-format", "json")
BACKOFF_CAP: Final = 30.0  # limits.BACKOFF_MAX, quoted in the report


def _epoch(stamp: str) -> float:
    """``2026-11-30T06:23:35.285Z`` (the gateway's JSON ``ts``) as seconds since the epoch."""
    return dt.datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


def _registrations(proc: ManagedProc) -> list[dict[str, Any]]:
    return [
        e for e in proc.events() if e.get("event") in ("tunnel_registered", "tunnel_reconnected")
    ]


def _listening_at(proc: ManagedProc) -> float:
    for event in proc.events():
        if event.get("event") == "listening" and event.get("listener") == "http":
            return _epoch(event["ts"])
    raise BenchError("the restarted gateway never logged that it listens")


def _restart(procs: Processes, port: int, down: float) -> tuple[ManagedProc, float]:
    """The gateway again on `port`, `down` seconds after the kill; when it was killed."""
    argv = tunnelgate_argv("server", "--http", f"127.0.0.1:{port}", *GATEWAY_ARGS)
    time.sleep(down)  # the downtime being measured, not a wait for something to happen
    proc = procs.start("gateway", argv)
    wait_until("the restarted gateway's /healthz", partial(healthy, port), START_TIMEOUT, proc)
    return proc, time.time()


def _histogram(offsets: list[float], width: float) -> dict[int, int]:
    counts = Counter(math.floor(offset / width) for offset in offsets)
    return {slot: counts.get(slot, 0) for slot in range(0, max(counts, default=-1) + 1)}


def _measure(
    procs: Processes, gateway: ManagedProc, port: int, clients: int, down: float
) -> tuple[ManagedProc, dict[str, Any]]:
    loadavg = round(os.getloadavg()[0], 2)
    killed = time.time()
    os.kill(gateway.pid, signal.SIGKILL)
    gateway.popen.wait(START_TIMEOUT)
    procs.stop(gateway)  # already gone: only forgotten
    gateway, _ = _restart(procs, port, down)
    listening = _listening_at(gateway)
    wait_until(
        f"{clients} clients to register again",
        lambda: len(_registrations(gateway)) >= clients,
        RETURN_TIMEOUT,
        gateway,
    )
    lines = _registrations(gateway)
    names = Counter(str(e.get("name")) for e in lines)
    expected = {f"t{i}" for i in range(clients)}
    after_start = [_epoch(e["ts"]) - listening for e in lines]
    per_second = _histogram(after_start, 1.0)
    per_tenth = _histogram(after_start, 0.1)
    sample = sorted(expected)[:: max(1, clients // SERVE_SAMPLE)][:SERVE_SAMPLE]
    served = sum(
        answers(Target(port, f"{name}.localhost:{port}"), "/", b"hello\n") for name in sample
    )
    return gateway, {
        "down_s": down,
        "loadavg_1m_before": loadavg,
        "loadavg_1m_after": round(os.getloadavg()[0], 2),
        "gateway_down_s": round(listening - killed, 3),
        "came_back": len(lines),
        "all_names_reclaimed": set(names) == expected and all(n == 1 for n in names.values()),
        "reconnected_not_registered": sum(e["event"] == "tunnel_reconnected" for e in lines),
        "after_kill_s": _quantiles([listening - killed + t for t in after_start]),
        "after_restart_s": _quantiles(after_start),
        "per_second": per_second,
        "peak_second": max(per_second.values()),
        "peak_100ms": max(per_tenth.values()),
        "served": f"{served}/{len(sample)}",
        # One connection per client means no attempt was refused or failed on the new gateway.
        "connections": _count(gateway, "tunnel_connected"),
        "rejected": _count(gateway, "tunnel_rejected") + _count(gateway, "tunnel_refused"),
    }


def _count(proc: ManagedProc, event: str) -> int:
    return sum(e.get("event") == event for e in proc.events())


def _quantiles(values: list[float]) -> dict[str, float]:
    return {
        "p50": round(_percentile(values, 0.5), 2),
        "p90": round(_percentile(values, 0.9), 2),
        "max": round(max(values), 2),
    }


def _body(args: argparse.Namespace, result: dict[str, Any]) -> None:
    with Processes(args.workdir / "reconnect-burst") as procs:
        origin = start_python_origin(procs, 1024)
        gateway, port = start_gateway(procs, extra=GATEWAY_ARGS)
        say(f"gateway on {port}; opening {args.clients} tunnels")
        _, opened = open_tunnels(procs, port, origin.port, args.clients)
        result["opened"] = opened
        for down in args.down:
            say(f"kill -9 the gateway, {down:g} s down, restart on {port}")
            gateway, row = _measure(procs, gateway, port, args.clients, down)
            result["runs"].append(row)
            say(
                f"{row['came_back']}/{args.clients} back, names reclaimed: "
                f"{row['all_names_reclaimed']}; after the restart p50 "
                f"{row['after_restart_s']['p50']} s, p90 {row['after_restart_s']['p90']} s, "
                f"max {row['after_restart_s']['max']} s; peak {row['peak_second']}/s"
            )


def _markdown(result: dict[str, Any]) -> str:
    clients = result["clients"]
    lines = [
        f"# Reconnect burst: {clients} clients, gateway killed (-9) and restarted",
        "",
        f"`{result['command']}`, {result['date']}; {result['machine']['nproc']} cores, "
        f"load average (1 min) {result['machine']['loadavg_1m']} at the start.",
        "",
        "| gateway down | back | names reclaimed | after restart p50 / p90 / max | "
        "peak second | peak 100 ms | served | connections / rejected | load avg |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for row in result["runs"]:
        q = row["after_restart_s"]
        lines.append(
            f"| {row['gateway_down_s']:.1f} s | {row['came_back']}/{clients} | "
            f"{'yes' if row['all_names_reclaimed'] else 'NO'} | "
            f"{q['p50']} / {q['p90']} / {q['max']} s | {row['peak_second']} | "
            f"{row['peak_100ms']} | {row['served']} | "
            f"{row['connections']} / {row['rejected']} | "
            f"{row['loadavg_1m_before']} → {row['loadavg_1m_after']} |"
        )
    for row in result["runs"]:
        lines += ["", f"Per second after the restart (gateway down {row['gateway_down_s']:.1f} s):"]
        lines += ["", "```"]
        peak = max(row["per_second"].values()) or 1
        for second, count in row["per_second"].items():
            bar = "#" * max(1 if count else 0, round(40 * count / peak))
            lines.append(f"{int(second):3d}-{int(second) + 1:<3d} s {count:4d} {bar}")
        lines += ["```"]
    for error in result.get("errors", []):
        lines += ["", f"error: {error}"]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.reconnect_burst", description=__doc__)
    parser.add_argument("--clients", type=int, default=500)
    parser.add_argument(
        "--down",
        type=lambda text: [float(part) for part in text.split(",")],
        default=[0.0, 10.0, 30.0],
        help="comma-separated seconds the gateway stays down (one run each)",
    )
    parser.add_argument("--budget", type=float, default=400.0, help="seconds for everything")
    parser.add_argument("--results", type=Path, default=RESULTS)
    parser.add_argument("--workdir", type=Path, default=WORKDIR)
    args = parser.parse_args(argv)
    raise_on_signals()
    command = "python -m bench.reconnect_burst " + " ".join(sys.argv[1:] if argv is None else argv)
    result: dict[str, Any] = {
        "command": command.strip(),
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": machine(),
        "clients": args.clients,
        "backoff_cap_s": BACKOFF_CAP,
        "runs": [],
        "errors": [],
    }
    finished = run_bounded(args.budget, partial(_body, args), result)
    args.results.mkdir(parents=True, exist_ok=True)
    (args.results / "reconnect-burst.json").write_text(json.dumps(result, indent=2) + "\n")
    (args.results / "reconnect-burst.md").write_text(_markdown(result))
    print(_markdown(result))
    ok = (
        finished
        and not result.get("errors")
        and all(
            row["came_back"] == args.clients and row["all_names_reclaimed"]
            for row in result["runs"]
        )
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
