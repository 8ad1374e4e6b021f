"""JWTs and keys for tests of `--jwt-secret` / `--jwt-public-key`, made on the spot.

    key = new_key("ES256")
    path.write_bytes(public_pem(key))                 # --jwt-public-key
    token = make_jwt(key, "ES256", sub="alice", claim={"names": ["web"]})

`forge` builds tokens no honest issuer makes: `alg: none`, or HS256 signed with the public
key's PEM as the secret (algorithm confusion), which PyJWT itself refuses to sign.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

SECRET = "test-secret-of-at-least-32-bytes-0123456789"
"""An HS256 secret long enough for the gateway (32 bytes at least)."""

PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey


def new_key(algorithm: str) -> PrivateKey:
    """A fresh private key for RS256, ES256 or EdDSA."""
    if algorithm == "RS256":
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    if algorithm == "ES256":
        return ec.generate_private_key(ec.SECP256R1())
    if algorithm == "EdDSA":
        return ed25519.Ed25519PrivateKey.generate()
    raise ValueError(f"no test keys for {algorithm}")


def public_pem(key: PrivateKey) -> bytes:
    return key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def public_jwk(key: PrivateKey, kid: str | None = None) -> dict[str, Any]:
    """The public half of `key` as a JWK (what a JWKS lists)."""
    public = key.public_key()
    jwk: dict[str, Any]
    if isinstance(public, rsa.RSAPublicKey):
        jwk = jwt.algorithms.RSAAlgorithm.to_jwk(public, as_dict=True)
    elif isinstance(public, ec.EllipticCurvePublicKey):
        jwk = jwt.algorithms.ECAlgorithm.to_jwk(public, as_dict=True)
    else:
        jwk = jwt.algorithms.OKPAlgorithm.to_jwk(public, as_dict=True)
    if kid is not None:
        jwk["kid"] = kid
    return jwk


def claims(
    sub: str | None = "alice",
    *,
    expires_in: float | None = 300.0,
    not_before_in: float | None = None,
    claim: dict[str, Any] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """A payload: `sub`, `exp` (seconds from now; None: no exp), `nbf`, the `tunnelgate`
    claim, and any other claims (`aud`, `iss`, ...)."""
    now = int(time.time())
    payload: dict[str, Any] = dict(extra)
    if sub is not None:
        payload["sub"] = sub
    if expires_in is not None:
        payload["exp"] = now + int(expires_in)
    if not_before_in is not None:
        payload["nbf"] = now + int(not_before_in)
    if claim is not None:
        payload["tunnelgate"] = claim
    return payload


def make_jwt(
    key: PrivateKey | str,
    algorithm: str,
    sub: str | None = "alice",
    *,
    kid: str | None = None,
    **options: Any,
) -> str:
    """A signed JWT (see `claims` for the options); `key` is the secret for HS256."""
    signing = key.encode() if isinstance(key, str) else key
    headers = {"kid": kid} if kid is not None else None
    return jwt.encode(claims(sub, **options), signing, algorithm=algorithm, headers=headers)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def forge(payload: dict[str, Any], alg: str, hmac_secret: bytes | None = None) -> str:
    """A token with header `alg`, signed with HMAC-SHA256 under `hmac_secret` (None: no
    signature at all, as `alg: none` has)."""
    header = _b64(json.dumps({"alg": alg, "typ": "JWT"}).encode())
    body = _b64(json.dumps(payload).encode())
    signing_input = f"{header}.{body}".encode()
    if hmac_secret is None:
        return f"{header}.{body}."
    signature = hmac.new(hmac_secret, signing_input, hashlib.sha256).digest()
    return f"{header}.{body}.{_b64(signature)}"
