"""What ACME leaves in the state directory: the account key and a certificate per host.

    store = AcmeStore(state_dir, directory_url)
    store.account_key()              PEM of the account's key, made once (EC P-256)
    store.save(host, chain, key, now) -> StoredCertificate, read back and checked
    store.load(host, now)            -> StoredCertificate | None (none, or not servable)
    store.recent(limit, now)         the `limit` most recently issued, for start-up
    store.try_lock(host)             this process's right to order `host`, or None

Layout, one folder per CA (a staging certificate is never served after a switch to
production), files 0600 and folders 0700, each file written whole (statefiles.py):

    <state_dir>/acme/<ca-host>-<sha256(url)[:12]>/
        account.key                  the account's key: the account *is* this key (RFC 8555)
        certs/<host>/cert.pem        the chain as the CA sent it
        certs/<host>/key.pem         written first: a crash between the two leaves a
                                     mismatch, which load() refuses and the host re-orders
        certs/<host>/.lock           held while an order for the host runs (--workers)

Blocking file work of a few milliseconds: the manager runs it in a worker thread.
OSError is translated here, once, into CertificateError naming the file.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Final
from urllib.parse import urlsplit

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from tunnelgate.errors import CertificateError

from .certfile import covers, read_certificate
from .statefiles import FileLock, locked, owner_only, private_dir, try_locked, write_private

OPTION: Final = "--state-dir"
# A host as the manager passes it (validated there, checked again: it becomes a path).
_HOST: Final = re.compile(r"[a-z0-9](?:[a-z0-9.-]{0,251}[a-z0-9])?\Z")


@dataclass(frozen=True, slots=True)
class StoredCertificate:
    host: str
    chain_pem: bytes = field(repr=False)
    key_pem: bytes = field(repr=False)
    chain_path: Path
    key_path: Path
    not_before: datetime
    not_after: datetime
    fingerprint: str


def new_key() -> bytes:
    """A new EC P-256 key, PEM (PKCS #8): every CA takes it, and it is cheap to serve."""
    key = ec.generate_private_key(ec.SECP256R1())
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def ca_folder_name(directory_url: str) -> str:
    host = urlsplit(directory_url).hostname or "ca"
    digest = hashlib.sha256(directory_url.encode()).hexdigest()[:12]
    return f"{re.sub(r'[^a-z0-9.-]', '_', host.lower())}-{digest}"


class AcmeStore:
    def __init__(self, state_dir: Path, directory_url: str) -> None:
        self.root = state_dir / "acme" / ca_folder_name(directory_url)
        self._state_dir = state_dir

    def __repr__(self) -> str:
        return f"<AcmeStore {self.root}>"

    def account_key(self) -> bytes:
        path = self.root / "account.key"
        with _translated(self.root):
            self._private_dirs(self.root)
            with locked(self.root / ".lock"):
                if path.exists():
                    owner_only(path, 0o600)
                    return path.read_bytes()
                key_pem = new_key()
                write_private(path, key_pem)
                return key_pem

    def save(self, host: str, chain_pem: bytes, key_pem: bytes, now: datetime) -> StoredCertificate:
        folder = self._folder(host)
        with _translated(folder):
            self._private_dirs(folder)
            write_private(folder / "key.pem", key_pem)
            write_private(folder / "cert.pem", chain_pem)
        stored = self.load(host, now)
        if stored is None:
            raise CertificateError(f"{OPTION} {folder}: the CA sent a certificate unfit to serve")
        return stored

    def load(self, host: str, now: datetime) -> StoredCertificate | None:
        """The kept certificate for `host` if there is one fit to serve now."""
        folder = self._folder(host)
        chain_path, key_path = folder / "cert.pem", folder / "key.pem"
        if not chain_path.exists():
            return None
        try:
            file = read_certificate(chain_path, key_path, host, now, option=OPTION)
        except CertificateError:
            return None  # expired, torn by a crash, tampered with: ordered anew
        if not covers(file.info.names, host):
            return None
        return StoredCertificate(
            host=host,
            chain_pem=file.chain_pem,
            key_pem=file.key_pem,
            chain_path=chain_path,
            key_path=key_path,
            not_before=file.info.not_before,
            not_after=file.info.not_after,
            fingerprint=file.info.fingerprint,
        )

    def recent(self, limit: int, now: datetime) -> list[StoredCertificate]:
        """Up to `limit` servable certificates, the most recently issued first."""
        certs = self.root / "certs"
        with _translated(certs):
            if not certs.is_dir():
                return []
            chains = [path for path in certs.glob("*/cert.pem") if _HOST.match(path.parent.name)]
            chains.sort(key=lambda path: path.stat().st_mtime, reverse=True)
        found: list[StoredCertificate] = []
        for chain in chains:
            if len(found) >= limit:
                break
            stored = self.load(chain.parent.name, now)
            if stored is not None:
                found.append(stored)
        return found

    def try_lock(self, host: str) -> FileLock | None:
        folder = self._folder(host)
        with _translated(folder):
            self._private_dirs(folder)
            return try_locked(folder / ".lock")

    def _private_dirs(self, path: Path) -> None:
        """`path` and each folder from the state directory down to it, 0700 (mkdir's
        `parents` would make the ones in between with the umask's mode)."""
        relative = path.relative_to(self._state_dir)
        for part in (*reversed(relative.parents), relative):
            private_dir(self._state_dir / part)

    def _folder(self, host: str) -> Path:
        if _HOST.match(host) is None or ".." in host:
            raise ValueError(f"not a host name: {host!r}")  # a bug in the caller
        return self.root / "certs" / host


@contextmanager
def _translated(where: Path) -> Iterator[None]:
    try:
        yield
    except OSError as exc:
        raise CertificateError(f"{OPTION} {exc.filename or where}: {exc.strerror or exc}") from exc
