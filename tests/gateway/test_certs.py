"""The certificate store behind a real listener (uvloop, `create_server(ssl=...)`): the
chain served, the self-signed default trusted by a client given its file, reloads that
reach new handshakes only, refused reloads, and the server-name policy."""

from __future__ import annotations

import asyncio
import io
import json
import ssl
from collections.abc import Iterator
from pathlib import Path

import pytest
import trustme
from tls_helpers import (
    DOMAIN,
    client_context,
    echo_server,
    leaf_fingerprint,
    refused,
    run,
    write_pair,
)

from tunnelgate.errors import CertificateError
from tunnelgate.gateway.certs import (
    SNI_REFUSED_REASON,
    CertificateSource,
    CertificateStore,
    Refuse,
    within_domain,
)
from tunnelgate.logs import LineWriter, configure_logging


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def log_stream() -> Iterator[io.StringIO]:
    """Log lines go here as JSON while the test runs."""
    stream = io.StringIO()
    configure_logging("json", stream=stream)
    try:
        yield stream
    finally:
        configure_logging("text")


def events(stream: io.StringIO) -> list[dict[str, object]]:
    LineWriter.flush_all()  # lines written on a loop wait for the end of its turn
    return [json.loads(line) for line in stream.getvalue().splitlines() if line.startswith("{")]


@pytest.fixture
def files(ca: trustme.CA, tmp_path: Path) -> tuple[trustme.LeafCert, Path, Path]:
    """A chain served through an intermediate, so a client that trusts only the root
    verifies it only if the intermediate is served too."""
    leaf = ca.create_child_ca().issue_cert(DOMAIN, f"*.{DOMAIN}")
    chain, key = write_pair(tmp_path, leaf)
    return leaf, chain, key


def store_for(chain: Path, key: Path, **kwargs: object) -> CertificateStore:
    return CertificateStore(CertificateSource(DOMAIN, chain, key), **kwargs)  # type: ignore[arg-type]


def test_the_chain_is_served_and_verifies_against_the_root(
    ca: trustme.CA, files: tuple[trustme.LeafCert, Path, Path]
) -> None:
    leaf, chain, key = files
    store = store_for(chain, key)
    assert store.served.info.chain_length == 2
    assert not store.served.self_signed

    async def scenario() -> None:
        async with echo_server(store.context) as server:
            for name in (DOMAIN, f"app.{DOMAIN}"):  # hostname checked by the client
                connection = await server.connect(client_context(ca), name)
                assert connection.fingerprint == leaf_fingerprint(leaf)
                assert await connection.echo() == b"ping"
                await connection.aclose()

    run(scenario())


def test_the_self_signed_default_is_trusted_by_a_client_given_its_file(tmp_path: Path) -> None:
    store = CertificateStore(CertificateSource(DOMAIN, state_dir=tmp_path))
    served = store.served
    assert served.self_signed
    client = client_context(served.info.chain_path)  # what `tunnelgate --ca FILE` does
    client.verify_flags |= ssl.VERIFY_X509_STRICT  # Python 3.13's default for clients

    async def scenario() -> None:
        async with echo_server(store.context) as server:
            for name in (DOMAIN, f"app.{DOMAIN}"):
                connection = await server.connect(client, name)
                assert connection.fingerprint == served.info.fingerprint
                await connection.aclose()

    run(scenario())
    restarted = CertificateStore(CertificateSource(DOMAIN, state_dir=tmp_path))
    assert restarted.served.info.fingerprint == served.info.fingerprint


def test_reload_reaches_new_handshakes_while_an_open_connection_keeps_working(
    ca: trustme.CA, files: tuple[trustme.LeafCert, Path, Path]
) -> None:
    old_leaf, chain, key = files
    store = store_for(chain, key)
    new_leaf = ca.issue_cert(DOMAIN, f"*.{DOMAIN}")

    async def scenario() -> None:
        async with echo_server(store.context) as server:
            before = await server.connect(client_context(ca))
            assert await before.echo(b"one") == b"one"
            write_pair(chain.parent, new_leaf)  # the operator replaces the files
            result = store.reload()
            assert result.ok
            assert result.changed
            assert result.served.info.fingerprint == leaf_fingerprint(new_leaf)
            after = await server.connect(client_context(ca))
            assert after.fingerprint == leaf_fingerprint(new_leaf)
            assert after.tls.selected_alpn_protocol() == "http/1.1"  # the new context's
            # The connection made before the reload still talks over its own session.
            assert await before.echo(b"two" * 10_000) == b"two" * 10_000
            assert before.fingerprint == leaf_fingerprint(old_leaf)
            no_sni = await server.connect(client_context(), server_name=None)
            assert no_sni.fingerprint == leaf_fingerprint(new_leaf)  # swapped without SNI
            for connection in (before, after, no_sni):
                await connection.aclose()

    run(scenario())


@pytest.mark.parametrize(
    ("damage", "error"),
    [("garbage", "not a PEM certificate chain"), ("mismatch", "does not belong")],
)
def test_a_broken_reload_keeps_the_old_certificate(
    ca: trustme.CA,
    files: tuple[trustme.LeafCert, Path, Path],
    damage: str,
    error: str,
    log_stream: io.StringIO,
) -> None:
    leaf, chain, key = files
    store = store_for(chain, key)
    if damage == "garbage":
        chain.write_text("-----BEGIN CERTIFICATE-----\nhalf a file")
    else:  # a new certificate, the old key: replaced one file of two
        chain.write_bytes(ca.issue_cert(DOMAIN).cert_chain_pems[0].bytes())
    result = store.reload()
    assert not result.ok
    assert not result.changed
    assert result.error is not None
    assert error in result.error
    assert str(chain if damage == "garbage" else key) in result.error
    assert result.served is store.served
    assert store.served.info.fingerprint == leaf_fingerprint(leaf)
    (refusal,) = [line for line in events(log_stream) if line["event"] == "tls_reload_refused"]
    assert refusal["error"] == result.error

    async def scenario() -> None:
        async with echo_server(store.context) as server:
            connection = await server.connect(client_context(ca))
            assert connection.fingerprint == leaf_fingerprint(leaf)
            await connection.aclose()

    run(scenario())


def test_names_outside_the_domain_are_refused_by_the_policy(
    ca: trustme.CA, files: tuple[trustme.LeafCert, Path, Path]
) -> None:
    _, chain, key = files
    asked: list[str | None] = []
    policy = within_domain(DOMAIN)

    def recording(server_name: str | None) -> ssl.SSLContext | Refuse | None:
        asked.append(server_name)
        return policy(server_name)

    store = store_for(chain, key, policy=recording)
    anything = client_context()  # verifies nothing: only the policy decides

    async def scenario() -> None:
        async with echo_server(store.context) as server:
            for name in (DOMAIN, f"App.{DOMAIN}.", None):
                connection = await server.connect(anything, name)
                await connection.aclose()
            for name in ("evil.test", f"a.b.{DOMAIN}", f"x{DOMAIN}"):
                await server.refused(anything, name)

    run(scenario())
    assert asked == [DOMAIN, f"app.{DOMAIN}", None, "evil.test", f"a.b.{DOMAIN}", f"x{DOMAIN}"]


def test_a_refusal_is_a_handshake_error_the_listener_can_tell_apart(
    files: tuple[trustme.LeafCert, Path, Path],
) -> None:
    """A listener that runs the handshake itself (on an SSLObject over memory BIOs, as
    asyncio's and uvloop's TLS do) sees the refusal as ssl.SSLError with reason
    SNI_REFUSED_REASON, and once it sends what OpenSSL wrote, the client is told
    unrecognized_name (asyncio's and uvloop's own TLS close without sending it)."""
    _, chain, key = files
    store = store_for(chain, key, policy=within_domain(DOMAIN))
    failures: list[ssl.SSLError] = []

    class Handshake(asyncio.Protocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            self.transport: asyncio.Transport = transport  # type: ignore[assignment]
            self.incoming, self.outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
            self.tls = store.context.wrap_bio(self.incoming, self.outgoing, server_side=True)

        def data_received(self, data: bytes) -> None:
            self.incoming.write(data)
            try:
                self.tls.do_handshake()
            except ssl.SSLWantReadError:
                pass
            except ssl.SSLError as exc:
                failures.append(exc)
                self.transport.write(self.outgoing.read())  # the alert
                self.transport.close()
                return
            self.transport.write(self.outgoing.read())

    async def scenario() -> None:
        server = await asyncio.get_running_loop().create_server(Handshake, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        seen = await refused(port, client_context(), "evil.test")
        assert "TLSV1_UNRECOGNIZED_NAME" in seen
        server.close()
        await server.wait_closed()

    run(scenario())
    (failure,) = failures
    assert failure.reason == SNI_REFUSED_REASON


def test_the_policy_can_pick_a_certificate_per_host(
    ca: trustme.CA, files: tuple[trustme.LeafCert, Path, Path], tmp_path: Path
) -> None:
    leaf, chain, key = files
    special = ca.issue_cert(f"special.{DOMAIN}")
    special_store = store_for(*write_pair(tmp_path / "special", special))

    def per_host(server_name: str | None) -> ssl.SSLContext | Refuse | None:
        return special_store.served.context if server_name == f"special.{DOMAIN}" else None

    store = store_for(chain, key, policy=per_host)

    async def scenario() -> None:
        async with echo_server(store.context) as server:
            for name, expected in ((f"special.{DOMAIN}", special), (f"app.{DOMAIN}", leaf)):
                connection = await server.connect(client_context(ca), name)
                assert connection.fingerprint == leaf_fingerprint(expected)
                await connection.aclose()

    run(scenario())


def test_a_failing_policy_fails_only_that_handshake(
    ca: trustme.CA, files: tuple[trustme.LeafCert, Path, Path], log_stream: io.StringIO
) -> None:
    _, chain, key = files

    def broken(server_name: str | None) -> ssl.SSLContext | Refuse | None:
        if server_name == f"bug.{DOMAIN}":
            raise RuntimeError("a bug in the listener's policy")
        return None

    store = store_for(chain, key, policy=broken)

    async def scenario() -> None:
        async with echo_server(store.context) as server:
            await server.refused(client_context(), f"bug.{DOMAIN}")
            connection = await server.connect(client_context(ca))
            await connection.aclose()

    run(scenario())
    (failure,) = [line for line in events(log_stream) if line["event"] == "tls_policy_failed"]
    assert failure["server_name"] == f"bug.{DOMAIN}"
    assert "RuntimeError: a bug in the listener's policy" in str(failure["traceback"])


def test_start_up_refuses_what_cannot_be_served(
    files: tuple[trustme.LeafCert, Path, Path], tmp_path: Path
) -> None:
    _, chain, key = files
    with pytest.raises(CertificateError, match="give both, or neither"):
        CertificateStore(CertificateSource(DOMAIN, cert_path=chain))
    missing = tmp_path / "missing.pem"
    with pytest.raises(CertificateError, match=f"^--tls-cert {missing}: cannot be read"):
        CertificateStore(CertificateSource(DOMAIN, missing, key))


def test_repr_names_the_certificate(files: tuple[trustme.LeafCert, Path, Path]) -> None:
    leaf, chain, key = files
    store = store_for(chain, key)
    assert repr(store) == (
        f"<CertificateStore {chain} {leaf_fingerprint(leaf)[:11]} names=('{DOMAIN}', '*.{DOMAIN}')>"
    )
