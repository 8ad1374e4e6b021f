"""Cross-node forwarding (issue 12 item 2): three gateways and one real redis-server, each
its own process on loopback, a real client and the local apps.

The tunnels are on node A; public clients reach them through B and C: HTTP (a GET, a large
POST streamed, a WebSocket), a TCP port on each node's own --tcp-bind address. A bad link
preamble is refused and logged; the owner killed with -9 gives 502 node_unreachable until
its client is back on a node, then requests through the others work again. Every wait is
on a log line, a client's output, or a poll with a deadline.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import signal
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass

import pytest
from e2e_support import wait_log_line

from tunnelgate.proto.link import MAX_PREAMBLE
from tunnelgate.testing import websocket as ws
from tunnelgate.testing.proc import JsonObject, Proc
from tunnelgate.testing.processes import (
    RawConnection,
    build_request,
    free_port,
    free_port_range,
    http_request,
    open_connection,
    start_client,
    start_gateway,
    wait_ready_async,
)
from tunnelgate.testing.redis_server import RedisServer
from tunnelgate.testing.tcp_app import TcpApp, start_tcp_app

SECRET = "cluster-secret-for-the-tests-0123456789"
GRACE = 5.0  # --reconnect-grace of every node: a killed node's leases go after 5-7.5 s
WAIT = 20.0  # seconds any awaited change may take on a loaded 2-core machine
POLL = 0.05  # seconds between polls (each wait has its deadline)


@dataclass
class Node:
    proc: Proc
    port: int
    advertise: str
    bind: str
    ports: tuple[int, int]  # its --tcp-ports

    @property
    def server(self) -> str:
        return f"ws://127.0.0.1:{self.port}/connect"

    def host(self, name: str) -> str:
        return f"{name}.localhost:{self.port}"


def start_node(
    redis: RedisServer, index: int, ports: tuple[int, int], *, port: int | None = None
) -> Node:
    advertise, bind = f"127.0.0.1:{free_port()}", f"127.0.0.{index + 2}"
    args = ["--redis", redis.url, "--cluster-secret", SECRET, "--advertise", advertise,
            "--tcp-ports", f"{ports[0]}-{ports[1]}", "--tcp-bind", bind,
            "--reconnect-grace", str(GRACE)]  # fmt: skip
    proc, bound = start_gateway(*args, port=port)
    return Node(proc, bound, advertise, bind, ports)


@contextlib.contextmanager
def cluster(redis: RedisServer, count: int = 3) -> Iterator[list[Node]]:
    ports = free_port_range(8)
    with contextlib.ExitStack() as stack:
        nodes = []
        for index in range(count):
            node = start_node(redis, index, ports)
            stack.callback(node.proc.terminate)
            nodes.append(node)
        yield nodes


@pytest.fixture
def clients() -> Iterator[list[Proc]]:
    started: list[Proc] = []
    try:
        yield started
    finally:
        for proc in started:
            proc.terminate()


@pytest.fixture
async def tcp_app() -> AsyncIterator[TcpApp]:
    echo = await start_tcp_app()
    try:
        yield echo
    finally:
        await echo.aclose()


async def tunnel(clients: list[Proc], node: Node, *args: str) -> tuple[Proc, str]:
    proc = start_client(*args, "--server", node.server)
    clients.append(proc)
    ready = await wait_ready_async(proc, WAIT)
    return proc, str(ready["url"])


def event(kind: str, /, **fields: object) -> Callable[[JsonObject], bool]:
    def match(obj: JsonObject) -> bool:
        return obj.get("event") == kind and all(obj.get(k) == v for k, v in fields.items())

    return match


async def get(node: Node, name: str, path: str = "/") -> tuple[int, str | None]:
    raw = build_request("GET", path, host=node.host(name))
    response = await http_request(node.port, raw, timeout=WAIT)
    return response.status, response.header("X-Tunnelgate-Error")


async def test_http_through_every_node(
    redis_server: RedisServer, local_app_proc: int, clients: list[Proc]
) -> None:
    with cluster(redis_server) as (a, b, c):
        await tunnel(clients, a, "http", str(local_app_proc), "--subdomain", "web")
        for node in (a, b, c):
            raw = build_request("GET", "/echo?x=1", host=node.host("web"))
            response = await http_request(node.port, raw, timeout=WAIT)
            assert response.status == 200, response.body
            headers = {k.lower(): v for k, v in response.json()["headers"]}
            assert (headers["x-forwarded-for"], headers["host"]) == ("127.0.0.1", node.host("web"))
        for node in (b, c):  # one line per forwarded connection on the forwarding node
            line = await wait_log_line(node.proc, event("cluster_forwarded", target="web"))
            assert line["node"] == a.advertise
            assert line["ended"] in ("client", "node")
            served = await wait_log_line(a.proc, event("request", via=node.advertise))
            assert served["path"] == "/echo?x=1"


async def test_a_large_post_is_streamed_through_another_node(
    redis_server: RedisServer, local_app_proc: int, clients: list[Proc]
) -> None:
    with cluster(redis_server) as (a, b, _):
        await tunnel(clients, a, "http", str(local_app_proc), "--subdomain", "up")
        piece = os.urandom(1 << 20)
        count = 64  # 64 MiB, sent a MiB at a time: never whole in any buffer
        digest = hashlib.sha256()
        async with await open_connection(b.port, timeout=WAIT) as conn:
            head = build_request("POST", "/upload", host=b.host("up"))[:-2]
            await conn.send(head + f"Content-Length: {len(piece) * count}\r\n\r\n".encode())
            for _ in range(count):
                await conn.send(piece)
                digest.update(piece)
            response = await conn.read_response(method="POST")
        assert response.status == 200
        assert response.json() == {"len": len(piece) * count, "sha256": digest.hexdigest()}


async def test_a_websocket_echoes_through_another_node(
    redis_server: RedisServer, local_app_proc: int, clients: list[Proc]
) -> None:
    with cluster(redis_server) as (a, _, c):
        await tunnel(clients, a, "http", str(local_app_proc), "--subdomain", "sock")
        key = ws.new_key()
        async with await open_connection(c.port, timeout=WAIT) as conn:
            await conn.send(ws.upgrade_request("/ws", c.host("sock"), key))
            head = await conn.read_head()
            assert head.status == 101
            assert head.header("Sec-WebSocket-Accept") == ws.accept_key(key)
            for payload in (b"hi", os.urandom(300_000)):
                await conn.send(ws.encode_frame(ws.OP_BINARY, payload))
                echoed = await conn.read_ws_frame()
                assert (echoed.opcode, echoed.payload) == (ws.OP_BINARY, payload)


async def test_a_tcp_tunnel_is_reached_through_every_node(
    redis_server: RedisServer, tcp_app: TcpApp, clients: list[Proc]
) -> None:
    with cluster(redis_server) as (a, b, c):
        _, url = await tunnel(clients, a, "tcp", str(tcp_app.port))
        port = int(url.rsplit(":", 1)[1])
        payload = os.urandom(4 << 20)
        for node in (a, b, c):
            conn = await connect_when_listening(node.bind, port)
            async with conn:
                await conn.send(payload)
                await conn.write_eof()
                echoed = await conn.read_until_eof()
            assert len(echoed) == len(payload), node.bind
            assert hashlib.sha256(echoed).digest() == hashlib.sha256(payload).digest()
        for node in (b, c):
            line = await wait_log_line(
                node.proc, event("cluster_forwarded", target=f"port:{port}", bytes_in=len(payload))
            )
            assert line["bytes_out"] == len(payload)
            await wait_log_line(a.proc, event("tcp_connection", via=node.advertise, port=port))


async def connect_when_listening(host: str, port: int) -> RawConnection:
    """A connection to `host:port`, once the node listens there (it follows the port's
    lease: pub/sub at once, a scan every 2 s)."""
    deadline = time.monotonic() + WAIT
    while True:
        try:
            return await open_connection(port, host=host, timeout=WAIT)
        except OSError:
            assert time.monotonic() < deadline, f"{host}:{port} never listened"
            await asyncio.sleep(POLL)  # poll interval; the deadline bounds the wait


async def test_a_bad_preamble_is_refused_and_logged(redis_server: RedisServer) -> None:
    with cluster(redis_server, 1) as (a,):
        host, _, port = a.advertise.rpartition(":")
        async with await open_connection(int(port), host=host, timeout=WAIT) as conn:
            # The right magic and version, then a preamble's worth of junk: no valid MAC.
            await conn.send(b"TGLINK\x01" + os.urandom(MAX_PREAMBLE))
            assert await conn.read_until_eof() == b""
        line = await wait_log_line(a.proc, event("cluster_link_refused"))
        assert line["reason"] == "bad_mac"


async def test_the_owner_killed_gives_502_then_its_client_comes_back_elsewhere(
    redis_server: RedisServer, local_app_proc: int, clients: list[Proc]
) -> None:
    with cluster(redis_server) as (a, b, c):
        client, _ = await tunnel(clients, a, "http", str(local_app_proc), "--subdomain", "moving")
        assert await get(b, "moving") == (200, None)
        mark = len(client.stdout_lines)
        a.proc.signal(signal.SIGKILL)
        await a.proc.wait_exit_async(WAIT)
        assert await get(b, "moving") == (502, "node_unreachable")
        # The client's --server leads to a new node on A's address: its name goes with it.
        a2 = start_node(redis_server, 0, a.ports, port=a.port)
        try:
            await wait_ready_async(client, WAIT, after=mark)
            deadline = time.monotonic() + WAIT
            while (answer := await get(c, "moving")) != (200, None):
                assert time.monotonic() < deadline, answer
                await asyncio.sleep(POLL)  # the route cache's TTL bounds this
            assert await get(b, "moving") == (200, None)
            await wait_log_line(a2.proc, event("request", via=b.advertise))
        finally:
            a2.proc.terminate()
