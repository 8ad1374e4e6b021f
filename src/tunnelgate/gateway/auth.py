"""Who may open tunnels: static bearer tokens, compared in constant time."""

from __future__ import annotations

import hmac
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Identity:
    token: str | None  # None: anonymous (no auth configured)


class TokenAuth:
    def __init__(self, tokens: tuple[str, ...]) -> None:
        self._tokens = tuple(t.encode() for t in tokens)

    @property
    def anonymous(self) -> bool:
        return not self._tokens

    def authenticate(self, authorization: bytes | None) -> Identity | None:
        """The caller's identity, or None when the token is missing or wrong."""
        if self.anonymous:
            return Identity(None)
        if authorization is None:
            return None
        scheme, _, credential = authorization.strip().partition(b" ")
        if scheme.lower() != b"bearer" or not credential:
            return None
        credential = credential.strip()
        # Compare against every token so timing tells nothing about which matched.
        matched = False
        for token in self._tokens:
            matched |= hmac.compare_digest(token, credential)
        return Identity(credential.decode("ascii", "replace")) if matched else None
