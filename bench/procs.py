"""Processes the benchmark starts, and what /proc says about them.

Every process is started by :class:`Processes`, which remembers its PID and stops it (SIGTERM,
then SIGKILL) when the benchmark ends, fails or is interrupted. Children are also asked to get
SIGTERM should the benchmark itself be killed (``PR_SET_PDEATHSIG``), so nothing outlives it.
Nothing is ever stopped by name: other people's nginx or gateways on the machine are left alone.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import resource
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Final

STOP_TIMEOUT: Final = 5.0  # seconds a process gets after SIGTERM before SIGKILL
POLL_INTERVAL: Final = 0.05  # seconds between readiness probes
CLK_TCK: Final = os.sysconf("SC_CLK_TCK")
PR_SET_PDEATHSIG: Final = 1
ROOT: Final = Path(__file__).resolve().parent.parent  # the repository: `python -m bench.x` works


class BenchError(RuntimeError):
    """A step of the benchmark could not be done (a process died, a wait timed out)."""


class Interrupted(BaseException):  # a signal, like KeyboardInterrupt
    """SIGTERM: unwind like Ctrl-C so that every process gets stopped."""


def raise_on_signals() -> None:
    """Ctrl-C (SIGINT) raises KeyboardInterrupt even where the shell started us with SIGINT
    ignored (a background job), and SIGTERM raises Interrupted: both unwind and clean up."""

    def handler(signum: int, frame: object) -> None:
        raise Interrupted(signum)

    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, handler)


@contextlib.contextmanager
def hard_deadline(seconds: float) -> Iterator[None]:
    """BenchError in the main thread if the block is still running after `seconds` (SIGALRM);
    the steps have their own time limits, this is the backstop that makes a run always end."""

    def overrun(signum: int, frame: object) -> None:
        raise BenchError(f"the run overran its budget of {seconds:g} s")

    previous = signal.signal(signal.SIGALRM, overrun)
    signal.alarm(max(1, round(seconds)))
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def raise_nofile(wanted: int) -> int:
    """Raise RLIMIT_NOFILE towards `wanted` (the hard limit too, when allowed); the new soft."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= wanted:
        return soft
    with contextlib.suppress(ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, max(hard, wanted)))
        return wanted
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(wanted, hard), hard))
    return min(wanted, hard)


def _child_setup(nofile: int | None) -> Callable[[], None]:
    def setup() -> None:
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
        if nofile is not None:
            raise_nofile(nofile)

    return setup


class ManagedProc:
    """One started process: its PID, its log file (stdout and stderr together)."""

    def __init__(self, name: str, popen: subprocess.Popen[bytes], log_path: Path) -> None:
        self.name = name
        self.popen = popen
        self.log_path = log_path

    def __repr__(self) -> str:
        return f"<ManagedProc {self.name} pid={self.pid} rc={self.popen.poll()}>"

    @property
    def pid(self) -> int:
        return self.popen.pid

    @property
    def alive(self) -> bool:
        return self.popen.poll() is None

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def log_tail(self, lines: int = 20) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])

    def events(self) -> list[dict[str, Any]]:
        """The JSON objects among its output lines (a line still being written is skipped)."""
        found: list[dict[str, Any]] = []
        for line in self.log_text().splitlines():
            if line.startswith("{"):
                with contextlib.suppress(ValueError):
                    obj = json.loads(line)
                    if isinstance(obj, dict):
                        found.append(obj)
        return found


class Processes:
    """Starts processes and stops every one of them, by PID, on exit."""

    def __init__(self, workdir: Path) -> None:
        self.logdir = workdir / "logs"
        self.logdir.mkdir(parents=True, exist_ok=True)
        self.procs: list[ManagedProc] = []
        self._started: dict[str, int] = {}  # name -> times started, so restarts keep old logs

    def __enter__(self) -> Processes:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop_all()

    def start(
        self,
        name: str,
        argv: Sequence[str],
        *,
        nofile: int | None = None,
        env: dict[str, str] | None = None,
        stdin: int | IO[bytes] | None = subprocess.DEVNULL,
    ) -> ManagedProc:
        self._started[name] = count = self._started.get(name, 0) + 1
        log_path = self.logdir / (f"{name}.log" if count == 1 else f"{name}.{count}.log")
        with log_path.open("wb") as log:
            popen = subprocess.Popen(
                list(argv),
                stdin=stdin,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=ROOT,
                start_new_session=True,  # Ctrl-C reaches us only; we stop the children
                preexec_fn=_child_setup(nofile),
            )
        proc = ManagedProc(name, popen, log_path)
        self.procs.append(proc)
        return proc

    def stop(self, proc: ManagedProc, timeout: float = STOP_TIMEOUT) -> None:
        if proc.alive:
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGTERM)
            try:
                proc.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(proc.pid, signal.SIGKILL)
                proc.popen.wait(timeout)
        if proc in self.procs:
            self.procs.remove(proc)

    def stop_all(self) -> None:
        for proc in reversed(list(self.procs)):
            self.stop(proc)


# --- waiting -------------------------------------------------------------------
def wait_until(
    what: str, check: Callable[[], bool], timeout: float, proc: ManagedProc | None = None
) -> None:
    """Poll `check` until it is true; BenchError after `timeout` s or if `proc` exits."""
    deadline = time.monotonic() + timeout
    while not check():
        if proc is not None and not proc.alive:
            raise BenchError(f"{proc.name} exited while waiting for {what}:\n{proc.log_tail()}")
        if time.monotonic() >= deadline:
            tail = f":\n{proc.log_tail()}" if proc is not None else ""
            raise BenchError(f"timed out after {timeout:g} s waiting for {what}{tail}")
        time.sleep(POLL_INTERVAL)


def announced_port(proc: ManagedProc) -> int:
    """The port in the process's ``{"event": "listening", "port": N}`` line; 0 before it."""
    for event in proc.events():
        if event.get("event") == "listening":
            return int(event["port"])
    return 0


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


# --- /proc ---------------------------------------------------------------------
def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of process `pid` (all its threads) so far."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat.rsplit(")", 1)[1].split()  # the command name may hold spaces
    utime, stime = int(fields[11]), int(fields[12])  # fields 14 and 15 of proc(5)
    return (utime + stime) / CLK_TCK


def rss_kib(pid: int) -> int:
    """Resident set size of `pid` in KiB (VmRSS)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise BenchError(f"no VmRSS for pid {pid}")


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def nofile_limit(pid: int) -> int:
    """The soft RLIMIT_NOFILE of process `pid`."""
    for line in Path(f"/proc/{pid}/limits").read_text().splitlines():
        if line.startswith("Max open files"):
            return int(line.split()[3])
    raise BenchError(f"no open-files limit for pid {pid}")


def children(pid: int) -> list[int]:
    """The direct children of `pid` (e.g. nginx's worker under its master)."""
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError):
            found.extend(int(p) for p in (task / "children").read_text().split())
    return found


@contextlib.contextmanager
def cpu_meter(pids: dict[str, int]) -> Iterator[dict[str, float]]:
    """Yields a dict filled, on exit, with the CPU seconds each named PID used meanwhile."""
    before = {name: cpu_seconds(pid) for name, pid in pids.items()}
    used: dict[str, float] = {}
    yield used
    for name, pid in pids.items():
        with contextlib.suppress(OSError):
            used[name] = cpu_seconds(pid) - before[name]
