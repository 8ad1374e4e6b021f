"""When the supervisor starts a crashed worker again, and when it gives up (workers.py).

Sans-IO: the caller passes the times in. A crash within `fast` seconds of the worker's
start is a fast crash; the restart delay doubles with each fast crash in a row, and after
`max_fast` of them the worker is taken to be unable to run (a port taken by another
program, a broken certificate): the supervisor stops. A worker that ran longer starts
the count again.
"""

from __future__ import annotations

from tunnelgate import limits


class RestartPolicy:
    """One worker's restarts: `crashed(started, now)` is the delay before its next start,
    or None: give up."""

    __slots__ = ("delay", "fast", "fast_crashes", "max_delay", "max_fast")

    def __init__(
        self,
        *,
        delay: float = limits.WORKER_RESTART_DELAY,
        max_delay: float = limits.WORKER_RESTART_DELAY_MAX,
        fast: float = limits.WORKER_FAST_CRASH,
        max_fast: int = limits.WORKER_MAX_FAST_CRASHES,
    ) -> None:
        self.delay = delay
        self.max_delay = max_delay
        self.fast = fast
        self.max_fast = max_fast
        self.fast_crashes = 0

    def __repr__(self) -> str:
        return f"<RestartPolicy fast_crashes={self.fast_crashes}/{self.max_fast}>"

    def crashed(self, started: float, now: float) -> float | None:
        """The worker started at `started` exited unexpectedly at `now`: seconds to wait
        before starting it again, or None when it crashed fast `max_fast` times in a row."""
        if now - started >= self.fast:
            self.fast_crashes = 0
            return self.delay
        self.fast_crashes += 1
        if self.fast_crashes >= self.max_fast:
            return None
        return min(self.max_delay, self.delay * (1 << (self.fast_crashes - 1)))
