"""A child process under test, with its output captured and waited on with deadlines.

Each :class:`Proc` captures its stdout and stderr line by line on two reader threads. Waiting for
output wakes on each new line (a condition variable, or an asyncio event in async code) and is
bounded by a deadline; a timeout or an early exit raises with the captured output in the message.
Every process is killed by its PID on ``terminate()``, at the end of a ``with`` block, and, as a
last resort, by :func:`terminate_all` (registered with ``atexit``; ``tests/conftest.py`` calls it
after the session).
"""

from __future__ import annotations

import asyncio
import atexit
import json
import os
import signal as signals
import subprocess
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Literal

__all__ = [
    "Proc",
    "ProcExited",
    "WaitTimeout",
    "poll_until",
    "poll_until_async",
    "terminate_all",
]

Stream = Literal["stdout", "stderr"]
JsonObject = dict[str, Any]

TERMINATE_TIMEOUT = 5.0
"""Seconds a process gets to exit after SIGTERM before it is sent SIGKILL."""
WAIT_TIMEOUT = 10.0
"""Default seconds to wait for a line of output."""
OUTPUT_TAIL = 40
"""Lines of each stream quoted in failure messages."""

_live: set[Proc] = set()
_live_lock = threading.Lock()


class WaitTimeout(TimeoutError):
    """A wait on a process ran out of time; the message quotes its output."""


class ProcExited(RuntimeError):
    """The process ended while a test was waiting for it to say something."""


def _child_env(env: Mapping[str, str] | None) -> dict[str, str]:
    """The test's environment without any TUNNELGATE_* settings, plus ``env``."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("TUNNELGATE_")}
    base["PYTHONUNBUFFERED"] = "1"
    return base | dict(env or {})


class Proc:
    """A child process with captured output. Use as a context manager, or call terminate()."""

    def __init__(self, argv: Sequence[str], *, env: Mapping[str, str] | None = None) -> None:
        self.argv = list(argv)
        self.lines: dict[Stream, list[str]] = {"stdout": [], "stderr": []}
        # time.monotonic() as each line was read, for tests that time what a process said.
        self.arrivals: dict[Stream, list[float]] = {"stdout": [], "stderr": []}
        self._eof: dict[Stream, bool] = {"stdout": False, "stderr": False}
        self._cond = threading.Condition()
        self._async_waiters: set[_AsyncWaiter] = set()
        self.popen = subprocess.Popen(
            self.argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=_child_env(env),
        )
        self.pid = self.popen.pid
        with _live_lock:
            _live.add(self)
        self._threads = [
            threading.Thread(
                target=self._pump, args=(name,), daemon=True, name=f"{name}-{self.pid}"
            )
            for name in ("stdout", "stderr")
        ]
        for thread in self._threads:
            thread.start()

    def __repr__(self) -> str:
        state = "running" if self.returncode is None else f"exited {self.returncode}"
        return f"<Proc pid={self.pid} {' '.join(self.argv[1:4])!r} {state}>"

    def __enter__(self) -> Proc:
        return self

    def __exit__(
        self, typ: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.terminate()

    @property
    def returncode(self) -> int | None:
        return self.popen.poll()

    @property
    def stdout_lines(self) -> list[str]:
        with self._cond:
            return list(self.lines["stdout"])

    @property
    def stderr_lines(self) -> list[str]:
        with self._cond:
            return list(self.lines["stderr"])

    def json_lines(self) -> list[JsonObject]:
        """Every stdout line that is a JSON object, parsed."""
        return [obj for line in self.stdout_lines if (obj := json_object(line)) is not None]

    def output(self, tail: int = OUTPUT_TAIL) -> str:
        """The last lines of both streams, for failure messages."""
        with self._cond:
            return self._output_locked(tail)

    def signal(self, sig: int) -> None:
        """Send ``sig`` to the process (by PID) if it is still running."""
        if self.returncode is None:
            self.popen.send_signal(sig)

    def wait_for_line(
        self,
        predicate: Callable[[str], bool] | str,
        timeout: float = WAIT_TIMEOUT,
        *,
        stream: Stream = "stdout",
        after: int = 0,
    ) -> str:
        """The first line of ``stream`` from index ``after`` on that matches ``predicate`` (a
        function, or a substring), waiting up to ``timeout`` seconds for it to be printed."""
        match = _matcher(predicate)
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                found = self._scan(match, stream, after)
                if found is not None:
                    return found
                self._check_waitable(stream, predicate, timeout, deadline)
                self._cond.wait(deadline - time.monotonic())

    async def wait_for_line_async(
        self,
        predicate: Callable[[str], bool] | str,
        timeout: float = WAIT_TIMEOUT,  # noqa: ASYNC109 - a deadline for the output, by design
        *,
        stream: Stream = "stdout",
        after: int = 0,
    ) -> str:
        """``wait_for_line`` without blocking the event loop (in-process servers keep serving)."""
        match = _matcher(predicate)
        deadline = time.monotonic() + timeout
        waiter = _AsyncWaiter(asyncio.get_running_loop(), asyncio.Event())
        with self._cond:
            self._async_waiters.add(waiter)
        try:
            while True:
                with self._cond:
                    waiter.event.clear()
                    found = self._scan(match, stream, after)
                    if found is not None:
                        return found
                    self._check_waitable(stream, predicate, timeout, deadline)
                try:
                    async with asyncio.timeout(deadline - time.monotonic()):
                        await waiter.event.wait()
                except TimeoutError:
                    pass  # _check_waitable raises with the output on the next round
        finally:
            with self._cond:
                self._async_waiters.discard(waiter)

    def wait_for_json(
        self,
        predicate: Callable[[JsonObject], bool],
        timeout: float = WAIT_TIMEOUT,
        *,
        after: int = 0,
    ) -> JsonObject:
        """The first JSON object line on stdout (from index ``after``) matching ``predicate``."""
        line = self.wait_for_line(_json_matcher(predicate), timeout, after=after)
        return json.loads(line)  # type: ignore[no-any-return]

    async def wait_for_json_async(
        self,
        predicate: Callable[[JsonObject], bool],
        timeout: float = WAIT_TIMEOUT,  # noqa: ASYNC109 - a deadline for the output, by design
        *,
        after: int = 0,
    ) -> JsonObject:
        line = await self.wait_for_line_async(_json_matcher(predicate), timeout, after=after)
        return json.loads(line)  # type: ignore[no-any-return]

    def wait_exit(self, timeout: float = TERMINATE_TIMEOUT) -> int:
        """The exit status, once the process has exited by itself within ``timeout``."""
        try:
            code = self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            raise WaitTimeout(f"still running after {timeout}s\n{self.output()}") from None
        self._finish()
        return code

    async def wait_exit_async(
        self,
        timeout: float = TERMINATE_TIMEOUT,  # noqa: ASYNC109 - a deadline for the exit, by design
    ) -> int:
        deadline = time.monotonic() + timeout
        while (code := self.popen.poll()) is None:
            if time.monotonic() >= deadline:
                raise WaitTimeout(f"still running after {timeout}s\n{self.output()}")
            await asyncio.sleep(0.01)  # poll interval; the deadline above bounds the wait
        self._finish()
        return code

    def terminate(self, timeout: float = TERMINATE_TIMEOUT) -> int:
        """SIGTERM, then SIGKILL if still alive after ``timeout``; returns the exit status."""
        if self.popen.poll() is None:
            self.popen.send_signal(signals.SIGTERM)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(timeout)
        self._finish()
        return self.popen.returncode

    def _finish(self) -> None:
        for thread, pipe in zip(self._threads, (self.popen.stdout, self.popen.stderr), strict=True):
            thread.join(TERMINATE_TIMEOUT)
            # A grandchild may still hold the pipe open; closing it under a blocked reader
            # would block here too, so such a pipe is left to its daemon thread.
            if pipe is not None and not thread.is_alive():
                pipe.close()
        with _live_lock:
            _live.discard(self)

    def _pump(self, stream: Stream) -> None:
        pipe = self.popen.stdout if stream == "stdout" else self.popen.stderr
        assert pipe is not None
        try:
            for raw in iter(pipe.readline, b""):
                self._add(stream, raw.decode("utf-8", "replace").rstrip("\r\n"))
        except (OSError, ValueError):
            pass  # the pipe was closed under us by _finish
        finally:
            with self._cond:
                self._eof[stream] = True
                self._notify()

    def arrived_at(self, line: str, *, stream: Stream = "stdout", after: int = 0) -> float:
        """When (time.monotonic()) ``line``, the first such line from index ``after``, was read."""
        with self._cond:
            index = self.lines[stream].index(line, after)
            return self.arrivals[stream][index]

    def _add(self, stream: Stream, line: str) -> None:
        with self._cond:
            self.lines[stream].append(line)
            self.arrivals[stream].append(time.monotonic())
            self._notify()

    def _notify(self) -> None:
        """Wake every waiter; called with ``_cond`` held."""
        self._cond.notify_all()
        for waiter in self._async_waiters:
            try:
                waiter.loop.call_soon_threadsafe(waiter.event.set)
            except RuntimeError:
                pass  # that test's loop is already closed

    def _scan(self, match: Callable[[str], bool], stream: Stream, after: int) -> str | None:
        for line in self.lines[stream][after:]:
            if match(line):
                return line
        return None

    def _check_waitable(
        self, stream: Stream, predicate: object, timeout: float, deadline: float
    ) -> None:
        """Raise, quoting the output, if no matching line can come any more."""
        if self._eof[stream]:
            what = f"{stream} closed before a line matched {predicate!r}"
            raise ProcExited(f"{what}\n{self._output_locked()}")
        if time.monotonic() >= deadline:
            what = f"no line on {stream} matched {predicate!r} within {timeout}s"
            raise WaitTimeout(f"{what}\n{self._output_locked()}")

    def _output_locked(self, tail: int = OUTPUT_TAIL) -> str:
        out = "\n".join(self.lines["stdout"][-tail:])
        err = "\n".join(self.lines["stderr"][-tail:])
        return f"{self!r}\n--- stdout (last {tail}) ---\n{out}\n--- stderr (last {tail}) ---\n{err}"


@dataclass(frozen=True, eq=False)
class _AsyncWaiter:
    loop: asyncio.AbstractEventLoop
    event: asyncio.Event


def _matcher(predicate: Callable[[str], bool] | str) -> Callable[[str], bool]:
    if isinstance(predicate, str):
        text = predicate
        return lambda line: text in line
    return predicate


def json_object(line: str) -> JsonObject | None:
    """``line`` parsed if it is a JSON object, else None."""
    if not line.startswith("{"):
        return None
    try:
        value = json.loads(line)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


class _JsonMatcher:
    def __init__(self, predicate: Callable[[JsonObject], bool]) -> None:
        self.predicate = predicate

    def __call__(self, line: str) -> bool:
        obj = json_object(line)
        return obj is not None and self.predicate(obj)

    def __repr__(self) -> str:
        return f"<JSON line matching {self.predicate!r}>"


def _json_matcher(predicate: Callable[[JsonObject], bool]) -> Callable[[str], bool]:
    return _JsonMatcher(predicate)


def poll_until(
    condition: Callable[[], bool], timeout: float = WAIT_TIMEOUT, interval: float = 0.01
) -> None:
    """Return once ``condition()`` is true; raise WaitTimeout after ``timeout`` seconds.

    For states nothing signals (a file appearing, a port closing). Prefer waiting on output.
    """
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() >= deadline:
            raise WaitTimeout(f"{condition!r} still false after {timeout}s")
        time.sleep(interval)  # poll interval; the deadline above bounds the wait


async def poll_until_async(
    condition: Callable[[], bool],
    timeout: float = WAIT_TIMEOUT,  # noqa: ASYNC109 - a deadline for the condition, by design
    interval: float = 0.01,
) -> None:
    """``poll_until`` that lets the event loop run between checks."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() >= deadline:
            raise WaitTimeout(f"{condition!r} still false after {timeout}s")
        await asyncio.sleep(interval)  # poll interval; the deadline above bounds the wait


def terminate_all() -> None:
    """Terminate every Proc still running (a safety net for tests that forgot one)."""
    with _live_lock:
        procs = list(_live)
    for proc in procs:
        proc.terminate()


atexit.register(terminate_all)
