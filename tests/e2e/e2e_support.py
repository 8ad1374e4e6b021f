"""End-to-end environments: a real gateway, a real client and the local test app.

Everything runs as its own process on 127.0.0.1 (``python -m tunnelgate server``,
``python -m tunnelgate http ...`` and ``python -m tunnelgate.testing.local_app``), so a
module-scoped environment outlives each test's event loop. Starting the three costs about
1.5 s, so a test module shares one :func:`tunnel_env`; a test that needs other options
builds its own with :func:`start_tunnel_env`.

    async def test_root(tunnel_env: TunnelEnv) -> None:
        response = await tunnel_env.request(tunnel_env.build("GET", "/"))
        assert response.body == b"hello\\n"
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

from tunnelgate.testing.proc import JsonObject, ProcExited, WaitTimeout, json_object
from tunnelgate.testing.processes import (
    Proc,
    RawConnection,
    RawResponse,
    build_request,
    http_request,
    open_connection,
    start_client,
    start_gateway,
    start_local_app_proc,
    wait_ready,
    wait_ready_async,
)

__all__ = [
    "EXIT_REJECTED",
    "EXIT_TIMEOUT",
    "TunnelEnv",
    "assert_rejected",
    "is_event",
    "json_line",
    "start_tunnel_env",
    "wait_log_line",
]

REQUEST_TIMEOUT = 10.0
"""Seconds any one exchange through the tunnel may take in a test."""
EXIT_REJECTED = 2
"""The client's exit status when the gateway (or its own validation) refuses a tunnel."""
EXIT_TIMEOUT = 10.0
"""Seconds a client gets to exit after it was refused or signalled."""
POLL_INTERVAL = 0.01
"""Seconds between polls of the local app's /stats (each wait has its own deadline)."""


json_line = json_object  # ``line`` parsed if it is a JSON object, else None


@dataclass
class TunnelEnv:
    """One gateway, one client with one HTTP tunnel, and the local app behind it."""

    gateway: Proc
    gateway_port: int
    client: Proc
    app_port: int
    url: str
    """The public URL the client printed, e.g. ``http://abc.localhost:41234``."""
    ready: JsonObject
    """The client's ``tunnel_ready`` event."""
    app: Proc | None = field(default=None, repr=False)
    """The local app's process, when this environment started it."""

    @property
    def host(self) -> str:
        """The public Host of the tunnel, with the gateway's port: ``abc.localhost:41234``."""
        return self.url.removeprefix("http://")

    @property
    def name(self) -> str:
        return self.host.split(".", 1)[0]

    # --- talking to the tunnel -------------------------------------------------
    def build(
        self,
        method: str,
        target: str,
        *,
        headers: Sequence[tuple[str, str]] = (),
        body: bytes | None = None,
    ) -> bytes:
        """A request for the tunnel's public host (see ``build_request``)."""
        return build_request(method, target, host=self.host, headers=headers, body=body)

    async def request(self, raw: bytes, timeout: float = REQUEST_TIMEOUT) -> RawResponse:  # noqa: ASYNC109
        """Send ``raw`` to the gateway on a new connection and read one response."""
        return await http_request(self.gateway_port, raw, timeout=timeout)

    async def get(self, target: str) -> RawResponse:
        return await self.request(self.build("GET", target))

    async def connect(self, timeout: float = REQUEST_TIMEOUT) -> RawConnection:  # noqa: ASYNC109
        """A new raw connection to the gateway's public listener."""
        return await open_connection(self.gateway_port, timeout=timeout)

    async def app_stats(self) -> JsonObject:
        """The local app's ``/stats``, asked directly (not through the tunnel)."""
        response = await http_request(self.app_port, build_request("GET", "/stats"))
        assert response.status == 200, response
        stats: JsonObject = response.json()
        return stats

    async def wait_app_requests(
        self,
        at_least: int,
        timeout: float = REQUEST_TIMEOUT,  # noqa: ASYNC109 - a deadline for the condition
    ) -> JsonObject:
        """The app's /stats once it has counted ``at_least`` requests (polled, with a
        deadline: nothing else tells the test that a request head reached the app)."""
        deadline = time.monotonic() + timeout
        while (stats := await self.app_stats())["requests"] < at_least:
            if time.monotonic() >= deadline:
                raise WaitTimeout(f"the app counted {stats} after {timeout}s, not {at_least}")
            await asyncio.sleep(POLL_INTERVAL)  # poll interval; the deadline bounds the wait
        return stats

    # --- what the processes said ---------------------------------------------------
    def client_mark(self) -> int:
        """Index of the client's next stdout line: pass as ``after`` to wait for later ones."""
        return len(self.client.stdout_lines)

    def gateway_mark(self) -> int:
        """Index of the gateway's next stderr (log) line."""
        return len(self.gateway.stderr_lines)

    def client_events(self, after: int = 0, event: str | None = None) -> list[JsonObject]:
        """The client's JSON events on stdout from index ``after`` (of type ``event``)."""
        found = [json_line(line) for line in self.client.stdout_lines[after:]]
        return [o for o in found if o is not None and (event is None or o.get("event") == event)]

    def gateway_events(self, after: int = 0, event: str | None = None) -> list[JsonObject]:
        """The gateway's JSON log lines (stderr) from index ``after`` (of type ``event``)."""
        found = [json_line(line) for line in self.gateway.stderr_lines[after:]]
        return [o for o in found if o is not None and (event is None or o.get("event") == event)]

    async def wait_client_request(
        self,
        path: str,
        *,
        after: int = 0,
        timeout: float = REQUEST_TIMEOUT,  # noqa: ASYNC109 - a deadline for the output
    ) -> JsonObject:
        """The client's ``{"event": "request", ...}`` line for ``path`` (from ``after``)."""
        return await self.client.wait_for_json_async(
            _EventMatch("request", path), timeout, after=after
        )

    async def wait_gateway_request(
        self,
        path: str,
        *,
        after: int = 0,
        timeout: float = REQUEST_TIMEOUT,  # noqa: ASYNC109 - a deadline for the output
    ) -> JsonObject:
        """The gateway's ``"request"`` log line for ``path`` (from ``after``)."""
        match = _EventMatch("request", path)
        return await wait_log_line(self.gateway, match, after=after, timeout=timeout)

    async def wait_gateway_event(
        self,
        predicate: Callable[[JsonObject], bool],
        *,
        after: int = 0,
        timeout: float = REQUEST_TIMEOUT,  # noqa: ASYNC109 - a deadline for the output
    ) -> JsonObject:
        """The first of the gateway's JSON log lines (from ``after``) matching ``predicate``."""
        return await wait_log_line(self.gateway, predicate, after=after, timeout=timeout)

    async def get_name(self, name: str, target: str = "/") -> RawResponse:
        """GET ``target`` from the tunnel ``name`` on this gateway (not this env's tunnel)."""
        host = f"{name}.localhost:{self.gateway_port}"
        return await self.request(build_request("GET", target, host=host))


class _EventMatch:
    """A predicate for JSON lines ``{"event": event, "path": path, ...}``, with a repr."""

    def __init__(self, event: str, path: str) -> None:
        self.event = event
        self.path = path

    def __call__(self, obj: JsonObject) -> bool:
        return obj.get("event") == self.event and obj.get("path") == self.path

    def __repr__(self) -> str:
        return f"<{self.event} event for {self.path!r}>"


@contextlib.contextmanager
def start_tunnel_env(
    *,
    gateway_args: Sequence[str] = (),
    client_args: Sequence[str] = (),
    app_port: int | None = None,
    subdomain: str | None = "app",
) -> Iterator[TunnelEnv]:
    """Start the local app (unless ``app_port`` is given), a gateway and a client with one
    HTTP tunnel to the app; yield once the tunnel is ready; terminate all three after."""
    with contextlib.ExitStack() as stack:
        app: Proc | None = None
        if app_port is None:
            app, app_port = start_local_app_proc()
            stack.callback(app.terminate)
        gateway, port = start_gateway(*gateway_args)
        stack.callback(gateway.terminate)
        args = ["http", str(app_port), "--server", f"ws://127.0.0.1:{port}/connect"]
        if subdomain is not None:
            args += ["--subdomain", subdomain]
        client = start_client(*args, *client_args)
        stack.callback(client.terminate)
        ready = wait_ready(client)
        yield TunnelEnv(
            gateway=gateway,
            gateway_port=port,
            client=client,
            app_port=app_port,
            url=str(ready["url"]),
            ready=ready,
            app=app,
        )


def is_event(event: str, path: str) -> Callable[[JsonObject], bool]:
    """A predicate for JSON lines ``{"event": event, "path": path, ...}``."""
    return _EventMatch(event, path)


async def assert_rejected(proc: Proc, *reasons: str) -> str:
    """``proc`` exits with status 2 after printing exactly one line on stderr, which says one
    of ``reasons`` (lower case); it never said its tunnel was ready. Returns that line."""
    try:
        up = await wait_ready_async(proc, EXIT_TIMEOUT)
    except ProcExited:
        pass  # stdout closed without a tunnel_ready line: the client is exiting
    else:
        raise AssertionError(f"the tunnel came up: {up}\n{proc.output()}")
    code = await proc.wait_exit_async(EXIT_TIMEOUT)
    lines = [line for line in proc.stderr_lines if line.strip()]
    assert code == EXIT_REJECTED, proc.output()
    assert len(lines) == 1, proc.output()
    assert any(reason in lines[0].lower() for reason in reasons), proc.output()
    return lines[0]


async def wait_log_line(
    proc: Proc,
    predicate: Callable[[JsonObject], bool],
    *,
    after: int = 0,
    timeout: float = REQUEST_TIMEOUT,  # noqa: ASYNC109 - a deadline for the output
) -> JsonObject:
    """The first JSON line on ``proc``'s stderr (a gateway's log) from index ``after`` that
    matches ``predicate``, waited for with a deadline."""
    line = await proc.wait_for_line_async(
        lambda text: (obj := json_line(text)) is not None and predicate(obj),
        timeout,
        stream="stderr",
        after=after,
    )
    found = json_line(line)
    assert found is not None
    return found
