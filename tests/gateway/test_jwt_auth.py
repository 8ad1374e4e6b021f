"""JWTs as tunnel tokens (gateway/jwt_auth.py): each algorithm family with keys made here,
the time claims, aud/iss, forgeries (a bad signature, `alg: none`, algorithm confusion) and
the "tunnelgate" claim that bounds what a token may take."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tunnelgate.gateway.auth import Identity
from tunnelgate.gateway.jwt_auth import JwtTokens
from tunnelgate.gateway.jwt_keys import load_keys, read_public_keys
from tunnelgate.testing.tokens import (
    SECRET,
    claims,
    forge,
    make_jwt,
    new_key,
    public_jwk,
    public_pem,
)

CLIENT = "198.51.100.7:4000"
ASYMMETRIC = ["RS256", "ES256", "EdDSA"]


async def check(tokens: JwtTokens, token: str) -> Identity | None:
    return await tokens.authenticate(token, CLIENT)


def pem_tokens(tmp_path: Path, key: Any, **options: Any) -> JwtTokens:
    path = tmp_path / "key.pem"
    path.write_bytes(public_pem(key))
    return JwtTokens(read_public_keys(str(path)), **options)


def secret_tokens(**options: Any) -> JwtTokens:
    return JwtTokens(load_keys(SECRET, None), **options)


# --- valid tokens, one family at a time ------------------------------------------------------
async def test_hs256_with_the_secret() -> None:
    identity = await check(secret_tokens(), make_jwt(SECRET, "HS256", "alice"))
    assert identity == Identity("jwt:alice", account="alice")


@pytest.mark.parametrize("algorithm", ASYMMETRIC)
async def test_each_public_key_family(tmp_path: Path, algorithm: str) -> None:
    key = new_key(algorithm)
    tokens = pem_tokens(tmp_path, key)
    assert [k.algorithm for k in tokens.keys] == [algorithm]
    identity = await check(tokens, make_jwt(key, algorithm, "bob"))
    assert identity is not None
    assert (identity.principal, identity.account) == ("jwt:bob", "bob")


async def test_a_jwks_picks_the_key_by_kid(tmp_path: Path) -> None:
    old, new, edwards = new_key("ES256"), new_key("ES256"), new_key("EdDSA")
    jwks = {"keys": [public_jwk(old, "2024"), public_jwk(new, "2025"), public_jwk(edwards, "ed")]}
    path = tmp_path / "jwks.json"
    path.write_text(json.dumps(jwks))
    tokens = JwtTokens(read_public_keys(str(path)))
    assert await check(tokens, make_jwt(old, "ES256", kid="2024"))
    assert await check(tokens, make_jwt(new, "ES256", kid="2025"))
    assert await check(tokens, make_jwt(edwards, "EdDSA", kid="ed"))
    assert await check(tokens, make_jwt(new, "ES256")) is not None  # no kid: each key tried
    assert await check(tokens, make_jwt(new, "ES256", kid="2024")) is None  # another's kid


async def test_secret_and_public_key_side_by_side(tmp_path: Path) -> None:
    key = new_key("RS256")
    path = tmp_path / "key.pem"
    path.write_bytes(public_pem(key))
    tokens = JwtTokens(load_keys(SECRET, str(path)))
    assert await check(tokens, make_jwt(SECRET, "HS256"))
    assert await check(tokens, make_jwt(key, "RS256"))


async def test_not_a_jwt_is_not_ours_to_refuse() -> None:
    assert await check(secret_tokens(), "plain-static-token") is None


# --- time claims --------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("options", "accepted"),
    [
        ({"expires_in": -600}, False),  # expired ten minutes ago
        ({"expires_in": -30}, True),  # within the leeway (a clock a little ahead)
        ({"not_before_in": 600}, False),  # not yet valid
        ({"not_before_in": 30}, True),  # within the leeway (a clock a little behind)
        ({"expires_in": None}, True),  # no exp: the issuer's choice
        ({"iat": 2**40}, False),  # issued in the far future
    ],
    ids=["expired", "expired-in-leeway", "not-yet", "not-yet-in-leeway", "no-exp", "iat-future"],
)
async def test_time_claims(options: dict[str, Any], accepted: bool) -> None:
    token = make_jwt(SECRET, "HS256", **options)
    assert (await check(secret_tokens(), token) is not None) is accepted


# --- audience and issuer -------------------------------------------------------------------
@pytest.mark.parametrize(
    ("given", "accepted"),
    [
        ({"aud": "tunnels", "iss": "https://auth.example"}, True),
        ({"aud": ["other", "tunnels"], "iss": "https://auth.example"}, True),
        ({"aud": "other", "iss": "https://auth.example"}, False),
        ({"aud": "tunnels", "iss": "https://evil.example"}, False),
        ({"iss": "https://auth.example"}, False),  # no aud
        ({"aud": "tunnels"}, False),  # no iss
    ],
    ids=["right", "aud-list", "wrong-aud", "wrong-iss", "no-aud", "no-iss"],
)
async def test_audience_and_issuer_when_configured(given: dict[str, Any], accepted: bool) -> None:
    tokens = secret_tokens(audience="tunnels", issuer="https://auth.example")
    token = make_jwt(SECRET, "HS256", **given)
    assert (await check(tokens, token) is not None) is accepted


async def test_an_audience_nobody_configured_is_refused() -> None:
    # RFC 7519 4.1.3: a token for some audience is not for a gateway that is none.
    assert await check(secret_tokens(), make_jwt(SECRET, "HS256", aud="tunnels")) is None


# --- forgeries ----------------------------------------------------------------------------------
async def test_a_signature_by_another_secret_or_key(tmp_path: Path) -> None:
    assert await check(secret_tokens(), make_jwt("x" * 40, "HS256")) is None
    tokens = pem_tokens(tmp_path, new_key("ES256"))
    assert await check(tokens, make_jwt(new_key("ES256"), "ES256")) is None


async def test_a_changed_payload_breaks_the_signature() -> None:
    header, _, signature = make_jwt(SECRET, "HS256", "alice").split(".")
    other = make_jwt(SECRET, "HS256", "mallory").split(".")[1]
    assert await check(secret_tokens(), f"{header}.{other}.{signature}") is None


@pytest.mark.parametrize("alg", ["none", "None", "NONE"])
async def test_alg_none_is_refused(tmp_path: Path, alg: str) -> None:
    token = forge(claims("alice"), alg)
    assert await check(secret_tokens(), token) is None
    assert await check(pem_tokens(tmp_path, new_key("RS256")), token) is None


async def test_hs256_signed_with_the_public_key_is_refused(tmp_path: Path) -> None:
    """Algorithm confusion: the attacker knows the public key and signs HS256 with its PEM
    as the secret, hoping the verifier uses the header's algorithm with the key it has."""
    key = new_key("RS256")
    path = tmp_path / "key.pem"
    path.write_bytes(public_pem(key))
    token = forge(claims("alice"), "HS256", hmac_secret=public_pem(key))
    assert await check(JwtTokens(read_public_keys(str(path))), token) is None
    # ...nor when a secret is configured as well: the PEM is never an HMAC key.
    assert await check(JwtTokens(load_keys(SECRET, str(path))), token) is None


@pytest.mark.parametrize(("signed", "configured"), [("RS256", "ES256"), ("ES256", "EdDSA")])
async def test_another_algorithm_than_the_keys_is_refused(
    tmp_path: Path, signed: str, configured: str
) -> None:
    tokens = pem_tokens(tmp_path, new_key(configured))
    assert await check(tokens, make_jwt(new_key(signed), signed)) is None


async def test_rs512_with_the_right_key_is_still_another_algorithm(tmp_path: Path) -> None:
    key = new_key("RS256")
    assert await check(pem_tokens(tmp_path, key), make_jwt(key, "RS512")) is None


# --- claims ---------------------------------------------------------------------------------
async def test_the_tunnelgate_claim_bounds_the_identity() -> None:
    claim = {"names": ["web", "Team-*"], "ports": [20001, 20002], "max_tunnels": 5}
    identity = await check(secret_tokens(), make_jwt(SECRET, "HS256", "carol", claim=claim))
    assert identity == Identity(
        "jwt:carol",
        account="carol",
        names=("web", "team-*"),
        ports=(20001, 20002),
        max_tunnels=5,
    )


@pytest.mark.parametrize(
    ("sub", "claim"),
    [
        (None, None),
        ("", None),
        ("a" * 300, None),
        ("bell\x07", None),
        ("alice", ["web"]),
        ("alice", {"names": "web"}),
        ("alice", {"names": ["no.dots"]}),
        ("alice", {"names": [""]}),
        ("alice", {"names": ["web"] * 300}),
        ("alice", {"ports": [0]}),
        ("alice", {"ports": ["20001"]}),
        ("alice", {"ports": [True]}),
        ("alice", {"max_tunnels": 0}),
        ("alice", {"max_tunnels": 2.5}),
        ("alice", {"hosts": ["web"]}),
    ],
    ids=[
        "no-sub", "empty-sub", "long-sub", "control-sub", "claim-list", "names-string",
        "name-dots", "name-empty", "names-too-many", "port-0", "port-string", "port-bool",
        "max-0", "max-float", "unknown-key",
    ],
)  # fmt: skip
async def test_unusable_claims_refuse_the_token(sub: str | None, claim: Any) -> None:
    token = make_jwt(SECRET, "HS256", sub, claim=claim)
    assert await check(secret_tokens(), token) is None


async def test_a_non_string_sub_is_refused() -> None:
    token = forge(claims(None) | {"sub": 7}, "HS256", hmac_secret=SECRET.encode())
    assert await check(secret_tokens(), token) is None


async def test_forge_makes_tokens_that_would_pass_with_the_right_secret() -> None:
    # The control for the forgeries above: they fail for what they forge, not for forge().
    token = forge(claims("alice"), "HS256", hmac_secret=SECRET.encode())
    assert await check(secret_tokens(), token) == Identity("jwt:alice", account="alice")
