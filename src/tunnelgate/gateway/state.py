"""What is live on this gateway: public connections, tunnel sessions, background tasks.

Shutdown, drain, reload and the admin API ask here, in one place, as uvicorn's
`ServerState` and hypercorn's connection tracking do. Tracking is a set insert per
accepted connection; nothing here is on the per-request path.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, Protocol

from tunnelgate.logs import EventLog

log = EventLog("tunnelgate.gateway")


class LiveConnection(Protocol):
    def drain(self) -> None: ...
    def cut_off(self) -> None: ...


class LiveSession(Protocol):
    def constrain(self, on: bool) -> None: ...
    def drain(self, reason: str) -> None: ...
    def shut_down(self, reason: str) -> None: ...
    def cut_off(self, reason: str) -> None: ...
    def open_streams(self) -> int: ...


class GatewayState:
    def __init__(self) -> None:
        self.connections: set[LiveConnection] = set()
        self.sessions: set[LiveSession] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self.constrained = False  # the buffer budget is spent (buffers.py)
        self.draining = False  # drain.py: SIGTERM came
        self.cut_requested = False  # a second signal: cut off what is still open, now
        self._drain_reason = ""
        self._changed = asyncio.Event()  # while draining: a connection or session ended

    def __repr__(self) -> str:
        return (
            f"<GatewayState connections={len(self.connections)} "
            f"sessions={len(self.sessions)} tasks={len(self._tasks)}"
            f"{' draining' if self.draining else ''}>"
        )

    # --- public connections (edge.LiveConnections) ----------------------------------
    def connection_opened(self, connection: LiveConnection) -> None:
        self.connections.add(connection)
        if self.draining:  # accepted before the listener closed (a TLS handshake, say)
            connection.drain()

    def connection_closed(self, connection: LiveConnection) -> None:
        self.connections.discard(connection)
        if self.draining:
            self._changed.set()

    # --- tunnel sessions --------------------------------------------------------------
    def session_opened(self, session: LiveSession) -> None:
        self.sessions.add(session)
        if self.constrained:
            session.constrain(True)
        if self.draining:
            session.drain(self._drain_reason)

    def session_closed(self, session: LiveSession) -> None:
        self.sessions.discard(session)
        if self.draining:
            self._changed.set()

    def set_pressure(self, on: bool) -> None:
        """Memory pressure (buffers.py) starts or ends: every tunnel hears of it."""
        self.constrained = on
        for session in self.sessions:
            session.constrain(on)

    # --- background work ---------------------------------------------------------------
    def spawn(self, work: Coroutine[Any, Any, None], name: str) -> None:
        """Run `work` as a task this state owns: cancelled and awaited by `aclose`, and
        its failure logged with a traceback (never lost with an unawaited task)."""
        task = asyncio.get_running_loop().create_task(work, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and (exc := task.exception()) is not None:
            log.error("task_failed", task=task.get_name(), error=repr(exc))

    # --- drain and shutdown (drain.py) ----------------------------------------------
    @property
    def idle(self) -> bool:
        return not self.connections and not self.sessions

    def open_streams(self) -> int:
        return sum(session.open_streams() for session in self.sessions)

    def start_draining(self, reason: str) -> None:
        """Every tunnel connection hears GOAWAY; every public connection closes between
        requests (an idle one now)."""
        self.draining, self._drain_reason = True, reason
        for session in list(self.sessions):
            session.drain(reason)
        for connection in list(self.connections):
            connection.drain()

    def close_idle_sessions(self) -> None:
        """While draining: close the tunnel connections whose last stream has ended."""
        for session in list(self.sessions):
            if not session.open_streams():
                session.shut_down(self._drain_reason)

    def cut_short(self) -> None:
        """A second SIGTERM/SIGINT: the drain ends now."""
        self.cut_requested = True
        self._changed.set()

    async def wait_changed(self) -> None:
        """Until a connection or session ends, or the drain is cut short (the caller
        looks at `cut_requested` first)."""
        self._changed.clear()
        await self._changed.wait()

    def cut_off_sessions(self) -> None:
        for session in list(self.sessions):
            session.cut_off(self._drain_reason or "gateway shutting down")

    def close_connections(self) -> None:
        for connection in list(self.connections):
            connection.cut_off()

    async def aclose(self) -> None:
        """Cancel what is still running and wait for it to end."""
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
