"""Tunnel lifecycle, end to end: auth, names, several tunnels on one connection, clean stop,
dropped clients and their reconnect grace, gateway restarts, and heartbeats.

Every process is real (``python -m tunnelgate server``, ``python -m tunnelgate http|start``,
``python -m tunnelgate.testing.local_app``) and listens on 127.0.0.1. Waits are on output lines
(the client's JSON events on stdout, the gateway's JSON log on stderr) or process exits, each
bounded by a deadline; nothing waits by sleeping.
"""

from __future__ import annotations

import contextlib
import re
import signal
import sys
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest
from e2e_support import EXIT_TIMEOUT, assert_rejected

from tunnelgate.testing import websocket as ws
from tunnelgate.testing.proc import JsonObject, json_object
from tunnelgate.testing.processes import (
    Proc,
    RawResponse,
    build_request,
    free_port,
    http_request,
    open_connection,
    start_client,
    start_gateway,
    start_local_app_proc,
    wait_ready_async,
)

RECONNECT_TIMEOUT = 20.0
"""Seconds a client gets to find a restarted gateway (its back-off is at most a few s here)."""
GRACE = 3.0
"""--reconnect-grace of the token gateway: long enough to start a rival client within it."""
SUBPROTOCOL = "tunnelgate.v2"


# --- processes --------------------------------------------------------------------------------
@dataclass
class Gateway:
    proc: Proc
    port: int

    @property
    def server(self) -> str:
        return f"ws://127.0.0.1:{self.port}/connect"

    def host(self, name: str) -> str:
        return f"{name}.localhost:{self.port}"

    def url(self, name: str) -> str:
        return f"http://{self.host(name)}"

    async def get(self, name: str, target: str = "/") -> RawResponse:
        return await http_request(self.port, build_request("GET", target, host=self.host(name)))

    def mark(self) -> int:
        """Index of the next log line: pass as ``after`` to :meth:`wait_event`."""
        return len(self.proc.stderr_lines)

    async def wait_event(
        self,
        event: str,
        *,
        after: int = 0,
        timeout: float = 10.0,  # noqa: ASYNC109 - a deadline for the output, by design
        **fields: object,
    ) -> JsonObject:
        """The gateway's JSON log line ``{"event": event, **fields}`` (from index ``after``)."""
        match = _LogMatch(event, fields)
        await self.proc.wait_for_line_async(match, timeout, stream="stderr", after=after)
        found = [obj for obj in _log_objects(self.proc, after) if match.matches(obj)]
        return found[0]

    def events(self, event: str, after: int = 0, **fields: object) -> list[JsonObject]:
        match = _LogMatch(event, fields)
        return [obj for obj in _log_objects(self.proc, after) if match.matches(obj)]


class _LogMatch:
    def __init__(self, event: str, fields: Mapping[str, object]) -> None:
        self.event = event
        self.fields = dict(fields)

    def matches(self, obj: JsonObject) -> bool:
        return obj.get("event") == self.event and all(
            obj.get(key) == value for key, value in self.fields.items()
        )

    def __call__(self, line: str) -> bool:
        obj = _json(line)
        return obj is not None and self.matches(obj)

    def __repr__(self) -> str:
        return f"<log event {self.event!r} with {self.fields!r}>"


_json = json_object


def _log_objects(proc: Proc, after: int) -> list[JsonObject]:
    return [obj for line in proc.stderr_lines[after:] if (obj := _json(line)) is not None]


def gateway_argv(port: int, *args: str) -> list[str]:
    http = ["--http", f"127.0.0.1:{port}", "--log-format", "json"]
    return [sys.executable, "-m", "tunnelgate", "server", *http, *args]


def start_gateway_on(port: int, *args: str) -> Gateway:
    """A gateway on a given port (to restart one in place), once it logs that it listens."""
    proc = Proc(gateway_argv(port, *args))
    try:
        proc.wait_for_line('"event": "listening"', 10.0, stream="stderr")
    except BaseException:
        proc.terminate()
        raise
    return Gateway(proc, port)


@pytest.fixture(scope="module")
def app_port() -> Iterator[int]:
    """The local test app, as its own process, shared by the module's tests."""
    proc, port = start_local_app_proc()
    try:
        yield port
    finally:
        proc.terminate()


@contextlib.contextmanager
def running_gateway(*args: str) -> Iterator[Gateway]:
    """``tunnelgate server *args`` on a free port, terminated on leaving the block."""
    proc, port = start_gateway(*args)
    try:
        yield Gateway(proc, port)
    finally:
        proc.terminate()


@pytest.fixture(scope="module")
def anon_gw() -> Iterator[Gateway]:
    """A gateway on the defaults: anonymous tunnels, default reserved names."""
    with running_gateway() as gw:
        yield gw


@pytest.fixture(scope="module")
def token_gw() -> Iterator[Gateway]:
    """A gateway accepting two tokens (two owners), with a short reconnect grace."""
    with running_gateway(
        "--token",
        "alice",
        "--token",
        "bob",
        "--reconnect-grace",
        str(GRACE),
        "--auth-fail-rate",
        "1000",  # the failed-auth tests here must not trip the limit
    ) as gw:
        yield gw


class Clients:
    """Starts tunnel clients for one test and terminates them all after it."""

    def __init__(self, app_port: int) -> None:
        self.app_port = app_port
        self.procs: list[Proc] = []

    def http(
        self,
        gw: Gateway,
        *args: str,
        env: Mapping[str, str] | None = None,
    ) -> Proc:
        """``tunnelgate http APP_PORT --server GW *args --log-format json``."""
        return self.start("http", str(self.app_port), "--server", gw.server, *args, env=env)

    def start(self, *args: str, env: Mapping[str, str] | None = None) -> Proc:
        proc = start_client(*args, env=env)
        self.procs.append(proc)
        return proc

    def close(self) -> None:
        for proc in reversed(self.procs):
            proc.signal(signal.SIGCONT)  # a test may have left one stopped
            proc.terminate()


@pytest.fixture
def clients(app_port: int) -> Iterator[Clients]:
    spawner = Clients(app_port)
    try:
        yield spawner
    finally:
        spawner.close()


# --- assertions -------------------------------------------------------------------------------
def _is_ready(obj: JsonObject) -> bool:
    return obj.get("event") == "tunnel_ready"


async def assert_serves(gw: Gateway, name: str) -> None:
    """The tunnel ``name`` reaches the local app (its ``/`` says hello)."""
    response = await gw.get(name)
    assert (response.status, response.body) == (200, b"hello\n"), response


async def assert_gateway_error(gw: Gateway, name: str, status: int) -> RawResponse:
    """The gateway itself answers ``status`` for ``name``, marked as a gateway error."""
    response = await gw.get(name)
    assert response.status == status, response
    assert response.header("X-Tunnelgate-Error"), response
    assert gw.host(name).split(":")[0] in response.text, response
    return response


async def ready(proc: Proc, *, after: int = 0, timeout: float = 10.0) -> str:  # noqa: ASYNC109
    """The URL of the client's next ``tunnel_ready`` event."""
    return str((await wait_ready_async(proc, timeout, after=after))["url"])


# --- auth -------------------------------------------------------------------------------------
@pytest.mark.parametrize("token", [None, "wrong"], ids=["no-token", "wrong-token"])
async def test_client_with_missing_or_bad_token_exits_2(
    token_gw: Gateway, clients: Clients, token: str | None
) -> None:
    args = ("--token", token) if token else ()
    proc = clients.http(token_gw, "--subdomain", "auth-fail", *args)
    await assert_rejected(proc, "token", "auth")
    await assert_gateway_error(token_gw, "auth-fail", 404)


def _connect_request(port: int, key: str, authorization: str | None) -> bytes:
    extra = [("Sec-WebSocket-Protocol", SUBPROTOCOL)]
    if authorization is not None:
        extra.append(("Authorization", authorization))
    return ws.upgrade_request("/connect", f"127.0.0.1:{port}", key, extra)


@pytest.mark.parametrize(
    "authorization",
    [None, "Bearer wrong", "Bearer ", "Basic YWxpY2U6", "alice", "Bearer alicex"],
    ids=["missing", "wrong", "empty", "basic-scheme", "no-scheme", "token-with-suffix"],
)
async def test_connect_upgrade_without_valid_token_is_401_before_upgrade(
    token_gw: Gateway, authorization: str | None
) -> None:
    raw = _connect_request(token_gw.port, ws.new_key(), authorization)
    async with await open_connection(token_gw.port) as conn:
        await conn.send(raw)
        response = await conn.read_response(interim=True)  # a 101 would show up here
        assert response.status == 401, response
        assert response.header("X-Tunnelgate-Error"), response
        assert response.header("Upgrade") is None, response
        assert await conn.read_some() == b"", "the gateway keeps the refused connection open"


async def test_failed_auth_rate_refuses_bad_tokens_with_429_never_a_valid_one(
    clients: Clients,
) -> None:
    with running_gateway("--token", "alice", "--auth-fail-rate", "10") as gw:
        statuses = []
        retry_after = []
        for _ in range(15):  # a neighbour behind the same address guesses
            async with await open_connection(gw.port) as conn:
                await conn.send(_connect_request(gw.port, ws.new_key(), "Bearer wrong"))
                response = await conn.read_response(interim=True)
                statuses.append(response.status)
                if response.status == 429:
                    assert response.header("X-Tunnelgate-Error") == "too_many_auth_failures"
                    retry_after.append(int(response.header("Retry-After") or 0))
        # Ten failures are allowed; then bad tokens cool down for about a minute...
        assert statuses == [401] * 10 + [429] * 5
        assert all(55 <= seconds <= 60 for seconds in retry_after), retry_after
        # ...while a valid token from the same address still gets its tunnel.
        client = clients.http(gw, "--token", "alice", "--subdomain", "natted")
        assert await ready(client) == gw.url("natted")
        await assert_serves(gw, "natted")


@pytest.mark.parametrize("offered", ["tunnelgate.v1", "", "tunnelgate.v3, chat"])
async def test_connect_upgrade_without_our_version_is_400_before_upgrade(
    token_gw: Gateway, offered: str
) -> None:
    # A v1 client (before OPEN metadata carried the request) gets a clear refusal.
    extra = [("Authorization", "Bearer bob")]
    if offered:
        extra.append(("Sec-WebSocket-Protocol", offered))
    raw = ws.upgrade_request("/connect", f"127.0.0.1:{token_gw.port}", ws.new_key(), extra)
    async with await open_connection(token_gw.port) as conn:
        await conn.send(raw)
        response = await conn.read_response(interim=True)
        assert response.status == 400, response
        assert response.header("X-Tunnelgate-Error") == "unsupported_version", response
        assert SUBPROTOCOL in response.text, response


async def test_connect_upgrade_with_right_token_switches_protocols(token_gw: Gateway) -> None:
    # The control for the 401 test: the same request with the right token is upgraded.
    key = ws.new_key()
    async with await open_connection(token_gw.port) as conn:
        await conn.send(_connect_request(token_gw.port, key, "Bearer bob"))
        response = await conn.read_head()
        assert response.status == 101, response
        assert response.header("Sec-WebSocket-Accept") == ws.accept_key(key), response
        assert response.header("Sec-WebSocket-Protocol") == SUBPROTOCOL, response


@pytest.mark.parametrize("via", ["flag", "env"])
async def test_client_with_right_token_tunnels(
    token_gw: Gateway, clients: Clients, via: str
) -> None:
    name = f"authed-{via}"
    if via == "flag":
        proc = clients.http(token_gw, "--subdomain", name, "--token", "alice")
    else:
        proc = clients.http(token_gw, "--subdomain", name, env={"TUNNELGATE_TOKEN": "alice"})
    assert await ready(proc) == token_gw.url(name)
    await assert_serves(token_gw, name)


# --- names ------------------------------------------------------------------------------------
async def test_taken_name_is_refused_and_first_owner_keeps_serving(
    anon_gw: Gateway, clients: Clients
) -> None:
    first = clients.http(anon_gw, "--subdomain", "taken")
    assert await ready(first) == anon_gw.url("taken")
    second = clients.http(anon_gw, "--subdomain", "taken")
    line = await assert_rejected(second, "in use", "taken")
    assert "taken" in line
    assert first.returncode is None, first.output()
    await assert_serves(anon_gw, "taken")
    # Upper case is the same name: also refused.
    third = clients.http(anon_gw, "--subdomain", "TAKEN")
    await assert_rejected(third, "in use", "taken")
    await assert_serves(anon_gw, "taken")


async def test_taken_name_is_refused_even_for_the_same_token(
    token_gw: Gateway, clients: Clients
) -> None:
    # SPEC: "A name belongs to one live tunnel. A second tunnel asking for it is rejected."
    # Only a dropped tunnel's name may be taken back by its owner (the same token).
    first = clients.http(token_gw, "--subdomain", "shared", "--token", "alice")
    assert await ready(first) == token_gw.url("shared")
    second = clients.http(token_gw, "--subdomain", "shared", "--token", "alice")
    await assert_rejected(second, "in use", "taken")
    mark = len(first.stdout_lines)
    await assert_serves(token_gw, "shared")
    # ... served by the first client, which is still online.
    request = await first.wait_for_json_async(lambda obj: obj.get("event") == "request", after=mark)
    assert request["path"] == "/"


@pytest.mark.parametrize("name", ["admin", "www", "api", "tunnel", "Admin"])
async def test_default_reserved_names_are_refused(
    anon_gw: Gateway, clients: Clients, name: str
) -> None:
    line = await assert_rejected(clients.http(anon_gw, "--subdomain", name), "reserved")
    assert name.lower() in line
    if name != "tunnel":  # tunnel.<domain> is the gateway's own host
        await assert_gateway_error(anon_gw, name.lower(), 404)


async def test_custom_reserved_list_is_refused(clients: Clients) -> None:
    with running_gateway("--reserved", "staging,qa") as gw:
        for name in ("staging", "qa"):
            line = await assert_rejected(clients.http(gw, "--subdomain", name), "reserved")
            assert name in line
        # A name on neither list is still free.
        proc = clients.http(gw, "--subdomain", "prod")
        assert await ready(proc) == gw.url("prod")
        await assert_serves(gw, "prod")


@pytest.mark.parametrize(
    "name",
    ["-bad", "bad-", "a_b", "a" * 64, "a.b", "caf\u00e9", "sp ace", ""],
    ids=[
        "leading-dash",
        "trailing-dash",
        "underscore",
        "64-chars",
        "dot",
        "non-ascii",
        "space",
        "empty",
    ],
)
async def test_invalid_names_are_refused(anon_gw: Gateway, clients: Clients, name: str) -> None:
    await assert_rejected(
        # "--subdomain=-bad": "-bad" alone would be taken for an option by the parser.
        clients.http(anon_gw, f"--subdomain={name}"),
        "invalid",
        "not a valid",
        "dns label",
    )


async def test_longest_valid_name_is_accepted(anon_gw: Gateway, clients: Clients) -> None:
    name = "a" + "0-" * 30 + "z1"  # 63 characters
    assert len(name) == 63
    assert await ready(clients.http(anon_gw, "--subdomain", name)) == anon_gw.url(name)
    await assert_serves(anon_gw, name)


async def test_subdomain_is_folded_to_lower_case(anon_gw: Gateway, clients: Clients) -> None:
    proc = clients.http(anon_gw, "--subdomain", "MyApp")
    assert await ready(proc) == anon_gw.url("myapp")
    await assert_serves(anon_gw, "myapp")
    await assert_serves(anon_gw, "MYAPP")  # Host names are case-insensitive


async def test_random_names_are_long_lower_case_and_route(
    anon_gw: Gateway, clients: Clients
) -> None:
    pattern = re.compile(rf"http://([a-z0-9]{{8,63}})\.localhost:{anon_gw.port}")
    names = []
    for _ in range(2):
        url = await ready(clients.http(anon_gw))
        match = pattern.fullmatch(url)
        assert match is not None, url
        names.append(match.group(1))
        await assert_serves(anon_gw, match.group(1))
    assert names[0] != names[1]


# --- several tunnels on one connection --------------------------------------------------------
async def test_start_config_serves_two_tunnels_on_one_connection(
    anon_gw: Gateway, clients: Clients, app_port: int, tmp_path: Path
) -> None:
    other_proc, other_port = start_local_app_proc()
    with other_proc:
        config = tmp_path / "tunnels.toml"
        config.write_text(
            f'server = "{anon_gw.server}"\n'
            "[tunnels.web]\n"
            'proto = "http"\n'
            f'addr = "{app_port}"\n'
            'subdomain = "two-web"\n'
            "[tunnels.api]\n"
            'proto = "http"\n'
            f'addr = "127.0.0.1:{other_port}"\n'
        )
        mark = anon_gw.mark()
        proc = clients.start("start", "--config", str(config))
        web = await proc.wait_for_json_async(_ready_for("web"))
        api = await proc.wait_for_json_async(_ready_for("api"))
        assert web["url"] == anon_gw.url("two-web")
        api_name = str(api["url"]).removeprefix("http://").split(".")[0]
        assert re.fullmatch(r"[a-z0-9]{8,63}", api_name), api

        # Each tunnel reaches its own app, and only that one.
        before = await _requests_served(app_port), await _requests_served(other_port)
        await assert_serves(anon_gw, "two-web")
        await assert_serves(anon_gw, api_name)
        await assert_serves(anon_gw, api_name)
        after = await _requests_served(app_port), await _requests_served(other_port)
        assert (after[0] - before[0], after[1] - before[1]) == (1, 2)

        # One connection: both names were registered by the same client address.
        web_reg = await anon_gw.wait_event("tunnel_registered", after=mark, name="two-web")
        api_reg = await anon_gw.wait_event("tunnel_registered", after=mark, name=api_name)
        assert web_reg["client"] == api_reg["client"]
        assert len(anon_gw.events("tunnel_connected", after=mark, client=web_reg["client"])) == 1


async def _requests_served(app_port: int) -> int:
    """How many requests the local app on ``app_port`` has served (its /stats, asked directly)."""
    response = await http_request(app_port, build_request("GET", "/stats"))
    assert response.status == 200, response
    count: int = response.json()["requests"]
    return count


def _ready_for(tunnel: str) -> Callable[[JsonObject], bool]:
    return lambda obj: _is_ready(obj) and obj.get("name") == tunnel


# --- clean stop -------------------------------------------------------------------------------
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
@pytest.mark.parametrize("served", [False, True], ids=["idle", "after-a-request"])
async def test_signal_stops_client_cleanly_and_frees_name_at_once(
    anon_gw: Gateway, clients: Clients, sig: signal.Signals, served: bool
) -> None:
    name = f"stop-{sig.name.lower()}-{int(served)}"
    proc = clients.http(anon_gw, "--subdomain", name)
    assert await ready(proc) == anon_gw.url(name)
    if served:
        await assert_serves(anon_gw, name)  # the client now holds a pooled local connection

    proc.signal(sig)
    code = await proc.wait_exit_async(EXIT_TIMEOUT)
    # The goodbye happened before the exit: the name is free now, not held for a grace.
    await assert_gateway_error(anon_gw, name, 404)
    successor = clients.http(anon_gw, "--subdomain", name)
    assert await ready(successor) == anon_gw.url(name)
    await assert_serves(anon_gw, name)

    assert code == 0, proc.output()
    assert not [line for line in proc.stderr_lines if "Traceback" in line], proc.output()


# --- dropped clients and the reconnect grace --------------------------------------------------
async def test_killed_client_holds_name_for_grace_then_frees_it(
    token_gw: Gateway, clients: Clients
) -> None:
    name = "dropped"
    proc = clients.http(token_gw, "--subdomain", name, "--token", "alice")
    assert await ready(proc) == token_gw.url(name)
    await assert_serves(token_gw, name)

    mark = token_gw.mark()
    proc.signal(signal.SIGKILL)
    await proc.wait_exit_async(EXIT_TIMEOUT)
    await token_gw.wait_event("tunnel_dropped", after=mark, name=name)

    # In the grace: the gateway answers for the lost tunnel, and another owner cannot take it.
    await assert_gateway_error(token_gw, name, 502)
    rival = clients.http(token_gw, "--subdomain", name, "--token", "bob")
    await assert_rejected(rival, "in use", "taken")
    assert not token_gw.events("tunnel_expired", after=mark, name=name), (
        f"the {GRACE}s grace ran out before the rival was refused: the test is too slow here"
    )
    await assert_gateway_error(token_gw, name, 502)

    # After the grace: nobody's name.
    await token_gw.wait_event("tunnel_expired", after=mark, name=name, timeout=GRACE + 10)
    await assert_gateway_error(token_gw, name, 404)
    successor = clients.http(token_gw, "--subdomain", name, "--token", "bob")
    assert await ready(successor) == token_gw.url(name)
    await assert_serves(token_gw, name)


async def test_same_owner_takes_dropped_name_back_within_grace(
    token_gw: Gateway, clients: Clients
) -> None:
    name = "comeback"
    proc = clients.http(token_gw, "--subdomain", name, "--token", "alice")
    # A second dropped tunnel whose grace ends after the first one's: a clock for the test.
    sentinel = clients.http(token_gw, "--subdomain", "sentinel", "--token", "alice")
    assert await ready(proc) == token_gw.url(name)
    assert await ready(sentinel) == token_gw.url("sentinel")
    mark = token_gw.mark()
    proc.signal(signal.SIGKILL)
    await proc.wait_exit_async(EXIT_TIMEOUT)
    await token_gw.wait_event("tunnel_dropped", after=mark, name=name)
    await assert_gateway_error(token_gw, name, 502)

    again = clients.http(token_gw, "--subdomain", name, "--token", "alice")
    assert await ready(again) == token_gw.url(name)
    await assert_serves(token_gw, name)
    # The gateway logs it as the owner coming back, not as a new tunnel.
    await token_gw.wait_event("tunnel_reconnected", after=mark, name=name)
    assert not token_gw.events("tunnel_registered", after=mark, name=name)

    # The old tunnel's grace runs out: it must not free the name its owner took back.
    sentinel.signal(signal.SIGKILL)
    await sentinel.wait_exit_async(EXIT_TIMEOUT)
    await token_gw.wait_event("tunnel_expired", after=mark, name="sentinel", timeout=GRACE + 10)
    await assert_serves(token_gw, name)
    assert not token_gw.events("tunnel_expired", after=mark, name=name)


# --- reconnect after a gateway restart --------------------------------------------------------
HEARTBEAT_ARGS = ("--heartbeat-interval", "0.5", "--heartbeat-timeout", "1.5")


@pytest.mark.parametrize(
    ("subdomain", "stop"),
    [("restart", signal.SIGKILL), (None, signal.SIGTERM)],
    ids=["explicit-name-gateway-killed", "random-name-gateway-terminated"],
)
async def test_client_reconnects_to_restarted_gateway_and_keeps_its_name(
    clients: Clients, subdomain: str | None, stop: signal.Signals
) -> None:
    args = (*HEARTBEAT_ARGS, "--reconnect-grace", "5")
    first_proc, port = start_gateway(*args)
    gateways = [Gateway(first_proc, port)]
    try:
        proc = clients.http(gateways[0], *(("--subdomain", subdomain) if subdomain else ()))
        url = await ready(proc)
        name = url.removeprefix("http://").split(".")[0]
        if subdomain is not None:
            assert name == subdomain
        await assert_serves(gateways[0], name)

        mark = len(proc.stdout_lines)
        first_proc.signal(stop)
        await first_proc.wait_exit_async(EXIT_TIMEOUT)
        gateways.append(start_gateway_on(port, *args))

        assert await ready(proc, after=mark, timeout=RECONNECT_TIMEOUT) == url
        events = [obj.get("event") for obj in proc.json_lines()]
        assert "reconnecting" in events, proc.output()
        await assert_serves(gateways[1], name)
        assert proc.returncode is None, proc.output()
    finally:
        for gw in reversed(gateways):
            gw.proc.terminate()


# --- heartbeats -------------------------------------------------------------------------------
async def test_idle_tunnel_is_closed_with_its_reason_and_the_client_stops(
    clients: Clients,
) -> None:
    idle = ("--idle-timeout", "0.6", "--heartbeat-interval", "0.2", "--heartbeat-timeout", "2")
    with running_gateway(*idle) as gw:
        name = "idler"
        proc = clients.http(gw, "--subdomain", name)
        assert await ready(proc) == gw.url(name)
        # No traffic: the gateway closes the tunnel and tells the client why; retrying
        # would only idle again, so the client stops (status 1) instead of reconnecting.
        assert await proc.wait_exit_async(10.0) == 1
        closed = [e for e in proc.json_lines() if e.get("event") == "closed"]
        assert closed, proc.output()
        assert "idle" in str(closed[0].get("reason")), closed
        # Closed on purpose, not dropped: the name is free at once, not held for a grace.
        await assert_gateway_error(gw, name, 404)
        assert gw.events("tunnel_idle"), "the gateway logs why it closed the tunnel"


async def test_frozen_client_is_dropped_after_heartbeat_timeout(clients: Clients) -> None:
    with running_gateway(*HEARTBEAT_ARGS) as gw:
        name = "frozen"
        proc = clients.http(gw, "--subdomain", name)
        assert await ready(proc) == gw.url(name)
        await assert_serves(gw, name)

        mark, out_mark = gw.mark(), len(proc.stdout_lines)
        proc.signal(signal.SIGSTOP)
        try:
            await gw.wait_event("tunnel_dropped", after=mark, name=name, timeout=10.0)
            await assert_gateway_error(gw, name, 502)  # held for its owner
        finally:
            proc.signal(signal.SIGCONT)
        # Thawed, the client finds its connection gone, reconnects and takes its name back.
        assert await ready(proc, after=out_mark, timeout=RECONNECT_TIMEOUT) == gw.url(name)
        await assert_serves(gw, name)


# --- limits -----------------------------------------------------------------------------------
async def test_tunnels_per_token_are_limited(clients: Clients) -> None:
    with running_gateway("--token", "alice", "--max-tunnels-per-token", "1") as gw:
        first = clients.http(gw, "--subdomain", "one", "--token", "alice")
        assert await ready(first) == gw.url("one")
        second = clients.http(gw, "--subdomain", "two", "--token", "alice")
        await assert_rejected(second, "too_many_tunnels", "too many")
        await assert_serves(gw, "one")  # the first one is untouched


async def test_streams_per_tunnel_are_limited_with_503(clients: Clients) -> None:
    with running_gateway("--max-streams", "1") as gw:
        proc = clients.http(gw, "--subdomain", "narrow")
        assert await ready(proc) == gw.url("narrow")
        key = "hold-the-stream"
        async with await open_connection(gw.port) as held:
            # An event stream that sends its first event, then waits for a release: once that
            # event is read, the request holds the tunnel's only stream.
            await held.send(
                build_request("GET", f"/sse?n=2&wait=1&key={key}", host=gw.host("narrow"))
            )
            head = await held.read_head()
            assert head.status == 200, head
            assert b"data:" in await held.read_some()
            busy = await gw.get("narrow")
            assert busy.status == 503, busy
            assert busy.header("X-Tunnelgate-Error") == "tunnel_busy"
            release = build_request("GET", f"/release?key={key}", host="127.0.0.1")
            assert (await http_request(clients.app_port, release)).status == 200
            # Read the stream to its end: then its tunnel stream is closed on both sides.
            rest = b""
            while not rest.endswith(b"0\r\n\r\n"):
                piece = await held.read_some()
                assert piece, "the event stream ended without its last chunk"
                rest += piece
        await assert_serves(gw, "narrow")  # the stream is free again


async def test_client_gives_up_after_max_retries(clients: Clients) -> None:
    dead = f"ws://127.0.0.1:{free_port()}/connect"  # nothing listens there
    proc = clients.start("http", str(clients.app_port), "--server", dead, "--max-retries", "1")
    assert await proc.wait_exit_async(EXIT_TIMEOUT) == 1
    assert any("giving up" in str(e) for e in proc.json_lines()), proc.output()
