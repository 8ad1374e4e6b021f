"""gateway/owner_watch.py: the watch ends when cancelled, whenever the cancel lands (while
it connects and subscribes included), against a real redis-server. Python 3.11's
asyncio.wait_for, which redis-py uses, can lose a cancel that arrives as its call ends;
the watch hung on such a lost cancel, and the gateway's shutdown with it."""

from __future__ import annotations

import asyncio

from tunnelgate.gateway.owner_watch import watch_owners
from tunnelgate.testing.redis_server import RedisServer

ROUNDS = 60  # cancels spread over the first 15 ms: the old watch hung within ~20
STEP = 0.00025  # seconds between the cancel points tried
END_TIMEOUT = 5.0  # seconds a cancelled watch may take to end


async def test_a_cancelled_watch_ends_wherever_the_cancel_lands(
    redis_server: RedisServer,
) -> None:
    loop = asyncio.get_running_loop()
    for round_ in range(ROUNDS):
        watch = loop.create_task(watch_owners(redis_server.url, lambda key: None, lambda: None))
        await asyncio.sleep(round_ * STEP)  # the moment of the cancel, not a synchronisation
        watch.cancel()
        done, _ = await asyncio.wait({watch}, timeout=END_TIMEOUT)
        assert done == {watch}, f"still running {END_TIMEOUT} s after a cancel at {round_ * STEP}"
