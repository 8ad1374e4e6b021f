"""The client's side of TCP and TLS tunnels, end to end: a real client process
(``python -m tunnelgate tcp|tls ...``) and a real local service (testing/tcp_app.py), with a
``ScriptedGateway`` (testing/scripted_gateway.py) on this test's event loop opening the
streams a public connection would. The gateway's own side (public ports, SNI routing) is
tested against the real gateway in test_tcp_tunnels.py."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterator

import pytest

from tunnelgate.proto.codes import ErrorCode, StreamKind
from tunnelgate.testing.proc import JsonObject
from tunnelgate.testing.processes import Proc, free_port, start_client, wait_ready_async
from tunnelgate.testing.scripted_gateway import ScriptedGateway
from tunnelgate.testing.tcp_app import TcpApp, start_tcp_app

TIMEOUT = 10.0
CLIENT_V4 = "203.0.113.9:4000"
CLIENT_V6 = "2001:db8::7:4000"  # as OPEN metadata carries IPv6: unbracketed


@pytest.fixture
async def gateway() -> AsyncIterator[ScriptedGateway]:
    async with ScriptedGateway() as gateway:
        yield gateway


@contextlib.contextmanager
def client(*args: str) -> Iterator[Proc]:
    proc = start_client(*args)
    try:
        yield proc
    finally:
        proc.terminate()


async def app_with(proxy: str | None) -> TcpApp:
    return await start_tcp_app(proxy=proxy)


async def connection_event(proc: Proc, after: int = 0) -> JsonObject:
    return await proc.wait_for_json_async(
        lambda obj: obj.get("event") == "connection", TIMEOUT, after=after
    )


async def test_bytes_both_ways_with_half_closes(gateway: ScriptedGateway) -> None:
    app = await app_with(None)
    try:
        with client("tcp", str(app.port), "--server", gateway.url) as proc:
            ready = await wait_ready_async(proc, TIMEOUT)
            assert ready["url"] == "tcp://localhost:20001"
            assert ready["local"] == f"127.0.0.1:{app.port}"
            stream = await gateway.open_stream(1, StreamKind.TCP, CLIENT_V4)
            payload = bytes(range(256)) * 4096  # 1 MiB: more than one window
            await stream.send(payload)
            assert await stream.wait_for(len(payload)) == payload  # echoed, still open
            await stream.end()  # the public client half-closes; the app echoes its EOF
            assert await stream.wait_end() == payload
            event = await connection_event(proc)
        [record] = await app.wait_connections(1)
    finally:
        await app.aclose()
    assert (record.echoed, record.half_closed, record.proxy) == (len(payload), True, None)
    assert {k: v for k, v in event.items() if k != "duration_ms"} == {
        "event": "connection",
        "tunnel": "tcp",
        "protocol": "tcp",
        "client": CLIENT_V4,
        "end": "closed",
        "bytes_in": len(payload),
        "bytes_out": len(payload),
    }


@pytest.mark.parametrize(
    ("command", "kind", "version", "public"),
    [
        ("tcp", StreamKind.TCP, "v1", CLIENT_V4),
        ("tcp", StreamKind.TCP, "v2", CLIENT_V6),
        ("tls", StreamKind.TLS, "v1", CLIENT_V6),
        ("tls", StreamKind.TLS, "v2", CLIENT_V4),
    ],
)
async def test_the_local_service_gets_the_public_address_in_a_proxy_header(
    gateway: ScriptedGateway, command: str, kind: StreamKind, version: str, public: str
) -> None:
    app = await app_with(version)
    name = ["--subdomain", "secure"] if command == "tls" else []
    try:
        args = [command, str(app.port), *name, "--proxy-protocol", version]
        with client(*args, "--server", gateway.url) as proc:
            await wait_ready_async(proc, TIMEOUT)
            stream = await gateway.open_stream(1, kind, public)
            await stream.send(b"first bytes", end=True)
            assert await stream.wait_end() == b"first bytes"  # the header is not echoed
        [record] = await app.wait_connections(1)
    finally:
        await app.aclose()
    assert record.error is None
    assert record.proxy is not None
    assert record.proxy.version == int(version[1])
    host, _, port = public.rpartition(":")
    assert record.proxy.source == (host, int(port))
    assert record.proxy.destination is not None
    assert record.proxy.destination[1] == app.port  # the service's own address


async def test_a_refused_local_port_resets_the_stream(gateway: ScriptedGateway) -> None:
    with client("tcp", str(free_port()), "--server", gateway.url) as proc:
        await wait_ready_async(proc, TIMEOUT)
        stream = await gateway.open_stream(1, StreamKind.TCP, CLIENT_V4)
        await stream.send(b"anyone?")
        # After the 2 s of retries a dev server gets to restart.
        assert await stream.wait_reset() == ErrorCode.CONNECT_ERROR
        event = await connection_event(proc)
    assert (event["end"], event["bytes_in"], event["bytes_out"]) == ("refused", 7, 0)


async def test_a_stream_of_another_kind_is_refused(gateway: ScriptedGateway) -> None:
    app = await app_with(None)
    try:
        with client("tcp", str(app.port), "--server", gateway.url) as proc:
            await wait_ready_async(proc, TIMEOUT)
            stream = await gateway.open_stream(1, StreamKind.TLS, CLIENT_V4)
            assert await stream.wait_reset() == ErrorCode.REFUSED_STREAM
    finally:
        await app.aclose()
    assert app.connections == []


async def test_a_reconnecting_client_asks_for_its_port_again(gateway: ScriptedGateway) -> None:
    with client("tcp", str(free_port()), "--server", gateway.url) as proc:
        ready = await wait_ready_async(proc, TIMEOUT)
        assert ready["url"] == "tcp://localhost:20001"
        mark = len(proc.stdout_lines)
        await gateway.drop()
        again = await wait_ready_async(proc, TIMEOUT, after=mark)
        assert again["url"] == "tcp://localhost:20001"
    first, second = gateway.registers
    assert (first.protocol, first.port) == ("tcp", None)  # the gateway picked it
    assert (second.protocol, second.port) == ("tcp", 20001)  # asked for by the client
    assert gateway.connections == 2
