"""A gateway run with `--workers N` for end-to-end tests, and what its log says of them.

    proc, port = start_workers_gateway(2, redis_url)
    pids = worker_pids(proc)            # {0: pid, 1: pid}, the latest start of each

Only the documented log lines are read (`worker_started`, `worker_ready`, `worker_exited`,
and the `worker` field every worker line carries).
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from tunnelgate.testing.proc import JsonObject, Proc, json_object
from tunnelgate.testing.processes import START_TIMEOUT, free_port_range, start_gateway

__all__ = [
    "CLUSTER_SECRET",
    "events",
    "pid_alive",
    "start_workers_gateway",
    "wait_workers_ready",
    "worker_pids",
]

CLUSTER_SECRET = "workers-test-secret-0123456789abcdef"
"""A --cluster-secret for tests (at least 32 bytes)."""


def start_workers_gateway(
    count: int,
    redis_url: str,
    *args: str,
    env: Mapping[str, str] | None = None,
    timeout: float = START_TIMEOUT,
) -> tuple[Proc, int]:
    """``tunnelgate server --workers COUNT`` with the cluster options (--advertise on free
    ports), returned once every worker said it listens; the public port."""
    low, _ = free_port_range(count)
    cluster = ["--redis", redis_url, "--cluster-secret", CLUSTER_SECRET]
    argv = ["--workers", str(count), *cluster, "--advertise", f"127.0.0.1:{low}", *args]
    proc, port = start_gateway(*argv, env=env, timeout=timeout)
    try:
        wait_workers_ready(proc, range(count), timeout=timeout)
    except BaseException:
        proc.terminate()
        raise
    return proc, port


def events(proc: Proc, event: str, after: int = 0) -> list[JsonObject]:
    """The JSON log lines (stderr) of type `event`, from index `after`."""
    found = (json_object(line) for line in proc.stderr_lines[after:])
    return [obj for obj in found if obj is not None and obj.get("event") == event]


def wait_workers_ready(
    proc: Proc, indexes: range | list[int], *, after: int = 0, timeout: float = START_TIMEOUT
) -> None:
    """Return once the supervisor said `worker_ready` for each index (from line `after`)."""
    for index in indexes:
        proc.wait_for_line(
            _WorkerEvent("worker_ready", index), timeout, stream="stderr", after=after
        )


class _WorkerEvent:
    """A predicate for a log line of `event` about worker `index`, with a repr for failures."""

    def __init__(self, event: str, index: int) -> None:
        self.event = event
        self.index = index

    def __call__(self, line: str) -> bool:
        obj = json_object(line)
        return (
            obj is not None and obj.get("event") == self.event and obj.get("worker") == self.index
        )

    def __repr__(self) -> str:
        return f"<{self.event} of worker {self.index}>"


def worker_pids(proc: Proc) -> dict[int, int]:
    """Each worker's pid, as its latest `worker_started` line gave it."""
    return {int(obj["worker"]): int(obj["pid"]) for obj in events(proc, "worker_started")}


def pid_alive(pid: int) -> bool:
    """Whether `pid` names a process that has not been reaped (a zombie counts as gone)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError):
        return False
    except OSError:
        return os.path.exists(f"/proc/{pid}")
