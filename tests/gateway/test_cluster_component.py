"""Cross-node forwarding with three real gateways in this process sharing one registry.

A real client process holds the tunnels on node A; public clients reach them through
nodes B and C (HTTP, a large streamed upload, a WebSocket, a TCP port on B's own
--tcp-bind). Bad links are refused; an owner that cannot be reached gives 502.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import os
import time
from collections.abc import AsyncIterator, Iterator

import pytest
from cluster_support import SECRET, Node, events, in_process_cluster, poll_async, wait_events

from tunnelgate.gateway.registry import Claimed, Owner
from tunnelgate.logs import configure_logging
from tunnelgate.proto.link import LinkKind, Preamble, encode_preamble
from tunnelgate.testing import websocket as ws
from tunnelgate.testing.local_app import LocalApp, start_local_app
from tunnelgate.testing.processes import (
    Proc,
    build_request,
    free_port,
    free_port_range,
    http_request,
    open_connection,
    start_client,
    wait_ready_async,
)
from tunnelgate.testing.tcp_app import TcpApp, start_tcp_app

TIMEOUT = 10.0


@pytest.fixture
def log_stream() -> Iterator[io.StringIO]:
    stream = io.StringIO()
    configure_logging("json", stream=stream)
    try:
        yield stream
    finally:
        configure_logging("text")


@pytest.fixture
async def app() -> AsyncIterator[LocalApp]:
    local = await start_local_app()
    try:
        yield local
    finally:
        await local.aclose()


@pytest.fixture
async def tcp_app() -> AsyncIterator[TcpApp]:
    echo = await start_tcp_app()
    try:
        yield echo
    finally:
        await echo.aclose()


@pytest.fixture
async def cluster() -> AsyncIterator[list[Node]]:
    async with in_process_cluster(3, tcp_ports=free_port_range(4)) as nodes:
        yield nodes


async def client_on(node: Node, *args: str) -> Proc:
    proc, _ = await client_ready(node, *args)
    return proc


async def client_ready(node: Node, *args: str) -> tuple[Proc, str]:
    """The client, and the URL it printed."""
    proc = start_client(*args, "--server", node.server)
    try:
        ready = await wait_ready_async(proc)
    except BaseException:
        proc.terminate()
        raise
    return proc, str(ready["url"])


def host(name: str, node: Node) -> str:
    return f"{name}.localhost:{node.http_port}"


async def test_requests_reach_a_tunnel_through_every_node(
    cluster: list[Node], app: LocalApp, log_stream: io.StringIO
) -> None:
    a, b, c = cluster
    client = await client_on(a, "http", str(app.port), "--subdomain", "web")
    try:
        for node in (a, b, c):
            raw = build_request("GET", "/echo", host=host("web", node))
            response = await http_request(node.http_port, raw, timeout=TIMEOUT)
            assert response.status == 200, response.body
            headers = {k.lower(): v for k, v in response.json()["headers"]}
            assert headers["x-forwarded-for"] == "127.0.0.1"
            assert headers["x-forwarded-proto"] == "http"
            assert headers["host"] == host("web", node)
    finally:
        client.terminate()
    forwarded = await wait_events(log_stream, "cluster_forwarded", 2)
    assert [str(e["target"]) for e in forwarded] == ["web", "web"]
    assert {e["node"] for e in forwarded} == {a.name}
    counted = [node.gateway.cluster_counters for node in cluster]
    assert [c.adopted if c else None for c in counted] == [2, 0, 0]
    assert [sum(c.forwarded.values()) if c else None for c in counted] == [0, 1, 1]
    via = [e.get("via") for e in events(log_stream, "request") if e["path"] == "/echo"]
    assert sorted(via, key=str) == sorted([None, b.name, c.name], key=str)


async def test_keep_alive_and_pipelined_requests_follow_the_connection(
    cluster: list[Node], app: LocalApp
) -> None:
    a, b, _ = cluster
    client = await client_on(a, "http", str(app.port), "--subdomain", "keep")
    try:
        async with await open_connection(b.http_port, timeout=TIMEOUT) as conn:
            one = build_request("GET", "/", host=host("keep", b))
            await conn.send(one + one)  # pipelined: both go through the link
            for _ in range(2):
                assert (await conn.read_response()).body == b"hello\n"
            await conn.send(one)  # keep-alive, later
            assert (await conn.read_response()).body == b"hello\n"
    finally:
        client.terminate()


async def test_a_large_upload_is_streamed_through_another_node(
    cluster: list[Node], app: LocalApp
) -> None:
    a, _, c = cluster
    client = await client_on(a, "http", str(app.port), "--subdomain", "up")
    body = os.urandom(1 << 20) * 16  # 16 MiB
    try:
        async with await open_connection(c.http_port, timeout=TIMEOUT) as conn:
            head = build_request("POST", "/upload", host=host("up", c))[:-2]
            await conn.send(head + f"Content-Length: {len(body)}\r\n\r\n".encode())
            for at in range(0, len(body), 1 << 20):
                await conn.send(body[at : at + (1 << 20)])
            response = await conn.read_response(method="POST")
        assert response.status == 200
        assert response.json() == {"len": len(body), "sha256": hashlib.sha256(body).hexdigest()}
    finally:
        client.terminate()


async def test_a_websocket_upgrade_echoes_through_another_node(
    cluster: list[Node], app: LocalApp
) -> None:
    a, b, _ = cluster
    client = await client_on(a, "http", str(app.port), "--subdomain", "sock")
    key = ws.new_key()
    try:
        async with await open_connection(b.http_port, timeout=TIMEOUT) as conn:
            await conn.send(ws.upgrade_request("/ws", host("sock", b), key))
            head = await conn.read_head()
            assert head.status == 101
            assert head.header("Sec-WebSocket-Accept") == ws.accept_key(key)
            for payload in (b"hello", os.urandom(200_000)):
                await conn.send(ws.encode_frame(ws.OP_BINARY, payload))
                echoed = await conn.read_ws_frame()
                assert (echoed.opcode, echoed.payload) == (ws.OP_BINARY, payload)
    finally:
        client.terminate()


async def test_a_tcp_tunnel_is_reached_on_every_nodes_address(
    cluster: list[Node], tcp_app: TcpApp, log_stream: io.StringIO
) -> None:
    a, b, c = cluster
    client, url = await client_ready(a, "tcp", str(tcp_app.port))
    try:
        port = int(url.rsplit(":", 1)[1])
        payload = os.urandom(3 << 20)
        for node in (b, c):

            async def listening(node: Node = node) -> bool:
                try:
                    conn = await open_connection(port, host=node.bind, timeout=1.0)
                except OSError:
                    return False
                await conn.aclose()
                return True

            await poll_async(listening, TIMEOUT)  # the node follows the port's lease
            async with await open_connection(port, host=node.bind, timeout=TIMEOUT) as conn:
                await conn.send(payload)
                await conn.write_eof()
                echoed = await conn.read_until_eof()
            assert hashlib.sha256(echoed).digest() == hashlib.sha256(payload).digest()
    finally:
        client.terminate()
    # The probes above were forwarded too (and ended at once): the payload's lines only.
    size = len(payload)

    async def logged() -> bool:
        lines = events(log_stream, "cluster_forwarded") + events(log_stream, "tcp_connection")
        return sum(1 for e in lines if e["bytes_in"] == size) == 4

    await poll_async(logged, TIMEOUT)
    served = [e for e in events(log_stream, "tcp_connection") if e["bytes_in"] == size]
    assert sorted(str(e.get("via")) for e in served) == sorted([b.name, c.name])
    assert all(e["bytes_out"] == size for e in served)
    forwarded = [e for e in events(log_stream, "cluster_forwarded") if e["bytes_in"] == size]
    assert [(e["target"], e["node"], e["bytes_out"]) for e in forwarded] == [
        (f"port:{port}", a.name, size)
    ] * 2


async def test_a_name_nowhere_is_404_and_not_forwarded(
    cluster: list[Node], log_stream: io.StringIO
) -> None:
    _, b, _ = cluster
    raw = build_request("GET", "/", host=host("nobody", b))
    response = await http_request(b.http_port, raw, timeout=TIMEOUT)
    assert response.status == 404
    assert response.header("X-Tunnelgate-Error") == "no_tunnel"
    assert events(log_stream, "cluster_forwarded") == []


async def test_an_unreachable_owner_is_502_node_unreachable(cluster: list[Node]) -> None:
    a, b, _ = cluster
    dead = f"127.0.0.1:{free_port()}"
    await a.gateway.registry.claim("ghost", Owner("someone"), dead)
    raw = build_request("GET", "/", host=host("ghost", b))
    response = await http_request(b.http_port, raw, timeout=TIMEOUT)
    assert response.status == 502
    assert response.header("X-Tunnelgate-Error") == "node_unreachable"
    assert b.gateway.forwarder is not None
    assert b.gateway.forwarder.cache.get("ghost") is None  # dropped, asked again next time


async def test_a_forward_that_fails_unexpectedly_is_still_answered(
    cluster: list[Node], log_stream: io.StringIO
) -> None:
    """A lease naming a node no address can be made of: the task's root answers 502."""
    a, b, _ = cluster
    await a.gateway.registry.claim("odd", Owner("someone"), "no-port-here")
    raw = build_request("GET", "/", host=host("odd", b))
    response = await http_request(b.http_port, raw, timeout=TIMEOUT)
    assert response.status == 502
    assert response.header("X-Tunnelgate-Error") == "forward_failed"
    assert [e["target"] for e in events(log_stream, "cluster_forward_failed")] == ["odd"]


async def test_a_name_held_on_another_node_is_502_offline(cluster: list[Node]) -> None:
    a, b, _ = cluster
    claimed = await a.gateway.registry.claim("away", Owner("someone"), a.name)
    assert isinstance(claimed, Claimed)
    await a.gateway.registry.hold(claimed.lease, 30.0)
    raw = build_request("GET", "/", host=host("away", b))
    response = await http_request(b.http_port, raw, timeout=TIMEOUT)
    assert response.status == 502
    assert response.header("X-Tunnelgate-Error") == "tunnel_offline"


async def test_a_request_waiting_for_a_held_names_owner_is_answered_when_its_node_drains(
    log_stream: io.StringIO,
) -> None:
    """--grace-hold across nodes: the request on B waits (the name is held on A); B's drain
    answers it 503 gateway_draining at once, as the local wait's drain does."""
    async with in_process_cluster(2, grace_hold=30.0) as (a, b):
        claimed = await a.gateway.registry.claim("away", Owner("someone"), a.name)
        assert isinstance(claimed, Claimed)
        await a.gateway.registry.hold(claimed.lease, 30.0)
        raw = build_request("GET", "/", host=host("away", b))
        answer = asyncio.create_task(http_request(b.http_port, raw, timeout=TIMEOUT))
        [waiting] = await wait_events(log_stream, "request_waiting", 1)
        assert waiting["name"] == "away"
        assert waiting["node"] == a.name
        assert not answer.done()
        started = time.monotonic()
        b.stop.set()
        response = await answer
        assert response.status == 503
        assert response.header("X-Tunnelgate-Error") == "gateway_draining"
        assert time.monotonic() - started < 5.0  # at the drain, not the 30 s deadline


def refusals(node: Node) -> dict[str, int]:
    counters = node.gateway.cluster_counters
    assert counters is not None
    return {reason: count for reason, count in counters.refused.items() if count}


def link_preamble(
    target: str, *, secret: str = SECRET, at: float | None = None, kind: LinkKind = LinkKind.HTTP
) -> bytes:
    stamp = time.time() if at is None else at
    sent_ms = round(stamp * 1000)
    preamble = Preamble(kind, target, "198.51.100.9:4444", "127.0.0.1:1", sent_ms, os.urandom(16))
    return encode_preamble(preamble, secret.encode())


@pytest.mark.parametrize(
    ("first", "reason"),
    [
        (b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", "bad_magic"),
        (link_preamble("web", secret="another-secret-of-32-bytes-at-least"), "bad_mac"),
        (link_preamble("web", at=time.time() - 3600), "stale_timestamp"),
    ],
)
async def test_a_bad_preamble_is_refused_and_logged(
    cluster: list[Node], log_stream: io.StringIO, first: bytes, reason: str
) -> None:
    _, b, _ = cluster
    async with await open_connection(b.link_port, timeout=TIMEOUT) as conn:
        await conn.send(first)
        assert await conn.read_until_eof() == b""  # closed, nothing said
    assert refusals(b) == {reason: 1}
    # Logged too, rate-limited (five lines per 10 s for the whole process, so earlier tests
    # in this process may have spent the budget): a line, if any, says why.
    assert {e["reason"] for e in events(log_stream, "cluster_link_refused")} <= {reason}


async def test_a_replayed_preamble_is_refused(cluster: list[Node]) -> None:
    _, b, _ = cluster
    first = link_preamble("nobody") + build_request("GET", "/", host=host("nobody", b))
    for _ in range(2):
        async with await open_connection(b.link_port, timeout=TIMEOUT) as conn:
            await conn.send(first)
            answer = await conn.read_until_eof()
    assert answer == b""
    assert refusals(b) == {"replayed": 1}


async def test_a_forwarded_connection_is_never_forwarded_again(
    cluster: list[Node], app: LocalApp, log_stream: io.StringIO
) -> None:
    """A link to B for a name A has: B answers it as a local miss (404), no loop."""
    a, b, _ = cluster
    client = await client_on(a, "http", str(app.port), "--subdomain", "loop")
    try:
        async with await open_connection(b.link_port, timeout=TIMEOUT) as conn:
            await conn.send(link_preamble("loop") + build_request("GET", "/", host=host("loop", b)))
            response = await conn.read_response()
        assert response.status == 404
        assert response.header("X-Tunnelgate-Error") == "no_tunnel"
    finally:
        client.terminate()
    assert events(log_stream, "cluster_forwarded") == []
    logged = [e for e in events(log_stream, "request") if e.get("via")]
    assert [(e["client"], e["status"]) for e in logged] == [("198.51.100.9:4444", 404)]


async def test_a_link_that_says_nothing_is_closed_after_the_preamble_timeout(
    cluster: list[Node],
) -> None:
    _, b, _ = cluster
    async with await open_connection(b.link_port, timeout=TIMEOUT) as conn:
        await conn.send(link_preamble("x")[:10])
        started = time.monotonic()
        assert await conn.read_until_eof() == b""
    assert time.monotonic() - started < TIMEOUT
    assert refusals(b) == {"preamble_timeout": 1}
