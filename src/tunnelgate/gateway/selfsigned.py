"""The self-signed default: one certificate for `<domain>` and `*.<domain>`, kept.

    default_state_dir(environ)                  $XDG_DATA_HOME/tunnelgate or
                                                ~/.local/share/tunnelgate
    ensure_self_signed(state_dir, domain, now)  -> SelfSigned(file, made, why)

With --https and no --tls-cert, the gateway serves a certificate it made itself: an
ECDSA P-256 key, subjectAltName `<domain>` and `*.<domain>`, valid for
limits.SELF_SIGNED_VALIDITY. It is kept in `<state_dir>/self-signed/` (cert.pem,
key.pem; files 0600, directories 0700, each written to a temporary file, synced and
renamed into place) and reused across restarts, so a client that pinned or trusted it
(`--ca cert.pem`) keeps working. It is made anew when it is missing or unreadable,
does not match its key, is for another domain, or is within limits.CERT_EXPIRY_WARNING
of its end. A lock file keeps processes that start together (--workers) from making
two. OSError and cryptography's ValueError are translated here, once.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from tunnelgate import limits
from tunnelgate.errors import CertificateError
from tunnelgate.logs import EventLog

from .certfile import CertificateFile, read_certificate
from .statefiles import locked, owner_only, private_dir, write_private

log = EventLog("tunnelgate.gateway.tls")

OPTION = "--state-dir"  # what errors name: the files live there
SUBDIR = "self-signed"
MAX_COMMON_NAME = 64  # RFC 5280's ub-common-name


@dataclass(frozen=True, slots=True)
class SelfSigned:
    file: CertificateFile
    made: bool  # made now (else reused)
    why: str  # why it was made, or "reused"


def default_state_dir(environ: Mapping[str, str] = os.environ) -> Path:
    """The XDG data directory's `tunnelgate` (a relative XDG_DATA_HOME is ignored, as the
    XDG Base Directory spec says)."""
    data_home = environ.get("XDG_DATA_HOME", "")
    base = Path(data_home) if os.path.isabs(data_home) else Path.home() / ".local" / "share"
    return base / "tunnelgate"


def ensure_self_signed(state_dir: Path, domain: str, now: datetime) -> SelfSigned:
    """The kept certificate for `domain`, made first if there is none fit to serve."""
    folder = state_dir / SUBDIR
    chain_path, key_path = folder / "cert.pem", folder / "key.pem"
    try:
        private_dir(state_dir)
        private_dir(folder)
        with locked(folder / ".lock"):
            why = _unfit(chain_path, key_path, domain, now)
            if why is None:
                for path in (chain_path, key_path):
                    owner_only(path, 0o600)
            else:
                chain_pem, key_pem = make_self_signed(domain, now)
                write_private(key_path, key_pem)  # key first: a crash between the two
                write_private(chain_path, chain_pem)  # leaves a mismatch, made anew
                log.info("tls_self_signed_made", path=str(chain_path), domain=domain, why=why)
    except OSError as exc:
        where = exc.filename or folder
        raise CertificateError(f"{OPTION} {where}: {exc.strerror or exc}") from exc
    file = read_certificate(chain_path, key_path, domain, now, option=OPTION)
    return SelfSigned(file, made=why is not None, why=why or "reused")


def make_self_signed(domain: str, now: datetime) -> tuple[bytes, bytes]:
    """A new certificate and key for `domain` and `*.<domain>`, as PEM."""
    key = ec.generate_private_key(ec.SECP256R1())
    attributes = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, "tunnelgate self-signed")]
    if len(domain) <= MAX_COMMON_NAME:
        attributes.append(x509.NameAttribute(NameOID.COMMON_NAME, domain))
    name = x509.Name(attributes)
    start = now - timedelta(seconds=limits.SELF_SIGNED_BACKDATE)
    try:
        certificate = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(start)
            .not_valid_after(now + timedelta(seconds=limits.SELF_SIGNED_VALIDITY))
            .add_extension(x509.SubjectAlternativeName(_names(domain)), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(_SIGNING_ONLY, critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(key.public_key()), False
            )
            .sign(key, hashes.SHA256())
        )
    except ValueError as exc:
        raise CertificateError(f"--domain {domain}: no certificate can name it ({exc})") from exc
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return certificate.public_bytes(serialization.Encoding.PEM), key_pem


_SIGNING_ONLY = x509.KeyUsage(
    digital_signature=True,
    content_commitment=False,
    key_encipherment=False,
    data_encipherment=False,
    key_agreement=False,
    key_cert_sign=False,
    crl_sign=False,
    encipher_only=False,
    decipher_only=False,
)


def _names(domain: str) -> list[x509.GeneralName]:
    return [x509.DNSName(domain), x509.DNSName(f"*.{domain}")]


def _unfit(chain_path: Path, key_path: Path, domain: str, now: datetime) -> str | None:
    """Why the kept certificate cannot be served as it is, or None."""
    if not chain_path.exists():
        return "none kept yet"
    try:
        info = read_certificate(chain_path, key_path, domain, now, option=OPTION).info
    except CertificateError as exc:
        return str(exc)
    if set(info.names) != {domain, f"*.{domain}"}:
        return f"it was made for {', '.join(info.names)}"
    if info.not_after - now < timedelta(seconds=limits.CERT_EXPIRY_WARNING):
        return f"it expires on {info.not_after:%Y-%m-%d}"
    return None
