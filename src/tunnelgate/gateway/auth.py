"""Who may open tunnels: an `Authenticator` turns a credential into an `Identity`.

The identity is what the rest of the gateway keys on: the principal owns names (reconnect
grace) and is counted against per-owner limits; the raw token goes no further than here
(and the controller's check, which must send it on: controller_auth.py). Methods are
tried in order by `AuthChain`, cheap local checks first (app._authenticator):

    static tokens (--token)  ->  JWTs (--jwt-*)  ->  the controller (--controller)

The first that knows the token decides; a token a local method accepts is never sent to
the controller. What an identity may take is checked for each registration
(registrar.py): its own bounds (a JWT's claim) here, then its `check` (the controller's
answer, or the names the controller reserved for other accounts).
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Protocol

from tunnelgate.config import token_digest
from tunnelgate.proto.codes import RejectReason

ANONYMOUS = "anonymous"


@dataclass(frozen=True, slots=True)
class Wanted:
    """What one registration asks for: a name (http, tls; None: a random one) or a port
    (tcp; None: any free one), and from where."""

    protocol: str  # "http" | "tcp" | "tls"
    name: str | None
    port: int | None
    client_addr: str


@dataclass(frozen=True, slots=True)
class Refusal:
    reason: RejectReason
    message: str


class RegistrationCheck(Protocol):
    """What each registration of an identity must pass beyond its own bounds."""

    async def authorize(self, identity: Identity, wanted: Wanted) -> Identity | Refusal:
        """The identity the registration is made under (a controller names the account),
        or why it is refused. Must not raise for a refusal or an unavailable service."""
        ...

    def reserved_for_other(self, name: str, identity: Identity) -> bool:
        """`name` is reserved for another account (a random name skips it)."""
        ...


@dataclass(frozen=True, slots=True)
class Identity:
    """An authenticated tunnel client, and what it may take."""

    principal: str  # "token:<digest>", "jwt:<sub>", "account:<account>", or ANONYMOUS
    anonymous: bool = False
    max_tunnels: int | None = None  # a per-identity cap (claims); None: the gateway's default
    names: tuple[str, ...] | None = None  # names it may take (exact or `*` patterns); None: any
    ports: tuple[int, ...] | None = None  # TCP ports it may take; None: any in range
    account: str | None = None  # who it is to an operator (logs, admin API)
    check: RegistrationCheck | None = field(default=None, repr=False, compare=False)


class Authenticator(Protocol):
    async def authenticate(self, credential: str | None, client_addr: str) -> Identity | None:
        """The identity behind `credential` (the bearer token, or None when the client sent
        none) from `client_addr` (HOST:PORT); None when it is refused. Must not raise for
        a bad credential."""
        ...

    async def aclose(self) -> None: ...


def bearer_token(authorization: bytes | None) -> str | None:
    """The token of an `Authorization: Bearer <token>` header, else None."""
    if authorization is None:
        return None
    scheme, _, credential = authorization.strip().partition(b" ")
    credential = credential.strip()
    if scheme.lower() != b"bearer" or not credential:
        return None
    return credential.decode("ascii", "replace")


def token_principal(token: str) -> str:
    """A token's stand-in in logs, limits and ownership: never the token itself."""
    return "token:" + token_digest(token)[:16]


# --- what an identity may take --------------------------------------------------------
def name_matches(pattern: str, name: str) -> bool:
    """`name` is `pattern`, or fits it where `*` stands for any run of characters
    ("team-*" takes "team-a"; "*-dev" takes "web-dev"). No other wildcard."""
    parts = pattern.split("*")
    if len(parts) == 1:
        return pattern == name
    head, tail = parts[0], parts[-1]
    if len(name) < len(head) + len(tail) or not name.startswith(head):
        return False
    if not name.endswith(tail):
        return False
    position, end = len(head), len(name) - len(tail)
    for middle in parts[1:-1]:
        found = name.find(middle, position, end)
        if found < 0:
            return False
        position = found + len(middle)
    return True


def bounds_refusal(identity: Identity, wanted: Wanted) -> Refusal | None:
    """Why `wanted` is outside what `identity` may take (a JWT's claim), or None."""
    if wanted.protocol == "tcp":
        ports = identity.ports
        if ports is None or wanted.port is None or wanted.port in ports:
            return None  # no port asked: registrar.py tries the allowed ones
        allowed = ", ".join(map(str, ports)) or "none"
        return Refusal(
            RejectReason.NOT_AUTHORIZED,
            f"port {wanted.port} is not one this token may take (allowed: {allowed})",
        )
    names = identity.names
    if names is None:
        return None
    allowed = ", ".join(names) or "none"
    if wanted.name is None:
        if "*" in names:
            return None
        message = f"this token may take only the names {allowed}: ask for one (--subdomain)"
        return Refusal(RejectReason.NOT_AUTHORIZED, message)
    name = wanted.name
    if any(name_matches(pattern, name) for pattern in names):
        return None
    message = f"{name!r} is not a name this token may take (allowed: {allowed})"
    return Refusal(RejectReason.NOT_AUTHORIZED, message)


# --- authenticators ---------------------------------------------------------------------
class Anonymous:
    """No auth configured (loopback only, or --allow-anonymous): everyone is the same
    principal; names are told apart by the client's random id (registry.Owner)."""

    async def authenticate(self, credential: str | None, client_addr: str) -> Identity | None:
        return Identity(ANONYMOUS, anonymous=True)

    async def aclose(self) -> None:
        pass


class StaticTokens:
    """`--token` / `--tokens-file`: the accepted tokens, kept only as their SHA-256.

    A presented token is hashed once and looked up: no loop over the accepted tokens whose
    running time depends on which (or how many) came close, and no secret in memory. The
    lookup compares digests of what the client sent, and learning how much of a digest
    matched takes an attacker no nearer a token (that needs a preimage); the final
    equality is still hmac.compare_digest. `replace` swaps the set at once (SIGHUP):
    registrations from then on see the new set; tunnels already up are not touched.
    """

    def __init__(self, digests: Iterable[str]) -> None:
        self._accepted: dict[bytes, tuple[bytes, str]] = {}  # digest -> (digest, principal)
        self.replace(digests)

    def replace(self, digests: Iterable[str]) -> None:
        """Accept the tokens whose hex SHA-256 digests are `digests` (and no others)."""
        accepted = {}
        for digest in map(str.lower, digests):
            raw = bytes.fromhex(digest)
            accepted[raw] = (raw, "token:" + digest[:16])  # as token_principal(token)
        self._accepted = accepted

    def __len__(self) -> int:
        return len(self._accepted)

    def principals(self) -> frozenset[str]:
        return frozenset(principal for _, principal in self._accepted.values())

    async def authenticate(self, credential: str | None, client_addr: str) -> Identity | None:
        if credential is None:
            return None
        try:
            given = hashlib.sha256(credential.encode("ascii")).digest()
        except UnicodeEncodeError:
            return None  # accepted tokens are ASCII (config/parsers.secret)
        found = self._accepted.get(given)
        if found is None or not hmac.compare_digest(found[0], given):
            return None
        return Identity(found[1])

    async def aclose(self) -> None:
        pass


class AuthChain:
    """Authenticators tried in order; the first that knows the credential decides.

    `check`: attached to the identities of methods that set none (the local ones), so the
    names the controller reserved for its accounts bind them too."""

    def __init__(
        self, methods: Sequence[Authenticator], check: RegistrationCheck | None = None
    ) -> None:
        self._methods = tuple(methods)
        self._check = check

    async def authenticate(self, credential: str | None, client_addr: str) -> Identity | None:
        for method in self._methods:
            identity = await method.authenticate(credential, client_addr)
            if identity is None:
                continue
            if identity.check is None and self._check is not None:
                identity = replace(identity, check=self._check)
            return identity
        return None

    async def aclose(self) -> None:
        for method in self._methods:
            await method.aclose()
