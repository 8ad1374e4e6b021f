"""The gateway's TLS side, ready for a listener: one context to listen with, whose
certificate can be replaced under it.

    store = CertificateStore(CertificateSource(domain, cert_path, key_path, state_dir),
                             policy=within_domain(domain))
    await loop.create_server(factory, host, port, ssl=store.context)  # or start_tls
    store.served            # ServedCertificate: paths, names, fingerprint (start-up log)
    store.reload()          # -> ReloadResult; SIGHUP, the admin API

With --tls-cert/--tls-key the chain and key are read from those files (certfile.py);
without, a self-signed certificate is made once and kept in the state directory
(selfsigned.py). Either way the context is Mozilla's intermediate profile
(tls_context.py). A file that cannot be served raises CertificateError at start-up.

Reload without touching open connections: the listener keeps `store.context` for good,
and every handshake passes through its SNI callback (OpenSSL calls it for every
ClientHello, with or without a server name), which moves that connection onto the
context of the current certificate (`ssl_object.context = ...`, OpenSSL's
SSL_set_SSL_CTX). `reload()` only builds a new context and replaces the current one:
a connection keeps the context it was handshaken with, a refused file leaves the old
one in place. asyncio and uvloop both make their TLS connections with
`SSLContext.wrap_bio`, so this works under either (tests/gateway/test_certs.py runs
it under uvloop). What stays with the listener's context whatever is swapped in, as
OpenSSL keeps it from the connection's first context: protocol versions, cipher
suites, groups (all the same here) and the session-ticket keys and session cache, so
a client resumes its session across a reload.

The same callback asks the listener's `ServerNamePolicy` first: it may refuse a server
name (the handshake fails; the listener's handshake sees ssl.SSLError with reason
SNI_REFUSED_REASON) or pick another context for it (a per-host ACME certificate,
later). `within_domain` refuses names outside the gateway's domain.
"""

from __future__ import annotations

import ssl
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from tunnelgate.errors import CertificateError
from tunnelgate.logs import EventLog

from .certfile import CertificateInfo, read_certificate
from .selfsigned import default_state_dir, ensure_self_signed
from .tls_context import build_server_context

log = EventLog("tunnelgate.gateway.tls")

# What the listener sees (ssl.SSLError.reason) when the policy refused a handshake.
SNI_REFUSED_REASON = "CALLBACK_FAILED"


@dataclass(frozen=True, slots=True)
class CertificateSource:
    """Where the certificate comes from: both files, or neither (self-signed)."""

    domain: str  # as config gives it: lower case, no trailing dot
    cert_path: Path | None = None  # --tls-cert
    key_path: Path | None = None  # --tls-key
    state_dir: Path | None = None  # --state-dir; None: selfsigned.default_state_dir()


@dataclass(frozen=True, slots=True)
class ServedCertificate:
    info: CertificateInfo
    self_signed: bool  # made by tunnelgate: a client pins info.fingerprint or trusts the file
    context: ssl.SSLContext = field(repr=False, compare=False)


@dataclass(frozen=True, slots=True)
class ReloadResult:
    ok: bool  # the new certificate serves new handshakes; else `error` says why not
    served: ServedCertificate  # what new handshakes get from now on
    changed: bool  # another certificate than before
    error: str | None = None


@dataclass(frozen=True, slots=True)
class Refuse:
    """A policy's answer for a server name the gateway does not serve; `reason` is for
    the policy's owner to log (the handshake error it sees carries none)."""

    reason: str


# The listener's say on each handshake, by server name (lower case, no trailing dot;
# None when the client sent none): None for the current certificate, a context of its
# own (built with tls_context.build_server_context), or Refuse. It runs inside the
# handshake, on the event loop: it must not block.
ServerNamePolicy = Callable[[str | None], ssl.SSLContext | Refuse | None]


def within_domain(domain: str) -> ServerNamePolicy:
    """Serve `domain`, one label under it (tunnel hosts, `tunnel.<domain>`) and clients
    that send no name (an address typed in); refuse every other name."""

    def policy(server_name: str | None) -> ssl.SSLContext | Refuse | None:
        if server_name is None or server_name == domain:
            return None
        label, _, parent = server_name.partition(".")
        if parent == domain and label:
            return None
        return Refuse(f"{server_name} is not {domain} or a name under it")

    return policy


class CertificateStore:
    def __init__(
        self,
        source: CertificateSource,
        *,
        policy: ServerNamePolicy | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._source = source
        self._policy = policy
        self._clock = clock
        self._served = _load(source, clock())
        _log_loaded("tls_certificate_loaded", self._served)
        self.context = self._served.context  # the listener's, for good
        self.context.sni_callback = self._on_client_hello

    @property
    def served(self) -> ServedCertificate:
        return self._served

    def reload(self, source: CertificateSource | None = None) -> ReloadResult:
        """Load the certificate again, from `source` if given (new paths after a config
        reload), for new handshakes. Blocking file work of a few milliseconds (tens when
        a self-signed one is made): it may run in a thread."""
        old = self._served
        try:
            new = _load(source or self._source, self._clock())
        except CertificateError as exc:
            log.warning("tls_reload_refused", error=str(exc), kept=old.info.fingerprint)
            return ReloadResult(ok=False, served=old, changed=False, error=str(exc))
        self._source = source or self._source
        self._served = new
        _log_loaded("tls_certificate_reloaded", new)
        changed = old.info.fingerprint != new.info.fingerprint
        return ReloadResult(ok=True, served=new, changed=changed)

    def _on_client_hello(
        self, ssl_object: ssl.SSLObject, server_name: str | None, _: ssl.SSLContext
    ) -> int | None:
        name = server_name.rstrip(".").lower() if server_name else None
        try:
            choice = self._policy(name) if self._policy is not None else None
        except Exception:  # a callback root (called by OpenSSL): log it, fail the handshake
            log.exception("tls_policy_failed", server_name=name)
            return ssl.ALERT_DESCRIPTION_INTERNAL_ERROR
        if isinstance(choice, Refuse):
            return ssl.ALERT_DESCRIPTION_UNRECOGNIZED_NAME
        context = self._served.context if choice is None else choice
        if ssl_object.context is not context:
            ssl_object.context = context
        return None

    def __repr__(self) -> str:
        info = self._served.info
        return f"<CertificateStore {info.chain_path} {info.fingerprint[:11]} names={info.names}>"


def _load(source: CertificateSource, now: datetime) -> ServedCertificate:
    cert_path, key_path = source.cert_path, source.key_path
    if cert_path is not None and key_path is not None:
        file = read_certificate(cert_path, key_path, source.domain, now)
    elif cert_path is None and key_path is None:
        state_dir = source.state_dir or default_state_dir()
        file = ensure_self_signed(state_dir, source.domain, now).file
    else:
        raise CertificateError("--tls-cert and --tls-key: give both, or neither (self-signed)")
    context = build_server_context(
        file.chain_pem,
        file.key_pem,
        chain_path=file.info.chain_path,
        key_path=file.info.key_path,
    )
    return ServedCertificate(file.info, self_signed=cert_path is None, context=context)


def _log_loaded(event: str, served: ServedCertificate) -> None:
    info = served.info
    log.info(
        event,
        path=str(info.chain_path),
        names=",".join(info.names),
        sha256_fingerprint=info.fingerprint,
        not_after=info.not_after.isoformat(),
        chain=info.chain_length,
        self_signed=served.self_signed,
    )
    for warning in info.warnings:
        log.warning("tls_certificate_warning", path=str(info.chain_path), warning=warning)
