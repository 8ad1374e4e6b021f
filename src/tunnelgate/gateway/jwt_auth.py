"""JWTs as tunnel tokens (`--jwt-secret`, `--jwt-public-key`; SPEC "JWT").

A token is checked against the configured keys only with each key's own algorithm:
HS256 for the secret, and for a public key what its type says (RSA: RS256, P-256: ES256,
Ed25519/Ed448: EdDSA). The token's header only picks among the keys (by `alg` and `kid`),
so `alg: none`, an HS256 token signed with the public key as its secret, or any other
algorithm than the key's finds no key and is refused. `exp`, `nbf` and `iat` are checked
with `limits.JWT_LEEWAY` of clock skew; `aud` and `iss` when configured (a token with an
`aud` and no `--jwt-audience` is refused, as RFC 7519 4.1.3 says). `sub` is required:
the principal is `jwt:<sub>`, the owner of its names and the key of its limits.

The optional claim `"tunnelgate": {"names": [...], "ports": [...], "max_tunnels": N}`
bounds what the token may take; each key bounds its own kind, an absent one nothing
(`"ports": []` forbids TCP tunnels). A malformed claim refuses the token.

PyJWT's errors are translated here, once: a token that does not check out is refused
(None) with one rate-limited log line saying why.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import jwt

from tunnelgate import limits
from tunnelgate.logs import EventLog, RateLimitedLog

from .auth import Identity
from .jwt_keys import VerifyingKey

log = EventLog("tunnelgate.gateway")
refusals = RateLimitedLog(log)  # anyone can send bad tokens, as often as they like

_OPTIONS: Any = {"require": ["sub"], "enforce_minimum_key_length": True}


class BadClaim(jwt.InvalidTokenError):
    """A signed token whose claims we cannot use (sub, the "tunnelgate" claim)."""


@dataclass(frozen=True, slots=True)
class JwtTokens:
    """The JWT authenticator: a token that checks out becomes an Identity."""

    keys: Sequence[VerifyingKey]
    audience: str | None = None
    issuer: str | None = None
    leeway: float = limits.JWT_LEEWAY

    async def authenticate(self, credential: str | None, client_addr: str) -> Identity | None:
        if credential is None or credential.count(".") != 2:
            return None  # not a JWT (compact JWS): not ours to refuse
        try:
            return identity_from_claims(self.verify(credential))
        except jwt.PyJWTError as exc:
            reason = str(exc) or type(exc).__name__
            refusals.warning("jwt_refused", client=client_addr, reason=reason)
            return None

    def verify(self, token: str) -> dict[str, Any]:
        """The claims of `token`, checked; raises PyJWTError."""
        header = jwt.get_unverified_header(token)
        alg, kid = header.get("alg"), header.get("kid")
        # A kid picks the key of that kid (or one that has none: a PEM key, the secret).
        keys = [
            k
            for k in self.keys
            if k.algorithm == alg and (kid is None or k.kid is None or k.kid == kid)
        ]
        if not keys:
            raise jwt.InvalidAlgorithmError(f"no key here for alg {alg!r} (kid {kid!r})")
        for key in keys[:-1]:  # several keys of one algorithm: a JWKS without kids
            try:
                return self._decode(token, key)
            except jwt.InvalidSignatureError:
                continue
        return self._decode(token, keys[-1])

    def _decode(self, token: str, key: VerifyingKey) -> dict[str, Any]:
        claims: dict[str, Any] = jwt.decode(
            token,
            key.key,
            algorithms=[key.algorithm],  # the key's, never the header's
            audience=self.audience,
            issuer=self.issuer,
            leeway=self.leeway,
            options=_OPTIONS,
        )
        return claims

    async def aclose(self) -> None:
        pass


def identity_from_claims(claims: dict[str, Any]) -> Identity:
    sub = claims.get("sub")
    if not isinstance(sub, str) or not sub or len(sub) > limits.MAX_SUBJECT_LENGTH:
        raise BadClaim(f"sub must be a string of 1 to {limits.MAX_SUBJECT_LENGTH} characters")
    if not sub.isprintable():
        raise BadClaim("sub must be printable")
    bound = claims.get("tunnelgate", {})
    if not isinstance(bound, dict):
        raise BadClaim("the tunnelgate claim must be an object")
    unknown = set(bound) - {"names", "ports", "max_tunnels"}
    if unknown:
        raise BadClaim(f"the tunnelgate claim has unknown keys: {', '.join(sorted(unknown))}")
    max_tunnels = bound.get("max_tunnels")
    if max_tunnels is not None and (not _is_int(max_tunnels) or max_tunnels < 1):
        raise BadClaim("tunnelgate.max_tunnels must be a whole number >= 1")
    return Identity(
        "jwt:" + sub,
        account=sub,
        names=_names(bound.get("names")),
        ports=_ports(bound.get("ports")),
        max_tunnels=max_tunnels,
    )


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _entries(value: object, key: str) -> list[Any]:
    if not isinstance(value, list) or len(value) > limits.MAX_CLAIM_ENTRIES:
        raise BadClaim(f"tunnelgate.{key} must be a list of at most {limits.MAX_CLAIM_ENTRIES}")
    return value


_PATTERN_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789-*")


def _names(value: object) -> tuple[str, ...] | None:
    if value is None:
        return None
    patterns: list[str] = []
    for item in _entries(value, "names"):
        pattern = item.lower() if isinstance(item, str) else ""
        if not 1 <= len(pattern) <= 63 or not set(pattern) <= _PATTERN_CHARS:
            raise BadClaim(f"tunnelgate.names: {item!r} is not a name or a * pattern")
        patterns.append(pattern)
    return tuple(dict.fromkeys(patterns))


def _ports(value: object) -> tuple[int, ...] | None:
    if value is None:
        return None
    ports: list[int] = []
    for item in _entries(value, "ports"):
        if not _is_int(item) or not 1 <= item <= 65535:
            raise BadClaim(f"tunnelgate.ports: {item!r} is not a port")
        ports.append(item)
    return tuple(dict.fromkeys(ports))
