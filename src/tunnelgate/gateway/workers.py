"""`tunnelgate server --workers N`: a supervisor process and N gateway worker processes.

    run_workers(config)     fork the workers, forward signals, restart crashed ones, exit

Each worker is forked from the supervisor and runs the ordinary gateway (worker_child.py)
with the same config, except its node identity and internal link (--advertise) and its
admin API (--admin), which are on the given port + i (config.for_worker). The public
listeners (and TCP tunnel ports) are bound by every worker with SO_REUSEPORT: the kernel
spreads new connections among them. The namespace is shared through --redis.

The supervisor is one thread with no event loop: a selector over the signal wake-up
socket, each worker's pidfd (readable once it exited) and its ready pipe (a byte once it
listens). SIGTERM/SIGINT go to every worker (each drains, then exits 0), a second one
too (each cuts its drain short); SIGHUP is forwarded (reload). A worker that exits
otherwise is started again after a back-off (restarts.py); one that fails before it ever
listened, or crashes fast too often, stops them all (exit 1, or its status). Workers get
SIGTERM if the supervisor dies, however it dies (PR_SET_PDEATHSIG).
"""

from __future__ import annotations

import contextlib
import os
import selectors
import signal
import socket
import sys
import time
from dataclasses import dataclass, field
from typing import Final

from tunnelgate import limits
from tunnelgate.config import GatewayConfig, for_worker
from tunnelgate.logs import EventLog, configure_logging

from .restarts import RestartPolicy
from .worker_child import FORWARDED, run_child

log = EventLog("tunnelgate.gateway")

STOPS: Final = (signal.SIGTERM, signal.SIGINT)
# A worker's exit status that counts as a clean stop once it was asked to stop: 0, or
# killed by the signal itself before its handlers were installed.
CLEAN_STOP: Final = frozenset({0, -signal.SIGTERM, -signal.SIGINT})


@dataclass
class _Worker:
    index: int
    pid: int
    pidfd: int
    ready_fd: int | None  # the pipe's read end, until the byte (or EOF) came
    started: float
    ready: bool = False


@dataclass
class _Plan:
    """What the supervisor is waiting for, besides the workers' exits."""

    restarts: dict[int, float] = field(default_factory=dict)  # index -> when
    stopping: bool = False
    kill_at: float | None = None  # the stop's deadline, then SIGKILL
    status: int = 0


class Supervisor:
    def __init__(self, config: GatewayConfig) -> None:
        self.config = config
        self.count = config.workers
        self.selector = selectors.DefaultSelector()
        self.workers: dict[int, _Worker] = {}
        self.policies = [RestartPolicy() for _ in range(self.count)]
        self.ever_ready: set[int] = set()
        self.plan = _Plan()
        self.pid = os.getpid()
        self._wake_r, self._wake_w = socket.socketpair()

    def __repr__(self) -> str:
        live = ",".join(f"{w.index}:{w.pid}" for w in self.workers.values())
        return f"<Supervisor workers={live or '-'} stopping={self.plan.stopping}>"

    def run(self) -> int:
        """Start the workers and supervise them until they all exited: the exit status."""
        for sock in (self._wake_r, self._wake_w):
            sock.setblocking(False)
        signal.set_wakeup_fd(self._wake_w.fileno(), warn_on_full_buffer=False)
        for sig in FORWARDED:
            signal.signal(sig, _wake_only)
        self.selector.register(self._wake_r, selectors.EVENT_READ, None)
        log.info("supervisor_started", pid=self.pid, workers=self.count)
        try:
            for index in range(self.count):
                self._start(index)
            while self.workers or self.plan.restarts:
                for key, _ in self.selector.select(self._timeout()):
                    self._dispatch(key.data)
                self._on_time(time.monotonic())
        finally:
            self._abandon()
        log.info("supervisor_stopped", status=self.plan.status)
        return self.plan.status

    # --- workers ---------------------------------------------------------------------
    def _start(self, index: int) -> None:
        read_fd, write_fd = os.pipe()
        sys.stderr.flush()  # nothing buffered is written twice, by both processes
        # Blocked across the fork: a signal must not reach the child while it still has
        # the supervisor's handlers (it would wake the supervisor through the socket).
        signal.pthread_sigmask(signal.SIG_BLOCK, FORWARDED)
        try:
            pid = os.fork()
            if pid == 0:
                os.close(read_fd)
                config = for_worker(self.config, index)
                run_child(config, index, write_fd, self.pid, self._own_fds())
        finally:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, FORWARDED)
        os.close(write_fd)
        pidfd = os.pidfd_open(pid)
        worker = _Worker(index, pid, pidfd, read_fd, time.monotonic())
        self.workers[index] = worker
        self.selector.register(pidfd, selectors.EVENT_READ, ("exit", worker))
        self.selector.register(read_fd, selectors.EVENT_READ, ("ready", worker))
        log.info("worker_started", worker=index, pid=pid)

    def _own_fds(self) -> list[int]:
        """What a new worker must close: the supervisor's, and its siblings' pipes."""
        fds = [self._wake_r.fileno(), self._wake_w.fileno(), self.selector.fileno()]
        for worker in self.workers.values():
            fds.append(worker.pidfd)
            if worker.ready_fd is not None:
                fds.append(worker.ready_fd)
        return fds

    def _dispatch(self, data: tuple[str, _Worker] | None) -> None:
        if data is None:
            self._on_signals()
        elif data[0] == "ready":
            self._on_ready(data[1])
        else:
            self._on_exit(data[1])

    def _on_ready(self, worker: _Worker) -> None:
        if worker.ready_fd is None:  # its exit, in the same batch of events, came first
            return
        said = os.read(worker.ready_fd, 1)
        self._close_ready(worker)
        if said:  # EOF instead: it is exiting, and its pidfd will say so
            worker.ready = True
            self.ever_ready.add(worker.index)
            log.info("worker_ready", worker=worker.index, pid=worker.pid)

    def _close_ready(self, worker: _Worker) -> None:
        if worker.ready_fd is not None:
            self.selector.unregister(worker.ready_fd)
            os.close(worker.ready_fd)
            worker.ready_fd = None

    def _on_exit(self, worker: _Worker) -> None:
        _, status = os.waitpid(worker.pid, 0)
        code = os.waitstatus_to_exitcode(status)
        self._close_ready(worker)
        self.selector.unregister(worker.pidfd)
        os.close(worker.pidfd)
        del self.workers[worker.index]
        now = time.monotonic()
        plan = self.plan
        if plan.stopping:
            log.info("worker_exited", worker=worker.index, pid=worker.pid, code=code)
            if code not in CLEAN_STOP:
                plan.status = plan.status or 1
            return
        log.warning("worker_exited", worker=worker.index, pid=worker.pid, code=code)
        if worker.index not in self.ever_ready:
            # It never listened: start-up failed (a port in use, a bad certificate), and
            # would again. Its own message is on stderr already.
            self._give_up(code if code > 0 else 1, "worker_failed_to_start", worker.index)
            return
        delay = self.policies[worker.index].crashed(worker.started, now)
        if delay is None:
            self._give_up(1, "worker_crashed_too_often", worker.index)
            return
        plan.restarts[worker.index] = now + delay
        log.info("worker_restarting", worker=worker.index, delay=delay)

    def _give_up(self, status: int, event: str, index: int) -> None:
        log.error(event, worker=index, crashes=self.policies[index].fast_crashes)
        self._stop(signal.SIGTERM)
        self.plan.status = status

    # --- signals and time ------------------------------------------------------------
    def _on_signals(self) -> None:
        with contextlib.suppress(BlockingIOError):
            for signum in self._wake_r.recv(64):
                if signum == signal.SIGHUP:
                    log.info("reload_forwarded", workers=len(self.workers))
                    self._send(signal.SIGHUP)
                elif signum in STOPS:
                    self._stop(signal.Signals(signum))

    def _stop(self, sig: signal.Signals) -> None:
        """The first stop: every worker drains, within a deadline. A second: cut short."""
        plan = self.plan
        if plan.stopping:
            log.info("drain_cut_short", workers=len(self.workers))
        else:
            plan.stopping = True
            plan.restarts.clear()
            grace = self.config.drain_timeout + limits.SHUTDOWN_TIMEOUT
            plan.kill_at = time.monotonic() + grace + limits.WORKER_STOP_MARGIN
            log.info("stopping", signal=sig.name, workers=len(self.workers))
        self._send(sig)

    def _send(self, sig: signal.Signals) -> None:
        for worker in self.workers.values():
            with contextlib.suppress(ProcessLookupError):  # exited; its pidfd will say
                signal.pidfd_send_signal(worker.pidfd, sig)

    def _timeout(self) -> float | None:
        times = list(self.plan.restarts.values())
        if self.plan.kill_at is not None:
            times.append(self.plan.kill_at)
        return max(0.0, min(times) - time.monotonic()) if times else None

    def _on_time(self, now: float) -> None:
        plan = self.plan
        for index, when in list(plan.restarts.items()):
            if when <= now:
                del plan.restarts[index]
                self._start(index)
        if plan.kill_at is not None and plan.kill_at <= now:
            plan.kill_at = None
            log.error("workers_killed", workers=len(self.workers))
            plan.status = plan.status or 1
            self._send(signal.SIGKILL)

    def _abandon(self) -> None:
        """On the way out (an error in the supervisor itself included): no worker left
        behind, no descriptor left open."""
        for worker in list(self.workers.values()):
            with contextlib.suppress(ProcessLookupError):
                signal.pidfd_send_signal(worker.pidfd, signal.SIGKILL)
            with contextlib.suppress(ChildProcessError):
                os.waitpid(worker.pid, 0)
            self._close_ready(worker)
            self.selector.unregister(worker.pidfd)
            os.close(worker.pidfd)
        self.workers.clear()
        signal.set_wakeup_fd(-1)
        self.selector.close()
        self._wake_r.close()
        self._wake_w.close()


def _wake_only(signum: int, frame: object) -> None:
    """The wake-up socket carries the signal's number; the handler has nothing to do."""


def run_workers(config: GatewayConfig) -> int:
    """The `tunnelgate server --workers N` process (N > 1): the exit status."""
    configure_logging(config.log_format)
    if not hasattr(os, "pidfd_open"):
        print("tunnelgate: --workers: needs Linux 5.3 or later (pidfd)", file=sys.stderr)
        return 2
    return Supervisor(config).run()
