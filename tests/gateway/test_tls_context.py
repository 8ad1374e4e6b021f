"""The server context: Mozilla intermediate 6.0, checked by real handshakes on loopback
under uvloop (versions, ALPN, cipher suites, key-exchange groups, resumption)."""

from __future__ import annotations

import asyncio
import ssl
import warnings
from pathlib import Path

import pytest
import trustme
from tls_helpers import (
    DOMAIN,
    blocking_handshake,
    client_context,
    echo_server,
    run,
)

from tunnelgate.errors import CertificateError
from tunnelgate.gateway.tls_context import TLS12_CIPHERS, build_server_context

TLS13_SUITES = {"TLS_AES_128_GCM_SHA256", "TLS_AES_256_GCM_SHA384", "TLS_CHACHA20_POLY1305_SHA256"}
V = ssl.TLSVersion


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="module")
def context(ca: trustme.CA) -> ssl.SSLContext:
    return server_context(ca.issue_cert(DOMAIN, f"*.{DOMAIN}"))


def server_context(leaf: trustme.LeafCert) -> ssl.SSLContext:
    chain = b"".join(blob.bytes() for blob in leaf.cert_chain_pems)
    key = leaf.private_key_pem.bytes()
    return build_server_context(chain, key, chain_path=Path("chain"), key_path=Path("key"))


def test_the_context_is_mozilla_intermediate(context: ssl.SSLContext) -> None:
    assert context.minimum_version == V.TLSv1_2
    assert context.maximum_version == V.TLSv1_3
    names = {cipher["name"] for cipher in context.get_ciphers()}
    assert names == set(TLS12_CIPHERS.split(":")) | TLS13_SUITES  # no DHE, no CBC, no RSA kx
    assert not context.options & ssl.OP_CIPHER_SERVER_PREFERENCE  # the client's order
    assert context.options & ssl.OP_NO_COMPRESSION
    assert context.options & ssl.OP_NO_RENEGOTIATION
    # Resumption is Python's default, left on: tickets allowed, two per TLS 1.3 handshake.
    assert not context.options & ssl.OP_NO_TICKET
    assert context.num_tickets == 2


@pytest.mark.parametrize("version", [V.TLSv1_2, V.TLSv1_3], ids=["TLSv1.2", "TLSv1.3"])
def test_tls12_and_tls13_handshake_with_alpn_http11(
    ca: trustme.CA, context: ssl.SSLContext, version: ssl.TLSVersion
) -> None:
    async def scenario() -> None:
        async with echo_server(context) as server:
            # The client offers h2 first: the listener speaks HTTP/1.1 only, for now.
            client = client_context(ca, versions=(version, version))
            connection = await server.connect(client, f"app.{DOMAIN}")
            try:
                assert connection.tls.version() == version.name.replace("_", ".")
                assert connection.tls.selected_alpn_protocol() == "http/1.1"
                cipher = connection.tls.cipher()
                assert cipher is not None
                allowed = TLS13_SUITES if version == V.TLSv1_3 else TLS12_CIPHERS.split(":")
                assert cipher[0] in allowed
                assert await connection.echo() == b"ping"
            finally:
                await connection.aclose()

    run(scenario())


def test_tls10_and_tls11_are_refused(ca: trustme.CA, context: ssl.SSLContext) -> None:
    """OpenSSL 3 still lets a client offer TLS 1.0/1.1 at security level 0. The same
    client completes a handshake with a server that allows them, so the refusal is ours."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # TLSVersion.TLSv1 itself
        old_client = client_context(ca, versions=(V.TLSv1, V.TLSv1_1))
        lenient = server_context(ca.issue_cert(DOMAIN))
        lenient.minimum_version = V.TLSv1
    old_client.set_ciphers("DEFAULT:@SECLEVEL=0")
    lenient.set_ciphers("DEFAULT:@SECLEVEL=0")

    async def scenario() -> None:
        async with echo_server(lenient) as server:
            control = await server.connect(old_client)
            assert control.tls.version() == "TLSv1.1"
            await control.aclose()
        async with echo_server(context) as server:
            await server.refused(old_client)

    run(scenario())


@pytest.mark.parametrize(
    ("group", "served"),
    [("X25519", True), ("prime256v1", True), ("secp384r1", True), ("secp521r1", False)],
)
def test_key_exchange_groups_are_x25519_p256_p384(
    ca: trustme.CA, context: ssl.SSLContext, group: str, served: bool
) -> None:
    """A client that offers a single group: OpenSSL's defaults would also take P-521."""
    client = client_context(ca)
    client.set_ecdh_curve(group)  # Python 3.11 sets exactly this one group

    async def scenario() -> None:
        async with echo_server(context) as server:
            if served:
                connection = await server.connect(client)
                await connection.aclose()
            else:
                await server.refused(client)

    run(scenario())


@pytest.mark.parametrize("version", [V.TLSv1_2, V.TLSv1_3], ids=["TLSv1.2", "TLSv1.3"])
def test_sessions_resume(ca: trustme.CA, context: ssl.SSLContext, version: ssl.TLSVersion) -> None:
    client = client_context(ca, versions=(version, version))

    async def scenario() -> None:
        async with echo_server(context) as server:
            session, _ = await asyncio.to_thread(blocking_handshake, server.port, client)
            assert session is not None
            _, reused = await asyncio.to_thread(blocking_handshake, server.port, client, session)
            assert reused

    run(scenario())


def test_a_key_openssl_cannot_use_is_a_certificate_error(ca: trustme.CA) -> None:
    leaf, other = ca.issue_cert(DOMAIN), ca.issue_cert(DOMAIN)
    chain = leaf.cert_chain_pems[0].bytes()
    with pytest.raises(CertificateError, match=r"^chain and key: OpenSSL refused them: "):
        build_server_context(
            chain, other.private_key_pem.bytes(), chain_path=Path("chain"), key_path=Path("key")
        )
