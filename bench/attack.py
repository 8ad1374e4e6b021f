"""The hardening issue's attacks, replayed against a gateway, with figures for the note.

    python -m bench.attack                      # this tree's gateway
    python -m bench.attack --python OTHER/.venv/bin/python --label before

Each scenario starts a fresh gateway (`OTHER`'s, with `--python`: a checkout of an older
commit with its own venv), a good tunnel to the test app, and an attacker on loopback:

- ping-flood / ping-flood-reading: a tunnel client sending 1 MiB messages of PING frames
  (58,000 each), not reading the PONGs or reading them;
- open-flood: the same with OPEN frames, each answered RESET REFUSED_STREAM;
- slow-read: 400 public clients asking for 100 MiB each through one tunnel and reading
  5 bytes a second through a 4 KiB receive window (slowhttptest -X's shape);
- fd-flood: a gateway limited to 4,096 open files, and 4,096 idle connections from
  127.0.0.1, while 127.0.0.2 asks for a page.

For each: whether and when the attacker was cut off, the gateway's RSS (peak, and for
slow-read 60 s after the attack), and the good tunnel's median latency before and during.
Every load is bounded and stops by itself; all processes are ours and stopped by PID.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import resource
import socket
import statistics
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tunnelgate.proto.frames import FrameType, encode_frame, encode_u64
from tunnelgate.testing import websocket as ws
from tunnelgate.testing.http_client import build_request, http_request
from tunnelgate.testing.proc import Proc
from tunnelgate.testing.processes import free_port, start_local_app_proc, wait_ready
from tunnelgate.testing.raw_tunnel import RawTunnel, TunnelClosed

FLOOD_LIMIT = 30.0  # seconds a flood runs unless the gateway cuts it off first
SLOW_READERS = 400
SLOW_READ_TIME = 30.0  # seconds the slow readers hold on
AFTER_TIME = 60.0  # seconds to watch RSS after an attack
FD_FLOOD_LIMIT = 30.0
FD_FLOOD_FILES = 4096  # the gateway's open-file limit in fd-flood, and the idle connections


def rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return round(int(line.split()[1]) / 1024, 1)
    return 0.0


@dataclass
class Setup:
    gateway: Proc
    port: int
    client: Proc
    app: Proc
    host: str

    def stop(self) -> None:
        for proc in (self.client, self.gateway, self.app):
            proc.terminate()


@dataclass
class Result:
    scenario: str
    cut_off_s: float | None = None
    rss_start: float = 0.0
    rss_peak: float = 0.0
    rss_after: float | None = None
    p50_before_ms: float = 0.0
    p50_during_ms: float | None = None
    probes_failed: int = 0
    notes: dict[str, Any] = field(default_factory=dict)


def start(python: str, *gateway_args: str, open_files: int | None = None) -> Setup:
    app, app_port = start_local_app_proc()
    port = free_port()
    listen = ["--http", f"127.0.0.1:{port}", "--log-format", "json"]
    limit = ["prlimit", f"--nofile={open_files}:{open_files}", "--"] if open_files else []
    gateway = Proc([*limit, python, "-m", "tunnelgate", "server", *listen, *gateway_args])
    deadline = time.monotonic() + 15
    while True:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
            break
        if time.monotonic() > deadline:
            raise RuntimeError(gateway.output())
        time.sleep(0.05)  # start-up poll, bounded by the deadline
    server = ["--server", f"ws://127.0.0.1:{port}/connect", "--log-format", "json"]
    client = Proc(
        [python, "-m", "tunnelgate", "http", str(app_port), "--subdomain", "good", *server]
    )
    wait_ready(client, 15)
    return Setup(gateway, port, client, app, f"good.localhost:{port}")


class Probe:
    """GETs through the good tunnel, one after another, and the gateway's RSS."""

    def __init__(self, setup: Setup) -> None:
        self.setup = setup
        self.samples: list[float] = []
        self.failed = 0
        self.peak = rss_mib(setup.gateway.pid)
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def one(self) -> float:
        started = time.monotonic()
        raw = build_request("GET", "/", host=self.setup.host)
        response = await http_request(self.setup.port, raw, timeout=5.0)
        if response.status != 200:
            raise OSError(f"status {response.status}")
        return (time.monotonic() - started) * 1000

    async def baseline(self) -> float:
        return statistics.median([await self.one() for _ in range(30)])

    async def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.samples.append(await self.one())
            except (OSError, TimeoutError):
                self.failed += 1
            self.peak = max(self.peak, rss_mib(self.setup.gateway.pid))
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(0.05):
                    await self._stop.wait()

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[Probe]:
        self._task = asyncio.get_running_loop().create_task(self._run())
        try:
            yield self
        finally:
            self._stop.set()
            await self._task

    @property
    def median(self) -> float | None:
        return round(statistics.median(self.samples), 2) if self.samples else None


async def flood(setup: Setup, name: str, message: bytes, *, read: bool) -> Result:
    result = Result(name, rss_start=rss_mib(setup.gateway.pid))
    probe = Probe(setup)
    result.p50_before_ms = round(await probe.baseline(), 2)
    attacker = await RawTunnel.open(setup.port, receive_buffer=None if read else 4096)
    await attacker.register(1, "evil")
    wire = ws.encode_frame(ws.OP_BINARY, message)
    reader = asyncio.get_running_loop().create_task(attacker.wait_closed()) if read else None
    started = time.monotonic()
    async with probe.running():
        while time.monotonic() - started < FLOOD_LIMIT:
            try:
                await attacker.send_raw(wire)
            except (ConnectionError, TimeoutError):
                result.cut_off_s = round(time.monotonic() - started, 2)
                break
            if reader is not None and reader.done():
                result.cut_off_s = round(time.monotonic() - started, 2)
                break
    if reader is not None:
        reader.cancel()
        with contextlib.suppress(asyncio.CancelledError, TunnelClosed):
            await reader
    attacker.writer.transport.abort()
    result.rss_peak = probe.peak
    result.p50_during_ms = probe.median
    result.probes_failed = probe.failed
    result.notes["probes_during"] = len(probe.samples)
    return result


async def slow_read(setup: Setup) -> Result:
    result = Result("slow-read", rss_start=rss_mib(setup.gateway.pid))
    probe = Probe(setup)
    result.p50_before_ms = round(await probe.baseline(), 2)
    raw = build_request("GET", f"/bytes?n={100 * 1024 * 1024}", host=setup.host)
    readers: list[socket.socket] = []
    for _ in range(SLOW_READERS):
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.connect(("127.0.0.1", setup.port))
        sock.sendall(raw)
        sock.setblocking(False)
        readers.append(sock)
    started = time.monotonic()
    async with probe.running():
        while time.monotonic() - started < SLOW_READ_TIME:
            for sock in readers:
                with contextlib.suppress(BlockingIOError, OSError):
                    sock.recv(5)
            await asyncio.sleep(1.0)  # the attack's pace: 5 bytes a second per connection
    result.rss_peak = probe.peak
    result.p50_during_ms = probe.median
    result.probes_failed = probe.failed
    for sock in readers:
        sock.close()
    result.notes["rss_after_s"] = await _watch_rss(setup, AFTER_TIME)
    result.rss_after = result.notes["rss_after_s"][-1][1]
    return result


async def _watch_rss(setup: Setup, seconds: float) -> list[tuple[int, float]]:
    samples = []
    for t in range(0, int(seconds) + 1, 10):
        samples.append((t, rss_mib(setup.gateway.pid)))
        if t < seconds:
            await asyncio.sleep(10)  # sampling pace
    return samples


async def fd_flood(setup: Setup) -> Result:
    result = Result("fd-flood", rss_start=rss_mib(setup.gateway.pid))
    probe = Probe(setup)
    result.p50_before_ms = round(await probe.baseline(), 2)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    idle: list[socket.socket] = []
    started = time.monotonic()
    while len(idle) < FD_FLOOD_FILES and time.monotonic() - started < FD_FLOOD_LIMIT:
        sock = socket.socket()
        sock.setblocking(False)
        with contextlib.suppress(BlockingIOError):
            sock.connect(("127.0.0.1", setup.port))
        idle.append(sock)
        if len(idle) % 1000 == 0:
            await asyncio.sleep(0)
    await asyncio.sleep(2.0)  # let the gateway accept what it will
    reset = 0
    for sock in idle:
        try:
            if sock.recv(1) == b"":
                reset += 1
        except BlockingIOError:
            pass
        except OSError:
            reset += 1
    result.notes["idle_opened"] = len(idle)
    result.notes["idle_closed_by_gateway"] = reset
    result.notes["other_address_status"] = await _other_address_status(setup)
    result.rss_peak = rss_mib(setup.gateway.pid)
    for sock in idle:
        sock.close()
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    return result


async def _other_address_status(setup: Setup) -> int | str:
    def get() -> int | str:
        try:
            with socket.create_connection(
                ("127.0.0.1", setup.port), 5, source_address=("127.0.0.2", 0)
            ) as sock:
                sock.sendall(build_request("GET", "/", host=setup.host))
                head = sock.recv(100)
                return int(head.split()[1]) if head else "empty reply"
        except OSError as exc:
            return repr(exc)

    return await asyncio.get_running_loop().run_in_executor(None, get)


SCENARIOS: dict[str, Callable[[Setup], Awaitable[Result]]] = {
    "ping-flood": lambda s: flood(
        s, "ping-flood", encode_frame(FrameType.PING, 0, encode_u64(1)) * 58_000, read=False
    ),
    "ping-flood-reading": lambda s: flood(
        s, "ping-flood-reading", encode_frame(FrameType.PING, 0, encode_u64(1)) * 58_000, read=True
    ),
    "open-flood": lambda s: flood(
        s,
        "open-flood",
        b"".join(encode_frame(FrameType.OPEN, sid) for sid in range(1, 200_000, 2)),
        read=False,
    ),
    "slow-read": slow_read,
    "fd-flood": fd_flood,
}


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--python", default=sys.executable, help="the gateway's interpreter")
    parser.add_argument("--label", default="after")
    parser.add_argument("--only", nargs="*", choices=sorted(SCENARIOS), default=None)
    args = parser.parse_args()
    results = []
    for name in args.only or list(SCENARIOS):
        setup = start(args.python, open_files=FD_FLOOD_FILES if name == "fd-flood" else None)
        try:
            result = await SCENARIOS[name](setup)
        finally:
            setup.stop()
        print(json.dumps({"label": args.label, **result.__dict__}), flush=True)
        results.append(result)
    out = Path("bench", "results", f"attack-{args.label}.json")
    out.write_text(json.dumps([r.__dict__ for r in results], indent=1))  # noqa: ASYNC240


if __name__ == "__main__":
    asyncio.run(main())
