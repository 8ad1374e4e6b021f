"""`--jwt-public-key` files (gateway/jwt_keys.py): PEM keys and certificates, JWKS, and the
keys start-up refuses, each with a message naming the option and the file."""

from __future__ import annotations

import datetime
import json
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, rsa
from cryptography.x509.oid import NameOID

from tunnelgate.errors import ConfigError
from tunnelgate.gateway.jwt_keys import load_keys, read_public_keys
from tunnelgate.testing.tokens import SECRET, new_key, public_jwk, public_pem


def write(tmp_path: Path, data: bytes | str | dict[str, Any], name: str = "key") -> str:
    path = tmp_path / name
    if isinstance(data, dict):
        data = json.dumps(data)
    path.write_bytes(data.encode() if isinstance(data, str) else data)
    return str(path)


def refused(path: str, problem: str) -> None:
    with pytest.raises(ConfigError) as info:
        read_public_keys(path)
    message = str(info.value)
    assert message.startswith(f"--jwt-public-key: {path!r}") or message.startswith(
        "--jwt-public-key: cannot read"
    ), message
    assert problem in message, message


@pytest.mark.parametrize("algorithm", ["RS256", "ES256", "EdDSA"])
def test_a_pem_key_gives_its_algorithm(tmp_path: Path, algorithm: str) -> None:
    (key,) = read_public_keys(write(tmp_path, public_pem(new_key(algorithm))))
    assert (key.algorithm, key.kid) == (algorithm, None)


def test_ed448_is_eddsa_too(tmp_path: Path) -> None:
    public = ed448.Ed448PrivateKey.generate().public_key()
    pem = public.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    (key,) = read_public_keys(write(tmp_path, pem))
    assert key.algorithm == "EdDSA"


def test_a_certificate_gives_its_public_key(tmp_path: Path) -> None:
    private = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "issuer")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(private.public_key())
        .serial_number(1)
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=1))
        .sign(private, hashes.SHA256())
    )
    (key,) = read_public_keys(write(tmp_path, certificate.public_bytes(serialization.Encoding.PEM)))
    assert key.algorithm == "ES256"


def test_a_jwks_keeps_kids_and_leaves_encryption_keys_out(tmp_path: Path) -> None:
    signing, encryption = new_key("RS256"), new_key("RS256")
    jwks = {
        "keys": [
            public_jwk(signing, "sig-1") | {"alg": "RS256", "use": "sig"},
            public_jwk(encryption, "enc-1") | {"use": "enc"},
            public_jwk(new_key("EdDSA"), "ed-1"),
        ]
    }
    keys = read_public_keys(write(tmp_path, jwks))
    assert [(k.algorithm, k.kid) for k in keys] == [("RS256", "sig-1"), ("EdDSA", "ed-1")]


def test_a_single_jwk_is_a_jwks_of_one(tmp_path: Path) -> None:
    (key,) = read_public_keys(write(tmp_path, public_jwk(new_key("ES256"), "only")))
    assert (key.algorithm, key.kid) == ("ES256", "only")


def test_the_secret_and_a_file_together(tmp_path: Path) -> None:
    keys = load_keys(SECRET, write(tmp_path, public_pem(new_key("EdDSA"))))
    assert [k.algorithm for k in keys] == ["HS256", "EdDSA"]
    assert SECRET not in repr(keys)


# --- refused at start-up --------------------------------------------------------------------
def private_pem(key: Any) -> bytes:
    return bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )


def test_a_missing_file(tmp_path: Path) -> None:
    refused(str(tmp_path / "nope.pem"), "cannot read")


def test_a_private_key_pem(tmp_path: Path) -> None:
    refused(write(tmp_path, private_pem(new_key("ES256"))), "not a PEM public key")


def test_garbage(tmp_path: Path) -> None:
    refused(write(tmp_path, b"hello\n"), "not a PEM public key, certificate or JWKS")


def test_a_huge_file(tmp_path: Path) -> None:
    refused(write(tmp_path, b"-" * (300 * 1024)), "not a key file")


def test_a_short_rsa_key(tmp_path: Path) -> None:
    weak = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    refused(write(tmp_path, public_pem(weak)), "an RSA key of 1024 bits (at least 2048)")


def test_an_ec_key_off_p256(tmp_path: Path) -> None:
    p384 = ec.generate_private_key(ec.SECP384R1())
    refused(write(tmp_path, public_pem(p384)), "ES256 needs a P-256 key")


@pytest.mark.parametrize(
    ("jwks", "problem"),
    [
        ("[1, 2]", "a JWKS is a JSON object"),
        ("{broken", "not valid JSON"),
        ({"keys": []}, '"keys" must be a list of 1 to 32 keys'),
        ({"keys": ["x"]}, "each key must be a JSON object"),
        ({"keys": [{"kty": "oct", "k": "c2VjcmV0", "kid": "s"}]}, "key 's': a secret or private"),
        ({"keys": [{"kty": "RSA", "n": "AQAB"}]}, "not a usable JWK"),
    ],
    ids=["list", "broken", "empty", "not-object", "oct", "incomplete"],
)
def test_bad_jwks(tmp_path: Path, jwks: Any, problem: str) -> None:
    refused(write(tmp_path, jwks if isinstance(jwks, dict) else jwks.encode()), problem)


def test_a_private_jwk(tmp_path: Path) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    private = jwt.algorithms.ECAlgorithm.to_jwk(key, as_dict=True)  # with "d"
    refused(write(tmp_path, {"keys": [private]}), "a secret or private key")


def test_a_jwk_whose_alg_is_not_its_types(tmp_path: Path) -> None:
    jwk = public_jwk(new_key("RS256"), "k1") | {"alg": "RS512"}
    refused(write(tmp_path, {"keys": [jwk]}), "says alg 'RS512', but a key of its type is")


def test_a_jwks_of_encryption_keys_only(tmp_path: Path) -> None:
    jwk = public_jwk(new_key("RS256")) | {"use": "enc"}
    refused(write(tmp_path, {"keys": [jwk]}), "no signing key in it")
