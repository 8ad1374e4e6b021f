"""The soak's processes: the app, the gateway (started again on the same ports after a
restart) and one tunnel client per name, and what their logs and the admin API say."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import re
import sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Final

from .probe import Target, get
from .procs import BenchError, ManagedProc, Processes, announced_port, free_port
from .systems import healthy, tunnelgate_argv

TOKEN: Final = "soak-token-0123456789"
NOFILE: Final = 16384  # for the gateway and the harness: 2,000 connections and then some
START_TIMEOUT: Final = 30.0  # seconds for a process to be ready (gateway healthy, tunnel up)
POLL: Final = 0.05
LOGGED_ID: Final = re.compile(r'"path": "/soak\?id=(\d+)&')


async def poll(what: str, check: Callable[[], bool], limit: float) -> None:
    """Wait until `check()` (run in a thread: it may block on I/O) is true, or BenchError."""
    deadline = time.monotonic() + limit
    while not await asyncio.to_thread(check):
        if time.monotonic() >= deadline:
            raise BenchError(f"timed out after {limit:g} s waiting for {what}")
        await asyncio.sleep(POLL)


class SoakProcesses:
    def __init__(self, args: argparse.Namespace, procs: Processes) -> None:
        self.args = args
        self.procs = procs
        self.port = free_port()
        self.admin_port = free_port()
        self.app: ManagedProc | None = None
        self.app_port = 0
        self.gateway: ManagedProc | None = None
        self.gateway_logs: list[Path] = []  # every gateway's, in order
        self.clients: list[ManagedProc] = []  # by tunnel number

    def gateway_argv(self) -> list[str]:
        a = self.args
        return tunnelgate_argv(
            "server", "--http", f"127.0.0.1:{self.port}", "--admin",
            f"127.0.0.1:{self.admin_port}", "--log-format", "json", "--token", TOKEN,
            "--reconnect-grace", str(a.reconnect_grace), "--grace-hold", str(a.grace_hold),
            "--drain-timeout", str(a.drain_timeout), "--max-tunnels-per-token", "64",
        )  # fmt: skip

    async def start_gateway(self) -> None:
        proc = self.procs.start("gateway", self.gateway_argv(), nofile=NOFILE)
        self.gateway = proc
        self.gateway_logs.append(proc.log_path)
        await poll("the gateway's /healthz", partial(healthy, self.port), START_TIMEOUT)
        if not proc.alive:
            raise BenchError(f"the gateway exited:\n{proc.log_tail()}")

    def start_client(self, tunnel: int) -> ManagedProc:
        argv = tunnelgate_argv(
            "http", str(self.app_port), "--subdomain", f"s{tunnel}", "--token", TOKEN,
            "--server", f"ws://127.0.0.1:{self.port}/connect", "--log-format", "json",
        )  # fmt: skip
        return self.procs.start(f"client{tunnel}", argv)

    def tunnels_up(self) -> int:
        """Tunnels the gateway lists (after a restart: the clients registered again)."""
        try:
            answer = get(Target(self.admin_port, f"127.0.0.1:{self.admin_port}"), "/api/tunnels")
        except OSError:
            return 0
        return len(json.loads(answer.body)) if answer.status == 200 else 0

    async def start_all(self) -> None:
        argv = [sys.executable, "-m", "bench.soak_app", "--port", "0"]
        if self.args.corrupt_every:
            argv += ["--corrupt-every", str(self.args.corrupt_every)]
        app = self.app = self.procs.start("app", argv)
        await poll("the app's listening line", lambda: announced_port(app) > 0, START_TIMEOUT)
        self.app_port = announced_port(app)
        await self.start_gateway()
        self.clients = [self.start_client(k) for k in range(self.args.clients)]
        count = len(self.clients)
        await poll("every client's tunnel", lambda: self.tunnels_up() == count, START_TIMEOUT)

    def gateway_answers(self, wanted: set[int]) -> dict[int, int]:
        """The status each of the `wanted` requests got, by the gateways' JSON request lines
        (the request id is in the logged path)."""
        found: dict[int, int] = {}
        for path in self.gateway_logs if wanted else []:
            with path.open(errors="replace") as lines:
                for line in lines:
                    match = LOGGED_ID.search(line)
                    if match and int(match[1]) in wanted:
                        with contextlib.suppress(ValueError, KeyError):
                            found[int(match[1])] = int(json.loads(line)["status"])
        return found
