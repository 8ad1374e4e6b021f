"""HTTPS and wss end to end: a real gateway with a test CA's wildcard certificate (trustme),
real TLS clients, a real tunnel client and the local test app."""

from __future__ import annotations

import asyncio
import hashlib
import signal
import ssl
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import trustme

from tunnelgate.testing.http_client import RawConnection, RawResponse
from tunnelgate.testing.proc import json_object
from tunnelgate.testing.processes import (
    Proc,
    build_request,
    free_port,
    http_request,
    open_connection,
    start_client,
    start_gateway,
    start_local_app_proc,
    wait_ready_async,
)

DOMAIN = "tunnel.test"
HANDSHAKE_TIMEOUT = 1.0


@dataclass
class Tls:
    ca: trustme.CA
    ca_file: Path
    chain: Path
    key: Path

    def client_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=str(self.ca_file))
        return context

    def issue(self, chain: Path, key: Path) -> None:
        cert = self.ca.issue_cert(DOMAIN, f"*.{DOMAIN}", "127.0.0.1")
        cert.private_key_pem.write_to_path(str(key))
        with chain.open("wb") as out:
            for blob in cert.cert_chain_pems:
                out.write(blob.bytes())


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> Tls:
    where = tmp_path_factory.mktemp("tls")
    ca = trustme.CA()
    ca_file = where / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    result = Tls(ca, ca_file, where / "chain.pem", where / "key.pem")
    result.issue(result.chain, result.key)
    return result


@dataclass
class HttpsGateway:
    proc: Proc
    http_port: int
    https_port: int

    def events(self, event: str, after: int = 0) -> list[dict[str, object]]:
        found = [json_object(line) for line in self.proc.stderr_lines[after:]]
        return [o for o in found if o is not None and o.get("event") == event]

    async def wait_event(
        self,
        event: str,
        after: int = 0,
        timeout: float = 10.0,  # noqa: ASYNC109
    ) -> dict[str, object]:
        deadline = time.monotonic() + timeout
        while not (found := self.events(event, after)):
            assert time.monotonic() < deadline, f"no {event} in\n{self.proc.output()}"
            await asyncio.sleep(0.05)  # poll with a deadline: logs come from another process
        return found[0]


def https_gateway(*args: str) -> HttpsGateway:
    https_port = free_port()
    proc, http_port = start_gateway(
        "--domain",
        DOMAIN,
        "--https",
        f"127.0.0.1:{https_port}",
        "--handshake-timeout",
        str(HANDSHAKE_TIMEOUT),
        *args,
    )
    return HttpsGateway(proc, http_port, https_port)


@pytest.fixture(scope="module")
def app_port() -> Iterator[int]:
    proc, port = start_local_app_proc()
    try:
        yield port
    finally:
        proc.terminate()


@pytest.fixture(scope="module")
def gateway(tls: Tls) -> Iterator[HttpsGateway]:
    gw = https_gateway("--tls-cert", str(tls.chain), "--tls-key", str(tls.key))
    try:
        yield gw
    finally:
        gw.proc.terminate()


@pytest.fixture
def clients() -> Iterator[list[Proc]]:
    started: list[Proc] = []
    try:
        yield started
    finally:
        for proc in started:
            proc.terminate()


async def https_get(
    gw: HttpsGateway, name: str, target: str, tls: ssl.SSLContext, sni: str | None = None
) -> object:
    host = f"{name}.{DOMAIN}"
    raw = build_request("GET", target, host=f"{host}:{gw.https_port}")
    return await http_request(gw.https_port, raw, tls=tls, server_name=sni or host)


async def test_https_through_a_tunnel_with_sni_on_the_wildcard(
    gateway: HttpsGateway, tls: Tls, app_port: int, clients: list[Proc]
) -> None:
    server = f"ws://127.0.0.1:{gateway.http_port}/connect"
    client = start_client("http", str(app_port), "--server", server, "--subdomain", "web")
    clients.append(client)
    ready = await wait_ready_async(client)
    assert ready["url"] == f"https://web.{DOMAIN}:{gateway.https_port}"
    response = await https_get(gateway, "web", "/echo", tls.client_context())
    assert response.status == 200  # type: ignore[attr-defined]
    headers = dict(response.json()["headers"])  # type: ignore[attr-defined]
    assert headers["X-Forwarded-Proto"] == "https"
    assert headers["Host"] == f"web.{DOMAIN}:{gateway.https_port}"


async def test_wss_tunnel_with_ca(
    gateway: HttpsGateway, tls: Tls, app_port: int, clients: list[Proc]
) -> None:
    server = f"wss://127.0.0.1:{gateway.https_port}/connect"
    client = start_client(
        "http", str(app_port), "--server", server, "--subdomain", "secure", "--ca", str(tls.ca_file)
    )
    clients.append(client)
    ready = await wait_ready_async(client)
    assert ready["url"] == f"https://secure.{DOMAIN}:{gateway.https_port}"
    response = await https_get(gateway, "secure", "/", tls.client_context())
    assert response.status == 200  # type: ignore[attr-defined]


async def test_an_untrusted_certificate_is_refused_with_a_clear_message(
    tmp_path: Path, app_port: int, clients: list[Proc]
) -> None:
    gw = https_gateway("--state-dir", str(tmp_path))  # a self-signed certificate
    try:
        server = f"wss://127.0.0.1:{gw.https_port}/connect"
        client = start_client("http", str(app_port), "--server", server, "--max-retries", "1")
        clients.append(client)
        assert await client.wait_exit_async(20) == 1
        errors = "\n".join(client.stderr_lines)
        assert "127.0.0.1: the gateway's certificate is not trusted" in errors, errors
        assert "self-signed certificate" in errors
        # --insecure connects, and says once that nothing is checked.
        insecure = start_client("http", str(app_port), "--server", server, "--insecure")
        clients.append(insecure)
        await wait_ready_async(insecure)
        warnings = [line for line in insecure.stderr_lines if "--insecure" in line]
        assert len(warnings) == 1, insecure.stderr_lines
    finally:
        gw.proc.terminate()


async def test_sighup_reload_serves_new_handshakes_while_a_download_goes_on(
    tls: Tls, tmp_path: Path, app_port: int, clients: list[Proc]
) -> None:
    chain, key = tmp_path / "chain.pem", tmp_path / "key.pem"
    tls.issue(chain, key)
    gw = https_gateway("--tls-cert", str(chain), "--tls-key", str(key))
    try:
        server = f"ws://127.0.0.1:{gw.http_port}/connect"
        client = start_client("http", str(app_port), "--server", server, "--subdomain", "dl")
        clients.append(client)
        await wait_ready_async(client)
        context = tls.client_context()
        first = await _certificate_digest(gw.https_port, f"dl.{DOMAIN}", context)
        size = 4_000_000
        host = f"dl.{DOMAIN}"
        download = await open_connection(gw.https_port, tls=context, server_name=host)
        async with download:
            target = f"/bytes?n={size}&hold=reload"
            await download.send(build_request("GET", target, host=f"{host}:{gw.https_port}"))
            head = await download.read_head()
            assert head.status == 200
            mark = len(gw.proc.stderr_lines)
            tls.issue(chain, key)  # a new certificate (new key) in the same files
            gw.proc.signal(signal.SIGHUP)
            await gw.wait_event("tls_certificate_reloaded", after=mark)
            second = await _certificate_digest(gw.https_port, host, context)
            assert second != first  # new handshakes see the new certificate
            raw = build_request("GET", "/release?key=reload", host=f"{host}:{gw.https_port}")
            assert (
                await http_request(gw.https_port, raw, tls=context, server_name=host)
            ).status == 200
            body = b"".join([piece async for piece in download.iter_body(head)])
        assert len(body) == size  # the download that began before the reload completed
    finally:
        gw.proc.terminate()


async def _certificate_digest(port: int, server_name: str, context: ssl.SSLContext) -> str:
    _, writer = await asyncio.open_connection(
        "127.0.0.1", port, ssl=context, server_hostname=server_name
    )
    ssl_object = writer.get_extra_info("ssl_object")
    der = ssl_object.getpeercert(binary_form=True)
    writer.close()
    return hashlib.sha256(der).hexdigest()


async def test_bad_handshakes_are_refused_while_a_tunnel_keeps_serving(
    gateway: HttpsGateway, tls: Tls, app_port: int, clients: list[Proc]
) -> None:
    server = f"ws://127.0.0.1:{gateway.http_port}/connect"
    client = start_client("http", str(app_port), "--server", server, "--subdomain", "steady")
    clients.append(client)
    await wait_ready_async(client)
    mark = len(gateway.proc.stderr_lines)
    context = tls.client_context()
    port = gateway.https_port
    # Junk: dropped.
    assert await _bytes_back(port, b"\x00\x01\x02junk junk\r\n") == b""
    # Plain HTTP on the TLS port: told so.
    answer = await _bytes_back(port, b"GET / HTTP/1.1\r\nHost: steady.tunnel.test\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 400 "), answer
    assert b"plain_http_on_https" in answer
    # TLS 1.1 only: refused.
    old = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    old.load_verify_locations(str(tls.ca_file))
    with warnings.catch_warnings():  # TLS 1.1 is deprecated: that is the point
        warnings.simplefilter("ignore", DeprecationWarning)
        old.minimum_version = old.maximum_version = ssl.TLSVersion.TLSv1_1
    old.set_ciphers("DEFAULT:@SECLEVEL=0")
    with pytest.raises((ssl.SSLError, ConnectionError)):
        await https_get(gateway, "steady", "/", old)
    # A name outside the domain: refused.
    with pytest.raises((ssl.SSLError, ConnectionError)):
        await https_get(gateway, "steady", "/", context, sni="evil.example")
    # A stalled ClientHello: cut at the handshake timeout, not held.
    started = time.monotonic()
    assert await _bytes_back(port, b"\x16\x03\x01\x02\x00\x01", wait=HANDSHAKE_TIMEOUT + 5) == b""
    assert time.monotonic() - started < HANDSHAKE_TIMEOUT + 2
    # Meanwhile, and after: the tunnel serves.
    assert (await https_get(gateway, "steady", "/", context)).status == 200  # type: ignore[attr-defined]
    await gateway.wait_event("tls_handshake_failed", after=mark)
    reasons = {e["reason"] for e in gateway.events("tls_handshake_failed", after=mark)}
    assert {"not_tls", "plain_http", "sni_outside_domain", "client_hello_timeout"} <= reasons, (
        reasons
    )


async def _bytes_back(port: int, send: bytes, wait: float = 5.0) -> bytes:
    """Send raw bytes, then read until the gateway closes (bounded by `wait`)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(send)
    got = b""
    try:
        async with asyncio.timeout(wait):
            while piece := await reader.read(65536):
                got += piece
    except ConnectionResetError:
        pass
    writer.close()
    return got


async def test_the_self_signed_default_is_kept_across_a_restart(tmp_path: Path) -> None:
    fingerprints = []
    for _ in range(2):
        gw = https_gateway("--state-dir", str(tmp_path))
        try:
            loaded = await gw.wait_event("tls_certificate_loaded")
            fingerprints.append(loaded["sha256_fingerprint"])
            made = gw.events("tls_self_signed_made")
        finally:
            gw.proc.terminate()
    assert fingerprints[0] == fingerprints[1]
    assert not made  # the second start made none: it reused the first's


async def test_redirect_http_sends_tunnel_hosts_to_https(
    tls: Tls, app_port: int, clients: list[Proc]
) -> None:
    gw = https_gateway("--tls-cert", str(tls.chain), "--tls-key", str(tls.key), "--redirect-http")
    try:
        # /connect on the plain listener is not redirected: the tunnel comes up.
        server = f"ws://127.0.0.1:{gw.http_port}/connect"
        client = start_client("http", str(app_port), "--server", server, "--subdomain", "rd")
        clients.append(client)
        await wait_ready_async(client)
        raw = build_request("GET", "/a?b=1", host=f"rd.{DOMAIN}:{gw.http_port}")
        response = await http_request(gw.http_port, raw)
        assert response.status == 308
        assert response.header("Location") == f"https://rd.{DOMAIN}:{gw.https_port}/a?b=1"
        challenge = "/.well-known/acme-challenge/token"
        raw = build_request("GET", challenge, host=f"rd.{DOMAIN}:{gw.http_port}")
        assert (await http_request(gw.http_port, raw)).status != 308
    finally:
        gw.proc.terminate()


# --- an early answer reaches a client still uploading (lingering close) ---------------------
UPLOAD = 24 * 1024 * 1024  # past loopback's socket buffers: a reset could not go unseen


async def upload_then_read(conn: RawConnection, head: bytes) -> RawResponse:
    """Send `head` and an UPLOAD-byte body, then read the answer (as curl does)."""
    await conn.send(head)
    piece = b"x" * (256 * 1024)
    for _ in range(UPLOAD // len(piece)):
        await conn.send(piece)
    return await conn.read_response()


async def test_https_unknown_name_answer_reaches_a_client_still_uploading(
    gateway: HttpsGateway, tls: Tls
) -> None:
    host = f"nobody.{DOMAIN}"
    head = f"POST / HTTP/1.1\r\nHost: {host}\r\nContent-Length: {UPLOAD}\r\n\r\n".encode()
    for _ in range(3):  # a reset depends on timing: tried several times
        conn = await open_connection(gateway.https_port, tls=tls.client_context(), server_name=host)
        async with conn:
            response = await upload_then_read(conn, head)
        assert response.status == 404
        assert response.header("X-Tunnelgate-Error") == "no_tunnel"


async def test_plain_http_on_the_https_port_answer_reaches_a_client_still_uploading(
    gateway: HttpsGateway,
) -> None:
    head = f"POST / HTTP/1.1\r\nHost: x.{DOMAIN}\r\nContent-Length: {UPLOAD}\r\n\r\n".encode()
    for _ in range(3):
        async with await open_connection(gateway.https_port) as conn:
            response = await upload_then_read(conn, head)
        assert response.status == 400
        assert response.header("X-Tunnelgate-Error") == "plain_http_on_https"
