"""The keys JWTs are checked with, loaded once at start-up (`--jwt-secret`,
`--jwt-public-key`), each with the one algorithm its type allows.

`--jwt-public-key` is a PEM public key or certificate, or a JWKS (a JSON object with
"keys", or a single JWK), told apart by the content. Every key must be a public signing
key of a type SPEC names (RSA of at least 2,048 bits, EC P-256, Ed25519 or Ed448); a
JWK's own "alg", if it has one, must be the algorithm its type gives, and keys marked
for encryption ("use": "enc") are left out. Anything else stops start-up with a
`ConfigError` naming the option and the file: cryptography's and PyJWT's errors end here.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field

import jwt
from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa

from tunnelgate import limits
from tunnelgate.errors import ConfigError

PublicKey = (
    rsa.RSAPublicKey | ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey | ed448.Ed448PublicKey
)
OPTION = "--jwt-public-key"


@dataclass(frozen=True, slots=True)
class VerifyingKey:
    algorithm: str  # "HS256", "RS256", "ES256" or "EdDSA": the only one tried with it
    key: bytes | PublicKey = field(repr=False)
    kid: str | None = None


def load_keys(secret: str | None, public_key_file: str | None) -> tuple[VerifyingKey, ...]:
    keys: list[VerifyingKey] = []
    if secret is not None:
        keys.append(VerifyingKey("HS256", secret.encode()))
    if public_key_file is not None:
        keys.extend(read_public_keys(public_key_file))
    return tuple(keys)


def read_public_keys(path: str) -> tuple[VerifyingKey, ...]:
    try:
        with open(path, "rb") as file:
            data = file.read(limits.MAX_JWT_KEY_FILE_BYTES + 1)
    except OSError as exc:
        raise ConfigError(f"{OPTION}: cannot read {path!r}: {exc.strerror or exc}") from None
    if len(data) > limits.MAX_JWT_KEY_FILE_BYTES:
        raise _bad(path, f"larger than {limits.MAX_JWT_KEY_FILE_BYTES} bytes: not a key file")
    if data.lstrip()[:1] in (b"{", b"["):  # JSON: a PEM file starts with "-----BEGIN"
        return _jwks(path, data)
    key = _pem_key(path, data)
    return (VerifyingKey(algorithm_for(key, lambda problem: _bad(path, problem)), key),)


def _bad(path: str, problem: str) -> ConfigError:
    return ConfigError(f"{OPTION}: {path!r}: {problem}")


def _pem_key(path: str, data: bytes) -> PublicKey:
    try:
        if b"-----BEGIN CERTIFICATE-----" in data:
            loaded: object = x509.load_pem_x509_certificate(data).public_key()
        else:
            loaded = serialization.load_pem_public_key(data)
    except (ValueError, UnsupportedAlgorithm) as exc:
        problem = f"not a PEM public key, certificate or JWKS ({exc})"
        raise _bad(path, problem) from None
    return _public_key(path, loaded)


def _public_key(path: str, key: object) -> PublicKey:
    if isinstance(
        key,
        rsa.RSAPublicKey
        | ec.EllipticCurvePublicKey
        | ed25519.Ed25519PublicKey
        | ed448.Ed448PublicKey,
    ):
        return key
    name = type(key).__name__
    raise _bad(path, f"a {name}: JWTs here are checked with RSA, EC P-256 or Ed25519/Ed448 keys")


def algorithm_for(key: PublicKey, bad: Callable[[str], ConfigError]) -> str:
    """The algorithm a key of this type verifies (SPEC: RS256, ES256, EdDSA)."""
    if isinstance(key, rsa.RSAPublicKey):
        if key.key_size < limits.MIN_RSA_KEY_BITS:
            raise bad(f"an RSA key of {key.key_size} bits (at least {limits.MIN_RSA_KEY_BITS})")
        return "RS256"
    if isinstance(key, ec.EllipticCurvePublicKey):
        if not isinstance(key.curve, ec.SECP256R1):
            raise bad(f"an EC key on {key.curve.name}: ES256 needs a P-256 key")
        return "ES256"
    return "EdDSA"


def _jwks(path: str, data: bytes) -> tuple[VerifyingKey, ...]:
    try:
        document = json.loads(data)
    except (ValueError, RecursionError) as exc:
        raise _bad(path, f"not valid JSON ({exc})") from None
    if not isinstance(document, dict):
        raise _bad(path, "a JWKS is a JSON object")
    jwks = document.get("keys", [document])
    if not isinstance(jwks, list) or not 1 <= len(jwks) <= limits.MAX_JWKS_KEYS:
        raise _bad(path, f'"keys" must be a list of 1 to {limits.MAX_JWKS_KEYS} keys')
    keys = [key for jwk in jwks if (key := _jwk(path, jwk)) is not None]
    if not keys:
        raise _bad(path, "no signing key in it")
    return tuple(keys)


def _jwk(path: str, jwk: object) -> VerifyingKey | None:
    if not isinstance(jwk, dict):
        raise _bad(path, "each key must be a JSON object")
    kid = jwk.get("kid")
    where = f"key {kid!r}" if isinstance(kid, str) else "a key"

    def bad(problem: str) -> ConfigError:
        return _bad(path, f"{where}: {problem}")

    if jwk.get("use", "sig") != "sig":
        return None  # an encryption key published beside the signing ones
    if jwk.get("kty") == "oct" or "d" in jwk:
        raise bad("a secret or private key; give the public key only (or --jwt-secret)")
    try:
        loaded: object = jwt.PyJWK(jwk).key
    except jwt.PyJWTError as exc:
        raise bad(f"not a usable JWK ({exc})") from None
    key = _public_key(path, loaded)
    algorithm = algorithm_for(key, bad)
    declared = jwk.get("alg")
    if declared is not None and declared != algorithm:
        raise bad(f"says alg {declared!r}, but a key of its type is checked with {algorithm}")
    return VerifyingKey(algorithm, key, kid if isinstance(kid, str) else None)
