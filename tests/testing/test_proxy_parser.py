"""testing/proxy_header.py: the tests' PROXY header reader is as strict as the spec asks a
receiver to be (its happy paths are read back in tests/test_proxy_header.py)."""

from __future__ import annotations

import pytest

from tunnelgate.testing.proxy_header import (
    V2_SIGNATURE,
    ProxyHeader,
    ProxyHeaderError,
    parse_proxy_header,
)


def test_v1_with_the_connection_after_it() -> None:
    data = b"PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\nGET / HTTP/1.1\r\n"
    parsed = parse_proxy_header(data)
    assert parsed is not None
    header, used = parsed
    assert header == ProxyHeader(1, "PROXY", "TCP4", ("192.168.0.1", 56324), ("192.168.0.11", 443))
    assert data[used:] == b"GET / HTTP/1.1\r\n"
    assert header.as_json()["source"] == ["192.168.0.1", 56324]


def test_v1_unknown_ignores_the_rest_of_its_line() -> None:
    parsed = parse_proxy_header(b"PROXY UNKNOWN ffff::1 ffff::2 1 2\r\nrest")
    assert parsed == (ProxyHeader(1, "PROXY", "UNKNOWN"), 35)


def test_v2_local_and_tlvs() -> None:
    addresses = bytes([127, 0, 0, 1, 127, 0, 0, 2, 0, 1, 0, 2])
    tlv = b"\x02\x00\x03abc"  # PP2_TYPE_AUTHORITY "abc"
    data = V2_SIGNATURE + b"\x20\x11" + (len(addresses) + len(tlv)).to_bytes(2, "big")
    parsed = parse_proxy_header(data + addresses + tlv + b"after")
    assert parsed is not None
    header, used = parsed
    assert header.command == "LOCAL"
    assert (header.source, header.destination) == (("127.0.0.1", 1), ("127.0.0.2", 2))
    assert header.tlvs == tlv
    assert used == len(data) + len(addresses) + len(tlv)


@pytest.mark.parametrize(
    "data",
    [b"", b"PRO", b"PROXY TCP4 1.2.3.4", V2_SIGNATURE[:5], V2_SIGNATURE + b"\x21\x11\x00\x0c"],
)
def test_a_prefix_asks_for_more(data: bytes) -> None:
    assert parse_proxy_header(data) is None


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"GET / HTTP/1.1\r\n", "no PROXY header"),
        (b"PROXY TCP4 " + b"1" * 100, "longer than 107"),
        (b"PROXY TCP5 1.2.3.4 1.2.3.5 1 2\r\n", "malformed"),
        (b"PROXY TCP4 1.2.3.4 1.2.3.5 1\r\n", "malformed"),
        (b"PROXY TCP4 ::1 1.2.3.5 1 2\r\n", "not an IPv4 address"),
        (b"PROXY TCP6 1.2.3.4 ::1 1 2\r\n", "not an IPv6 address"),
        (b"PROXY TCP4 1.2.3.4 1.2.3.x 1 2\r\n", "not an IP address"),
        (b"PROXY TCP4 1.2.3.4 1.2.3.5 65536 2\r\n", "not a port"),
        (b"PROXY TCP4 1.2.3.4 1.2.3.5 01 2\r\n", "not a port"),
        (V2_SIGNATURE + b"\x11\x11\x00\x00", "version 1"),
        (V2_SIGNATURE + b"\x22\x11\x00\x00", "unknown v2 command"),
        (V2_SIGNATURE + b"\x21\x31\x00\x00", "not TCP4, TCP6 or UNSPEC"),
        (V2_SIGNATURE + b"\x21\x11\x00\x04" + bytes(4), "TCP4 addresses in 4 bytes"),
    ],
)
def test_malformed_headers(data: bytes, message: str) -> None:
    with pytest.raises(ProxyHeaderError, match=message):
        parse_proxy_header(data)
