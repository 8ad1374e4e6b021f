"""The TCP rows (issue 9): a TCP tunnel against the local service alone and against socat.

Three systems in front of one local service (:mod:`bench.tcpsource`), all running at once:

- **direct**: the client connects to the service itself;
- **socat**: ``socat TCP-LISTEN:P,fork,reuseaddr TCP:127.0.0.1:SERVICE``, a plain TCP relay in
  C (one process forked per connection, as socat does);
- **tunnelgate**: ``tunnelgate server --tcp-ports P-P`` and ``tunnelgate tcp SERVICE
  --remote-port P``: public port -> gateway -> WebSocket tunnel -> client -> service.

Two measurements, taken in turn across the systems (A B C, then B C A, ...) for ``rounds``
rounds so that the machine's drifting load hits them all alike; the medians are reported:

- **transfer**: one 100 MiB download over one connection (``104857600\\n`` in, the bytes
  out), MB/s, with the CPU each process spent per MiB over all rounds;
- **connections**: new connections per second, ``workers`` threads each connecting, sending
  ``16\\n``, reading the 16 bytes and the server's close, then closing, for ``duration``
  seconds; with the p50/p99 of one such exchange and the CPU per connection. The connecting
  side is this Python process (blocking sockets, the GIL released in each call): its own
  ceiling bounds the direct figure, which the report says.
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import statistics
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Protocol

from .measure import say
from .procs import (
    CLK_TCK,
    BenchError,
    ManagedProc,
    Processes,
    announced_port,
    free_port,
    port_open,
    wait_until,
)
from .systems import START_TIMEOUT, start_gateway, tunnelgate_argv

TRANSFER_BYTES: Final = 100 * 1024 * 1024
SMOKE_TRANSFER_BYTES: Final = 8 * 1024 * 1024
EXCHANGE: Final = 16  # bytes the service sends back on each new connection
BUFFER: Final = 1024 * 1024
IO_TIMEOUT: Final = 10.0  # seconds any one socket call may wait
TRANSFER_LIMIT: Final = 30.0  # seconds one transfer may take before it is cut off
SETTLE: Final = 0.1  # seconds for socat's forked child to be reaped before its CPU is read
SYSTEMS: Final = ("direct", "socat", "tunnelgate")


@dataclass(frozen=True, slots=True)
class TcpPlan:
    rounds: int = 5
    transfer_bytes: int = TRANSFER_BYTES
    workers: int = 4
    duration: float = 2.0  # seconds of connections per system per round


class TcpSystem(Protocol):
    name: str
    port: int

    def cpu_pids(self) -> dict[str, int]: ...
    def check(self) -> None: ...


def cpu_with_children(pid: int) -> float:
    """utime+stime of `pid` and of its children it has reaped (socat's forked relays)."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat.rsplit(")", 1)[1].split()
    return sum(int(fields[i]) for i in (11, 12, 13, 14)) / CLK_TCK


@contextlib.contextmanager
def cpu_meter(pids: dict[str, int]) -> Iterator[dict[str, float]]:
    before = {name: cpu_with_children(pid) for name, pid in pids.items()}
    used: dict[str, float] = {}
    yield used
    for name, pid in pids.items():
        with contextlib.suppress(OSError):
            used[name] = cpu_with_children(pid) - before[name]


def start_source(procs: Processes) -> tuple[ManagedProc, int]:
    proc = procs.start("tcpsource", [sys.executable, "-m", "bench.tcpsource"])
    wait_until("the TCP source's port", lambda: announced_port(proc) > 0, START_TIMEOUT, proc)
    return proc, announced_port(proc)


class _Alive:
    name: str
    procs: tuple[ManagedProc, ...]

    def check(self) -> None:
        for proc in self.procs:
            if not proc.alive:
                raise BenchError(f"{self.name}: {proc.name} died:\n{proc.log_tail()}")


class DirectTcp(_Alive):
    name = "direct"

    def __init__(self, source: ManagedProc, port: int) -> None:
        self.source, self.port, self.procs = source, port, (source,)

    def cpu_pids(self) -> dict[str, int]:
        return {"service": self.source.pid}


class Socat(_Alive):
    name = "socat"

    def __init__(self, procs: Processes, source: ManagedProc, source_port: int) -> None:
        found = shutil.which("socat")
        if found is None:
            raise BenchError("socat is not installed (make bench installs it with apt)")
        self.source = source
        self.port = free_port()
        argv = [found, f"TCP-LISTEN:{self.port},bind=127.0.0.1,fork,reuseaddr,backlog=4096",
                f"TCP:127.0.0.1:{source_port}"]  # fmt: skip
        self.proc = procs.start("socat", argv)
        self.procs = (self.proc, source)
        wait_until("socat's port", lambda: port_open(self.port), START_TIMEOUT, self.proc)

    def cpu_pids(self) -> dict[str, int]:
        return {"relay": self.proc.pid, "service": self.source.pid}


class TunnelgateTcp(_Alive):
    name = "tunnelgate"

    def __init__(self, procs: Processes, source: ManagedProc, source_port: int) -> None:
        self.source = source
        self.port = free_port()
        extra = ("--tcp-ports", f"{self.port}-{self.port}")
        self.gateway, gateway_port = start_gateway(procs, "tcp-gateway", extra=extra)
        server = f"ws://127.0.0.1:{gateway_port}/connect"
        argv = tunnelgate_argv("tcp", str(source_port), "--remote-port", str(self.port),
                               "--server", server, "--log-format", "json")  # fmt: skip
        self.client = procs.start("tcp-client", argv)
        self.procs = (self.gateway, self.client, source)
        wait_until("the TCP tunnel's tunnel_ready line", self._ready, START_TIMEOUT, self.client)

    def _ready(self) -> bool:
        for event in self.client.events():
            if event.get("event") == "tunnel_ready":
                url = str(event.get("url", ""))
                if not url.endswith(f":{self.port}"):
                    raise BenchError(f"the TCP tunnel got {url}, not port {self.port}")
                return True
        return False

    def cpu_pids(self) -> dict[str, int]:
        return {"gateway": self.gateway.pid, "client": self.client.pid,
                "service": self.source.pid}  # fmt: skip


# --- the two measurements ------------------------------------------------------------
def transfer(port: int, size: int) -> tuple[int, float]:
    """Bytes received and seconds taken for one `size`-byte download from the service."""
    buffer = bytearray(BUFFER)
    received = 0
    with socket.create_connection(("127.0.0.1", port), timeout=IO_TIMEOUT) as sock:
        began = time.monotonic()
        deadline = began + TRANSFER_LIMIT
        sock.sendall(b"%d\n" % size)
        while received < size and time.monotonic() < deadline:
            n = sock.recv_into(buffer)
            if n == 0:
                break
            received += n
        return received, max(time.monotonic() - began, 1e-9)


def _exchange(port: int) -> None:
    with socket.create_connection(("127.0.0.1", port), timeout=IO_TIMEOUT) as sock:
        sock.sendall(b"%d\n" % EXCHANGE)
        got = 0
        while chunk := sock.recv(256):  # up to the service's close
            got += len(chunk)
    if got != EXCHANGE:
        raise OSError(f"got {got} bytes, not {EXCHANGE}")


class _Connector:
    def __init__(self, port: int, deadline: float) -> None:
        self.port, self.deadline = port, deadline
        self.latencies: list[float] = []
        self.errors = 0

    def run(self) -> None:
        while (began := time.monotonic()) < self.deadline:
            try:
                _exchange(self.port)
            except OSError:
                self.errors += 1
                continue
            self.latencies.append(time.monotonic() - began)


def connections(port: int, workers: int, duration: float) -> dict[str, Any]:
    """`workers` threads making connections for `duration` seconds."""
    deadline = time.monotonic() + duration
    connectors = [_Connector(port, deadline) for _ in range(workers)]
    threads = [threading.Thread(target=c.run, daemon=True) for c in connectors]
    began = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(duration + 2 * IO_TIMEOUT)
    seconds = time.monotonic() - began
    latencies = sorted(x for c in connectors for x in c.latencies)
    count = len(latencies)
    return {
        "connections": count,
        "seconds": round(seconds, 3),
        "per_s": round(count / seconds, 1),
        "p50_ms": round(latencies[count // 2] * 1e3, 3) if count else None,
        "p99_ms": round(latencies[min(count - 1, count * 99 // 100)] * 1e3, 3) if count else None,
        "errors": sum(c.errors for c in connectors),
    }


# --- the phase -------------------------------------------------------------------------
class _Tally:
    def __init__(self) -> None:
        self.mb_per_s: list[float] = []
        self.transfer_bytes = 0
        self.transfer_cpu: dict[str, float] = {}
        self.truncated = 0
        self.conns: list[dict[str, Any]] = []
        self.conn_cpu: dict[str, float] = {}

    def summary(self) -> dict[str, Any]:
        made = sum(c["connections"] for c in self.conns)
        mib = self.transfer_bytes / 2**20
        per_s = [c["per_s"] for c in self.conns]
        return {
            "transfer": {
                "mb_per_s": _median(self.mb_per_s),
                "runs_mb_per_s": self.mb_per_s,
                "bytes": self.transfer_bytes,
                "truncated": self.truncated,
                "cpu_ms_per_mib": {
                    role: round(s * 1e3 / mib, 3) if mib else None
                    for role, s in self.transfer_cpu.items()
                },
            },
            "connections": {
                "per_s": _median(per_s),
                "runs_per_s": per_s,
                "p50_ms": _median([c["p50_ms"] for c in self.conns if c["p50_ms"] is not None]),
                "p99_ms": _median([c["p99_ms"] for c in self.conns if c["p99_ms"] is not None]),
                "made": made,
                "errors": sum(c["errors"] for c in self.conns),
                "cpu_us_per_connection": {
                    role: round(s * 1e6 / made, 1) if made else None
                    for role, s in self.conn_cpu.items()
                },
            },
        }


def _median(values: list[float]) -> float | None:
    return round(statistics.median(values), 3) if values else None


def _add(into: dict[str, float], used: dict[str, float]) -> None:
    for role, seconds in used.items():
        into[role] = into.get(role, 0.0) + seconds


def _round(system: TcpSystem, tally: _Tally, plan: TcpPlan) -> None:
    system.check()
    with cpu_meter(system.cpu_pids()) as used:
        received, seconds = transfer(system.port, plan.transfer_bytes)
        time.sleep(SETTLE)
    tally.mb_per_s.append(round(received / seconds / 1e6, 1))
    tally.transfer_bytes += received
    tally.truncated += received < plan.transfer_bytes
    _add(tally.transfer_cpu, used)
    system.check()
    with cpu_meter(system.cpu_pids()) as used:
        found = connections(system.port, plan.workers, plan.duration)
        time.sleep(SETTLE)
    tally.conns.append(found)
    _add(tally.conn_cpu, used)
    say(f"TCP {system.name}: {tally.mb_per_s[-1]:,.0f} MB/s, {found['per_s']:,.0f} conn/s "
        f"({found['errors']} errors)")  # fmt: skip


def _start(name: str, procs: Processes, source: ManagedProc, port: int) -> TcpSystem:
    if name == "direct":
        return DirectTcp(source, port)
    if name == "socat":
        return Socat(procs, source, port)
    if name == "tunnelgate":
        return TunnelgateTcp(procs, source, port)
    raise BenchError(f"unknown TCP system {name!r}")


def measure_tcp(
    procs: Processes, plan: TcpPlan, names: tuple[str, ...], errors: list[str]
) -> dict[str, Any]:
    """The TCP phase: every system started, then `plan.rounds` rounds taken in turn."""
    source, port = start_source(procs)
    systems: list[TcpSystem] = []
    not_measured: dict[str, str] = {}
    for name in names:
        try:
            systems.append(_start(name, procs, source, port))
        except BenchError as exc:
            say(f"TCP {name}: FAILED: {exc}")
            not_measured[name] = str(exc).splitlines()[0]
            if name != "socat" or shutil.which("socat") is not None:
                errors.append(f"TCP {name}: {exc}")
    tallies = {system.name: _Tally() for system in systems}
    failed: set[str] = set()
    for index in range(plan.rounds):
        order = systems[index % len(systems) :] + systems[: index % len(systems)] if systems else []
        for system in order:
            if system.name in failed:
                continue
            try:
                _round(system, tallies[system.name], plan)
            except (BenchError, OSError) as exc:
                say(f"TCP {system.name}: FAILED: {exc}")
                errors.append(f"TCP {system.name}: {exc}")
                failed.add(system.name)
    return {
        "config": {
            "rounds": plan.rounds,
            "transfer_bytes": plan.transfer_bytes,
            "workers": plan.workers,
            "duration_s": plan.duration,
            "exchange_bytes": EXCHANGE,
        },
        "systems": {name: tally.summary() for name, tally in tallies.items() if tally.conns},
        "not_measured": not_measured,
    }
