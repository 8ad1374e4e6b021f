"""The one test certificate of an HTTPS run, and how the benchmark's clients trust it.

A run makes a private CA and one certificate (both ECDSA P-256, like the gateway's own
self-signed default) with trustme, writes them under the work directory, and gives the same
chain and key to every TLS server of the run: tunnelgate's ``--https`` listener and nginx.
The clients trust the CA (Python's ``ssl``, which verifies the chain and the host name) or,
for wrk, verify nothing (wrk sets ``SSL_VERIFY_NONE``: fine for a benchmark, whose servers
are our own processes on loopback).

The names are ``localhost``, ``*.localhost`` and the benchmark's tunnel host
``bench.localhost`` spelt out: OpenSSL's host-name check (Python, curl) does not match a
wildcard with a single label after it, so ``*.localhost`` alone would not do for
``bench.localhost``. The gateway's SNI policy accepts the three (the domain and one label
under it).
"""

from __future__ import annotations

import hashlib
import ssl
from dataclasses import dataclass
from pathlib import Path

from .probe import ClientTls


@dataclass(frozen=True, slots=True)
class BenchCertificate:
    ca_file: Path  # the CA the clients trust
    chain_file: Path  # the leaf (the CA signs it directly: a chain of one)
    key_file: Path
    names: tuple[str, ...]
    fingerprint: str  # SHA-256 of the leaf, colon hex as openssl and the gateway's log print it

    def client(self, server_name: str) -> ClientTls:
        """What a client needs to reach `server_name` on a server serving this certificate."""
        return ClientTls(self.ca_file, server_name)

    def describe(self) -> dict[str, object]:
        return {
            "key": "ECDSA P-256 (CA and leaf), made by trustme for this run",
            "names": list(self.names),
            "sha256_fingerprint": self.fingerprint,
        }


def make_certificate(workdir: Path, domain: str, host: str) -> BenchCertificate:
    """A fresh CA, and a leaf for `domain`, `*.domain` and `host`, under `workdir`/tls
    (replacing those of an earlier run)."""
    import trustme  # the dev extra (make bench installs it); only HTTPS runs need it

    folder = workdir / "tls"
    folder.mkdir(parents=True, exist_ok=True)
    folder.chmod(0o755)  # nginx's worker (nobody, when we are root) opens nothing here,
    # but its master reads the files as us; the key stays 0600
    ca = trustme.CA(key_type=trustme.KeyType.ECDSA)
    names = (domain, f"*.{domain}", host)
    leaf = ca.issue_cert(*names, key_type=trustme.KeyType.ECDSA)
    cert = BenchCertificate(
        ca_file=folder / "ca.pem",
        chain_file=folder / "chain.pem",
        key_file=folder / "key.pem",
        names=names,
        fingerprint=_fingerprint(leaf.cert_chain_pems[0].bytes()),
    )
    ca.cert_pem.write_to_path(str(cert.ca_file))
    cert.chain_file.write_bytes(b"".join(blob.bytes() for blob in leaf.cert_chain_pems))
    cert.key_file.touch(mode=0o600)
    leaf.private_key_pem.write_to_path(str(cert.key_file))
    return cert


def _fingerprint(pem: bytes) -> str:
    digest = hashlib.sha256(ssl.PEM_cert_to_DER_cert(pem.decode())).hexdigest().upper()
    return ":".join(digest[i : i + 2] for i in range(0, len(digest), 2))
