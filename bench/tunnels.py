"""Many idle tunnels from one process, through the real client code path.

``python -m bench.tunnels --server ws://127.0.0.1:PORT/connect --origin-port P --count N``
runs N :class:`tunnelgate.client.agent.Agent` objects on one event loop, each with its own
WebSocket connection and one tunnel named ``t0``, ``t1``, ... forwarding to the origin. At most
``--concurrency`` connections are being opened at a time. It prints JSON lines: ``progress``
now and then, then ``{"event": "ready", "ready": N, ...}``, and keeps the tunnels open until
SIGTERM or SIGINT, when every agent says goodbye.

:func:`open_tunnels` starts it from the benchmark and waits for its ``ready`` line.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
import time
from typing import Any, Final

from .procs import BenchError, ManagedProc, Processes, raise_nofile, wait_until

PROGRESS_EVERY: Final = 1000  # tunnels between progress lines
READY_TIMEOUT: Final = 30.0  # seconds one tunnel may take to be registered
STOP_TIMEOUT: Final = 10.0  # seconds the agents get to say goodbye
# Tunnels one holder process takes: 2 sockets each (tunnel, pooled origin connection) must fit
# under the hard file limit, which an unprivileged or capability-less root cannot raise.
PER_HOLDER: Final = 4000
MAX_NOFILE: Final = 65536


def _emit(event: str, **fields: object) -> None:
    sys.stdout.write(json.dumps({"event": event, **fields}) + "\n")
    sys.stdout.flush()


class _Tally:
    def __init__(self) -> None:
        self.ready = 0
        self.rejected = 0
        self.reconnects = 0
        self.reasons: dict[str, int] = {}


class _Recorder:
    """An Output (tunnelgate.client.output) that counts instead of printing."""

    def __init__(self, tally: _Tally) -> None:
        self.tally = tally
        self.settled = asyncio.Event()

    def connecting(self, server: str) -> None:
        pass

    def tunnel_ready(self, name: str, url: str, local: str) -> None:
        self.tally.ready += 1
        self.settled.set()

    def request(
        self,
        tunnel: str,
        method: str,
        path: str,
        status: int,
        duration_ms: float,
        bytes_in: int,
        bytes_out: int,
    ) -> None:
        pass

    def connection(
        self,
        tunnel: str,
        protocol: str,
        client: str,
        end: str,
        duration_ms: float,
        bytes_in: int,
        bytes_out: int,
    ) -> None:
        pass  # TCP and TLS tunnels only; these are HTTP tunnels

    def reconnecting(self, attempt: int, delay: float, reason: str) -> None:
        self.tally.reconnects += 1
        self.tally.reasons[reason] = self.tally.reasons.get(reason, 0) + 1

    def rejected(self, tunnel: str, reason: str, message: str) -> None:
        self.tally.rejected += 1
        self.tally.reasons[message] = self.tally.reasons.get(message, 0) + 1
        self.settled.set()

    def closed(self, reason: str) -> None:
        pass

    def draining(self, open_streams: int, timeout: float) -> None:
        pass  # the agents are cancelled at the end, never signalled

    def drained(self, ended: str, duration_ms: float, cut_streams: int) -> None:
        pass

    def error(self, message: str) -> None:
        self.tally.reasons[message] = self.tally.reasons.get(message, 0) + 1


async def _hold(args: argparse.Namespace) -> None:
    from tunnelgate.client.agent import Agent
    from tunnelgate.config import ClientConfig, TunnelSpec

    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    tally, agents = _Tally(), []
    opening = asyncio.Semaphore(args.concurrency)
    started = time.monotonic()

    async def settle(recorder: _Recorder) -> None:
        try:
            async with asyncio.timeout(READY_TIMEOUT):
                await recorder.settled.wait()
        except TimeoutError:
            tally.reasons["not ready in time"] = tally.reasons.get("not ready in time", 0) + 1
        finally:
            opening.release()

    async with asyncio.TaskGroup() as group:
        waits: list[asyncio.Task[None]] = []
        for i in range(args.first, args.first + args.count):
            await opening.acquire()
            if stop.is_set():
                opening.release()
                break
            name = f"{args.prefix}{i}"
            spec = TunnelSpec(name, "http", "127.0.0.1", args.origin_port, subdomain=name)
            recorder = _Recorder(tally)
            agent = Agent(ClientConfig(server=args.server, tunnels=(spec,)), recorder)
            agents.append(agent)
            group.create_task(agent.run())
            waits.append(group.create_task(settle(recorder)))
            if len(agents) % PROGRESS_EVERY == 0:
                _emit("progress", opened=len(agents), ready=tally.ready)
        await asyncio.gather(*waits)
        _emit("ready", **_summary(tally, len(agents), time.monotonic() - started))
        await stop.wait()
        for agent in agents:
            agent.stop()
        _emit("stopping")


def _summary(tally: _Tally, opened: int, seconds: float) -> dict[str, Any]:
    return {
        "opened": opened,
        "ready": tally.ready,
        "rejected": tally.rejected,
        "reconnects": tally.reconnects,
        "seconds": round(seconds, 2),
        "problems": dict(sorted(tally.reasons.items(), key=lambda kv: -kv[1])[:5]),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.tunnels", description=__doc__)
    parser.add_argument("--server", required=True)
    parser.add_argument("--origin-port", type=int, required=True)
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--first", type=int, default=0, help="index of the first tunnel name")
    parser.add_argument("--prefix", default="t")
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--nofile", type=int, default=65536)
    args = parser.parse_args(argv)
    raise_nofile(args.nofile)
    import uvloop

    uvloop.run(_hold(args))
    return 0


def _start_holder(
    procs: Processes, gateway_port: int, origin_port: int, first: int, count: int
) -> ManagedProc:
    argv = [
        sys.executable, "-m", "bench.tunnels", "--server",
        f"ws://127.0.0.1:{gateway_port}/connect", "--origin-port", str(origin_port),
        "--first", str(first), "--count", str(count), "--nofile", str(MAX_NOFILE),
    ]  # fmt: skip
    return procs.start(f"tunnels-{first}-{first + count - 1}", argv)


def open_tunnels(
    procs: Processes, gateway_port: int, origin_port: int, count: int
) -> tuple[list[ManagedProc], dict[str, Any]]:
    """Start tunnel holders (t0 ... tN-1 between them); their summed ``ready`` lines, once
    every tunnel is settled. Each tunnel may come to hold a WebSocket and a pooled connection
    to the origin, so a holder takes at most PER_HOLDER tunnels to stay within its file limit.
    """
    holders = -(-count // PER_HOLDER)
    share = -(-count // holders)
    started = [
        _start_holder(procs, gateway_port, origin_port, first, min(share, count - first))
        for first in range(0, count, share)
    ]
    summary: dict[str, Any] = {"holders": len(started)}
    for proc in started:
        found: dict[str, Any] = {}

        def ready(proc: ManagedProc = proc, found: dict[str, Any] = found) -> bool:
            events = [e for e in proc.events() if e.get("event") == "ready"]
            found.update(events[0] if events else {})
            return bool(events)

        wait_until(f"{proc.name} to be ready", ready, READY_TIMEOUT + count / 50, proc)
        for key in ("opened", "ready", "rejected", "reconnects"):
            summary[key] = summary.get(key, 0) + found.get(key, 0)
        summary["seconds"] = max(summary.get("seconds", 0.0), found.get("seconds", 0.0))
    if summary.get("ready") != count:
        raise BenchError(f"only {summary.get('ready')} of {count} tunnels registered: {summary}")
    return started, summary


if __name__ == "__main__":
    sys.exit(main())
