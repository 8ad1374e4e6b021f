"""The ACME account: registered once, then a session per order.

    account = AcmeAccount(directory_url, email, key, ca_bundle=..., timeout=...)
    session = await account.session()    registers first if not yet (one at a time)
    ...                                   the order's calls, then session.close()
    account.close()

RFC 8555 makes the account its key: registering a key that already has an account
gives that account back, so registering at every start is cheap and needs no account
URL kept on disk. Registration agrees to the CA's terms of service (logged with the
account URL). A registration that fails is logged and tried again by the next order.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from tunnelgate.errors import AcmeError
from tunnelgate.logs import EventLog

from .acme_client import AccountKey, AcmeSession

log = EventLog("tunnelgate.gateway.acme")


class AcmeAccount:
    def __init__(
        self,
        directory_url: str,
        email: str,
        key: AccountKey,
        *,
        ca_bundle: Path | None,
        timeout: float,
    ) -> None:
        self._directory_url = directory_url
        self._email = email
        self._key = key
        self._ca_bundle = ca_bundle
        self._timeout = timeout
        self._registered: AcmeSession | None = None  # its directory is shared
        self._url: str | None = None
        self._lock = asyncio.Lock()

    def __repr__(self) -> str:
        return f"<AcmeAccount {self._url or 'not registered'}>"

    async def session(self) -> AcmeSession:
        """A session of its own for one order (sessions are not shared between threads),
        on the registered account."""
        registered = await self.register()
        return self._new_session(registered)

    async def register(self) -> AcmeSession:
        async with self._lock:
            if self._registered is not None:
                return self._registered
            session = self._new_session(None)
            try:
                registration = await asyncio.to_thread(session.register, self._email)
            except AcmeError as exc:
                session.close()
                log.warning("acme_account_failed", kind=exc.kind, error=str(exc))
                raise
            except BaseException:  # cancelled: shutdown, or the order's deadline
                session.close()
                raise
            self._registered, self._url = session, registration.account_url
            log.info(
                "acme_account_ready",
                account=registration.account_url,
                terms_of_service=registration.terms_of_service or "",
            )
            return session

    def close(self) -> None:
        if self._registered is not None:
            self._registered.close()

    def _new_session(self, registered: AcmeSession | None) -> AcmeSession:
        return AcmeSession(
            self._directory_url,
            self._key,
            ca_bundle=self._ca_bundle,
            timeout=self._timeout,
            directory=registered.directory if registered is not None else None,
            account_url=self._url if registered is not None else None,
        )
