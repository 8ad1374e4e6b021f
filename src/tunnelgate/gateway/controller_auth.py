"""The controller as an authenticator: `/connect` takes the token, each registration asks.

SPEC's controller authorizes a registration (a token and a name or port), not a
connection, so the two steps split:

1. `/connect` (`ControllerAuth.authenticate`): any bearer token that no local method
   knew is taken on trust for now: the identity carries a `ControllerCheck` holding the
   token (and nothing else does). A missing token is refused (401). From an address on a
   failed-auth cool-down, a token the controller has not allowed lately is refused
   without asking (429, connect.py): SPEC's --auth-fail-rate rule.
2. each registration (`ControllerCheck.authorize`, from registrar.py): a positive answer
   for the same token and the same name or port from the last --controller-cache-ttl is
   reused (so a controller blip does not stop reconnects); otherwise the controller is
   asked. An allow makes the registration the account's (principal `account:<account>`:
   the owner for reconnect grace and limits) and records the names reserved for it; a
   denial is `not_authorized` with the controller's reason, and counts as a failed
   authentication of the address unless the controller has allowed this token before;
   no usable answer is `controller_unavailable` (fail closed). Asking from an address
   on cool-down is refused too, unless the token was allowed before.

Every outcome is logged (`controller_allowed` with the account, `controller_denied`,
`controller_unavailable`; the last two rate-limited) with the name or port and the client.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from tunnelgate import limits
from tunnelgate.config import token_digest
from tunnelgate.errors import ControllerUnavailable
from tunnelgate.logs import EventLog, RateLimitedLog
from tunnelgate.proto.codes import RejectReason

from .addresses import address_key
from .auth import Identity, Refusal, Wanted, token_principal
from .controller import Allowed, ControllerClient, Denied, client_ip
from .ratelimit import FailedAuthLimiter
from .reservations import Reservations
from .ttlcache import TtlCache

log = EventLog("tunnelgate.gateway")
warn = RateLimitedLog(log)  # a controller outage would log one line per registration

_AnswerKey = tuple[str, str, str | None, int | None]  # token digest, protocol, name, port


@dataclass(frozen=True, slots=True)
class ControllerPolicy:
    cache_ttl: float = limits.CONTROLLER_CACHE_TTL
    known_token_ttl: float = limits.CONTROLLER_KNOWN_TOKEN_TTL
    max_cache: int = limits.MAX_CONTROLLER_CACHE


class ControllerAuth:
    """auth.Authenticator for --controller: the last in the chain (app._authenticator)."""

    def __init__(
        self,
        client: ControllerClient,
        reservations: Reservations,
        failures: FailedAuthLimiter,
        policy: ControllerPolicy = ControllerPolicy(),
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.client = client
        self.reservations = reservations
        self.failures = failures
        self.policy = policy
        self.clock = clock
        self.answers: TtlCache[_AnswerKey, Allowed] = TtlCache(policy.max_cache)
        self._known: TtlCache[str, bool] = TtlCache(policy.max_cache)  # digests allowed lately

    def known(self, digest: str, now: float) -> bool:
        """The controller allowed this token lately (limits.CONTROLLER_KNOWN_TOKEN_TTL)."""
        return self._known.get(digest, now) is not None

    def remember(self, digest: str, now: float) -> None:
        self._known.put(digest, True, now + self.policy.known_token_ttl)

    def on_cooldown(self, client_addr: str, now: float) -> bool:
        return self.failures.blocked(address_key(client_ip(client_addr)), now)

    async def authenticate(self, credential: str | None, client_addr: str) -> Identity | None:
        if credential is None:
            return None
        digest = token_digest(credential)
        now = self.clock()
        if self.on_cooldown(client_addr, now) and not self.known(digest, now):
            return None  # connect.py answers 429: the controller is not asked
        return Identity(token_principal(credential), check=ControllerCheck(self, credential))

    async def aclose(self) -> None:
        await self.client.aclose()


class ControllerCheck:
    """auth.RegistrationCheck of one connection's token: asks the controller."""

    __slots__ = ("_auth", "_digest", "_token")

    def __init__(self, auth: ControllerAuth, token: str) -> None:
        self._auth = auth
        self._token = token
        self._digest = token_digest(token)

    def __repr__(self) -> str:
        return f"<ControllerCheck token:{self._digest[:16]}>"  # never the token

    def reserved_for_other(self, name: str, identity: Identity) -> bool:
        return self._auth.reservations.reserved_for_other(name, identity)

    async def authorize(self, identity: Identity, wanted: Wanted) -> Identity | Refusal:
        auth, now = self._auth, self._auth.clock()
        key: _AnswerKey = (self._digest, wanted.protocol, wanted.name, wanted.port)
        allowed = auth.answers.get(key, now)
        cached = allowed is not None
        if allowed is None:
            asked = await self._ask(wanted, now)
            if isinstance(asked, Refusal):
                return asked
            allowed = asked
        granted = Identity("account:" + allowed.account, account=allowed.account, check=self)
        refusal = auth.reservations.refusal(granted, wanted.name)
        if refusal is not None:
            _log_refusal("controller_denied", wanted, refusal.message, account=allowed.account)
            return refusal
        fields = _fields(wanted, account=allowed.account)
        log.info("controller_allowed", **fields, cached=cached)
        return granted

    async def _ask(self, wanted: Wanted, now: float) -> Allowed | Refusal:
        auth = self._auth
        known = auth.known(self._digest, now)
        address = address_key(client_ip(wanted.client_addr))
        if not known and auth.failures.blocked(address, now):
            message = "too many failed authentications from this address; retry later"
            _log_refusal("controller_denied", wanted, "failed-auth cool-down: not asked")
            return Refusal(RejectReason.NOT_AUTHORIZED, message)
        try:
            answer = await auth.client.ask(self._token, wanted)
        except ControllerUnavailable as exc:
            _log_refusal("controller_unavailable", wanted, str(exc))
            return Refusal(RejectReason.CONTROLLER_UNAVAILABLE, f"controller unavailable: {exc}")
        now = auth.clock()
        if isinstance(answer, Denied):
            if not known:
                auth.failures.record_failure(address, now)
            _log_refusal("controller_denied", wanted, answer.reason)
            return Refusal(RejectReason.NOT_AUTHORIZED, answer.reason)
        policy = auth.policy
        if policy.cache_ttl > 0:
            key = (self._digest, wanted.protocol, wanted.name, wanted.port)
            auth.answers.put(key, answer, now + policy.cache_ttl)
        auth.remember(self._digest, now)
        auth.reservations.update("account:" + answer.account, answer.names)
        return answer


def _fields(wanted: Wanted, account: str | None = None) -> dict[str, object]:
    fields: dict[str, object] = {"client": wanted.client_addr, "protocol": wanted.protocol}
    if wanted.protocol == "tcp":
        fields["port"] = wanted.port
    else:
        fields["name"] = wanted.name
    if account is not None:
        fields["account"] = account
    return fields


def _log_refusal(event: str, wanted: Wanted, detail: str, account: str | None = None) -> None:
    warn.warning(event, **_fields(wanted, account), detail=detail)
