"""The client's graceful stop on SIGTERM/SIGINT (SPEC: "close cleanly, the gateway frees the
name at once, exit status 0"; the client's `--drain-timeout`; docs/protocol.md §8).

Real gateway, client and local app processes on loopback. The app holds responses until
the test releases them (`/slow?key=`, asked on the app's own port), or answers after a
second (`/slow?ms=1000`). Every wait is on an output line, a response or an exit, with a
deadline.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator

import pytest
from e2e_support import EXIT_TIMEOUT, TunnelEnv, start_tunnel_env

from tunnelgate.testing.proc import JsonObject
from tunnelgate.testing.processes import (
    RawConnection,
    build_request,
    free_port_range,
    http_request,
    open_connection,
    start_client,
    start_gateway,
    wait_ready_async,
)
from tunnelgate.testing.tcp_app import start_tcp_app

# The cut-off cases stop at once or at a short drain timeout: well under the default 10 s,
# so a client that waited for the default would fail them.
PROMPT_EXIT = 3.0  # seconds


@pytest.fixture
def env() -> Iterator[TunnelEnv]:
    """Each test stops its client: one environment per test."""
    with start_tunnel_env() as env:
        yield env


async def _release(env: TunnelEnv, key: str) -> None:
    response = await http_request(env.app_port, build_request("GET", f"/release?key={key}"))
    assert response.status == 200, response


async def _client_event(env: TunnelEnv, event: str, after: int) -> JsonObject:
    return await env.client.wait_for_json_async(
        lambda o: o.get("event") == event, EXIT_TIMEOUT, after=after
    )


async def _held_request(env: TunnelEnv, key: str) -> RawConnection:
    """A public connection whose request the app holds until `key` is released."""
    conn = await env.connect()
    await conn.send(env.build("GET", f"/slow?key={key}"))
    await env.wait_app_requests(1)
    return conn


async def test_sigterm_during_a_slow_request_answers_it_then_exits_0(env: TunnelEnv) -> None:
    client_mark, gateway_mark = env.client_mark(), env.gateway_mark()
    async with await env.connect() as conn:
        await conn.send(env.build("GET", "/slow?ms=1000"))  # the app answers after 1 s
        await env.wait_app_requests(1)
        env.client.signal(signal.SIGTERM)
        draining = await _client_event(env, "draining", client_mark)
        assert draining["open_streams"] == 1, draining
        assert draining["timeout_s"] == 10, draining
        response = await conn.read_response()
    assert response.status == 200, response
    assert response.body == b"slow\n"
    assert await env.client.wait_exit_async(EXIT_TIMEOUT) == 0
    drained = await _client_event(env, "drained", client_mark)
    assert drained["ended"] == "idle", drained
    assert drained["cut_streams"] == 0, drained
    line = await env.wait_gateway_request("/slow?ms=1000", after=gateway_mark)
    assert line["status"] == 200, line
    assert line["aborted"] is False, line
    # A clean goodbye: the name was freed at once (SPEC), not held for the grace.
    closed = await env.wait_gateway_event(
        lambda o: o.get("event") == "tunnel_closed", after=gateway_mark
    )
    assert closed["name"] == env.name, closed
    assert not env.gateway_events(gateway_mark, "tunnel_dropped")


@pytest.mark.parametrize("grace_hold", [None, "5"])
async def test_a_request_arriving_during_the_drain_is_not_sent_to_the_client(
    grace_hold: str | None,
) -> None:
    gateway_args = [] if grace_hold is None else ["--grace-hold", grace_hold]
    with start_tunnel_env(gateway_args=gateway_args) as env:
        client_mark, gateway_mark = env.client_mark(), env.gateway_mark()
        async with await _held_request(env, "stop-new") as held:
            env.client.signal(signal.SIGTERM)
            leaving = await env.wait_gateway_event(
                lambda o: o.get("event") == "tunnel_leaving", after=gateway_mark
            )
            assert leaving["streams"] == 1, leaving
            # The name is free now: answered as one with no tunnel, at once, even with
            # --grace-hold (a clean goodbye holds nothing), while the client still drains.
            started = time.monotonic()
            fresh = await env.get("/")
            assert fresh.status == 404, fresh
            assert fresh.header("X-Tunnelgate-Error") == "no_tunnel", fresh
            assert time.monotonic() - started < PROMPT_EXIT
            assert env.client.returncode is None, "the client stopped before its request ended"
            assert (await env.app_stats())["requests"] == 1  # only the held one reached it
            await _release(env, "stop-new")
            response = await held.read_response()
        assert response.status == 200, response
        assert await env.client.wait_exit_async(EXIT_TIMEOUT) == 0
        served = [o.get("path") for o in env.client_events(client_mark, "request")]
        assert served == ["/slow?key=stop-new"], served


async def test_the_name_can_be_taken_again_while_the_old_client_drains(env: TunnelEnv) -> None:
    """A restart: the new client gets the name as soon as the old one said goodbye, and new
    requests go to it while the old one finishes its own."""
    client_mark, gateway_mark = env.client_mark(), env.gateway_mark()
    async with await _held_request(env, "stop-restart") as held:
        env.client.signal(signal.SIGTERM)
        await env.wait_gateway_event(
            lambda o: o.get("event") == "tunnel_leaving", after=gateway_mark
        )
        server = f"ws://127.0.0.1:{env.gateway_port}/connect"
        args = ["--server", server, "--subdomain", env.name]
        with start_client("http", str(env.app_port), *args) as second:
            ready = await wait_ready_async(second)
            assert ready["url"] == env.url
            response = await env.get("/")
            assert response.status == 200, response
            await second.wait_for_json_async(
                lambda o: o.get("event") == "request" and o.get("path") == "/", EXIT_TIMEOUT
            )
            assert env.client.returncode is None, "the old client stopped before its request"
            await _release(env, "stop-restart")
            old = await held.read_response()
            assert old.status == 200, old
            assert await env.client.wait_exit_async(EXIT_TIMEOUT) == 0
    served = [o.get("path") for o in env.client_events(client_mark, "request")]
    assert served == ["/slow?key=stop-restart"], served


async def test_a_second_signal_stops_at_once(env: TunnelEnv) -> None:
    client_mark = env.client_mark()
    async with await _held_request(env, "stop-twice") as held:
        env.client.signal(signal.SIGTERM)
        await _client_event(env, "draining", client_mark)
        started = time.monotonic()
        env.client.signal(signal.SIGINT)
        assert await env.client.wait_exit_async(PROMPT_EXIT) == 0
        assert time.monotonic() - started < PROMPT_EXIT
        response = await held.read_response()
        await _release(env, "stop-twice")
    assert response.status == 502, response  # cut off before its response began
    drained = await _client_event(env, "drained", client_mark)
    assert drained["ended"] == "signal", drained
    assert drained["cut_streams"] == 1, drained


async def test_the_drain_timeout_bounds_a_request_that_never_ends() -> None:
    with start_tunnel_env(client_args=["--drain-timeout", "0.5"]) as env:
        client_mark = env.client_mark()
        async with await _held_request(env, "stop-never") as held:
            started = time.monotonic()
            env.client.signal(signal.SIGTERM)
            assert await env.client.wait_exit_async(PROMPT_EXIT) == 0
            took = time.monotonic() - started
            response = await held.read_response()
            await _release(env, "stop-never")
        assert response.status == 502, response
        assert took >= 0.5, took
        drained = await _client_event(env, "drained", client_mark)
        assert drained["ended"] == "timeout", drained
        assert drained["duration_ms"] >= 500, drained
        assert drained["cut_streams"] == 1, drained


async def test_an_upgraded_connection_carries_on_during_the_drain(env: TunnelEnv) -> None:
    client_mark = env.client_mark()
    upgrade = [("Connection", "Upgrade"), ("Upgrade", "echo")]
    async with await env.connect() as conn:
        await conn.send(env.build("GET", "/upgrade-raw", headers=upgrade))
        assert (await conn.read_head()).status == 101
        env.client.signal(signal.SIGTERM)
        draining = await _client_event(env, "draining", client_mark)
        assert draining["open_streams"] == 1, draining
        for piece in (b"still ", b"echoed"):  # both ways, after the drain began
            await conn.send(piece)
            assert await conn.read_exactly(len(piece)) == piece
        assert env.client.returncode is None
        await conn.write_eof()
        assert await conn.read_until_eof() == b""
    assert await env.client.wait_exit_async(EXIT_TIMEOUT) == 0
    drained = await _client_event(env, "drained", client_mark)
    assert drained["ended"] == "idle", drained


async def test_an_idle_client_stops_at_once(env: TunnelEnv) -> None:
    client_mark = env.client_mark()
    started = time.monotonic()
    env.client.signal(signal.SIGTERM)
    assert await env.client.wait_exit_async(PROMPT_EXIT) == 0
    assert time.monotonic() - started < PROMPT_EXIT
    drained = await _client_event(env, "drained", client_mark)
    assert drained["ended"] in ("idle", "closed"), drained
    assert drained["cut_streams"] == 0, drained
    response = await env.get("/")
    assert response.status == 404, response  # freed at once, not held


async def test_a_tcp_connection_carries_on_and_the_port_is_freed_at_once() -> None:
    app = await start_tcp_app()
    low, high = free_port_range(2)
    gateway, port = start_gateway("--tcp-ports", f"{low}-{high}")
    client = start_client("tcp", str(app.port), "--server", f"ws://127.0.0.1:{port}/connect")
    try:
        ready = await wait_ready_async(client)
        public = int(str(ready["url"]).rsplit(":", 1)[1])
        async with await open_connection(public) as conn:
            await conn.send(b"before")
            assert await conn.read_exactly(6) == b"before"
            mark = len(client.stdout_lines)
            client.signal(signal.SIGTERM)
            await client.wait_for_json_async(lambda o: o.get("event") == "draining", EXIT_TIMEOUT)
            await conn.send(b"during")  # both ways, after the drain began
            assert await conn.read_exactly(6) == b"during"
            assert client.returncode is None
            await conn.write_eof()  # the echo ends its side too
            assert await conn.read_until_eof() == b""
        assert await client.wait_exit_async(EXIT_TIMEOUT) == 0
        drained = await client.wait_for_json_async(
            lambda o: o.get("event") == "drained", EXIT_TIMEOUT, after=mark
        )
        assert drained["ended"] == "idle", drained
        with pytest.raises(ConnectionRefusedError):  # freed: nobody listens on it
            await open_connection(public)
    finally:
        client.terminate()
        gateway.terminate()
        await app.aclose()
