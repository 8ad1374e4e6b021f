"""Per-host certificates from an ACME CA, on demand: what the HTTPS listener asks.

    acme = AcmeManager(domain=d, email=e, directory=url, state_dir=dir, ca_bundle=None)
    await acme.start()               the account key, certificates kept in the state dir
    acme.ensure(host)                non-blocking: load or order `host`'s certificate
    acme.context_for(host)           its SSLContext once there, else None (the listener
                                     serves the self-signed fallback meanwhile)
    acme.challenge_response(token)   HTTP-01: the body for GET /.well-known/acme-challenge/
                                     <token> on the HTTP listener, any Host; else None
    acme.statistics()                counts, for the admin API and tests
    await acme.aclose()

With --acme-email and no wildcard certificate. `ensure` is cheap enough for every
handshake: a host whose certificate is in memory and not due for renewal costs two dict
lookups. Otherwise the host joins a bounded queue, unless it is queued or being worked
on already (never two orders for one name), backing off, or not `<domain>` or one label
under it. ACME_MAX_ORDERS workers take hosts from the queue, so at most that many orders
are in flight. A worker first takes the host's lock file (another gateway process on the
same state directory may be ordering it; then it waits for that one), then the state
directory's copy: one that is fit and not due for renewal is served as it is; else an
order goes to the CA (acme_order.py) while the old certificate, if any, is still served.

Failures (errors.AcmeError, acme_schedule.py): a refusal backs off that host; a rate
limit or an unreachable CA holds every order, and the worker goes on with its host once
the hold is over, so a host asked for during an outage gets its certificate when the CA
is back. Each order, success, failure (with the CA's problem detail) and renewal is
logged.

The `acme` client is synchronous (requests): each of its calls is one HTTP exchange,
bounded by ACME_REQUEST_TIMEOUT, run with asyncio.to_thread (at most one per worker);
every wait is in asyncio. An async HTTP client would need a new dependency and our own
JWS and nonce handling, which the issue asks us not to write.

Renewal: at acme_schedule.renewal_time (30 days before expiry for Let's Encrypt's 90-day
certificates), checked by `ensure` and, for the certificates in memory, every
ACME_RENEW_CHECK_INTERVAL. Memory: at most ACME_MAX_CACHED_HOSTS certificates, least
recently used dropped from memory (not from disk: the next `ensure` loads it again).
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tunnelgate.errors import AcmeError, CertificateError
from tunnelgate.logs import EventLog, RateLimitedLog
from tunnelgate.proto.names import normalize_name

from .acme_account import AcmeAccount
from .acme_cache import CachedCertificate, CertificateCache, prepare
from .acme_client import load_account_key
from .acme_order import issue
from .acme_schedule import AcmeBounds, AcmeSchedule
from .acme_store import AcmeStore
from .statefiles import FileLock

log = EventLog("tunnelgate.gateway.acme")
warn = RateLimitedLog(log)

LETS_ENCRYPT: str = "https://acme-v02.api.letsencrypt.org/directory"


def _utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class AcmeStatistics:
    cached: int  # certificates in memory
    queued: int  # hosts queued or being worked on
    backing_off: int  # hosts waiting after a refusal
    orders: int  # orders sent to the CA (new and renewals)
    issued: int  # certificates issued (renewals included)
    failed: int  # orders that failed
    loaded: int  # certificates loaded from the state directory
    dropped: int  # ensure() calls dropped: the queue was full
    refused: int  # ensure() calls for names outside the domain


class _ChallengeBoard:
    """Pending HTTP-01 answers, token -> key authorization: one per order in flight."""

    def __init__(self) -> None:
        self.answers: dict[str, bytes] = {}

    def publish(self, token: str, key_authorization: bytes) -> None:
        self.answers[token] = key_authorization

    def withdraw(self, token: str) -> None:
        self.answers.pop(token, None)


class AcmeManager:
    def __init__(
        self,
        *,
        domain: str,
        email: str,
        directory: str = LETS_ENCRYPT,
        state_dir: Path,
        ca_bundle: Path | None = None,
        bounds: AcmeBounds | None = None,
        clock: Callable[[], datetime] = _utc_now,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._domain = domain
        self._email = email
        self._directory = directory
        self._ca_bundle = ca_bundle
        self._bounds = bounds = bounds or AcmeBounds()
        self._clock = clock
        self._monotonic = monotonic
        self._store = AcmeStore(state_dir, directory)
        self._schedule = AcmeSchedule(bounds)
        self._board = _ChallengeBoard()
        self._cache = CertificateCache(bounds.max_cached_hosts)
        self._queue: asyncio.Queue[str] = asyncio.Queue(bounds.max_queued)
        self._queued: set[str] = set()  # in the queue or with a worker
        self._tasks: set[asyncio.Task[None]] = set()
        self._account: AcmeAccount | None = None  # from start()
        self._closed = False
        self._orders = self._issued = self._failed = self._loaded = 0
        self._dropped = self._refused = 0

    def __repr__(self) -> str:
        return (
            f"<AcmeManager *.{self._domain} {self._directory} cached={len(self._cache)} "
            f"queued={len(self._queued)} orders={self._orders}>"
        )

    # --- the listener's side: synchronous, never blocking -------------------------------
    def ensure(self, host: str) -> None:
        """Start getting `host`'s certificate unless it is in memory and not due for
        renewal, already queued or being ordered, backing off, or outside the domain."""
        if self._closed:
            return
        name = self._tunnel_host(host)
        if name is None:
            self._refused += 1
            warn.warning("acme_host_refused", host=host[:253], domain=self._domain)
            return
        cached = self._cache.get(name)
        if cached is not None and self._clock() < cached.renew_at:
            return
        if name in self._queued or not self._schedule.may_order(name, self._monotonic()):
            return
        try:
            self._queue.put_nowait(name)
        except asyncio.QueueFull:
            self._dropped += 1
            warn.warning("acme_queue_full", host=name, queued=len(self._queued))
            return
        self._queued.add(name)

    def context_for(self, host: str) -> ssl.SSLContext | None:
        """`host` as the listener's policy gets it: lower case, no trailing dot."""
        return self._cache.serve(host, self._clock())

    def challenge_response(self, token: str) -> bytes | None:
        return self._board.answers.get(token)

    def statistics(self) -> AcmeStatistics:
        return AcmeStatistics(
            cached=len(self._cache),
            queued=len(self._queued),
            backing_off=self._schedule.backing_off(),
            orders=self._orders,
            issued=self._issued,
            failed=self._failed,
            loaded=self._loaded,
            dropped=self._dropped,
            refused=self._refused,
        )

    # --- life cycle ----------------------------------------------------------------------
    async def start(self) -> None:
        """Load (or make) the account key and the kept certificates, start the workers and
        register the account in the background. Raises CertificateError if the state
        directory cannot be used; a CA that cannot be reached does not stop start-up."""
        key = load_account_key(await asyncio.to_thread(self._store.account_key))
        self._account = AcmeAccount(
            self._directory,
            self._email,
            key,
            ca_bundle=self._ca_bundle,
            timeout=self._bounds.request_timeout,
        )
        loaded = await asyncio.to_thread(self._load_recent)
        for host, cached in reversed(loaded):  # the most recent ends most recently used
            self._cache.install(host, cached)
        self._loaded += len(loaded)
        log.info(
            "acme_started",
            directory=self._directory,
            domain=self._domain,
            state=str(self._store.root),
            cached=len(loaded),
        )
        for number in range(self._bounds.max_orders):
            self._spawn(self._work(), f"acme-worker-{number}")
        self._spawn(self._renew_periodically(), "acme-renewal")
        self._spawn(self._register_early(), "acme-account")

    async def aclose(self) -> None:
        """Cancel the workers (an order in flight is abandoned; the CA lets it expire) and
        wait for them."""
        self._closed = True
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        if self._account is not None:
            self._account.close()
        self._board.answers.clear()
        log.info("acme_stopped", orders=self._orders, issued=self._issued, failed=self._failed)

    def _spawn(self, work: Coroutine[Any, Any, None], name: str) -> None:
        task = asyncio.get_running_loop().create_task(work, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and (exc := task.exception()) is not None:
            log.error("task_failed", task=task.get_name(), error=repr(exc))

    # --- workers -------------------------------------------------------------------------
    async def _work(self) -> None:
        while True:
            host = await self._queue.get()
            try:
                await self._obtain(host)
            except CertificateError as exc:  # the state directory: disk full, permissions
                delay = self._schedule.host_failed(host, self._monotonic())
                log.error("acme_store_failed", host=host, error=str(exc), retry_in=delay)
            except Exception:  # the root of a worker: one host's bug must not stop it
                log.exception("acme_worker_failed", host=host)
            finally:
                self._queued.discard(host)

    async def _obtain(self, host: str) -> None:
        lock = await self._lock(host)
        if lock is None:
            return
        try:
            stored = await asyncio.to_thread(self._store.load, host, self._clock())
            if stored is not None:
                cached = self._cache.get(host)
                if cached is None or cached.certificate.fingerprint != stored.fingerprint:
                    cached = await asyncio.to_thread(prepare, stored, self._bounds)
                    self._cache.install(host, cached)  # dropped from memory, or renewed elsewhere
                if self._clock() < cached.renew_at:
                    return
            await self._order_until_done(host, renewal=stored is not None)
        finally:
            lock.release()

    async def _lock(self, host: str) -> FileLock | None:
        """The host's lock file; while another process holds it (it is ordering the host),
        wait for it, as long as an order may take at most."""
        deadline = self._monotonic() + self._bounds.order_timeout
        while (lock := await asyncio.to_thread(self._store.try_lock, host)) is None:
            if self._monotonic() >= deadline:
                log.warning("acme_lock_busy", host=host, lock=str(self._store.root))
                return None
            await asyncio.sleep(self._bounds.poll_interval)
        return lock

    async def _order_until_done(self, host: str, *, renewal: bool) -> None:
        """Order until issued or refused; through holds (rate limits, outages) it waits."""
        while True:
            hold = self._schedule.hold(self._monotonic())
            if hold > 0:
                await asyncio.sleep(hold)  # then look again: another worker may extend it
                continue
            try:
                chain_pem, key_pem = await self._order(host, renewal=renewal)
            except AcmeError as exc:
                self._failed += 1
                delay = self._schedule.failed(host, exc, self._monotonic())
                log.warning(
                    "acme_order_failed",
                    host=host,
                    renewal=renewal,
                    kind=exc.kind,
                    error=str(exc),
                    retry_in=round(delay, 3),
                )
                if exc.kind == "refused":
                    return
                continue
            stored = await asyncio.to_thread(
                self._store.save, host, chain_pem, key_pem, self._clock()
            )
            self._cache.install(host, await asyncio.to_thread(prepare, stored, self._bounds))
            self._schedule.succeeded(host)
            self._issued += 1
            log.info(
                "acme_certificate_renewed" if renewal else "acme_certificate_issued",
                host=host,
                not_after=stored.not_after.isoformat(),
                sha256_fingerprint=stored.fingerprint,
                path=str(stored.chain_path),
            )
            return

    async def _order(self, host: str, *, renewal: bool) -> tuple[bytes, bytes]:
        self._orders += 1
        log.info("acme_order_started", host=host, renewal=renewal, directory=self._directory)
        timeout = self._bounds.order_timeout
        try:
            async with asyncio.timeout(timeout):
                assert self._account is not None, "start() first"
                session = await self._account.session()
                try:
                    return await issue(session, host, self._board, self._bounds)
                finally:
                    session.close()
        except TimeoutError as exc:
            raise AcmeError("unavailable", f"no certificate after {timeout:g} s") from exc

    async def _register_early(self) -> None:
        """Register at start-up, so a bad address or an unreachable CA shows in the log at
        once; orders register themselves if this did not succeed."""
        assert self._account is not None
        with contextlib.suppress(AcmeError):  # logged; the next order tries again
            await self._account.register()

    # --- certificates in memory ------------------------------------------------------------
    def _load_recent(self) -> list[tuple[str, CachedCertificate]]:
        """(In a worker thread.) The kept certificates, most recent first, up to the cap."""
        recent = self._store.recent(self._bounds.max_cached_hosts, self._clock())
        return [(stored.host, prepare(stored, self._bounds)) for stored in recent]

    # --- renewal -------------------------------------------------------------------------
    async def _renew_periodically(self) -> None:
        while True:
            await asyncio.sleep(self._bounds.renew_check_interval)  # a period, not a wait
            self.renew_due()

    def renew_due(self) -> None:
        """Ask for every certificate in memory that is due for renewal."""
        for host in self._cache.due(self._clock()):
            self.ensure(host)

    def _tunnel_host(self, host: str) -> str | None:
        """`host` lower-cased if it is the domain or one label under it, else None."""
        if not host.isascii():
            return None
        host = host.rstrip(".").lower()
        if host == self._domain:
            return host
        label, _, parent = host.partition(".")
        if parent != self._domain or normalize_name(label) is None:
            return None
        return host
