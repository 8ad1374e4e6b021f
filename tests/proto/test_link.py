"""proto/link.py: the cluster link's preamble (encode, MAC, clock window, replay, malformed)."""

from __future__ import annotations

import hashlib
import hmac

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tunnelgate.proto.link import (
    MAC_BYTES,
    MAX_PREAMBLE,
    LinkKind,
    LinkRefused,
    LinkVerifier,
    NonceCache,
    Preamble,
    encode_preamble,
)

SECRET = b"s" * 32
NOW = 1_800_000_000.0


def preamble(
    nonce: bytes = b"n" * 16, *, at: float = NOW, kind: LinkKind = LinkKind.HTTP
) -> Preamble:
    return Preamble(kind, "web", "203.0.113.7:5000", "127.0.0.2:7001", round(at * 1000), nonce)


def verifier(window: float = 30.0, max_nonces: int = 100) -> LinkVerifier:
    return LinkVerifier(SECRET, window=window, max_nonces=max_nonces)


def test_round_trip_and_the_bytes_after_it_are_left() -> None:
    wire = encode_preamble(preamble(), SECRET)
    read = verifier().read(wire + b"GET / HTTP/1.1\r\n", NOW)
    assert read is not None
    got, end = read
    assert got == preamble()
    assert end == len(wire)


def test_every_cut_needs_more_and_never_refuses() -> None:
    wire = encode_preamble(preamble(), SECRET)
    check = verifier()
    for cut in range(len(wire)):
        assert check.read(wire[:cut], NOW) is None
    assert check.read(wire, NOW) is not None


@pytest.mark.parametrize(
    ("mutate", "reason"),
    [
        (lambda w: b"X" + w[1:], "bad_magic"),
        (lambda w: w[:6] + b"\x02" + w[7:], "bad_version"),
        (lambda w: w[:-1] + bytes((w[-1] ^ 1,)), "bad_mac"),
        (lambda w: w[:20] + bytes((w[20] ^ 1,)) + w[21:], "bad_mac"),  # a nonce bit
    ],
)
def test_tampered_preambles_are_refused(mutate: object, reason: str) -> None:
    wire = encode_preamble(preamble(), SECRET)
    with pytest.raises(LinkRefused) as refused:
        verifier().read(mutate(wire), NOW)  # type: ignore[operator]
    assert refused.value.reason == reason


def test_junk_is_refused_at_its_first_byte() -> None:
    with pytest.raises(LinkRefused, match="bad_magic"):
        verifier().read(b"G", NOW)


def test_another_secret_is_refused() -> None:
    wire = encode_preamble(preamble(), b"t" * 32)
    with pytest.raises(LinkRefused, match="bad_mac"):
        verifier().read(wire, NOW)


@pytest.mark.parametrize("skew", [-31.0, 31.0, -3600.0])
def test_a_timestamp_outside_the_window_is_refused(skew: float) -> None:
    wire = encode_preamble(preamble(at=NOW + skew), SECRET)
    with pytest.raises(LinkRefused, match="stale_timestamp"):
        verifier(window=30.0).read(wire, NOW)


@pytest.mark.parametrize("skew", [-29.0, 29.0])
def test_a_timestamp_inside_the_window_is_taken(skew: float) -> None:
    wire = encode_preamble(preamble(at=NOW + skew), SECRET)
    assert verifier(window=30.0).read(wire, NOW) is not None


def test_a_replay_is_refused_within_the_window_and_by_the_clock_after() -> None:
    check = verifier(window=30.0)
    wire = encode_preamble(preamble(), SECRET)
    assert check.read(wire, NOW) is not None
    with pytest.raises(LinkRefused, match="replayed"):
        check.read(wire, NOW + 29.0)
    with pytest.raises(LinkRefused, match="stale_timestamp"):
        check.read(wire, NOW + 31.0)


def test_a_full_nonce_cache_refuses_until_its_oldest_expire() -> None:
    check = verifier(window=10.0, max_nonces=2)
    for i in range(2):
        assert check.read(encode_preamble(preamble(bytes([i]) * 16), SECRET), NOW) is not None
    third = encode_preamble(preamble(b"\x09" * 16, at=NOW + 15), SECRET)
    with pytest.raises(LinkRefused, match="replay_cache_full"):
        check.read(third, NOW + 15)
    assert check.read(third, NOW + 20.0) is not None  # the first two kept for 2 x 10 s
    assert len(check.nonces) == 1


def test_a_bad_kind_behind_a_good_mac_is_refused() -> None:
    wire = bytearray(encode_preamble(preamble(), SECRET))
    wire[7] = 99
    signed = bytes(wire[:-MAC_BYTES])
    forged = signed + hmac.digest(SECRET, signed, hashlib.sha256)
    with pytest.raises(LinkRefused, match="bad_kind"):
        verifier().read(forged, NOW)


def test_fields_must_fit() -> None:
    with pytest.raises(ValueError, match="255"):
        encode_preamble(
            Preamble(LinkKind.TCP, "1" * 256, "c", "v", round(NOW * 1000), b"n" * 16), SECRET
        )
    with pytest.raises(ValueError, match="nonce"):
        encode_preamble(preamble(b"short"), SECRET)
    with pytest.raises(ValueError, match="sent_ms"):
        encode_preamble(preamble(at=-1.0), SECRET)


def test_nonce_cache_forgets_in_order() -> None:
    cache = NonceCache(10, keep=5.0)
    assert cache.add(b"a", 0.0) is None
    assert cache.add(b"a", 4.9) == "replayed"
    assert cache.add(b"a", 5.0) is None


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=MAX_PREAMBLE + 10))
def test_any_bytes_need_more_or_are_refused(data: bytes) -> None:
    """Fuzz: junk never gets through, and never raises anything but LinkRefused."""
    try:
        assert verifier().read(data, NOW) is None
    except LinkRefused:
        pass


@settings(max_examples=200, deadline=None)
@given(
    st.sampled_from(list(LinkKind)),
    st.text(alphabet=st.characters(max_codepoint=127), max_size=255),
    st.text(alphabet=st.characters(max_codepoint=127), max_size=255),
    st.binary(min_size=16, max_size=16),
    st.integers(min_value=0, max_value=30_000),
)
def test_any_preamble_round_trips(
    kind: LinkKind, target: str, client: str, nonce: bytes, ms: int
) -> None:
    sent = Preamble(kind, target, client, "v:1", round(NOW * 1000) - ms, nonce)
    read = verifier().read(encode_preamble(sent, SECRET), NOW)
    assert read is not None
    assert read[0] == sent
