"""ACME certificates in memory, each with the SSLContext that serves it.

    cached = prepare(stored, bounds)     (a worker thread: a millisecond or two of OpenSSL)
    cache = CertificateCache(max_hosts)
    cache.install(host, cached)          the least recently used beyond `max_hosts` leave
    cache.serve(host, now)               its context, or None (none, or expired)
    cache.due(now)                       hosts due for renewal

Dropped from memory, not from disk: the next `ensure` for such a host loads it again
from the state directory. A context is a few KiB (the chain, the key, OpenSSL's
SSL_CTX); ACME_MAX_CACHED_HOSTS of them bound the memory.
"""

from __future__ import annotations

import ssl
from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime

from tunnelgate.logs import EventLog

from .acme_schedule import AcmeBounds, renewal_time
from .acme_store import StoredCertificate
from .tls_context import build_server_context

log = EventLog("tunnelgate.gateway.acme")


@dataclass(frozen=True, slots=True)
class CachedCertificate:
    certificate: StoredCertificate
    context: ssl.SSLContext
    renew_at: datetime


def prepare(stored: StoredCertificate, bounds: AcmeBounds) -> CachedCertificate:
    context = build_server_context(
        stored.chain_pem, stored.key_pem, chain_path=stored.chain_path, key_path=stored.key_path
    )
    renew_at = renewal_time(stored.not_before, stored.not_after, bounds)
    return CachedCertificate(stored, context, renew_at)


class CertificateCache:
    def __init__(self, max_hosts: int) -> None:
        self._max_hosts = max_hosts
        self._hosts: OrderedDict[str, CachedCertificate] = OrderedDict()  # LRU first

    def __repr__(self) -> str:
        return f"<CertificateCache {len(self._hosts)}/{self._max_hosts}>"

    def __len__(self) -> int:
        return len(self._hosts)

    def get(self, host: str) -> CachedCertificate | None:
        """What is in memory for `host` (not a use: the order stays)."""
        return self._hosts.get(host)

    def serve(self, host: str, now: datetime) -> ssl.SSLContext | None:
        """The context to serve `host` with: a use, which keeps it in memory longer."""
        cached = self._hosts.get(host)
        if cached is None:
            return None
        if now >= cached.certificate.not_after:
            return None  # expired while its renewal failed: the fallback is no worse
        self._hosts.move_to_end(host)
        return cached.context

    def install(self, host: str, cached: CachedCertificate) -> None:
        self._hosts[host] = cached
        self._hosts.move_to_end(host)
        while len(self._hosts) > self._max_hosts:
            dropped, _ = self._hosts.popitem(last=False)
            log.debug("acme_certificate_unloaded", host=dropped)

    def due(self, now: datetime) -> list[str]:
        return [host for host, cached in self._hosts.items() if now >= cached.renew_at]
