"""``make bench-scale``: 10,000 idle tunnels and 10,000 idle public keep-alive connections.

One gateway; the tunnels come from :mod:`bench.tunnels` (the real client code, one WebSocket
per tunnel), the public connections from this process. Each public connection asks one tunnel
for ``/`` (so with as many connections as tunnels, every tunnel is asked once) and then stays
open and idle. Reported: the gateway's RSS at each stage, how many tunnels answered, how many
public connections the gateway still holds after a pause, and whether a sample of those idle
connections still serves a second request. Writes ``bench/results/scale.json`` and ``.md``.

    python -m bench.scale [--tunnels N] [--connections M] [--budget S]
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import random
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any, Final

from .measure import run_bounded, say
from .origin import Origin, start_nginx, start_python_origin
from .procs import (
    Processes,
    nofile_limit,
    open_fds,
    raise_nofile,
    raise_on_signals,
    rss_kib,
)
from .run import RESULTS, WORKDIR, machine, software
from .systems import start_gateway
from .tunnels import open_tunnels

OPENING: Final = 256  # public connections being opened at once
REQUEST_TIMEOUT: Final = 10.0  # seconds for one request through a tunnel
IDLE_PAUSE: Final = 5.0  # seconds the public connections sit idle before they are counted
REUSE_SAMPLE: Final = 500  # idle connections asked for a second request
SETTLE: Final = 1.0
FD_MARGIN: Final = 32  # descriptors a gateway holds besides its sockets (listener, epoll, logs)


def _fd_shortage(limit: int, tunnels: int, connections: int) -> str:
    return (
        f"the gateway may open only {limit:,} files (its hard RLIMIT_NOFILE, which this "
        f"machine does not let us raise: no CAP_SYS_RESOURCE), fewer than the {tunnels:,} "
        f"tunnels + {connections:,} connections + ~{FD_MARGIN} it needs; the connections "
        "past the limit cannot be accepted"
    )


class Public:
    """One public keep-alive connection and the tunnel it asks."""

    def __init__(self, port: int, tunnel: int) -> None:
        self.port = port
        self.tunnel = tunnel
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None
        self.error: str | None = None  # why the last request failed

    @property
    def open(self) -> bool:
        return (
            self.reader is not None
            and self.writer is not None
            and not self.reader.at_eof()
            and not self.writer.is_closing()
        )

    async def ask(self, origin: Origin) -> bool:
        """GET / for our tunnel on this (kept) connection: True for 200 and the right body."""
        try:
            async with asyncio.timeout(REQUEST_TIMEOUT):
                if self.reader is None or self.writer is None:
                    self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
                host = f"t{self.tunnel}.localhost"
                self.writer.write(f"GET / HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
                head = await self.reader.readuntil(b"\r\n\r\n")
                length = _content_length(head)
                body = await self.reader.readexactly(length)
        except (OSError, TimeoutError, ValueError, asyncio.IncompleteReadError) as exc:
            self.error = type(exc).__name__
            return False
        ok = head.startswith(b"HTTP/1.1 200 ") and body == origin.small_body
        self.error = None if ok else head.split(b"\r\n", 1)[0].decode("latin-1")
        return ok

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def _content_length(head: bytes) -> int:
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return int(value)
    raise ValueError("no Content-Length")


async def _ask_all(conns: list[Public], origin: Origin) -> list[Public]:
    """Each connection asks its tunnel once; the connections that got the right answer."""
    opening = asyncio.Semaphore(OPENING)

    async def one(conn: Public) -> bool:
        async with opening:
            return await conn.ask(origin)

    answers = await asyncio.gather(*(one(c) for c in conns))
    return [conn for conn, ok in zip(conns, answers, strict=True) if ok]


async def public_phase(
    port: int, origin: Origin, tunnels: int, count: int, gateway_pid: int
) -> dict[str, Any]:
    conns = [Public(port, i % tunnels) for i in range(count)]
    started = time.monotonic()
    routed = {conn.tunnel for conn in await _ask_all(conns, origin)}
    first_failures = Counter(c.error for c in conns if c.error is not None)
    opened_in = time.monotonic() - started
    say(f"public: {count:,} connections, {len(routed):,} tunnels answered in {opened_in:.1f} s")
    extra = [Public(port, i) for i in range(count, tunnels)]  # tunnels no connection asked
    routed |= {conn.tunnel for conn in await _ask_all(extra, origin)}
    for conn in extra:
        conn.close()
    await asyncio.sleep(IDLE_PAUSE)
    still_open = sum(c.open for c in conns)
    rss, fds = rss_kib(gateway_pid), open_fds(gateway_pid)
    say(f"public: {still_open:,} of {count:,} idle connections still open; gateway {rss:,} KiB")
    held = [c for c in conns if c.open]  # a connection already refused proves nothing more
    sample = random.sample(held, min(REUSE_SAMPLE, len(held)))
    reused = len(await _ask_all(sample, origin))
    failures = Counter(c.error for c in sample if c.error is not None)
    for conn in conns:
        conn.close()
    return {
        "count": count,
        "seconds": round(opened_in, 2),
        "still_open": still_open,
        "idle_seconds": IDLE_PAUSE,
        "reuse_sample": len(sample),
        "reuse_ok": reused,
        "first_failures": dict(first_failures.most_common(5)),
        "first_failed_tunnels": sorted(set(range(tunnels)) - routed)[:20],
        "reuse_failures": dict(failures.most_common(5)),
        "tunnels_routed": len(routed),
        "rss_kib": rss,
        "fds": fds,
    }


def run_scale(args: argparse.Namespace, result: dict[str, Any]) -> None:
    n, m = args.tunnels, args.connections
    raise_nofile(2 * (n + m) + 4096)
    with Processes(args.workdir) as procs:
        if args.origin == "nginx":
            origin = start_nginx(procs, args.workdir)
        else:
            origin = start_python_origin(procs, big_size=1024)
        # Caps out of the way (every connection comes from 127.0.0.1): this run measures
        # what one gateway can hold, not the default caps.
        caps = ("--max-connections", str(2 * (n + m)), "--max-connections-per-address",
                str(2 * (n + m)))  # fmt: skip
        gateway, port = start_gateway(procs, nofile=4 * (n + m) + 4096, extra=caps)
        time.sleep(SETTLE)
        rss: dict[str, int] = {"start": rss_kib(gateway.pid)}
        fds = {"limit": nofile_limit(gateway.pid), "needed": n + m + FD_MARGIN}
        if fds["limit"] < fds["needed"]:
            result["errors"].append(_fd_shortage(fds["limit"], n, m))
        say(f"gateway on port {port}: {rss['start']:,} KiB; opening {n:,} tunnels")
        holders, ready = open_tunnels(procs, port, origin.port, n)
        time.sleep(SETTLE)
        rss["with_tunnels"] = rss_kib(gateway.pid)
        fds["with_tunnels"] = open_fds(gateway.pid)
        say(f"{ready['ready']:,} tunnels in {ready['seconds']} s: {rss['with_tunnels']:,} KiB")
        public = asyncio.run(public_phase(port, origin, n, m, gateway.pid))
        rss["with_connections"] = public.pop("rss_kib")
        fds["with_connections"] = public.pop("fds")
        routed = public.pop("tunnels_routed")
        result["tunnels"] = {"count": n, "registered": ready["ready"], "routed": routed,
                             "open_seconds": ready["seconds"], "holder": ready}  # fmt: skip
        result["public"] = public
        result["rss_kib"] = rss
        result["gateway_fds"] = fds
        result["per_tunnel_kib"] = round((rss["with_tunnels"] - rss["start"]) / n, 2)
        result["per_connection_kib"] = round(
            (rss["with_connections"] - rss["with_tunnels"]) / max(m, 1), 2
        )
        for holder in holders:
            procs.stop(holder, timeout=20.0)


def _n(value: Any) -> str:
    return f"{value:,}" if isinstance(value, int | float) else "n/a"


def markdown(result: dict[str, Any]) -> str:
    rss = result.get("rss_kib", {})
    t, p = result.get("tunnels", {}), result.get("public", {})
    m, fd = result.get("machine", {}), result.get("gateway_fds", {})

    def mib(key: str) -> str:
        return f"{rss[key] / 1024:,.1f} MiB" if key in rss else "n/a"

    rows = [
        ("gateway RSS at start", mib("start")),
        ("tunnels registered",
         f"{_n(t.get('registered'))} of {_n(t.get('count'))} in {t.get('open_seconds')} s"),
        ("gateway RSS with the tunnels",
         f"{mib('with_tunnels')} ({result.get('per_tunnel_kib')} KiB per tunnel)"),
        ("tunnels that answered a request", f"{_n(t.get('routed'))} of {_n(t.get('count'))}"),
        (f"public keep-alive connections still open after {p.get('idle_seconds')} s idle",
         f"{_n(p.get('still_open'))} of {_n(p.get('count'))}"),
        ("gateway RSS with tunnels and connections",
         f"{mib('with_connections')} ({result.get('per_connection_kib')} KiB per connection)"),
        ("gateway open files: with the tunnels / with the connections / limit",
         f"{_n(fd.get('with_tunnels'))} / {_n(fd.get('with_connections'))} / "
         f"{_n(fd.get('limit'))}"),
        ("idle connections that served a second request",
         f"{_n(p.get('reuse_ok'))} of {_n(p.get('reuse_sample'))}"),
    ]  # fmt: skip
    lines = [
        "# tunnelgate scale run",
        "",
        f"- date: {result.get('date')}, run took {result.get('duration_s')} s",
        f"- machine: {m.get('nproc')} CPUs, {m.get('cpu_model')}, Linux {m.get('kernel')}",
        f"- tunnelgate {result.get('software', {}).get('commit')}",
        "",
        "| measure | value |",
        "|---|---|",
        *(f"| {label} | {value} |" for label, value in rows),
        "",
        *(f"- error: {e}" for e in result.get("errors", [])),
        *(f"- first request failed: {why} x{n}" for why, n in p.get("first_failures", {}).items()),
        *(f"- second request failed: {why} x{n}" for why, n in p.get("reuse_failures", {}).items()),
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.scale", description=__doc__)
    parser.add_argument("--tunnels", type=int, default=10_000)
    parser.add_argument("--connections", type=int, default=10_000)
    parser.add_argument("--origin", choices=("nginx", "python"), default="nginx")
    parser.add_argument("--budget", type=float, default=420.0, help="seconds for the whole run")
    parser.add_argument("--results", type=Path, default=RESULTS)
    parser.add_argument("--workdir", type=Path, default=WORKDIR / "scale")
    args = parser.parse_args(argv)
    args.workdir = args.workdir.resolve()
    raise_on_signals()
    result: dict[str, Any] = {
        "kind": "scale",
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": machine(),
        "software": software(),
        "errors": [],
    }
    if not run_bounded(args.budget, lambda r: run_scale(args, r), result):
        return 130
    args.results.mkdir(parents=True, exist_ok=True)
    (args.results / "scale.json").write_text(json.dumps(result, indent=2) + "\n")
    (args.results / "scale.md").write_text(markdown(result))
    print(markdown(result))
    return 1 if result["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
