from __future__ import annotations

import pytest

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
