"""The registry of a cluster (--redis): leases in Redis, shared by every gateway.

Each call is one Lua script (redis_scripts.py): atomic, one round trip, bounded by
limits.REDIS_TIMEOUT. Redis's errors are translated here, once, into RegistryUnavailable:
`claim`, `lookup` and `count` raise it (the registration is refused
`registry_unavailable`: fail closed); `release` and `hold` never do: what could not be
done is queued for the keeper (lease_keeper.py), which retries it, refreshes this node's
online leases, and writes them back after Redis lost them (a restart).

Grace expiry is a key TTL, as MemoryRegistry's is data: no timer anywhere. Names of a
node that stops refreshing (killed) are free once their liveness TTL runs out:
1.5 x `liveness` after the last refresh, at most (docs/cluster.md, "Failures").
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import redis.asyncio as redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError

from tunnelgate import limits
from tunnelgate.errors import RegistryUnavailable
from tunnelgate.logs import EventLog
from tunnelgate.proto.codes import RejectReason

from . import redis_scripts as lua
from .lease_keeper import LeaseKeeper
from .registry import Claimed, Lease, NameState, Owner

log = EventLog("tunnelgate.gateway")


class RedisRegistry:
    """The Registry contract on Redis. `client` is the redis.asyncio client (for the
    forwarding's subscription to `redis_scripts.OWNERS_CHANNEL`); `on_lost` is told of a
    lease of this node that another one took while this node could not refresh it."""

    def __init__(
        self,
        url: str,
        node: str,
        liveness: float,
        *,
        on_lost: Callable[[Lease], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.url = url
        self.node = node
        self.ttl_ms = max(1, round(liveness * 1500))  # 1.5 x liveness
        pool = redis.BlockingConnectionPool.from_url(
            url,
            max_connections=limits.MAX_REDIS_CONNECTIONS,
            timeout=limits.REDIS_TIMEOUT,
            socket_timeout=limits.REDIS_TIMEOUT,
            socket_connect_timeout=limits.REDIS_TIMEOUT,
            decode_responses=True,
            # Once, on a fresh connection: a pooled one is dead after a Redis restart. Safe
            # for every script here (release, hold, keep are idempotent by token; a claim
            # run twice is the same client taking its name over). Within REDIS_TIMEOUT.
            retry=Retry(NoBackoff(), 1),
            retry_on_error=[RedisConnectionError],
        )
        self.client: redis.Redis = redis.Redis(connection_pool=pool)
        self._claim = self.client.register_script(lua.CLAIM)
        self._release = self.client.register_script(lua.RELEASE)
        self._hold = self.client.register_script(lua.HOLD)
        self._lookup = self.client.register_script(lua.LOOKUP)
        self._count = self.client.register_script(lua.COUNT)
        self._ports = self.client.register_script(lua.PORTS)
        self._keep = self.client.register_script(lua.KEEP)
        self._clock = clock
        self.available: bool | None = None  # None: not asked yet
        self.keeper = LeaseKeeper(self, liveness / 2, clock=clock, on_lost=on_lost)

    def __repr__(self) -> str:
        state = {None: "unknown", True: "up", False: "down"}[self.available]
        return f"<RedisRegistry {self.public_url} node={self.node} {state}>"

    @property
    def public_url(self) -> str:
        """The Redis URL without its password, for logs."""
        return public_url(self.url)

    def start(self) -> None:
        """Start the keeper (from inside the running loop)."""
        self.keeper.start()

    # --- the Registry contract -----------------------------------------------------
    async def claim(self, name: str, owner: Owner, node: str) -> Claimed | RejectReason:
        keys = [lua.LEASE_PREFIX + name, lua.OWNED_PREFIX + owner.principal, lua.TOKEN_KEY]
        keys.append(lua.PORTS_KEY)
        args = [
            name,
            owner.principal,
            owner.client_id or "",
            "1" if owner.anonymous else "0",
            node,
            self.ttl_ms,
            lua.OWNED_PREFIX,
            lua.OWNERS_CHANNEL,
        ]
        answer = await self._call(self._claim, keys, args)
        if not answer[0]:
            return RejectReason.NAME_TAKEN
        lease = Lease(name, owner, node, int(answer[1]))
        if node == self.node:
            self.keeper.track(lease)
        return Claimed(lease, reclaimed=bool(answer[2]))

    async def release(self, lease: Lease) -> bool:
        self.keeper.forget(lease)
        return await self.keeper.release(lease)

    async def hold(self, lease: Lease, grace: float) -> bool:
        self.keeper.forget(lease)
        return await self.keeper.hold(lease, grace)

    async def lookup(self, name: str) -> NameState | None:
        found = await self._call(self._lookup, [lua.LEASE_PREFIX + name], [])
        if found is None:
            return None
        return self._state(name, found)

    async def ports(self, low: int, high: int) -> dict[int, NameState]:
        args: list[str | int] = [low, high, lua.LEASE_PREFIX]
        found = await self._call(self._ports, [lua.PORTS_KEY], args)
        return {int(f[0]): self._state(lua.PORT_PREFIX + str(f[0]), f[1:]) for f in found}

    async def count(self, principal: str) -> int:
        return int(await self._call(self._count, [lua.OWNED_PREFIX + principal], []))

    def _state(self, name: str, found: Sequence[str]) -> NameState:
        """A lease as LOOKUP and PORTS return it: o, p, c, a, n, t, pttl."""
        online, principal, client_id, anonymous, node, token, pttl = found
        owner = Owner(principal, client_id or None, anonymous == "1")
        lease = Lease(name, owner, node, int(token))
        expires_at = 0.0 if online == "1" else self._clock() + max(0, int(pttl)) / 1000
        return NameState(lease, online == "1", expires_at)

    async def aclose(self) -> None:
        await self.keeper.aclose()
        await self.client.aclose()
        await self.client.connection_pool.disconnect()

    # --- what the keeper calls (each raises RegistryUnavailable) -------------------------
    async def release_now(self, lease: Lease) -> bool:
        keys = [lua.LEASE_PREFIX + lease.name, lua.PORTS_KEY]
        args: list[str | int] = [lease.name, lease.token, lua.OWNED_PREFIX, lua.OWNERS_CHANNEL]
        return bool(await self._call(self._release, keys, args))

    async def hold_now(self, lease: Lease, grace: float) -> bool:
        grace_ms = _ms(grace)
        keys = [lua.LEASE_PREFIX + lease.name, lua.PORTS_KEY]
        args: list[str | int] = [lease.name, lease.token, grace_ms, lua.OWNED_PREFIX]
        args.append(lua.OWNERS_CHANNEL)
        return bool(await self._call(self._hold, keys, args))

    async def keep(self, leases: Sequence[tuple[Lease, float | None]]) -> list[int]:
        """Refresh (or write back) these leases of this node, each with None (online) or
        the seconds of grace it has left (held): KEPT, REASSERTED or LOST for each, in
        order."""
        keys = [lua.TOKEN_KEY, lua.PORTS_KEY]
        keys += [lua.LEASE_PREFIX + lease.name for lease, _ in leases]
        args: list[str | int] = [self.ttl_ms, lua.OWNED_PREFIX, lua.OWNERS_CHANNEL]
        for lease, grace_left in leases:
            owner = lease.owner
            anonymous = "1" if owner.anonymous else "0"
            token = str(lease.token)
            args += [lease.name, token, owner.principal, owner.client_id or "", anonymous]
            args += [lease.node, 0 if grace_left is None else max(1, _ms(grace_left))]
        return [int(status) for status in await self._call(self._keep, keys, args)]

    async def ping(self) -> None:
        await self._call(None, [], [])

    async def _call(self, script: Any, keys: list[str], args: Sequence[str | int]) -> Any:
        """One script (None: PING), within REDIS_TIMEOUT; Redis's errors become
        RegistryUnavailable, and each change between reachable and not is logged once."""
        try:
            async with asyncio.timeout(limits.REDIS_TIMEOUT):
                if script is None:
                    result = await self.client.ping()
                else:
                    result = await script(keys=keys, args=list(args))
        except (RedisError, OSError, TimeoutError) as exc:
            error = str(exc) or type(exc).__name__
            if self.available is not False:
                self.available = False
                log.warning("registry_unavailable", redis=self.public_url, error=error)
            raise RegistryUnavailable(f"the registry did not answer: {error}") from exc
        if self.available is False:
            log.info("registry_restored", redis=self.public_url)
        self.available = True
        return result


def _ms(seconds: float) -> int:
    """A grace in Redis's PX milliseconds: at least 1 when there is any (0: none)."""
    return max(1, round(seconds * 1000)) if seconds > 0 else 0


def public_url(url: str) -> str:
    """`url` without its password, for logs."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    user = f"{parts.username}:***@" if parts.username else ":***@"
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = f"{user}{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))
