"""Cluster mode: hear every change of owner (the registry's pub/sub), to drop stale routes.

The registry publishes each key whose owner changed (a name, or `port:N`) on
`tunnelgate:owners` (redis_scripts.OWNERS_CHANNEL). This keeps one subscription, on a
connection of its own with no read timeout (it waits for messages; the registry's pool
times out every call), and tells `on_change` each key. When the subscription breaks
(Redis restarted, the network cut) messages were missed: `on_resync` is called once it
is back, and the caller forgets everything it cached. Expiries are not published: the
cache's TTL covers those.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

import redis.asyncio as redis
from redis.exceptions import RedisError

from tunnelgate import limits
from tunnelgate.logs import EventLog, RateLimitedLog

from .redis_scripts import OWNERS_CHANNEL

log = EventLog("tunnelgate.gateway")
_warnings = RateLimitedLog(log)


async def watch_owners(
    url: str, on_change: Callable[[str], None], on_resync: Callable[[], None]
) -> None:
    """Until cancelled: subscribe, pass each published key on; resubscribe after a failure
    every REDIS_RETRY_INTERVAL."""
    client: redis.Redis = redis.Redis.from_url(
        url, decode_responses=True, socket_connect_timeout=limits.REDIS_TIMEOUT
    )
    try:
        while True:
            try:
                await _subscribed(client, on_change, on_resync)
            except (RedisError, OSError, TimeoutError) as exc:
                _stop_if_cancelled()
                _warnings.warning("owner_watch_lost", error=str(exc) or type(exc).__name__)
            on_resync()
            await asyncio.sleep(limits.REDIS_RETRY_INTERVAL)  # a back-off, not a wait
    finally:
        # Bounded: closing a connection that a cancel caught mid-connect can wait for
        # ever (seen when a worker was stopped right after it started).
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(limits.REDIS_TIMEOUT):
                await client.aclose()


def _stop_if_cancelled() -> None:
    """Raise CancelledError if this task was cancelled and a Redis call swallowed it:
    Python 3.11's asyncio.wait_for, which redis-py uses, loses a cancel that arrives as
    its call completes, and the watch would then go on for ever."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


async def _subscribed(
    client: redis.Redis, on_change: Callable[[str], None], on_resync: Callable[[], None]
) -> None:
    async with client.pubsub(ignore_subscribe_messages=True) as pubsub:
        async with asyncio.timeout(limits.REDIS_TIMEOUT):
            await pubsub.subscribe(OWNERS_CHANNEL)
        _stop_if_cancelled()
        on_resync()  # whatever changed before this point was not heard
        async for message in pubsub.listen():
            _stop_if_cancelled()
            if message.get("type") == "message":
                on_change(str(message["data"]))
