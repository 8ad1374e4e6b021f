"""A real `redis-server` (Debian's package) on a free loopback port, for the cluster tests.

    with run_redis() as server:
        server.url                  redis://127.0.0.1:<port>/0
        server.kill()               SIGKILL by PID: Redis gone at once, as in a crash
        server.start()              up again on the same port, empty (no persistence)
        server.pause(); server.resume()   SIGSTOP/SIGCONT: a Redis that accepts and never answers

No persistence (`--save "" --appendonly no`): a restart is an empty Redis, the worst case
the registry must survive. Started means PING answered (polled with a deadline). The
binary comes from apt: `make test` installs it (bench/bootstrap.py, the `tests` set).
"""

from __future__ import annotations

import shutil
import signal
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Final

from tunnelgate.testing.proc import Proc, ProcExited, WaitTimeout
from tunnelgate.testing.processes import free_port

START_TIMEOUT: Final = 10.0  # seconds for PING to be answered after a start
POLL_INTERVAL: Final = 0.02  # seconds between PINGs while it starts (the deadline bounds it)


class RedisMissing(RuntimeError):
    """redis-server is not installed: `python3 -m bench.bootstrap tests` installs it."""


class RedisServer:
    def __init__(self, port: int) -> None:
        self.port = port
        self.proc: Proc | None = None

    def __repr__(self) -> str:
        return f"<RedisServer 127.0.0.1:{self.port} {self.proc!r}>"

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.returncode is None

    def start(self) -> None:
        """Start it (on the same port as before), once PING is answered."""
        if self.running:
            return
        binary = shutil.which("redis-server")
        if binary is None:
            raise RedisMissing(
                "redis-server is not installed: run python3 -m bench.bootstrap tests"
            )
        argv = [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", ""]
        argv += ["--appendonly", "no", "--protected-mode", "no", "--loglevel", "warning"]
        self.proc = Proc(argv)
        try:
            self._wait_ping()
        except BaseException:
            self.stop()
            raise

    def kill(self) -> None:
        """SIGKILL, and wait for it to be gone (its port is free again after)."""
        if self.proc is not None:
            self.proc.signal(signal.SIGKILL)
            self.proc.terminate()  # reaps it
            self.proc = None

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.signal(signal.SIGCONT)  # a paused one could not exit
            self.proc.terminate()
            self.proc = None

    def pause(self) -> None:
        """SIGSTOP: connections are accepted by the kernel, nothing is answered."""
        if self.proc is not None:
            self.proc.signal(signal.SIGSTOP)

    def resume(self) -> None:
        if self.proc is not None:
            self.proc.signal(signal.SIGCONT)

    def command(self, *args: str) -> bytes:
        """One command in RESP, its raw answer (for tests that look at the keys)."""
        parts = [f"*{len(args)}\r\n".encode()]
        for arg in args:
            data = arg.encode()
            parts.append(b"$%d\r\n%s\r\n" % (len(data), data))
        with socket.create_connection(("127.0.0.1", self.port), timeout=2.0) as sock:
            sock.sendall(b"".join(parts))
            return sock.recv(65536)

    def _wait_ping(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            assert self.proc is not None
            if self.proc.returncode is not None:
                raise ProcExited(f"redis-server exited\n{self.proc.output()}")
            try:
                if self.command("PING").startswith(b"+PONG"):
                    return
            except OSError:
                pass
            if time.monotonic() >= deadline:
                raise WaitTimeout(f"redis-server not answering PING\n{self.proc.output()}")
            time.sleep(POLL_INTERVAL)  # poll interval; the deadline above bounds the wait


@contextmanager
def run_redis(port: int | None = None) -> Iterator[RedisServer]:
    """A redis-server of its own on a free loopback port (or `port`), stopped after."""
    server = RedisServer(port or free_port())
    try:
        server.start()
        yield server
    finally:
        server.stop()
