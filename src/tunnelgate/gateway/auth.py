"""Who may open tunnels: an `Authenticator` turns a credential into an `Identity`.

The identity is what the rest of the gateway keys on: the principal owns names (reconnect
grace) and is counted against per-owner limits; the raw token goes no further than here.
Static tokens are one authenticator; JWT and a controller will be others, tried in a
documented order (cheap local checks first, connect.py).
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

ANONYMOUS = "anonymous"


@dataclass(frozen=True, slots=True)
class Identity:
    """An authenticated tunnel client."""

    principal: str  # "token:<digest>", an account name, or ANONYMOUS
    anonymous: bool = False
    max_tunnels: int | None = None  # a per-identity cap (claims); None: the gateway's default
    names: tuple[str, ...] | None = None  # names it may take (patterns); None: any


class Authenticator(Protocol):
    async def authenticate(self, credential: str | None) -> Identity | None:
        """The identity behind `credential` (the bearer token, or None when the client sent
        none); None when it is refused. Must not raise for a bad credential."""
        ...


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
    return "token:" + hashlib.sha256(token.encode()).hexdigest()[:16]


class Anonymous:
    """No auth configured (loopback only, or --allow-anonymous): everyone is the same
    principal; names are told apart by the client's random id (registry.Owner)."""

    async def authenticate(self, credential: str | None) -> Identity | None:
        return Identity(ANONYMOUS, anonymous=True)


class StaticTokens:
    """`--token` / `--tokens-file`: tokens compared in constant time, each against all."""

    def __init__(self, tokens: Sequence[str]) -> None:
        self._tokens = tuple((t.encode(), token_principal(t)) for t in tokens)

    async def authenticate(self, credential: str | None) -> Identity | None:
        if credential is None:
            return None
        given = credential.encode("ascii", "replace")
        # Compare against every token, so timing tells nothing about which matched.
        found: str | None = None
        for token, principal in self._tokens:
            if hmac.compare_digest(token, given):
                found = principal
        return Identity(found) if found is not None else None
