"""The graceful drain on SIGTERM (SPEC: `--drain-timeout`; docs/architecture.md, "Drain").

Real gateway, client and local app processes on loopback. The app holds responses until
the test releases them (`/slow?key=`, `/bytes?hold=`, `/sse?wait=1`), asked on its own
port: the gateway's listener is closed by then. Every wait is on a log line, a response
or an exit, with a deadline.
"""

from __future__ import annotations

import hashlib
import signal
from collections.abc import Callable, Iterator

import pytest
from e2e_support import TunnelEnv, start_tunnel_env, wait_log_line

from tunnelgate.testing.local_app import expected_bytes_sha256
from tunnelgate.testing.proc import JsonObject
from tunnelgate.testing.processes import (
    build_request,
    free_port,
    free_port_range,
    http_request,
    open_connection,
    start_client,
    start_gateway,
    wait_ready_async,
)
from tunnelgate.testing.tcp_app import start_tcp_app

EXIT_TIMEOUT = 10.0  # seconds: a drain with nothing left open ends at once
BODY = 1_000_000  # bytes of /bytes, held after the first block


@pytest.fixture
def env() -> Iterator[TunnelEnv]:
    """Each test ends its gateway: one environment per test."""
    with start_tunnel_env() as env:
        yield env


async def _admin_health(port: int) -> tuple[int, bytes]:
    response = await http_request(port, build_request("GET", "/healthz"))
    return response.status, response.body


async def _release(env: TunnelEnv, key: str) -> None:
    response = await http_request(env.app_port, build_request("GET", f"/release?key={key}"))
    assert response.status == 200, response


async def _drain_started(env: TunnelEnv, after: int) -> JsonObject:
    return await env.wait_gateway_event(lambda o: o.get("event") == "drain_started", after=after)


async def _drain_finished(env: TunnelEnv, after: int) -> JsonObject:
    return await env.wait_gateway_event(lambda o: o.get("event") == "drain_finished", after=after)


async def test_slow_request_completes_byte_exact_then_gateway_exits_0(env: TunnelEnv) -> None:
    target = f"/bytes?n={BODY}&seed=7&hold=drain-bytes"
    async with await env.connect() as conn:
        await conn.send(env.build("GET", target))
        head = await conn.read_head()
        assert head.status == 200, head
        assert head.framing == "length", head
        pieces = conn.iter_body(head)
        first = await anext(pieces)
        mark = env.gateway_mark()
        env.gateway.signal(signal.SIGTERM)
        started = await _drain_started(env, mark)
        assert started["streams"] == 1, started
        assert started["timeout_s"] == 30, started
        await _release(env, "drain-bytes")
        body = first + b"".join([piece async for piece in pieces])
        assert await conn.read_some() == b"", "the connection stayed open after its last response"
    assert len(body) == BODY
    assert hashlib.sha256(body).hexdigest() == expected_bytes_sha256(BODY, 7)
    assert await env.gateway.wait_exit_async(EXIT_TIMEOUT) == 0
    finished = await _drain_finished(env, mark)
    assert finished["ended"] == "idle", finished
    assert finished["cut_streams"] == 0, finished
    line = await env.wait_gateway_request(target, after=mark)
    assert line["aborted"] is False, line


async def test_response_held_before_its_head_says_connection_close(env: TunnelEnv) -> None:
    async with await env.connect() as conn:
        await conn.send(env.build("GET", "/slow?key=drain-head"))
        await env.wait_app_requests(1)
        mark = env.gateway_mark()
        env.gateway.signal(signal.SIGTERM)
        await _drain_started(env, mark)
        await _release(env, "drain-head")
        response = await conn.read_response()
        assert response.status == 200, response
        assert response.body == b"slow\n"
        assert response.header("Connection") == "close", response.raw_head
        assert await conn.read_some() == b"", "kept alive after `Connection: close`"
    assert await env.gateway.wait_exit_async(EXIT_TIMEOUT) == 0


async def test_streamed_response_finishes_during_drain(env: TunnelEnv) -> None:
    target = "/sse?n=5&wait=1&key=drain-sse"
    async with await env.connect() as conn:
        await conn.send(env.build("GET", target))
        head = await conn.read_head()
        assert head.status == 200, head
        assert head.framing == "chunked", head
        events = conn.iter_body(head)
        first = await anext(events)
        assert b"event 0" in first
        mark = env.gateway_mark()
        env.gateway.signal(signal.SIGTERM)
        await _drain_started(env, mark)
        await _release(env, "drain-sse")
        rest = b"".join([piece async for piece in events])
    body = (first + rest).decode()
    assert [f"data: event {i}" in body for i in range(5)] == [True] * 5, body
    assert await env.gateway.wait_exit_async(EXIT_TIMEOUT) == 0
    finished = await _drain_finished(env, mark)
    assert finished["ended"] == "idle", finished


async def test_upgraded_connection_carries_on_until_it_ends(env: TunnelEnv) -> None:
    upgrade = [("Connection", "Upgrade"), ("Upgrade", "echo")]
    async with await env.connect() as conn:
        await conn.send(env.build("GET", "/upgrade-raw", headers=upgrade))
        assert (await conn.read_head()).status == 101
        mark = env.gateway_mark()
        env.gateway.signal(signal.SIGTERM)
        started = await _drain_started(env, mark)
        assert started["streams"] == 1, started
        for piece in (b"still ", b"echoed"):  # both ways, after the drain began
            await conn.send(piece)
            assert await conn.read_exactly(len(piece)) == piece
        assert env.gateway.returncode is None
        await conn.write_eof()
        assert await conn.read_until_eof() == b""
    assert await env.gateway.wait_exit_async(EXIT_TIMEOUT) == 0
    finished = await _drain_finished(env, mark)
    assert finished["ended"] == "idle", finished


async def test_listener_closed_and_idle_keep_alive_closed() -> None:
    admin = free_port()
    with start_tunnel_env(gateway_args=["--admin", f"127.0.0.1:{admin}"]) as env:
        await _listener_closed_and_idle_keep_alive_closed(env, admin)


async def _listener_closed_and_idle_keep_alive_closed(env: TunnelEnv, admin: int) -> None:
    assert await _admin_health(admin) == (200, b"ok\n")
    idle = await env.connect()
    await idle.send(env.build("GET", "/"))
    assert (await idle.read_response()).header("Connection") is None  # kept alive
    async with await env.connect() as busy:
        await busy.send(env.build("GET", "/slow?key=drain-listener"))
        await env.wait_app_requests(2)
        mark = env.gateway_mark()
        env.gateway.signal(signal.SIGTERM)
        started = await _drain_started(env, mark)
        assert started["connections"] == 2, started
        # Between requests: closed at once, without a byte.
        assert await idle.read_until_eof() == b""
        await idle.aclose()
        with pytest.raises(ConnectionRefusedError):
            await open_connection(env.gateway_port)
        # The admin listener stays up through the drain, and says so.
        assert await _admin_health(admin) == (503, b"draining\n")
        await _release(env, "drain-listener")
        response = await busy.read_response()
        assert response.status == 200, response
        assert response.header("Connection") == "close", response.raw_head
    assert await env.gateway.wait_exit_async(EXIT_TIMEOUT) == 0


async def test_client_reconnects_to_a_gateway_restarted_on_the_same_port(
    env: TunnelEnv,
) -> None:
    name_before = env.name
    client_mark = env.client_mark()
    mark = env.gateway_mark()
    env.gateway.signal(signal.SIGTERM)
    await _drain_started(env, mark)
    assert await env.gateway.wait_exit_async(EXIT_TIMEOUT) == 0
    dropped = [o for o in env.gateway_events(mark) if o.get("event") == "tunnel_disconnected"]
    assert len(dropped) == 1, dropped
    assert dropped[0]["clean"] is False, dropped  # the name is held, not freed
    new, _ = start_gateway(port=env.gateway_port)
    try:
        env.gateway = new
        ready = await wait_ready_async(env.client, after=client_mark)
        assert ready["url"] == env.url  # the same name on the same port
        assert env.name == name_before
        response = await env.get("/")
        assert response.status == 200, response
        assert response.body == b"hello\n", response
        assert env.client.returncode is None
    finally:
        new.terminate()


async def test_a_gateway_started_on_the_port_while_the_old_one_drains_takes_over(
    env: TunnelEnv,
) -> None:
    old = env.gateway
    async with await env.connect() as conn:
        await conn.send(env.build("GET", "/slow?key=drain-handover"))
        await env.wait_app_requests(1)
        client_mark, mark = env.client_mark(), env.gateway_mark()
        old.signal(signal.SIGTERM)
        await _drain_started(env, mark)
        new, _ = start_gateway(port=env.gateway_port)  # binds: the old listener is closed
        try:
            assert env.client_events(client_mark, "tunnel_ready") == []  # still serving
            await _release(env, "drain-handover")
            response = await conn.read_response()
            assert response.body == b"slow\n", response
            assert await old.wait_exit_async(EXIT_TIMEOUT) == 0
            env.gateway = new
            ready = await wait_ready_async(env.client, after=client_mark)
            assert ready["url"] == env.url
            assert (await env.get("/")).body == b"hello\n"
        finally:
            new.terminate()


async def test_second_signal_cuts_off_at_once(env: TunnelEnv) -> None:
    target = f"/bytes?n={BODY}&hold=drain-cut&close=1"  # no framing: only a reset tells
    async with await env.connect() as conn:
        await conn.send(env.build("GET", target))
        assert (await conn.read_head()).status == 200
        assert await conn.read_some(), "the first block never came"
        mark = env.gateway_mark()
        env.gateway.signal(signal.SIGTERM)
        await _drain_started(env, mark)
        env.gateway.signal(signal.SIGTERM)
        with pytest.raises(ConnectionResetError):
            await conn.read_until_eof()
    assert await env.gateway.wait_exit_async(EXIT_TIMEOUT) == 0  # well inside the 30 s
    finished = await _drain_finished(env, mark)
    assert finished["ended"] == "signal", finished
    assert finished["cut_streams"] == 1, finished
    line = await env.wait_gateway_request(target, after=mark)
    assert line["aborted"] is True, line


@pytest.mark.parametrize(
    ("framing", "query"),
    [
        pytest.param("close", "&close=1", id="close-delimited"),
        pytest.param("length", "", id="content-length"),
    ],
)
async def test_drain_timeout_cuts_off_what_is_still_open(framing: str, query: str) -> None:
    with start_tunnel_env(gateway_args=["--drain-timeout", "0.5"]) as env:
        target = f"/bytes?n={BODY}&hold=drain-timeout{query}"
        async with await env.connect() as conn:
            await conn.send(env.build("GET", target))
            head = await conn.read_head()
            assert head.status == 200
            received = await conn.read_some()
            mark = env.gateway_mark()
            env.gateway.signal(signal.SIGTERM)
            reset = False
            try:
                while piece := await conn.read_some():
                    received += piece
            except ConnectionResetError:
                reset = True
        assert await env.gateway.wait_exit_async(EXIT_TIMEOUT) == 0
        finished = await _drain_finished(env, mark)
        line = await env.wait_gateway_request(target, after=mark)
    assert finished["ended"] == "timeout", finished
    assert finished["cut_streams"] == 1, finished
    assert finished["cut_tunnels"] == 1, finished
    assert line["aborted"] is True, line
    if framing == "close":
        assert reset, "a cut close-delimited body ended with a clean FIN"
    else:
        assert len(received) < BODY  # short of its Content-Length


async def test_tcp_connection_carries_on_and_its_port_stops_listening() -> None:
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
            mark = len(gateway.stderr_lines)
            gateway.signal(signal.SIGTERM)
            started = await wait_log_line(gateway, _is("drain_started"), after=mark)
            assert started["streams"] == 1, started
            with pytest.raises(ConnectionRefusedError):
                await open_connection(public)
            await conn.send(b"during")
            assert await conn.read_exactly(6) == b"during"
            await conn.write_eof()  # the echo ends its side too
            assert await conn.read_until_eof() == b""
        assert await gateway.wait_exit_async(EXIT_TIMEOUT) == 0
        finished = await wait_log_line(gateway, _is("drain_finished"), after=mark)
        assert finished["ended"] == "idle", finished
    finally:
        client.terminate()
        gateway.terminate()
        await app.aclose()


def _is(event: str) -> Callable[[JsonObject], bool]:
    return lambda obj: obj.get("event") == event
