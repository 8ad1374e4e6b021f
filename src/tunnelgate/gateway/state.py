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
    def close(self) -> None: ...


class LiveSession(Protocol):
    def constrain(self, on: bool) -> None: ...
    def shut_down(self, reason: str) -> None: ...
    def open_streams(self) -> int: ...


class GatewayState:
    def __init__(self) -> None:
        self.connections: set[LiveConnection] = set()
        self.sessions: set[LiveSession] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self.constrained = False  # the buffer budget is spent (buffers.py)

    def __repr__(self) -> str:
        return (
            f"<GatewayState connections={len(self.connections)} "
            f"sessions={len(self.sessions)} tasks={len(self._tasks)}>"
        )

    # --- public connections (edge.LiveConnections) ----------------------------------
    def connection_opened(self, connection: LiveConnection) -> None:
        self.connections.add(connection)

    def connection_closed(self, connection: LiveConnection) -> None:
        self.connections.discard(connection)

    # --- tunnel sessions --------------------------------------------------------------
    def session_opened(self, session: LiveSession) -> None:
        self.sessions.add(session)
        if self.constrained:
            session.constrain(True)

    def session_closed(self, session: LiveSession) -> None:
        self.sessions.discard(session)

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

    # --- shutdown --------------------------------------------------------------------
    def shut_down_sessions(self, reason: str) -> None:
        for session in list(self.sessions):
            session.shut_down(reason)

    async def aclose(self) -> None:
        """Cancel what is still running and wait for it to end."""
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
