"""The ACME boundary: the certbot project's `acme` client, the only module that imports it.

    key = load_account_key(pem)          once, at start-up (CertificateError if unusable)
    session = AcmeSession(directory_url, key, ca_bundle=None, timeout=10.0)
    session.register(email)              -> Registration (account URL, terms of service)
    order = session.new_order(host, csr_pem)
    session.authorization(url)           -> Authorization (status, its HTTP-01 Challenge)
    session.answer(challenge)
    session.finalize(order, csr_pem)     -> Order;   session.order(url) -> Order (polling)
    session.certificate(url)             -> the chain, PEM
    session.close()

The client is synchronous (requests), so every method here is blocking, and each is one
HTTP exchange (two when a nonce must be fetched first), bounded by `timeout`: the manager
runs each in a worker thread and does all its waiting (polls, back-off) in asyncio, so
cancelling an order waits for one exchange at most. acme's own polling helpers
(`poll_and_finalize`) are not used: they sleep in the thread, a second at least.

A session is one connection's state (requests' Session, acme's pool of nonces), which
neither library makes safe for several threads at once: each order opens its own
session and makes its calls one at a time; the directory and account are shared.

Every failure leaves here as errors.AcmeError, translated once (`_translated`):
acme's problem documents (RFC 8555 section 6.7: `rateLimited` or HTTP 429 is
`rate_limited`, `serverInternal` or 5xx `unavailable`, the rest `refused`), requests'
connection errors and timeouts (`unavailable`), and answers that do not parse.
"""

from __future__ import annotations

import email.utils
import math
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, TypeAlias, cast

import requests
from acme import challenges, client, crypto_util, messages
from acme import errors as acme_errors
from cryptography import x509
from josepy.errors import DeserializationError
from josepy.errors import Error as JoseError
from josepy.interfaces import JSONDeSerializable
from josepy.jwa import ES256
from josepy.jwk import JWK

from tunnelgate.errors import AcmeError, AcmeErrorKind, CertificateError

USER_AGENT: Final = "tunnelgate (acme-python)"
# Authorization and order states (RFC 8555 section 7.1.6).
PENDING, READY, PROCESSING, VALID, INVALID = "pending", "ready", "processing", "valid", "invalid"
# The account's key, loaded (josepy's JWK): opaque outside this module.
AccountKey: TypeAlias = JWK


@dataclass(frozen=True, slots=True)
class Registration:
    account_url: str
    terms_of_service: str | None  # what registering agreed to, for the log


@dataclass(frozen=True, slots=True)
class Challenge:
    """An HTTP-01 challenge: the CA fetches /.well-known/acme-challenge/<token> and
    expects the key authorization (RFC 8555 section 8.3)."""

    url: str
    token: str
    key_authorization: bytes = field(repr=False)
    _body: messages.ChallengeBody = field(repr=False, compare=False)
    _response: challenges.ChallengeResponse = field(repr=False, compare=False)


@dataclass(frozen=True, slots=True)
class Authorization:
    url: str
    status: str
    host: str
    challenge: Challenge | None  # its HTTP-01 challenge; None if the CA offers none
    problem: str | None  # why it failed, as the CA says
    retry_after: float | None  # seconds


@dataclass(frozen=True, slots=True)
class Order:
    url: str
    status: str
    authorizations: tuple[str, ...]
    finalize_url: str
    certificate_url: str | None
    problem: str | None
    retry_after: float | None


class AcmeSession:
    def __init__(
        self,
        directory_url: str,
        account_key: AccountKey,
        *,
        ca_bundle: Path | None,
        timeout: float,
        directory: messages.Directory | None = None,
        account_url: str | None = None,
    ) -> None:
        self.directory_url = directory_url
        self._key = account_key
        # requests' `verify` takes a CA bundle's path as well as a bool, and acme hands it
        # its verify_ssl as it is.
        verify = cast(bool, str(ca_bundle)) if ca_bundle is not None else True
        self._net = client.ClientNetwork(
            self._key,
            alg=ES256,
            verify_ssl=verify,
            user_agent=USER_AGENT,
            timeout=max(1, math.ceil(timeout)),
        )
        self._last = _LastResponse()
        self._net.session.hooks["response"].append(self._last)
        if account_url is not None:
            self._net.account = _account(account_url)
        self._directory = directory

    def __repr__(self) -> str:
        return f"<AcmeSession {self.directory_url}>"

    @property
    def directory(self) -> messages.Directory:
        """The CA's directory, fetched on first use."""
        if self._directory is None:
            with self._translated("fetching the directory"):
                self._directory = client.ClientV2.get_directory(self.directory_url, self._net)
        return self._directory

    def register(self, email: str) -> Registration:
        """Register the account (agreeing to the CA's terms), or find it: RFC 8555 answers
        a key that already has an account with that account (acme: ConflictError)."""
        directory = self.directory
        terms = directory.meta.terms_of_service
        body = messages.NewRegistration.from_data(email=email, terms_of_service_agreed=True)
        self._net.account = None  # a new-account request is signed with the key itself
        with self._translated("registering the account"):
            try:
                registration = client.ClientV2(directory, self._net).new_account(body)
                url = registration.uri
            except acme_errors.ConflictError as exc:
                url = exc.location
        self._net.account = _account(url)
        return Registration(account_url=url, terms_of_service=terms)

    def new_order(self, host: str, csr_pem: bytes) -> Order:
        body = messages.NewOrder(
            identifiers=[messages.Identifier(typ=messages.IDENTIFIER_FQDN, value=host)]
        )
        with self._translated(f"ordering {host}"):
            response = self._post(self.directory["newOrder"], body)
            return _order(response.headers["Location"], response)

    def authorization(self, url: str) -> Authorization:
        with self._translated("fetching an authorization"):
            response = self._post(url, None)
            return self._authorization(url, response)

    def answer(self, challenge: Challenge) -> None:
        with self._translated("answering the challenge"):
            client.ClientV2(self.directory, self._net).answer_challenge(
                challenge._body, challenge._response
            )

    def finalize(self, order: Order, csr_pem: bytes) -> Order:
        request = messages.CertificateRequest(csr=x509.load_pem_x509_csr(csr_pem))
        with self._translated("finalizing the order"):
            return _order(order.url, self._post(order.finalize_url, request))

    def order(self, url: str) -> Order:
        with self._translated("fetching the order"):
            return _order(url, self._post(url, None))

    def certificate(self, url: str) -> bytes:
        with self._translated("downloading the certificate"):
            return self._post(url, None).content

    def close(self) -> None:
        self._net.session.close()

    def _post(self, url: str, body: JSONDeSerializable | None) -> requests.Response:
        """A signed POST; `body` None is a POST-as-GET (RFC 8555 section 6.3)."""
        return self._net.post(url, body, new_nonce_url=self.directory["newNonce"])

    def _authorization(self, url: str, response: requests.Response) -> Authorization:
        body = messages.Authorization.from_json(response.json())
        found, problems = None, []
        for challb in body.challenges:
            if challb.error is not None:
                problems.append(_describe(challb.error))
            if isinstance(challb.chall, challenges.HTTP01):
                answer, validation = challb.chall.response_and_validation(self._key)
                found = Challenge(
                    url=challb.uri,
                    token=str(challb.chall.encode("token")),
                    key_authorization=str(validation).encode(),
                    _body=challb,
                    _response=answer,
                )
        return Authorization(
            url=url,
            status=body.status.name,
            host=body.identifier.value,
            challenge=found,
            problem="; ".join(problems) or None,
            retry_after=_retry_after(response.headers.get("Retry-After")),
        )

    @contextmanager
    def _translated(self, what: str) -> Iterator[None]:
        self._last.reset()
        with _translated(what, self._last):
            yield


def load_account_key(pem: bytes) -> AccountKey:
    try:
        return JWK.load(pem)
    except (ValueError, TypeError, JoseError) as exc:
        raise CertificateError(f"the ACME account key cannot be used ({exc})") from exc


def make_csr(host: str, key_pem: bytes) -> bytes:
    """A certificate request for `host` alone, signed with `key_pem`."""
    return crypto_util.make_csr(key_pem, [host])


class _LastResponse:
    """The status and Retry-After of the session's last HTTP answer, which acme's errors
    do not keep (a requests response hook)."""

    def __init__(self) -> None:
        self.status = 0
        self.retry_after: float | None = None

    def reset(self) -> None:
        self.status, self.retry_after = 0, None

    def __call__(self, response: requests.Response, *args: Any, **kwargs: Any) -> None:
        self.status = response.status_code
        self.retry_after = _retry_after(response.headers.get("Retry-After"))


@contextmanager
def _translated(what: str, last: _LastResponse) -> Iterator[None]:
    try:
        yield
    except messages.Error as exc:  # a problem document
        kind = _kind(last.status, exc.code)
        raise AcmeError(kind, f"{what}: {_describe(exc)}", retry_after=last.retry_after) from exc
    except acme_errors.Error as exc:  # an answer that is not a problem document, nonces
        detail = f"HTTP {last.status}" if last.status >= 400 else f"{type(exc).__name__} {exc}"
        kind = _kind(last.status, None) if last.status >= 400 else "unavailable"
        raise AcmeError(kind, f"{what}: {detail}", retry_after=last.retry_after) from exc
    except requests.RequestException as exc:  # connection refused or reset, timeouts, TLS
        raise AcmeError("unavailable", f"{what}: {_reason(exc)}") from exc
    except (DeserializationError, ValueError, KeyError) as exc:  # an answer in no shape
        raise AcmeError("unavailable", f"{what}: the CA's answer does not parse ({exc})") from exc


def _kind(status: int, code: str | None) -> AcmeErrorKind:
    if code == "rateLimited" or status == 429:
        return "rate_limited"
    if code in ("serverInternal", "badNonce") or status >= 500:
        return "unavailable"  # badNonce: acme already retried once
    return "refused"


def _order(url: str, response: requests.Response) -> Order:
    body = messages.Order.from_json(response.json())
    return Order(
        url=url,
        status=body.status.name,
        authorizations=tuple(body.authorizations),
        finalize_url=body.finalize,
        certificate_url=body.certificate,
        problem=_describe(body.error) if body.error is not None else None,
        retry_after=_retry_after(response.headers.get("Retry-After")),
    )


def _account(url: str) -> messages.RegistrationResource:
    return messages.RegistrationResource(uri=url, body=messages.Registration())


def _describe(problem: messages.Error) -> str:
    """`rateLimited: too many certificates ...`: the code and the CA's own words."""
    words = problem.detail or problem.title or problem.description or ""
    text = f"{problem.code or problem.typ}: {words}".rstrip(": ")
    for sub in problem.subproblems or ():
        text += f"; {_describe(sub)}"
    return text


def _reason(exc: requests.RequestException) -> str:
    """The socket's own words ("[Errno 111] Connection refused", a certificate that does
    not verify, "timed out") from under requests' and urllib3's wrappings."""
    stack: list[BaseException] = [exc]
    seen: set[int] = set()
    while stack:
        error = stack.pop()
        if id(error) in seen:
            continue
        seen.add(id(error))
        if isinstance(error, OSError) and type(error).__module__ in _SOCKET_MODULES:
            return str(error) or type(error).__name__
        for inner in (getattr(error, "reason", None), error.__cause__, error.__context__):
            if isinstance(inner, BaseException):
                stack.append(inner)
    return "timed out" if isinstance(exc, requests.Timeout) else type(exc).__name__


_SOCKET_MODULES: Final = frozenset({"builtins", "socket", "ssl"})


def _retry_after(value: str | None) -> float | None:
    """Retry-After as seconds from now: delay-seconds or an HTTP date (RFC 9110 10.2.3)."""
    if value is None:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())
