"""TCP tunnels and TLS passthrough end to end (issue 9): a real gateway (``--tcp-ports``,
``--https``), real clients (``tunnelgate tcp|tls|start``) and local services on this
module's event loop (testing/tcp_app.py's echo, plain, with a PROXY header, or speaking TLS
with a certificate of its own CA, which the gateway never sees).

One gateway and one ``tunnelgate start`` client carrying every local service's tunnel are
shared by the module (a client process costs about a second to start on a loaded machine);
the tests about ports (granted, taken, out of range, freed, held in the grace) start their
own clients. The client's side alone is tested against a scripted gateway in
test_tcp_client.py. Every wait has a deadline; nothing waits by sleeping.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import random
import signal
import ssl
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import pytest_asyncio
import trustme
from e2e_support import EXIT_TIMEOUT, assert_rejected, wait_log_line

from tunnelgate.gateway.tcp import ephemeral_port_range
from tunnelgate.testing.endpoints import Behaviour, BrokenEndpoint
from tunnelgate.testing.metrics import scrape
from tunnelgate.testing.proc import JsonObject
from tunnelgate.testing.processes import (
    Proc,
    RawConnection,
    RawResponse,
    build_request,
    free_port,
    free_port_range,
    http_request,
    open_connection,
    start_client,
    start_gateway,
    wait_ready_async,
)
from tunnelgate.testing.tcp_app import TcpApp, TcpConnection, start_tcp_app
from tunnelgate.transport.reset import abort_with_reset

# One event loop for the module: the local services outlive each test.
pytestmark = pytest.mark.asyncio(loop_scope="module")

DOMAIN = "tunnel.test"
TIMEOUT = 10.0
"""Seconds any one exchange, start or exit may take."""
GRACE = 60.0
"""--reconnect-grace: nothing here waits for it to end; it outlasts the held-port checks."""
PORTS = 16
"""Ports in --tcp-ports; tests that ask for one take one no tunnel of the module has."""
MiB = 1024 * 1024
GREETING = random.Random(9).randbytes(MiB)
"""What the service that speaks first sends before it ends its side."""


# --- certificates: the gateway's, and the local TLS service's own ---------------------------------
@dataclass
class Certs:
    gateway_ca: trustme.CA
    app_ca: trustme.CA
    gateway_chain: Path
    gateway_key: Path
    app_server: ssl.SSLContext

    def trusting(self, ca: trustme.CA) -> ssl.SSLContext:
        context = ssl.create_default_context()
        ca.configure_trust(context)
        return context


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    where = tmp_path_factory.mktemp("tcp-tls")
    gateway_ca, app_ca = trustme.CA(), trustme.CA()
    leaf = gateway_ca.issue_cert(DOMAIN, f"*.{DOMAIN}")
    chain, key = where / "chain.pem", where / "key.pem"
    leaf.private_key_pem.write_to_path(str(key))
    chain.write_bytes(b"".join(blob.bytes() for blob in leaf.cert_chain_pems))
    app_server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    app_ca.issue_cert(*(f"{name}.{DOMAIN}" for name in APP_NAMES)).configure_cert(app_server)
    return Certs(gateway_ca, app_ca, chain, key, app_server)


# --- the gateway ----------------------------------------------------------------------------------
@dataclass
class TcpGateway:
    proc: Proc
    http_port: int
    https_port: int
    low: int
    high: int
    admin_port: int = 0
    granted: set[int] = field(default_factory=set)
    """Ports this module's tunnels were given (held ones included)."""

    def client_args(self, token: str, server: str | None = None) -> list[str]:
        server = server or f"ws://127.0.0.1:{self.http_port}/connect"
        return ["--server", server, "--token", token]

    def spare_port(self) -> int:
        """A port of the range that no tunnel of this module has had: now it has."""
        port = next(p for p in range(self.low, self.high + 1) if p not in self.granted)
        self.granted.add(port)
        return port

    def mark(self) -> int:
        return len(self.proc.stderr_lines)

    async def wait_log(self, event: str, *, after: int = 0, **fields: object) -> JsonObject:
        """The log line ``{"event": event, **fields, ...}`` (from index ``after``)."""
        return await wait_log_line(self.proc, _log_match(event, fields), after=after)

    async def listed(self, port: int) -> JsonObject:
        """The admin API's entry for the TCP tunnel on ``port``."""
        raw = build_request("GET", "/api/tunnels", host=f"127.0.0.1:{self.admin_port}")
        response = await http_request(self.admin_port, raw)
        assert response.status == 200, response
        listing: list[JsonObject] = response.json()
        [entry] = [tunnel for tunnel in listing if tunnel["port"] == port]
        return entry


def _log_match(event: str, fields: dict[str, object]) -> Callable[[JsonObject], bool]:
    return lambda obj: (
        obj.get("event") == event and all(obj.get(key) == value for key, value in fields.items())
    )


@pytest.fixture(scope="module")
def gateway(certs: Certs) -> Iterator[TcpGateway]:
    https_port, admin_port = free_port(), free_port()
    low, high = free_port_range(PORTS)
    proc, http_port = start_gateway(
        *("--domain", DOMAIN, "--https", f"127.0.0.1:{https_port}"),
        *("--admin", f"127.0.0.1:{admin_port}"),
        *("--tls-cert", str(certs.gateway_chain), "--tls-key", str(certs.gateway_key)),
        *("--tcp-ports", f"{low}-{high}", "--reconnect-grace", str(GRACE)),
        *("--token", "alice", "--token", "bob"),
    )
    with proc:
        yield TcpGateway(proc, http_port, https_port, low, high, admin_port)


# --- local services, and one client carrying a tunnel to each -------------------------------------
Script = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[object]]


class Recorder:
    """A local service with a script of its own (speak first, reset), its connections'
    outcomes recorded in order."""

    def __init__(self, script: Script) -> None:
        self.script = script
        self.results: list[object] = []
        self.port = 0
        self._changed = asyncio.Event()
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def aclose(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def wait_result(self, index: int) -> object:
        async with asyncio.timeout(TIMEOUT):
            while len(self.results) <= index:
                self._changed.clear()
                await self._changed.wait()
        return self.results[index]

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            result = await self.script(reader, writer)
        except OSError as exc:
            result = exc
        finally:
            writer.close()
        self.results.append(result)
        self._changed.set()


async def speak_first(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> object:
    """Send GREETING and end our side, then read the public side to its end: (n, sha256)."""
    writer.write(GREETING)
    writer.write_eof()
    await writer.drain()
    hasher, n = hashlib.sha256(), 0
    while data := await reader.read(64 * 1024):
        hasher.update(data)
        n += len(data)
    return n, hasher.hexdigest()


async def reset_after_first_bytes(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> object:
    """Read something, then reset the connection."""
    data = await reader.read(64 * 1024)
    abort_with_reset(writer.transport)
    return data


# The echo services (testing/tcp_app.py) by tunnel name: the PROXY version each expects.
TCP_APPS: dict[str, str | None] = {"echo": None, "tcp-v1": "v1", "tcp-v2": "v2"}
TLS_APPS: dict[str, str | None] = {"secure": None, "tls-v1": "v1", "tls-v2": "v2"}
TLS_NAMES = {"secure": "secure", "tls-v1": "proxied-v1", "tls-v2": "proxied-v2"}  # subdomains
APP_NAMES = [*TLS_NAMES.values(), "dropped"]  # in the local TLS service's certificate


@dataclass
class Services:
    client: Proc
    apps: dict[str, TcpApp]
    greeter: Recorder
    resetter: Recorder
    refused_port: int  # nothing listens there
    urls: dict[str, str]  # tunnel name -> its tunnel_ready url

    def port(self, tunnel: str) -> int:
        """The public port of a TCP tunnel."""
        return int(self.urls[tunnel].rsplit(":", 1)[1])


def tunnels_toml(gateway: TcpGateway, tunnels: dict[str, dict[str, str]]) -> str:
    lines = [f'server = "ws://127.0.0.1:{gateway.http_port}/connect"', 'token = "alice"']
    for name, keys in tunnels.items():
        lines.append(f'[tunnels."{name}"]')
        lines += [f'{key} = "{value}"' for key, value in keys.items()]
    return "\n".join(lines) + "\n"


def _ready_named(tunnel: str) -> Callable[[JsonObject], bool]:
    return lambda obj: obj.get("event") == "tunnel_ready" and obj.get("name") == tunnel


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def services(
    gateway: TcpGateway, certs: Certs, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Services]:
    async with contextlib.AsyncExitStack() as stack:
        apps: dict[str, TcpApp] = {}
        tunnels: dict[str, dict[str, str]] = {}
        for name, proxy in TCP_APPS.items():
            apps[name] = app = await start_tcp_app(proxy=proxy)
            stack.push_async_callback(app.aclose)
            tunnels[name] = {"proto": "tcp", "addr": str(app.port)}
        for name, proxy in TLS_APPS.items():
            apps[name] = app = await start_tcp_app(proxy=proxy, tls=certs.app_server)
            stack.push_async_callback(app.aclose)
            tunnels[name] = {"proto": "tls", "addr": str(app.port), "subdomain": TLS_NAMES[name]}
        for name, proxy in {**TCP_APPS, **TLS_APPS}.items():
            if proxy is not None:
                tunnels[name]["proxy_protocol"] = proxy
        greeter, resetter = Recorder(speak_first), Recorder(reset_after_first_bytes)
        for recorder in (greeter, resetter):
            await recorder.start()
            stack.push_async_callback(recorder.aclose)
        refused_port = free_port()
        tunnels["greeter"] = {"proto": "tcp", "addr": str(greeter.port)}
        tunnels["resetter"] = {"proto": "tcp", "addr": str(resetter.port)}
        tunnels["refused"] = {"proto": "tcp", "addr": str(refused_port)}
        config = tmp_path_factory.mktemp("tunnels") / "tunnels.toml"
        config.write_text(tunnels_toml(gateway, tunnels))
        client = stack.enter_context(start_client("start", "--config", str(config)))
        urls: dict[str, str] = {}
        for name in tunnels:
            ready = await client.wait_for_json_async(_ready_named(name), TIMEOUT)
            urls[name] = str(ready["url"])
        found = Services(client, apps, greeter, resetter, refused_port, urls)
        for name in tunnels:
            if tunnels[name]["proto"] == "tcp":
                gateway.granted.add(found.port(name))
        yield found


# --- helpers --------------------------------------------------------------------------------------
async def exchange(conn: RawConnection, payload: bytes, *, piece: int = MiB) -> bytes:
    """Send ``payload`` and then EOF (a half-close) while reading what comes back until the
    other side's EOF."""

    async def send() -> None:
        for start in range(0, len(payload), piece):
            await conn.send(payload[start : start + piece])
        await conn.write_eof()

    async with asyncio.TaskGroup() as tasks:
        tasks.create_task(send())
        received = tasks.create_task(conn.read_until_eof())
    return received.result()


async def assert_echoes(port: int) -> None:
    """The TCP tunnel on ``port`` reaches the echo service."""
    async with await open_connection(port, timeout=TIMEOUT) as conn:
        assert await exchange(conn, b"ping") == b"ping"


async def assert_refused(port: int) -> None:
    """Nothing listens on ``port``: a connection is refused at once (a hang would time out)."""
    with pytest.raises(ConnectionRefusedError):
        await open_connection(port, timeout=TIMEOUT)


def address(conn: RawConnection) -> tuple[str, int]:
    """The public client's own address, as the gateway sees it (loopback: no NAT)."""
    host, port = conn.writer.get_extra_info("sockname")[:2]
    return str(host), int(port)


def client_of(conn: RawConnection) -> str:
    """``HOST:PORT`` of the public client, as the gateway logs it."""
    host, port = address(conn)
    return f"{host}:{port}"


def digest(data: bytes) -> tuple[int, str]:
    """Length and SHA-256, to compare megabytes without a megabyte diff on failure."""
    return len(data), hashlib.sha256(data).hexdigest()


async def new_records(app: TcpApp, before: int, count: int = 1) -> list[TcpConnection]:
    """The app's connections ended after the first ``before``, once there are ``count``."""
    return (await app.wait_connections(before + count, TIMEOUT))[before:]


# --- bytes, half-closes, concurrency --------------------------------------------------------------
async def test_16_mib_echoed_byte_exact_through_a_half_close_and_logged(
    gateway: TcpGateway, services: Services
) -> None:
    port, app = services.port("echo"), services.apps["echo"]
    assert services.urls["echo"] == f"tcp://{DOMAIN}:{port}"
    before, mark = len(app.connections), gateway.mark()
    payload = os.urandom(16 * MiB)
    started = time.monotonic()
    async with await open_connection(port, timeout=TIMEOUT) as conn:
        client = client_of(conn)
        echoed = await exchange(conn, payload)  # EOF comes back only after all of it
    took_ms = (time.monotonic() - started) * 1000
    assert digest(echoed) == digest(payload)
    [record] = await new_records(app, before)
    assert (record.echoed, record.half_closed, record.error) == (len(payload), True, None)
    # One line per public connection: who, which port, bytes each way, how long, how it ended.
    line = await gateway.wait_log("tcp_connection", after=mark, client=client)
    assert line["port"] == port
    assert line["tunnel"] == f"port:{port}"
    assert (line["bytes_in"], line["bytes_out"]) == (len(payload), len(payload))
    assert line["ended"] == "closed"
    assert 0 < line["duration_ms"] <= took_ms + 1000
    # The tunnel's totals (admin API) count it too; they were 0 for TCP and TLS tunnels.
    listed = await gateway.listed(port)
    assert listed["protocol"] == "tcp"
    assert listed["bytes_in"] >= len(payload)
    assert listed["bytes_out"] >= len(payload)
    # And the gateway-wide counters of TCP connections (by how they ended) and their bytes.
    samples = await scrape(gateway.admin_port)
    assert samples["tunnelgate_raw_connections_total{ended=closed,protocol=tcp}"] >= 1
    assert samples["tunnelgate_raw_bytes_total{direction=in,protocol=tcp}"] >= len(payload)
    assert samples["tunnelgate_raw_bytes_total{direction=out,protocol=tcp}"] >= len(payload)


async def test_the_local_service_ends_first_while_the_public_client_goes_on_sending(
    services: Services,
) -> None:
    greeter = services.greeter
    index = len(greeter.results)
    upload = os.urandom(4 * MiB)
    async with await open_connection(services.port("greeter"), timeout=TIMEOUT) as conn:
        # The service speaks first and ends its side: its EOF reaches us, ours is still open.
        assert digest(await conn.read_until_eof()) == digest(GREETING)
        for start in range(0, len(upload), MiB):
            await conn.send(upload[start : start + MiB])
        await conn.write_eof()
        assert await greeter.wait_result(index) == (len(upload), digest(upload)[1])
        assert await conn.read_until_eof() == b""  # and the connection ends cleanly


async def test_200_concurrent_connections_on_one_tunnel_all_byte_exact(
    services: Services,
) -> None:
    port, app = services.port("echo"), services.apps["echo"]
    before = len(app.connections)
    payloads = [random.Random(i).randbytes(32 * 1024 + i) for i in range(200)]
    async with contextlib.AsyncExitStack() as stack:
        # All 200 are open before any byte moves: 200 streams at once on the one tunnel.
        conns = await asyncio.gather(*(open_connection(port, timeout=TIMEOUT) for _ in payloads))
        for conn in conns:
            stack.push_async_callback(conn.aclose)
        echoed = await asyncio.gather(
            *(exchange(c, p) for c, p in zip(conns, payloads, strict=True))
        )
    assert [digest(e) for e in echoed] == [digest(p) for p in payloads]
    records = await new_records(app, before, len(payloads))
    assert sorted(r.echoed for r in records) == sorted(len(p) for p in payloads)
    assert all(r.half_closed and r.error is None for r in records), records


# --- resets and refusals --------------------------------------------------------------------------
async def test_a_refused_local_connection_resets_the_public_one_promptly(
    gateway: TcpGateway, services: Services
) -> None:
    mark, out_mark = gateway.mark(), len(services.client.stdout_lines)
    started = time.monotonic()
    async with await open_connection(services.port("refused"), timeout=TIMEOUT) as conn:
        client = client_of(conn)
        await conn.send(b"anyone?")
        with pytest.raises(ConnectionResetError):
            await conn.read_some()
    # The client retries the local port for 2 s (a dev server restarting), then gives up.
    assert time.monotonic() - started < 6.0
    line = await gateway.wait_log("tcp_connection", after=mark, client=client)
    assert (line["bytes_in"], line["bytes_out"], line["ended"]) == (7, 0, "local_error")
    event = await services.client.wait_for_json_async(
        lambda obj: obj.get("event") == "connection" and obj.get("client") == client,
        TIMEOUT,
        after=out_mark,
    )
    assert event["end"] == "refused"


async def test_a_reset_by_the_local_service_reaches_the_public_client(
    gateway: TcpGateway, services: Services
) -> None:
    resetter = services.resetter
    index, mark = len(resetter.results), gateway.mark()
    async with await open_connection(services.port("resetter"), timeout=TIMEOUT) as conn:
        client = client_of(conn)
        await conn.send(b"hello")
        with pytest.raises(ConnectionResetError):
            await conn.read_some()
    assert await resetter.wait_result(index) == b"hello"
    line = await gateway.wait_log("tcp_connection", after=mark, client=client)
    assert line["ended"] == "local_error"


async def test_a_reset_by_the_public_client_reaches_the_local_service(
    gateway: TcpGateway, services: Services
) -> None:
    port, app = services.port("echo"), services.apps["echo"]
    before, mark = len(app.connections), gateway.mark()
    conn = await open_connection(port, timeout=TIMEOUT)
    client = client_of(conn)
    await conn.send(b"x" * 1000)
    assert await conn.read_exactly(1000) == b"x" * 1000  # the service has the connection
    abort_with_reset(conn.writer.transport)
    [record] = await new_records(app, before)
    # Cut, not ended: a service must not take a truncated upload for a whole one.
    assert not record.half_closed, record
    assert "Reset" in str(record.error), record
    line = await gateway.wait_log("tcp_connection", after=mark, client=client)
    assert line["ended"] == "client_reset"


# --- ports: asked for, taken, out of range, none left, freed --------------------------------------
def tcp_client(gateway: TcpGateway, services: Services, token: str, *args: str) -> Proc:
    """``tunnelgate tcp ECHO_PORT *args`` with ``token``, to the echo service."""
    echo = str(services.apps["echo"].port)
    return start_client("tcp", echo, *args, *gateway.client_args(token))


async def test_a_port_asked_for_is_granted_refused_to_others_and_freed_on_a_clean_exit(
    gateway: TcpGateway, services: Services
) -> None:
    port = gateway.spare_port()
    with tcp_client(gateway, services, "alice", "--remote-port", str(port)) as owner:
        ready = await wait_ready_async(owner, TIMEOUT)
        assert ready["url"] == f"tcp://{DOMAIN}:{port}"
        await assert_echoes(port)
        taken = ("--remote-port", str(port))
        outside = ("--remote-port", str(gateway.high + 1))
        with (
            tcp_client(gateway, services, "bob", *taken) as rival,
            tcp_client(gateway, services, "alice", *taken) as twin,  # same token, other client
            tcp_client(gateway, services, "alice", *outside) as stray,
        ):
            line = await assert_rejected(rival, "port_taken")
            assert f"port {port} is already in use" in line
            await assert_rejected(twin, "port_taken")
            line = await assert_rejected(stray, "port_out_of_range")
            assert f"outside {gateway.low}-{gateway.high}" in line
        await assert_echoes(port)  # the owner is untouched

        owner.signal(signal.SIGTERM)
        assert await owner.wait_exit_async(EXIT_TIMEOUT) == 0, owner.output()
    # Freed at once: nothing listens (refused, not hung), and another owner takes it.
    await assert_refused(port)
    with tcp_client(gateway, services, "bob", "--remote-port", str(port)) as successor:
        ready = await wait_ready_async(successor, TIMEOUT)
        assert ready["url"] == f"tcp://{DOMAIN}:{port}"
        await assert_echoes(port)


async def test_no_free_port_left_and_the_per_token_limit_are_rejected(
    services: Services,
) -> None:
    low, _ = free_port_range(1)
    proc, http_port = start_gateway(
        *("--tcp-ports", f"{low}-{low}", "--max-tunnels-per-token", "1"),
        *("--token", "alice", "--token", "bob"),
    )
    with proc:
        small = TcpGateway(proc, http_port, 0, low, low)
        with tcp_client(small, services, "alice") as first:
            ready = await wait_ready_async(first, TIMEOUT)
            assert ready["url"] == f"tcp://localhost:{low}"  # the only port
            with (
                tcp_client(small, services, "alice") as second,
                tcp_client(small, services, "bob") as other,
            ):
                await assert_rejected(second, "too_many_tunnels")
                line = await assert_rejected(other, "port_taken")
                assert f"no free port left in {low}-{low}" in line
            await assert_echoes(low)


async def test_tcp_on_a_gateway_without_tcp_ports_is_rejected() -> None:
    proc, port = start_gateway()
    server = f"ws://127.0.0.1:{port}/connect"
    with proc, start_client("tcp", str(free_port()), "--server", server) as tunnel:
        await assert_rejected(tunnel, "(protocol_unsupported)")


async def test_tcp_ports_in_the_ephemeral_range_are_warned_about() -> None:
    """Such a port, let go while its tunnel reconnects, can become an outgoing connection's
    local port, and the owner could not listen there again: the operator hears of it."""
    low, high = ephemeral_port_range()
    proc, _ = start_gateway("--tcp-ports", f"{high - 1}-{high}")
    with proc:
        line = await wait_log_line(
            proc, lambda obj: obj.get("event") == "tcp_ports_in_ephemeral_range"
        )
    assert line["ephemeral"] == f"{low}-{high}"
    clear, _ = free_port_range(2)  # below the range: no warning
    quiet, _ = start_gateway("--tcp-ports", f"{clear}-{clear + 1}")
    with quiet:
        # The warning would come first: the line after it has been read.
        await wait_log_line(quiet, lambda obj: obj.get("listener") == "tcp")
    assert not [line for line in quiet.stdout_lines + quiet.stderr_lines if "ephemeral" in line]


# --- a dropped tunnel: its port held for its owner ------------------------------------------------
async def test_a_cut_tunnel_s_port_is_held_and_its_client_takes_it_back(
    gateway: TcpGateway, services: Services
) -> None:
    # The tunnel goes through a relay that can cut it while the client lives on.
    async with BrokenEndpoint(Behaviour.RELAY, relay_port=gateway.http_port) as relay:
        args = gateway.client_args("alice", relay.url)
        with start_client("tcp", str(services.apps["echo"].port), *args) as owner:
            url = str((await wait_ready_async(owner, TIMEOUT))["url"])
            port = int(url.rsplit(":", 1)[1])
            gateway.granted.add(port)
            async with await open_connection(port, timeout=TIMEOUT) as open_before:
                await open_before.send(b"before")
                assert await open_before.read_exactly(6) == b"before"
                mark, out_mark = gateway.mark(), len(owner.stdout_lines)
                owner.signal(signal.SIGSTOP)  # it must not come back before the checks
                try:
                    await relay.drop_connections()
                    await gateway.wait_log("tunnel_dropped", after=mark, name=f"port:{port}")
                    with pytest.raises(ConnectionResetError):  # cut, not ended
                        await open_before.read_some()
                    client = client_of(open_before)
                    cut = await gateway.wait_log("tcp_connection", after=mark, client=client)
                    assert cut["ended"] == "tunnel_reset"
                    await assert_refused(port)  # during the grace: refused at once
                    with tcp_client(gateway, services, "bob", "--remote-port", str(port)) as rival:
                        await assert_rejected(rival, "port_taken")
                finally:
                    owner.signal(signal.SIGCONT)
            again = await wait_ready_async(owner, 2 * TIMEOUT, after=out_mark)
            assert again["url"] == url
            await gateway.wait_log("tunnel_reconnected", after=mark, name=f"port:{port}")
            await assert_echoes(port)


async def test_a_killed_client_s_port_is_taken_back_by_its_owner(
    gateway: TcpGateway, services: Services
) -> None:
    port = gateway.spare_port()
    taken = ("--remote-port", str(port))
    with tcp_client(gateway, services, "alice", *taken) as owner:
        await wait_ready_async(owner, TIMEOUT)
        mark = gateway.mark()
        owner.signal(signal.SIGKILL)
        await owner.wait_exit_async(EXIT_TIMEOUT)
    await gateway.wait_log("tunnel_dropped", after=mark, name=f"port:{port}")
    await assert_refused(port)
    # A new process of the same owner (token) within the grace: the same port, reclaimed.
    with tcp_client(gateway, services, "alice", *taken) as again:
        assert (await wait_ready_async(again, TIMEOUT))["url"] == f"tcp://{DOMAIN}:{port}"
        await gateway.wait_log("tunnel_reconnected", after=mark, name=f"port:{port}")
        await assert_echoes(port)


# --- TLS passthrough ------------------------------------------------------------------------------
async def tls_connection(gateway: TcpGateway, name: str, trust: ssl.SSLContext) -> RawConnection:
    """A TLS connection to the HTTPS listener with the SNI ``name.DOMAIN``."""
    return await open_connection(
        gateway.https_port, timeout=TIMEOUT, tls=trust, server_name=f"{name}.{DOMAIN}"
    )


async def answered_by_the_gateway(gateway: TcpGateway, certs: Certs, name: str) -> RawResponse:
    """The HTTPS listener terminates TLS for ``name`` itself (with its own certificate, not
    the app's) and answers a GET with an error page of its own."""
    with pytest.raises(ssl.SSLCertVerificationError):
        await tls_connection(gateway, name, certs.trusting(certs.app_ca))
    host = f"{name}.{DOMAIN}"
    response = await http_request(
        gateway.https_port,
        build_request("GET", "/", host=host),
        tls=certs.trusting(certs.gateway_ca),
        server_name=host,
    )
    assert response.header("X-Tunnelgate-Error"), response
    return response


async def test_tls_passthrough_reaches_the_local_server_s_own_certificate(
    gateway: TcpGateway, services: Services, certs: Certs
) -> None:
    app = services.apps["secure"]
    assert services.urls["secure"] == f"tls://secure.{DOMAIN}:{gateway.https_port}"
    before, mark = len(app.connections), gateway.mark()
    payload = os.urandom(MiB)
    # Verified against the app's CA only: the gateway's own certificate would fail here.
    async with await tls_connection(gateway, "secure", certs.trusting(certs.app_ca)) as conn:
        client = client_of(conn)
        await conn.send(payload)
        assert digest(await conn.read_exactly(len(payload))) == digest(payload)
    [record] = await new_records(app, before)
    assert (record.echoed, record.error) == (len(payload), None)
    line = await gateway.wait_log("tls_connection", after=mark, client=client)
    assert line["tunnel"] == "secure"
    assert line["bytes_in"] > len(payload)  # TLS records: the gateway counts them unopened
    assert line["bytes_out"] > len(payload)
    assert line["ended"] == "closed"


async def test_other_hosts_on_the_https_listener_are_still_terminated_by_the_gateway(
    gateway: TcpGateway, services: Services, certs: Certs
) -> None:
    assert services.urls["secure"]  # a passthrough tunnel is up on the same listener
    response = await answered_by_the_gateway(gateway, certs, "nobody")
    assert response.status == 404, response


async def test_a_dropped_passthrough_name_is_answered_by_the_gateway_during_the_grace(
    gateway: TcpGateway, services: Services, certs: Certs
) -> None:
    app_port = str(services.apps["secure"].port)
    args = ("--subdomain", "dropped", *gateway.client_args("alice"))
    with start_client("tls", app_port, *args) as owner:
        await wait_ready_async(owner, TIMEOUT)
        async with await tls_connection(gateway, "dropped", certs.trusting(certs.app_ca)):
            pass  # passed through to the app's certificate
        mark = gateway.mark()
        owner.signal(signal.SIGKILL)
        await owner.wait_exit_async(EXIT_TIMEOUT)
    await gateway.wait_log("tunnel_dropped", after=mark, name="dropped")
    # Held for its owner: not passed through, but answered at once by the gateway itself,
    # as a lost HTTP tunnel is.
    response = await answered_by_the_gateway(gateway, certs, "dropped")
    assert response.status == 502, response


# --- PROXY protocol -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("tunnel", "version"),
    [("tcp-v1", 1), ("tcp-v2", 2), ("tls-v1", 1), ("tls-v2", 2)],
)
async def test_the_local_service_gets_the_public_client_s_address_in_a_proxy_header(
    gateway: TcpGateway, services: Services, certs: Certs, tunnel: str, version: int
) -> None:
    app = services.apps[tunnel]
    before = len(app.connections)
    if tunnel.startswith("tls"):
        conn = await tls_connection(gateway, TLS_NAMES[tunnel], certs.trusting(certs.app_ca))
    else:
        conn = await open_connection(services.port(tunnel), timeout=TIMEOUT)
    async with conn:
        source = address(conn)
        await conn.send(b"who am I?")
        assert await conn.read_exactly(9) == b"who am I?"  # the header is not echoed
    [record] = await new_records(app, before)
    assert record.error is None, record
    assert record.proxy is not None, record
    assert (record.proxy.version, record.proxy.command) == (version, "PROXY")
    assert record.proxy.source == source
