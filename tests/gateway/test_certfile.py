"""Certificate files checked at load: what is refused (naming the file, the option and
the problem), what is only warned about, and wildcard coverage."""

from __future__ import annotations

import hashlib
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import trustme
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from tls_helpers import DOMAIN, write_pair

from tunnelgate import limits
from tunnelgate.errors import CertificateError, ConfigError
from tunnelgate.gateway.certfile import covers, read_certificate

NOW = datetime.now(UTC)


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


def read(chain: Path, key: Path, now: datetime = NOW, domain: str = DOMAIN) -> list[str]:
    return list(read_certificate(chain, key, domain, now).info.warnings)


def test_a_good_chain_loads_with_its_names_and_fingerprint(ca: trustme.CA, tmp_path: Path) -> None:
    leaf = ca.create_child_ca().issue_cert(DOMAIN, f"*.{DOMAIN}")
    chain, key = write_pair(tmp_path, leaf)
    loaded = read_certificate(chain, key, DOMAIN, NOW)
    info = loaded.info
    assert info.names == (DOMAIN, f"*.{DOMAIN}")
    assert info.chain_length == 2  # leaf and intermediate: both are served
    assert info.warnings == ()
    assert loaded.chain_pem == chain.read_bytes()
    der = x509.load_pem_x509_certificate(chain.read_bytes()).public_bytes(
        serialization.Encoding.DER
    )
    digest = hashlib.sha256(der).hexdigest().upper()
    assert info.fingerprint == ":".join(re.findall("..", digest))  # as openssl prints it


@pytest.mark.parametrize(
    ("damage", "option", "problem"),
    [
        ("chain_garbage", "--tls-cert", "not a PEM certificate chain"),
        ("chain_missing", "--tls-cert", "cannot be read: No such file or directory"),
        ("chain_huge", "--tls-cert", "not a certificate or key file"),
        ("key_garbage", "--tls-key", "not a PEM private key"),
        ("key_other", "--tls-key", "the key does not belong to the certificate in --tls-cert"),
        ("key_encrypted", "--tls-key", "the key is encrypted"),
        ("chain_reversed", "--tls-key", "belongs to certificate 2 in --tls-cert"),
    ],
)
def test_unusable_files_are_refused_naming_file_and_problem(
    ca: trustme.CA, tmp_path: Path, damage: str, option: str, problem: str
) -> None:
    leaf = ca.create_child_ca().issue_cert(DOMAIN)
    chain, key = write_pair(tmp_path, leaf)
    private = serialization.load_pem_private_key(key.read_bytes(), None)
    match damage:
        case "chain_garbage":
            chain.write_text("-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n")
        case "chain_missing":
            chain.unlink()
        case "chain_huge":
            chain.write_bytes(b"#" * (limits.MAX_CERT_FILE_BYTES + 1))
        case "key_garbage":
            key.write_text("hello")
        case "key_other":
            key.write_bytes(ca.issue_cert(DOMAIN).private_key_pem.bytes())
        case "key_encrypted":
            key.write_bytes(
                private.private_bytes(
                    serialization.Encoding.PEM,
                    serialization.PrivateFormat.PKCS8,
                    serialization.BestAvailableEncryption(b"secret"),
                )
            )
        case "chain_reversed":
            chain.write_bytes(b"".join(blob.bytes() for blob in reversed(leaf.cert_chain_pems)))
    path = chain if option == "--tls-cert" else key
    with pytest.raises(CertificateError) as raised:
        read(chain, key)
    assert str(raised.value).startswith(f"{option} {path}: ")
    assert problem in str(raised.value)
    assert isinstance(raised.value, ConfigError)  # start-up stops on it like a bad option


def test_a_certificate_not_valid_now_is_refused(ca: trustme.CA, tmp_path: Path) -> None:
    start, end = NOW - timedelta(days=1), NOW + timedelta(days=30)
    chain, key = write_pair(tmp_path, ca.issue_cert(DOMAIN, not_before=start, not_after=end))
    with pytest.raises(CertificateError, match=r"--tls-cert .*: expired on 20\d\d-"):
        read(chain, key, now=end + timedelta(seconds=1))
    with pytest.raises(CertificateError, match=r"--tls-cert .*: not valid before 20\d\d-"):
        read(chain, key, now=start - timedelta(seconds=1))


def test_expiry_within_two_weeks_is_a_warning(ca: trustme.CA, tmp_path: Path) -> None:
    end = NOW + timedelta(days=40)
    chain, key = write_pair(tmp_path, ca.issue_cert(DOMAIN, f"*.{DOMAIN}", not_after=end))
    assert read(chain, key) == []
    (warning,) = read(chain, key, now=end - timedelta(days=13, hours=1))
    assert warning == f"expires on {end:%Y-%m-%d %H:%M} UTC, in 13 days"


def test_names_outside_the_domain_are_a_warning_listing_what_is_covered(
    ca: trustme.CA, tmp_path: Path
) -> None:
    chain, key = write_pair(tmp_path, ca.issue_cert("other.test", "*.other.test"))
    (warning,) = read(chain, key)
    assert warning == (f"does not cover {DOMAIN} or *.{DOMAIN}; it covers other.test, *.other.test")
    chain, key = write_pair(tmp_path, ca.issue_cert(f"*.{DOMAIN}"))
    assert read(chain, key) == [f"does not cover {DOMAIN}; it covers *.{DOMAIN}"]


def test_a_chain_out_of_order_is_a_warning(ca: trustme.CA, tmp_path: Path) -> None:
    leaf = ca.create_child_ca().issue_cert(DOMAIN, f"*.{DOMAIN}")
    chain, key = write_pair(tmp_path, leaf)
    unrelated = ca.create_child_ca().cert_pem.bytes()
    chain.write_bytes(leaf.cert_chain_pems[0].bytes() + unrelated)
    assert read(chain, key) == ["certificate 2 did not issue certificate 1"]


@pytest.mark.parametrize(
    ("names", "host", "covered"),
    [
        (("example.test",), "example.test", True),
        (("*.example.test",), "app.example.test", True),
        (("*.example.test",), "example.test", False),  # a wildcard is one whole label
        (("*.example.test",), "a.b.example.test", False),
        (("*.test",), "example.test", True),  # the domain itself under a parent wildcard
        (("*.test",), "*.example.test", False),  # a wildcard only by the same wildcard
        (("*.example.test",), "*.example.test", True),
        ((), "example.test", False),
    ],
)
def test_wildcard_coverage(names: tuple[str, ...], host: str, covered: bool) -> None:
    assert covers(names, host) is covered
