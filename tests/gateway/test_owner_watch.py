"""gateway/owner_watch.py on a real redis-server: each published key reaches the cluster's
cache, and a subscription that broke (Redis killed and back) clears it, since changes were
missed meanwhile."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from tunnelgate.gateway.owner_watch import watch_owners
from tunnelgate.gateway.redis_scripts import OWNERS_CHANNEL
from tunnelgate.testing.redis_server import RedisServer

WAIT = 10.0  # seconds


class Heard:
    def __init__(self) -> None:
        self.keys: asyncio.Queue[str] = asyncio.Queue()
        self.resyncs = 0
        self.resynced = asyncio.Event()

    def change(self, key: str) -> None:
        self.keys.put_nowait(key)

    def resync(self) -> None:
        self.resyncs += 1
        self.resynced.set()


@contextlib.asynccontextmanager
async def watching(redis: RedisServer) -> AsyncIterator[Heard]:
    heard = Heard()
    task = asyncio.get_running_loop().create_task(
        watch_owners(redis.url, heard.change, heard.resync)
    )
    try:
        yield heard
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def subscribed(heard: Heard) -> None:
    """Until the subscription is up (it calls resync once it is)."""
    async with asyncio.timeout(WAIT):
        await heard.resynced.wait()
    heard.resynced.clear()


async def test_published_keys_are_passed_on(redis_server: RedisServer) -> None:
    async with watching(redis_server) as heard:
        await subscribed(heard)
        for key in ("web", "port:20001"):
            answer = redis_server.command("PUBLISH", OWNERS_CHANNEL, key)
            assert answer == b":1\r\n"  # one subscriber: ours
            async with asyncio.timeout(WAIT):
                assert await heard.keys.get() == key


async def test_a_broken_subscription_resyncs_when_redis_is_back(
    redis_server: RedisServer,
) -> None:
    async with watching(redis_server) as heard:
        await subscribed(heard)
        redis_server.kill()
        await subscribed(heard)  # the subscription broke: the cache is told to forget
        redis_server.start()  # empty, on the same port
        # Resubscribed within REDIS_RETRY_INTERVAL: a PUBLISH then has one subscriber.
        deadline = asyncio.get_running_loop().time() + WAIT
        while redis_server.command("PUBLISH", OWNERS_CHANNEL, "after") != b":1\r\n":
            assert asyncio.get_running_loop().time() < deadline, "never resubscribed"
            await asyncio.sleep(0.05)  # poll interval; the deadline bounds the wait
        async with asyncio.timeout(WAIT):
            assert await heard.keys.get() == "after"
        assert heard.resyncs >= 3  # subscribed, broke, subscribed again
