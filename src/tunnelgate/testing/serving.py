"""What the test servers (local_app, tcp_app) share: stopping one with its connections."""

from __future__ import annotations

import asyncio
from collections.abc import Collection


async def close_server(
    server: asyncio.Server | None, tasks: Collection[asyncio.Task[None]]
) -> None:
    """Stop listening, cancel every connection's task, and wait (bounded) for them to end."""
    if server is not None:
        server.close()
    for task in tasks:
        task.cancel()
    if tasks:
        await asyncio.wait(tasks, timeout=5.0)
    if server is not None:
        await asyncio.wait_for(server.wait_closed(), 5.0)
