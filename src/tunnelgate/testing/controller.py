"""A controller for tests: `POST /v1/authorize` answered as the test says (SPEC "Controller").

The controller is a service outside the project, so tests talk to this double over real
HTTP. It runs an aiohttp server on 127.0.0.1 in a thread with its own event loop, so it
answers a gateway in another process while the test's own loop waits synchronously (the
end-to-end helpers do), and a gateway in the test's loop alike.

    with ControllerDouble() as controller:
        controller.allow("tok-acme", "acme", names=["web"])   # names reserved for acme
        controller.allow("tok-bob", "bob", only=["blog"])     # allowed these only
        controller.deny("tok-gone", "account suspended")      # 200 {"allow": false}
        controller.answer("tok-x", 403, {"reason": "no"})     # any status and body
        controller.stall("tok-slow", 5.0)                     # answers after 5 s
        controller.down = True                                # 503 to everything
        gateway_args = ["--controller", controller.url]
        controller.requests                                   # every body received

An unknown token is denied ("unknown token"). Leaving the block stops the server: the
URL then refuses connections (a controller that is down), and stalled answers are cut.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

from aiohttp import web

JsonObject = dict[str, Any]
START_TIMEOUT = 10.0
"""Seconds the server thread gets to start listening, and to stop."""


@dataclass
class _Rule:
    status: int = 200
    body: JsonObject = field(default_factory=dict)
    only: frozenset[str | int] | None = None  # allowed names/ports; None: all
    delay: float = 0.0


@dataclass(frozen=True)
class Received:
    """One request the double answered."""

    body: JsonObject
    peer: tuple[str, int]  # the gateway's end of the connection it came on


class ControllerDouble:
    def __init__(self, port: int = 0) -> None:
        self.port = port
        self.down = False
        self._rules: dict[str, _Rule] = {}
        self._received: list[Received] = []
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._closing: asyncio.Event | None = None
        self._stopped: Future[None] = Future()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def requests(self) -> list[JsonObject]:
        with self._lock:
            return [r.body for r in self._received]

    @property
    def received(self) -> list[Received]:
        with self._lock:
            return list(self._received)

    # --- programming it ---------------------------------------------------------------
    def allow(
        self, token: str, account: str, *, names: Sequence[str] = (), only: Sequence[str | int] = ()
    ) -> None:
        """Allow `token` as `account` (with `names` reserved for it): for any name or port,
        or with `only`, for those (others are denied)."""
        body = {"allow": True, "account": account, "names": list(names)}
        self._set(token, _Rule(200, body, frozenset(only) if only else None))

    def deny(self, token: str, reason: str) -> None:
        self._set(token, _Rule(200, {"allow": False, "reason": reason}))

    def answer(self, token: str, status: int, body: JsonObject) -> None:
        self._set(token, _Rule(status, body))

    def stall(self, token: str, seconds: float) -> None:
        """Answer `token`'s requests (as programmed before, else allowed) after `seconds`."""
        with self._lock:
            rule = self._rules.get(token) or _Rule(200, {"allow": True, "account": token})
            rule.delay = seconds
            self._rules[token] = rule

    def _set(self, token: str, rule: _Rule) -> None:
        with self._lock:
            self._rules[token] = rule

    # --- the server ---------------------------------------------------------------------
    async def _authorize(self, request: web.Request) -> web.Response:
        body = await request.json()
        peer = request.transport.get_extra_info("peername") if request.transport else None
        with self._lock:
            self._received.append(Received(body, (str(peer[0]), int(peer[1])) if peer else ("", 0)))
            rule = self._rules.get(str(body.get("token")))
            down = self.down
        if rule is not None and rule.delay and self._closing is not None:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(rule.delay):
                    await self._closing.wait()  # cut short when the double stops
        if down:
            return web.json_response({"error": "down for maintenance"}, status=503)
        if rule is None:
            return web.json_response({"allow": False, "reason": "unknown token"})
        wanted = body.get("port") if body.get("protocol") == "tcp" else body.get("name")
        if rule.only is not None and wanted not in rule.only:
            reason = f"{wanted} is not {rule.body.get('account')}'s"
            return web.json_response({"allow": False, "reason": reason})
        return web.json_response(rule.body, status=rule.status)

    def __enter__(self) -> ControllerDouble:
        started: Future[int] = Future()
        self._thread = threading.Thread(target=self._run, args=(started,), daemon=True)
        self._thread.start()
        self.port = started.result(START_TIMEOUT)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        loop, closing = self._loop, self._closing
        if loop is not None and closing is not None:
            loop.call_soon_threadsafe(closing.set)
            self._stopped.result(START_TIMEOUT)
        if self._thread is not None:
            self._thread.join(START_TIMEOUT)

    def _run(self, started: Future[int]) -> None:
        try:
            asyncio.run(self._serve(started))
        except BaseException as exc:
            if not started.done():
                started.set_exception(exc)
            self._stopped.set_exception(exc)
        else:
            self._stopped.set_result(None)

    async def _serve(self, started: Future[int]) -> None:
        self._loop = asyncio.get_running_loop()
        self._closing = asyncio.Event()
        app = web.Application()
        app.router.add_post("/v1/authorize", self._authorize)
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await runner.setup()
        try:
            site = web.TCPSite(runner, "127.0.0.1", self.port, reuse_address=True)
            await site.start()
            sockets = runner.addresses
            started.set_result(int(sockets[0][1]))
            await self._closing.wait()
        finally:
            await runner.cleanup()
