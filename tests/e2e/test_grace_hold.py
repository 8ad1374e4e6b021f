"""Hold and retry (SPEC: `--grace-hold`; issue 11): public requests to a name held for its
owner wait for the owner to come back, then go through; 502 once the wait or the hold is
over; 503 `hold_queue_full` past the per-name queue; never a replay of a request the app
may have seen.

Real gateway, client and local app processes on loopback. A request is known to wait by
the gateway's `request_waiting` line, an owner to be gone by `tunnel_dropped` and back by
the client's readiness: every wait is on a log line, a response or an exit, with a deadline.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass

from e2e_support import json_line, wait_log_line

from tunnelgate import limits
from tunnelgate.testing.proc import JsonObject, Proc
from tunnelgate.testing.processes import (
    RawConnection,
    RawResponse,
    build_request,
    http_request,
    open_connection,
    start_client,
    start_gateway,
    start_local_app_proc,
    wait_ready_async,
)

EXIT_TIMEOUT = 10.0
TOKEN = "alice"  # the owner: a returning client with the same token takes its name back
NAME = "held"
POLL_INTERVAL = 0.02  # seconds between looks at the gateway's log (each wait has a deadline)


@dataclass
class Held:
    """A gateway, the local app, and the tunnel's owner (a client started per use)."""

    gateway: Proc
    port: int
    app_port: int
    clients: list[Proc]

    @property
    def host(self) -> str:
        return f"{NAME}.localhost:{self.port}"

    def build(self, method: str, target: str, body: bytes | None = None) -> bytes:
        return build_request(method, target, host=self.host, body=body)

    def mark(self) -> int:
        return len(self.gateway.stderr_lines)

    async def owner(self) -> Proc:
        """A client for NAME, once its tunnel is ready."""
        proc = start_client(
            "http", str(self.app_port), "--server", f"ws://127.0.0.1:{self.port}/connect",
            "--subdomain", NAME, "--token", TOKEN,
        )  # fmt: skip
        self.clients.append(proc)
        await wait_ready_async(proc, 20.0)
        return proc

    async def drop(self, proc: Proc) -> None:
        """Kill the owner: its name is held for the reconnect grace."""
        mark = self.mark()
        proc.signal(signal.SIGKILL)
        await proc.wait_exit_async(EXIT_TIMEOUT)
        await self.event("tunnel_dropped", after=mark)

    async def event(self, event: str, *, after: int, timeout: float = 10.0) -> JsonObject:  # noqa: ASYNC109
        return await wait_log_line(
            self.gateway, lambda o: o.get("event") == event, after=after, timeout=timeout
        )

    async def waiting(self, count: int, *, after: int) -> None:
        """Until `count` requests started to wait for NAME (from log index `after`):
        polled, with a deadline."""
        deadline = time.monotonic() + 20.0
        while (found := len(self.events("request_waiting", after=after))) < count:
            assert time.monotonic() < deadline, f"{found} waiting requests logged, not {count}"
            await asyncio.sleep(POLL_INTERVAL)

    def events(self, event: str, *, after: int) -> list[JsonObject]:
        """The gateway's log lines of `event` from index `after`."""
        found = [json_line(line) for line in self.gateway.stderr_lines[after:]]
        return [o for o in found if o is not None and o.get("event") == event]

    async def app_requests(self) -> int:
        response = await http_request(self.app_port, build_request("GET", "/stats"))
        count: int = response.json()["requests"]
        return count


@contextlib.contextmanager
def held_env(*gateway_args: str) -> Iterator[Held]:
    app, app_port = start_local_app_proc()
    env = None
    try:
        gateway, port = start_gateway("--token", TOKEN, *gateway_args)
        env = Held(gateway, port, app_port, [])
        yield env
    finally:
        if env is not None:
            for proc in env.clients:
                proc.terminate()
            env.gateway.terminate()
        app.terminate()


async def _send(env: Held, raw: bytes) -> RawConnection:
    conn = await open_connection(env.port, timeout=30.0)
    await conn.send(raw)
    return conn


async def _answer(conn: RawConnection, method: str = "GET") -> RawResponse:
    async with conn:
        return await conn.read_response(method=method)


def _is_held_502(response: RawResponse) -> bool:
    return response.status == 502 and response.header("X-Tunnelgate-Error") == "tunnel_offline"


# --- done when: through once the owner is back within the hold, 502 after it ----------------
async def test_held_requests_go_through_when_the_owner_returns_and_get_502_after_the_hold() -> None:
    with held_env("--grace-hold", "20", "--reconnect-grace", "60") as env:
        first = await env.owner()
        await env.drop(first)
        before = await env.app_requests()

        mark = env.mark()
        body = b"x" * 100_000  # queued with its head while the request waits
        waiting = [
            await _send(env, env.build("GET", "/")),
            await _send(env, env.build("POST", "/upload", body)),
            await _send(env, env.build("GET", "/echo?n=3")),
        ]
        await env.waiting(3, after=mark)
        assert not env.events("request", after=mark), "a waiting request was answered"

        await env.owner()  # the owner comes back within the hold
        hello, upload, echo = [await _answer(conn, "GET") for conn in waiting]
        assert (hello.status, hello.body) == (200, b"hello\n"), hello
        assert upload.status == 200, upload
        assert upload.json() == {"len": len(body), "sha256": hashlib.sha256(body).hexdigest()}
        assert echo.status == 200, echo
        assert echo.json()["query"] == "n=3"
        assert await env.app_requests() == before + 3  # each once

    # After the hold: a shorter --grace-hold than the reconnect grace; nobody comes back.
    with held_env("--grace-hold", "1", "--reconnect-grace", "60") as env:
        await env.drop(await env.owner())
        mark = env.mark()
        started = time.monotonic()
        conn = await _send(env, env.build("GET", "/"))
        await env.waiting(1, after=mark)
        response = await _answer(conn)
        waited = time.monotonic() - started
        assert _is_held_502(response), response
        assert waited >= 0.9, f"answered after {waited:.2f}s: it did not wait"
        assert not env.events("tunnel_expired", after=mark), "the name should still be held"


async def test_a_request_waiting_when_the_hold_expires_gets_502_at_once() -> None:
    # The reconnect grace ends long before --grace-hold and --response-timeout would.
    with held_env("--grace-hold", "60", "--reconnect-grace", "2") as env:
        await env.drop(await env.owner())
        mark, sent = env.mark(), time.monotonic()
        conn = await _send(env, env.build("GET", "/"))
        await env.waiting(1, after=mark)
        response = await _answer(conn)
        waited = time.monotonic() - sent
        assert _is_held_502(response), response
        await env.event("tunnel_expired", after=mark)  # the hold is over (logged after)
        # Promptly: at the hold's end, not after --grace-hold or --response-timeout (60 s).
        assert waited < 15.0, f"answered {waited:.1f}s after it was sent"
        # The name is free now: the next request is a 404, with no wait.
        after = await http_request(env.port, env.build("GET", "/"))
        assert after.status == 404, after


async def test_grace_hold_0_answers_502_at_once() -> None:
    with held_env("--reconnect-grace", "60") as env:  # --grace-hold defaults to 0
        await env.drop(await env.owner())
        mark = env.mark()
        response = await http_request(env.port, env.build("GET", "/"), timeout=5.0)
        assert _is_held_502(response), response
        assert not env.events("request_waiting", after=mark)


async def test_the_per_name_queue_is_bounded() -> None:
    async with contextlib.AsyncExitStack() as stack:  # closed even when the test fails
        env = stack.enter_context(held_env("--grace-hold", "30", "--reconnect-grace", "60"))
        await env.drop(await env.owner())
        mark = env.mark()
        queued = []
        for _ in range(limits.GRACE_HOLD_QUEUE):
            queued.append(conn := await _send(env, env.build("GET", "/")))
            stack.push_async_callback(conn.aclose)
        await env.waiting(limits.GRACE_HOLD_QUEUE, after=mark)

        refused = await http_request(env.port, env.build("GET", "/"), timeout=5.0)
        assert refused.status == 503, refused
        assert refused.header("X-Tunnelgate-Error") == "hold_queue_full"

        await env.owner()
        answers = await asyncio.gather(*(_answer(conn) for conn in queued))
        assert [r.status for r in answers] == [200] * limits.GRACE_HOLD_QUEUE


async def test_a_request_the_app_may_have_seen_is_never_replayed() -> None:
    with held_env("--grace-hold", "20", "--reconnect-grace", "60") as env:
        owner = await env.owner()
        before = await env.app_requests()
        # The app has answered part of it when the tunnel dies.
        conn = await _send(env, env.build("GET", "/bytes?n=1000000&seed=3&hold=never"))
        head = await conn.read_head()
        assert head.status == 200, head
        await env.drop(owner)
        cut = b""
        with contextlib.suppress(ConnectionError):
            cut = await conn.read_until_eof()
        await conn.aclose()
        assert len(cut) < 1_000_000, "the response looked complete"

        await env.owner()
        hello = await http_request(env.port, env.build("GET", "/"))
        assert hello.status == 200, hello
        # The /bytes request once, and the GET /: nothing replayed on the new tunnel.
        assert await env.app_requests() == before + 2
        logged = env.events("request", after=0)
        assert sum(1 for o in logged if str(o.get("path", "")).startswith("/bytes")) == 1
        assert not env.events("request_waiting", after=0)
