from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tunnelgate.gateway.addresses import address_key


@pytest.mark.parametrize(
    ("ip", "key"),
    [
        ("203.0.113.7", "203.0.113.7"),
        ("127.0.0.2", "127.0.0.2"),
        ("2001:db8::1", "2001:db8::/64"),
        ("2001:db8::ffff:1", "2001:db8::/64"),
        ("2001:db8:0:1::1", "2001:db8:0:1::/64"),
        ("fe80::1%eth0", "fe80::/64"),
        ("::ffff:198.51.100.9", "198.51.100.9"),
        ("?", "?"),
    ],
)
def test_address_key(ip: str, key: str) -> None:
    assert address_key(ip) == key


def test_two_hosts_of_one_ipv6_64_share_a_key() -> None:
    assert address_key("2001:db8::a") == address_key("2001:db8::b:c:d:e")
    assert address_key("2001:db8::a") != address_key("2001:db8:0:1::a")


def _reference_key(ip: str) -> str:
    """The key as ipaddress computes it (slower: what address_key must agree with)."""
    address = ipaddress.ip_address(ip)
    if address.version == 6 and address.ipv4_mapped is None:
        return str(ipaddress.IPv6Network((address, 64), strict=False))
    mapped = getattr(address, "ipv4_mapped", None)
    return str(mapped if mapped is not None else address)


# Hextets biased to zeros and runs of them, where text forms can disagree (RFC 5952).
_hextet = st.one_of(st.just(0), st.just(0), st.just(0xFFFF), st.integers(0, 0xFFFF))


@given(st.lists(_hextet, min_size=8, max_size=8))
def test_ipv6_keys_match_ipaddress(hextets: list[int]) -> None:
    ip = ":".join(f"{h:x}" for h in hextets)
    assert address_key(ip) == _reference_key(ip)


@given(st.ip_addresses())
def test_any_address_key_matches_ipaddress(
    address: ipaddress.IPv4Address | ipaddress.IPv6Address,
) -> None:
    assert address_key(str(address)) == _reference_key(str(address))
