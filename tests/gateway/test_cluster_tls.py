"""Cross-node forwarding on the HTTPS listener: a TLS connection whose server name is
another node's tunnel goes there unopened (kind TLS), and that node terminates it for an
HTTP tunnel (X-Forwarded-Proto: https) or passes it through to a TLS tunnel."""

from __future__ import annotations

import contextlib
import io
import ssl
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import trustme
from cluster_support import Node, events, in_process_cluster, wait_events
from tls_helpers import run, write_pair

from tunnelgate.logs import configure_logging
from tunnelgate.testing.local_app import start_local_app
from tunnelgate.testing.processes import (
    Proc,
    build_request,
    http_request,
    open_connection,
    start_client,
    wait_ready_async,
)
from tunnelgate.testing.tcp_app import start_tcp_app

TIMEOUT = 10.0


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def log_stream() -> Iterator[io.StringIO]:
    stream = io.StringIO()
    configure_logging("json", stream=stream)
    try:
        yield stream
    finally:
        configure_logging("text")


@contextlib.asynccontextmanager
async def two_nodes(ca: trustme.CA, folder: Path) -> AsyncIterator[list[Node]]:
    # web.localhost by name too: OpenSSL matches no wildcard over a single label (localhost).
    pair = write_pair(folder, ca.issue_cert("localhost", "*.localhost", "web.localhost"))
    async with in_process_cluster(2, certificate=pair) as nodes:
        yield nodes


def trusting(ca: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context()
    ca.configure_trust(context)
    return context


@contextlib.asynccontextmanager
async def client_on(node: Node, *args: str) -> AsyncIterator[Proc]:
    proc = start_client(*args, "--server", node.server)
    try:
        await wait_ready_async(proc)
        yield proc
    finally:
        proc.terminate()


# uvloop's TLS hand-off is the gateway's (transport/tls_handoff.py): each scenario runs on
# a uvloop loop of its own (tls_helpers.run), not on pytest-asyncio's.
def test_https_to_an_http_tunnel_on_another_node(
    ca: trustme.CA, tmp_path: Path, log_stream: io.StringIO
) -> None:
    async def scenario() -> None:
        app = await start_local_app()
        try:
            async with two_nodes(ca, tmp_path) as (a, b):
                async with client_on(a, "http", str(app.port), "--subdomain", "web"):
                    assert b.https_port is not None
                    raw = build_request("GET", "/echo", host=f"web.localhost:{b.https_port}")
                    response = await http_request(
                        b.https_port, raw, tls=trusting(ca), server_name="web.localhost"
                    )
                assert response.status == 200
                headers = {k.lower(): v for k, v in response.json()["headers"]}
                assert headers["x-forwarded-proto"] == "https"
                assert headers["x-forwarded-for"] == "127.0.0.1"
                forwarded = await wait_events(log_stream, "cluster_forwarded", 1)
                assert [(e["target"], e["node"]) for e in forwarded] == [("web", a.name)]
                served = [e for e in events(log_stream, "request") if e["path"] == "/echo"]
                assert [e.get("via") for e in served] == [b.name]
        finally:
            await app.aclose()

    run(scenario())


def test_tls_passthrough_to_a_tunnel_on_another_node(
    ca: trustme.CA, tmp_path: Path, log_stream: io.StringIO
) -> None:
    async def scenario() -> None:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ca.issue_cert("secure.localhost").configure_cert(context)
        echo = await start_tcp_app(tls=context)
        payload = b"through two gateways, opened only at the end" * 1000
        try:
            async with two_nodes(ca, tmp_path) as (a, b):
                async with client_on(a, "tls", str(echo.port), "--subdomain", "secure"):
                    assert b.https_port is not None
                    conn = await open_connection(
                        b.https_port, tls=trusting(ca), server_name="secure.localhost"
                    )
                    async with conn:
                        await conn.send(payload)
                        assert await conn.read_exactly(len(payload)) == payload
                logged = await wait_events(log_stream, "tls_connection", 1)
                assert [e.get("via") for e in logged] == [b.name]
        finally:
            await echo.aclose()

    run(scenario())


def test_https_decrypted_here_for_a_host_on_another_node(
    ca: trustme.CA, tmp_path: Path, log_stream: io.StringIO
) -> None:
    """The SNI names no tunnel (the bare domain), the Host does: B terminates, then relays
    the decrypted connection (kind https) and A still says X-Forwarded-Proto: https."""

    async def scenario() -> None:
        app = await start_local_app()
        try:
            async with two_nodes(ca, tmp_path) as (a, b):
                async with client_on(a, "http", str(app.port), "--subdomain", "web"):
                    assert b.https_port is not None
                    raw = build_request("GET", "/echo", host=f"web.localhost:{b.https_port}")
                    response = await http_request(
                        b.https_port, raw, tls=trusting(ca), server_name="localhost"
                    )
                assert response.status == 200
                headers = {k.lower(): v for k, v in response.json()["headers"]}
                assert headers["x-forwarded-proto"] == "https"
                forwarded = await wait_events(log_stream, "cluster_forwarded", 1)
                assert [(e["target"], e["node"]) for e in forwarded] == [("web", a.name)]
        finally:
            await app.aclose()

    run(scenario())
