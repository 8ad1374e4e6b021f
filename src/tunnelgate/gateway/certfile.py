"""Read a PEM certificate chain and its key, and check them before anything serves them.

    read_certificate(chain_path, key_path, domain, now, option)  -> CertificateFile

Refused (CertificateError naming the file, the option it came from, and the problem): a
file that cannot be read or is too big, no PEM certificate, an unreadable or encrypted
key, a key that is not the first certificate's, a certificate not valid now. Warned
about, and served: one that expires within limits.CERT_EXPIRY_WARNING, one that does not
cover `<domain>` and `*.<domain>` (an operator may mean other names), a chain out of
order. OSError and cryptography's ValueError/TypeError are translated here, once.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes

from tunnelgate import limits
from tunnelgate.errors import CertificateError

EXPIRY_WARNING = timedelta(seconds=limits.CERT_EXPIRY_WARNING)


@dataclass(frozen=True, slots=True)
class CertificateInfo:
    """What a loaded certificate is, for the log and the admin API."""

    chain_path: Path
    key_path: Path
    names: tuple[str, ...]  # DNS names in its subjectAltName
    not_before: datetime
    not_after: datetime
    fingerprint: str  # SHA-256 of the first certificate, colon hex as openssl prints it
    chain_length: int
    warnings: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class CertificateFile:
    """A checked chain and key: their bytes (what is served) and what they are."""

    chain_pem: bytes
    key_pem: bytes
    info: CertificateInfo


def read_certificate(
    chain_path: Path, key_path: Path, domain: str, now: datetime, option: str = "--tls-cert"
) -> CertificateFile:
    """Read and check a chain and its key; `option` names where they came from."""
    key_option = "--tls-key" if option == "--tls-cert" else option
    chain_pem = _read(chain_path, option)
    key_pem = _read(key_path, key_option)
    chain = _parse_chain(chain_pem, f"{option} {chain_path}")
    _check_key(chain, key_pem, f"{key_option} {key_path}", f"{option} {chain_path}")
    leaf = chain[0]
    where = f"{option} {chain_path}"
    if now < leaf.not_valid_before_utc:
        raise CertificateError(f"{where}: not valid before {_day(leaf.not_valid_before_utc)}")
    if now >= leaf.not_valid_after_utc:
        raise CertificateError(f"{where}: expired on {_day(leaf.not_valid_after_utc)}")
    names = dns_names(leaf)
    info = CertificateInfo(
        chain_path=chain_path,
        key_path=key_path,
        names=names,
        not_before=leaf.not_valid_before_utc,
        not_after=leaf.not_valid_after_utc,
        fingerprint=fingerprint(leaf),
        chain_length=len(chain),
        warnings=tuple(_warnings(chain, names, domain, now)),
    )
    return CertificateFile(chain_pem, key_pem, info)


def fingerprint(certificate: x509.Certificate) -> str:
    """`AB:CD:...`, as `openssl x509 -noout -fingerprint -sha256` prints it."""
    return certificate.fingerprint(hashes.SHA256()).hex(":").upper()


def dns_names(certificate: x509.Certificate) -> tuple[str, ...]:
    try:
        san = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except x509.ExtensionNotFound:
        return ()
    return tuple(name.lower() for name in san.value.get_values_for_type(x509.DNSName))


def covers(names: tuple[str, ...], host: str) -> bool:
    """Whether a certificate for `names` is valid for `host` (RFC 6125: a wildcard is a
    whole left-most label, standing for exactly one label; `*.d` covers only `*.d`
    itself among wildcards)."""
    if host in names:
        return True
    label, _, parent = host.partition(".")
    return bool(label) and label != "*" and f"*.{parent}" in names


def _read(path: Path, option: str) -> bytes:
    try:
        with path.open("rb") as file:
            data = file.read(limits.MAX_CERT_FILE_BYTES + 1)
    except OSError as exc:
        raise CertificateError(f"{option} {path}: cannot be read: {exc.strerror or exc}") from exc
    if len(data) > limits.MAX_CERT_FILE_BYTES:
        raise CertificateError(
            f"{option} {path}: larger than {limits.MAX_CERT_FILE_BYTES} bytes, "
            "not a certificate or key file"
        )
    return data


def _parse_chain(pem: bytes, where: str) -> list[x509.Certificate]:
    try:
        return x509.load_pem_x509_certificates(pem)
    except ValueError as exc:
        raise CertificateError(f"{where}: not a PEM certificate chain ({exc})") from exc


def _check_key(chain: list[x509.Certificate], key_pem: bytes, where: str, chain_at: str) -> None:
    try:
        key = serialization.load_pem_private_key(key_pem, password=None)
    except TypeError as exc:  # cryptography's word for "it needs a password"
        raise CertificateError(f"{where}: the key is encrypted; give an unencrypted one") from exc
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise CertificateError(f"{where}: not a PEM private key ({exc})") from exc
    public = _spki(key.public_key())
    spkis = [_spki(certificate.public_key()) for certificate in chain]
    if spkis[0] == public:
        return
    if public in spkis:
        raise CertificateError(
            f"{where}: the key belongs to certificate {spkis.index(public) + 1} in {chain_at}, "
            "not to the first: put the server's own certificate first"
        )
    raise CertificateError(f"{where}: the key does not belong to the certificate in {chain_at}")


def _spki(public_key: PublicKeyTypes) -> bytes:
    return public_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _warnings(
    chain: list[x509.Certificate], names: tuple[str, ...], domain: str, now: datetime
) -> list[str]:
    found = []
    left = chain[0].not_valid_after_utc - now
    if left < EXPIRY_WARNING:
        found.append(f"expires on {_day(chain[0].not_valid_after_utc)}, in {left.days} days")
    missing = [host for host in (domain, f"*.{domain}") if not covers(names, host)]
    if missing:
        listed = ", ".join(names) if names else "no DNS names (no subjectAltName)"
        found.append(f"does not cover {' or '.join(missing)}; it covers {listed}")
    for number, (child, parent) in enumerate(itertools.pairwise(chain), start=2):
        if child.issuer != parent.subject:
            found.append(f"certificate {number} did not issue certificate {number - 1}")
    return found


def _day(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M UTC")
