"""The gateway's own answers, end to end: unknown hosts, its own endpoints, a local app that is
down or slow, slow clients, and malformed requests, which must never reach the local app.

A gateway error carries ``X-Tunnelgate-Error`` (SPEC.md "Answers to public HTTP requests"), so
each test also tells a gateway answer from an app answer by that header.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest
from e2e_support import TunnelEnv, start_tunnel_env

from tunnelgate.testing.http_client import RawConnection, RawResponse, build_request
from tunnelgate.testing.processes import free_port, start_client, wait_ready

MALFORMED_TIMEOUT = 5.0
"""Seconds a malformed request gets to be answered (well under the default head timeout)."""


def unique() -> str:
    return uuid.uuid4().hex[:12]


def gateway_error(response: RawResponse) -> str:
    """The X-Tunnelgate-Error code of a gateway answer (fails for anything else)."""
    code = response.header("X-Tunnelgate-Error")
    assert code, f"not a gateway error page: {response.raw_head!r}"
    return code


async def assert_closed(conn: RawConnection) -> None:
    """The gateway has closed the connection (a FIN, or a reset if bytes were left unread)."""
    try:
        assert await conn.read_some() == b""
    except ConnectionResetError:
        pass


@pytest.fixture(scope="module")
def strict_env(tunnel_env: TunnelEnv) -> Iterator[TunnelEnv]:
    """A second gateway and client, with short head and response timeouts, to the same app."""
    timeouts = ["--response-timeout", "0.5", "--head-timeout", "0.5"]
    with start_tunnel_env(gateway_args=timeouts, app_port=tunnel_env.app_port) as env:
        yield env


# --- hosts and paths the gateway answers itself ---------------------------------------------


async def test_unknown_tunnel_is_404_naming_the_host(tunnel_env: TunnelEnv) -> None:
    env = tunnel_env
    before = await env.app_stats()
    host = f"nosuch.localhost:{env.gateway_port}"
    response = await env.request(build_request("GET", "/", host=host))
    assert response.status == 404
    assert gateway_error(response)
    assert "nosuch.localhost" in response.text
    assert (await env.app_stats())["requests"] == before["requests"]


@pytest.mark.parametrize("host", ["localhost", "127.0.0.1", "tunnel.localhost"])
async def test_healthz_on_gateway_host(tunnel_env: TunnelEnv, host: str) -> None:
    port = tunnel_env.gateway_port
    response = await tunnel_env.request(build_request("GET", "/healthz", host=f"{host}:{port}"))
    assert response.status == 200
    assert response.header("X-Tunnelgate-Error") is None


@pytest.mark.parametrize("target", ["/", "/nope", "/healthz/x", "/connect"])
async def test_other_paths_on_gateway_host_are_404(tunnel_env: TunnelEnv, target: str) -> None:
    host = f"localhost:{tunnel_env.gateway_port}"
    before = await tunnel_env.app_stats()
    response = await tunnel_env.request(build_request("GET", target, host=host))
    assert response.status == 404
    assert gateway_error(response)
    assert (await tunnel_env.app_stats())["requests"] == before["requests"]


# --- the local app down or slow, the public client slow ------------------------------------


async def test_local_app_down_is_502_after_retrying(tunnel_env: TunnelEnv) -> None:
    env = tunnel_env
    closed_port = free_port()  # nothing listens there
    server = f"ws://127.0.0.1:{env.gateway_port}/connect"
    args = ["http", str(closed_port), "--server", server, "--subdomain", "down"]
    with start_client(*args) as client:
        ready = wait_ready(client)
        host = str(ready["url"]).removeprefix("http://")
        gateway_mark = env.gateway_mark()
        target = f"/?id={unique()}"
        started = time.monotonic()
        response = await env.request(build_request("GET", target, host=host))
        elapsed = time.monotonic() - started
    assert response.status == 502
    assert gateway_error(response)
    assert "down.localhost" in response.text
    # The client retries a refused local connection briefly (dev servers restart) first.
    assert 1.0 <= elapsed < 8.0
    line = await env.wait_gateway_request(target, after=gateway_mark)
    assert (line["status"], line["tunnel"]) == (502, "down")


async def test_response_timeout_is_504(strict_env: TunnelEnv) -> None:
    env = strict_env
    assert (await env.get("/slow?ms=50")).status == 200  # a prompt answer is untouched
    started = time.monotonic()
    async with await env.connect() as conn:
        await conn.send(env.build("GET", "/slow?ms=3000"))
        response = await conn.read_response()
        elapsed = time.monotonic() - started
        assert response.status == 504
        assert gateway_error(response)
        assert env.host.split(":")[0] in response.text
        await assert_closed(conn)
    assert 0.4 <= elapsed < 2.5  # the gateway's 0.5 s, not the app's 3 s


async def test_head_timeout_is_408_then_close(strict_env: TunnelEnv) -> None:
    env = strict_env
    before = await env.app_stats()
    started = time.monotonic()
    async with await env.connect() as conn:
        await conn.send(f"GET / HTTP/1.1\r\nHost: {env.host}\r\nX-Slow: 1\r\n".encode())
        response = await conn.read_response()
        elapsed = time.monotonic() - started
        assert response.status == 408
        assert gateway_error(response)
        await assert_closed(conn)
    assert 0.4 <= elapsed < 5.0
    assert (await env.app_stats())["requests"] == before["requests"]


async def test_idle_keep_alive_connection_is_not_a_slow_head(strict_env: TunnelEnv) -> None:
    """Waiting between requests is keep-alive idling, not a slow head: no 408."""
    env = strict_env
    async with await env.connect() as conn:
        # A request the gateway answers itself, at once, inside the same read.
        await conn.send(build_request("GET", "/healthz", host=f"localhost:{env.gateway_port}"))
        assert (await conn.read_response()).status == 200
        # The scenario itself is an idle gap longer than the head timeout (0.5 s).
        await asyncio.sleep(1.2)
        await conn.send(build_request("GET", "/", host=env.host))
        second = await conn.read_response()
    assert second.status == 200
    assert second.header("X-Tunnelgate-Error") is None


# --- malformed requests ------------------------------------------------------------------------


@dataclass(frozen=True)
class Malformed:
    """A bad request for (target, host), as the head and what follows it, and the status the
    gateway must answer before closing the connection."""

    make: Callable[[str, str], list[bytes]]
    status: int = 400


def head(target: str, host: str | None, *lines: str, method: str = "POST") -> bytes:
    """A request head: Host (unless None), then ``lines`` verbatim."""
    fields = ([f"Host: {host}"] if host is not None else []) + list(lines)
    text = f"{method} {target} HTTP/1.1\r\n" + "".join(f"{line}\r\n" for line in fields)
    return (text + "\r\n").encode("latin-1")


# Refused from the head alone: nothing may reach the tunnel.
HEAD_ERRORS: dict[str, Malformed] = {
    "content-length-and-transfer-encoding": Malformed(
        lambda t, h: [head(t, h, "Content-Length: 5", "Transfer-Encoding: chunked") + b"0\r\n\r\n"]
    ),
    "transfer-encoding-and-content-length": Malformed(
        lambda t, h: [head(t, h, "Transfer-Encoding: chunked", "Content-Length: 5") + b"0\r\n\r\n"]
    ),
    "two-different-content-lengths": Malformed(
        lambda t, h: [head(t, h, "Content-Length: 5", "Content-Length: 6") + b"hello!"]
    ),
    "duplicate-equal-content-length": Malformed(
        lambda t, h: [head(t, h, "Content-Length: 5", "Content-Length: 5") + b"hello"]
    ),
    "content-length-with-sign": Malformed(
        lambda t, h: [head(t, h, "Content-Length: +5") + b"hello"]
    ),
    "content-length-list": Malformed(lambda t, h: [head(t, h, "Content-Length: 5, 5") + b"hello"]),
    "transfer-encoding-xchunked": Malformed(
        lambda t, h: [head(t, h, "Transfer-Encoding: xchunked") + b"0\r\n\r\n"]
    ),
    "transfer-encoding-chunked-identity": Malformed(
        lambda t, h: [head(t, h, "Transfer-Encoding: chunked, identity") + b"0\r\n\r\n"]
    ),
    "transfer-encoding-two-lines": Malformed(
        lambda t, h: [
            head(t, h, "Transfer-Encoding: gzip", "Transfer-Encoding: chunked") + b"0\r\n\r\n"
        ]
    ),
    "missing-host": Malformed(lambda t, h: [head(t, None, method="GET")]),
    "duplicate-host": Malformed(lambda t, h: [head(t, h, f"Host: {h}", method="GET")]),
    "invalid-host": Malformed(lambda t, h: [f"GET {t} HTTP/1.1\r\nHost: {h} x\r\n\r\n".encode()]),
    "empty-header-name": Malformed(lambda t, h: [head(t, h, ": x", method="GET")]),
    "space-in-header-name": Malformed(lambda t, h: [head(t, h, "Bad Header: x", method="GET")]),
    "control-char-in-header-name": Malformed(lambda t, h: [head(t, h, "X\x01: y", method="GET")]),
    "space-before-colon": Malformed(lambda t, h: [head(t, h, "X-Test : y", method="GET")]),
    "control-char-in-header-value": Malformed(
        lambda t, h: [head(t, h, "X-Test: a\x01b", method="GET")]
    ),
    "nul-in-header-value": Malformed(lambda t, h: [head(t, h, "X-Test: a\x00b", method="GET")]),
    "obs-fold": Malformed(lambda t, h: [head(t, h, "X-Test: a", " folded", method="GET")]),
    "bare-lf-head": Malformed(
        lambda t, h: [f"GET {t} HTTP/1.1\nHost: {h}\nX-Test: y\n\n".encode()]
    ),
    "head-too-large": Malformed(
        lambda t, h: [head(t, h, "X-Big: " + "a" * 16_500, method="GET")], status=431
    ),
}

# Refused in the body: the head may have reached the tunnel, so only the answer is checked.
BODY_ERRORS: dict[str, Malformed] = {
    "bare-lf-in-chunk-size-line": Malformed(
        lambda t, h: [head(t, h, "Transfer-Encoding: chunked"), b"5\nhello\r\n0\r\n\r\n"]
    ),
    "invalid-chunk-size": Malformed(
        lambda t, h: [head(t, h, "Transfer-Encoding: chunked"), b"zz\r\nhello\r\n0\r\n\r\n"]
    ),
    "chunk-size-overflow": Malformed(
        lambda t, h: [
            head(t, h, "Transfer-Encoding: chunked"),
            b"1" + b"0" * 20 + b"\r\nhello\r\n0\r\n\r\n",
        ]
    ),
    "chunk-data-without-crlf": Malformed(
        lambda t, h: [head(t, h, "Transfer-Encoding: chunked"), b"5\r\nhelloXY0\r\n\r\n"]
    ),
}


async def send_malformed(
    env: TunnelEnv, case: Malformed, target: str, *, head_first: bool = False
) -> None:
    """Send the case, check the gateway's answer and that it closed the connection.

    With ``head_first``, the rest is sent only once the head has reached the local app, so
    the error is found in a request already streaming through the tunnel."""
    first, *rest = case.make(target, env.host)
    async with await env.connect(timeout=MALFORMED_TIMEOUT) as conn:
        if head_first:
            before = await env.app_stats()
            await conn.send(first)
            await env.wait_app_requests(before["requests"] + 1, timeout=MALFORMED_TIMEOUT)
            await conn.send(b"".join(rest))
        else:
            await conn.send(first + b"".join(rest))  # one write
        response = await conn.read_response()
        assert response.status == case.status, response.raw_head
        assert gateway_error(response)
        await assert_closed(conn)


@pytest.mark.parametrize("name", list(HEAD_ERRORS))
async def test_malformed_head_is_refused_before_the_tunnel(
    tunnel_env: TunnelEnv, name: str
) -> None:
    env = tunnel_env
    tag = unique()
    target = f"/echo?case={tag}"
    before = await env.app_stats()
    client_mark = env.client_mark()

    await send_malformed(env, HEAD_ERRORS[name], target)

    # A well-formed request after it takes the same path through the tunnel: once the client
    # has reported it, a forwarded bad request would have been counted and reported too.
    sentinel = f"/?sentinel={tag}"
    assert (await env.get(sentinel)).status == 200
    await env.wait_client_request(sentinel, after=client_mark)
    assert (await env.app_stats())["requests"] == before["requests"] + 1
    reported = [e["path"] for e in env.client_events(client_mark, "request")]
    assert [path for path in reported if tag in path] == [sentinel]


@pytest.mark.parametrize("head_first", [False, True], ids=["one-write", "head-forwarded-first"])
@pytest.mark.parametrize("name", list(BODY_ERRORS))
async def test_malformed_chunked_body_is_400_and_close(
    tunnel_env: TunnelEnv, name: str, head_first: bool
) -> None:
    target = f"/upload?case={unique()}"
    await send_malformed(tunnel_env, BODY_ERRORS[name], target, head_first=head_first)
    assert (await tunnel_env.get("/")).body == b"hello\n"  # the tunnel is unharmed
