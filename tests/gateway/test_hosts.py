from __future__ import annotations

import pytest

from tunnelgate.gateway.hosts import HostRouter


@pytest.mark.parametrize(
    ("host", "name"),
    [
        (b"web.localhost:8080", "web"),
        (b"web.localhost", "web"),
        (b"a.b.localhost", "a.b"),
        (b"localhost:8080", None),
        (b"tunnel.localhost", None),
        (b"127.0.0.1:8080", None),
        (b"[::1]:8080", None),
        (b"web.example.com", None),
        (b"evillocalhost", None),
    ],
)
def test_tunnel_name_of_a_host(host: bytes, name: str | None) -> None:
    assert HostRouter("localhost", 8080).tunnel_name(host) == name


def test_urls_show_the_port_unless_it_is_the_default() -> None:
    assert HostRouter("localhost", 8080).public_url("web") == "http://web.localhost:8080"
    assert HostRouter("example.com", 80).public_url("web") == "http://web.example.com"


def test_with_an_https_listener_tunnels_get_https_urls() -> None:
    assert HostRouter("localhost", 8080, 8443).public_url("web") == "https://web.localhost:8443"
    assert HostRouter("example.com", 80, 443).public_url("web") == "https://web.example.com"
    router = HostRouter("example.com", 80, 8443)
    assert router.https_url("a.example.com", "/x?y") == "https://a.example.com:8443/x?y"
