"""Authenticators and what an identity may take (gateway/auth.py, reservations.py): name
patterns, a token's bounds, the order of methods, and names reserved for accounts."""

from __future__ import annotations

import hashlib

import pytest

from tunnelgate.config import token_digest
from tunnelgate.gateway.auth import (
    AuthChain,
    Identity,
    Refusal,
    StaticTokens,
    Wanted,
    bounds_refusal,
    name_matches,
    token_principal,
)
from tunnelgate.gateway.jwt_auth import JwtTokens
from tunnelgate.gateway.jwt_keys import load_keys
from tunnelgate.gateway.reservations import Reservations
from tunnelgate.proto.codes import RejectReason
from tunnelgate.testing.tokens import SECRET, make_jwt

CLIENT = "198.51.100.7:4000"


@pytest.mark.parametrize(
    ("pattern", "name", "matches"),
    [
        ("web", "web", True),
        ("web", "web2", False),
        ("team-*", "team-a", True),
        ("team-*", "team-", True),  # never a valid name, refused before this anyway
        ("team-*", "xteam-a", False),
        ("*-dev", "web-dev", True),
        ("*-dev", "web-dev2", False),
        ("a*b*c", "abc", True),
        ("a*b*c", "axxbyyc", True),
        ("a*b*c", "acb", False),
        ("ab*ba", "aba", False),  # head and tail may not overlap
        ("*", "anything", True),
    ],
)
def test_name_patterns(pattern: str, name: str, matches: bool) -> None:
    assert name_matches(pattern, name) is matches


def want(name: str | None = None, port: int | None = None, protocol: str = "http") -> Wanted:
    if port is not None:
        protocol = "tcp"
    return Wanted(protocol, name, port, CLIENT)


BOUND = Identity("jwt:carol", names=("web", "team-*"), ports=(20001,))


@pytest.mark.parametrize(
    ("wanted", "allowed"),
    [
        (want("web"), True),
        (want("team-blue"), True),
        (want("team-blue", protocol="tls"), True),
        (want("blog"), False),
        (want(None), False),  # a random name is outside "web" and "team-*"
        (want(port=20001), True),
        (want(port=20002), False),
        (Wanted("tcp", None, None, CLIENT), True),  # any port: one of its own (registrar)
    ],
    ids=["exact", "pattern", "tls", "outside", "random", "port", "other-port", "any-port"],
)
def test_a_tokens_bounds(wanted: Wanted, allowed: bool) -> None:
    refusal = bounds_refusal(BOUND, wanted)
    assert (refusal is None) is allowed
    if refusal is not None:
        assert refusal.reason is RejectReason.NOT_AUTHORIZED


def test_refusals_say_what_is_allowed() -> None:
    refusal = bounds_refusal(BOUND, want("blog"))
    assert refusal == Refusal(
        RejectReason.NOT_AUTHORIZED,
        "'blog' is not a name this token may take (allowed: web, team-*)",
    )
    refusal = bounds_refusal(BOUND, want(port=22))
    assert refusal is not None
    assert refusal.message == "port 22 is not one this token may take (allowed: 20001)"
    empty = bounds_refusal(Identity("jwt:x", ports=()), want(port=22))
    assert empty is not None
    assert empty.message.endswith("(allowed: none)")


def test_unbound_identities_and_the_star() -> None:
    assert bounds_refusal(Identity("token:x"), want(None)) is None
    assert bounds_refusal(Identity("jwt:x", names=("*",)), want(None)) is None
    assert bounds_refusal(Identity("jwt:x", names=("web",)), want(port=1)) is None


# --- the order of methods -------------------------------------------------------------------
async def test_the_chain_tries_static_tokens_then_jwts() -> None:
    static = StaticTokens([token_digest("static-token")])
    chain = AuthChain([static, JwtTokens(load_keys(SECRET, None))])
    assert await chain.authenticate("static-token", CLIENT) == Identity(
        token_principal("static-token")
    )
    jwt_identity = await chain.authenticate(make_jwt(SECRET, "HS256", "dave"), CLIENT)
    assert jwt_identity == Identity("jwt:dave", account="dave")
    assert await chain.authenticate("nobody", CLIENT) is None
    assert await chain.authenticate(None, CLIENT) is None
    await chain.aclose()


async def test_the_chain_binds_local_identities_to_the_reservations() -> None:
    reservations = Reservations()
    chain = AuthChain([StaticTokens([token_digest("static-token")])], check=reservations)
    identity = await chain.authenticate("static-token", CLIENT)
    assert identity is not None
    assert identity.check is reservations


# --- static tokens --------------------------------------------------------------------------
async def test_static_tokens_by_digest_and_replaced() -> None:
    tokens = StaticTokens([token_digest("alpha"), hashlib.sha256(b"beta").hexdigest().upper()])
    assert len(tokens) == 2
    assert await tokens.authenticate("alpha", CLIENT) == Identity(token_principal("alpha"))
    # A token given by its hash is the same principal as given plain: who owns its names
    # does not depend on how the file spells it.
    assert await tokens.authenticate("beta", CLIENT) == Identity(token_principal("beta"))
    for wrong in ("alph", "alphaa", "", "ALPHA", None, token_digest("alpha"), "alph\u00e4"):
        assert await tokens.authenticate(wrong, CLIENT) is None
    tokens.replace([token_digest("gamma")])
    assert await tokens.authenticate("alpha", CLIENT) is None
    assert await tokens.authenticate("gamma", CLIENT) == Identity(token_principal("gamma"))
    assert tokens.principals() == {token_principal("gamma")}
    tokens.replace([])
    assert len(tokens) == 0
    assert await tokens.authenticate("gamma", CLIENT) is None


async def test_a_non_ascii_credential_is_not_folded_onto_a_token() -> None:
    # "?" is what an encode with errors="replace" would have made of the "é".
    tokens = StaticTokens([token_digest("tok?n")])
    assert await tokens.authenticate("tok\u00e9n", CLIENT) is None
    assert await tokens.authenticate("tok?n", CLIENT) is not None


# --- reserved names -----------------------------------------------------------------------------
async def test_reserved_names_are_refused_to_other_accounts() -> None:
    reservations = Reservations()
    reservations.update("account:acme", ["shop", "www2"])
    acme, other = Identity("account:acme"), Identity("jwt:acme")  # not the same account
    assert await reservations.authorize(acme, want("shop")) == acme
    refusal = await reservations.authorize(other, want("shop"))
    assert refusal == Refusal(RejectReason.NAME_RESERVED, "'shop' is reserved for another account")
    assert await reservations.authorize(other, want("blog")) == other
    assert await reservations.authorize(other, want(None)) == other
    assert reservations.reserved_for_other("www2", other)
    assert not reservations.reserved_for_other("www2", acme)


def test_the_latest_answer_for_an_account_wins() -> None:
    reservations = Reservations()
    reservations.update("account:a", ["one", "two"])
    reservations.update("account:a", ["two", "three"])
    assert [reservations.owner(n) for n in ("one", "two", "three")] == [
        None,
        "account:a",
        "account:a",
    ]
    reservations.update("account:b", ["two"])  # the controller moved it
    assert reservations.owner("two") == "account:b"
    reservations.update("account:a", [])
    assert reservations.owner("three") is None
    assert len(reservations) == 1


def test_reservations_are_bounded() -> None:
    reservations = Reservations(max_names=3)
    reservations.update("account:a", ["a1", "a2"])
    reservations.update("account:b", ["b1", "b2"])
    assert len(reservations) == 3
    assert reservations.owner("b2") == "account:b"
    reservations.update("account:a", ["a3"])  # what a held before is forgotten cleanly
    assert len(reservations) == 3
