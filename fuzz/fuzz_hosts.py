#!/usr/bin/env python3
"""The Host parser: which tunnel a Host header names (gateway/hosts.py) and tunnel names
(proto/names.py), behind the request parser's own Host check (http1/request.py).

Input: byte 0 picks the listener's port (80, 8080 or none) and whether the text is taken
as a Host header (bit 2) or as a requested name; the rest is the text. Checked: nothing
raises; a name is accepted only as a DNS label, lower-case and stable; a host that routes
to a tunnel gives a name in no other form than the bytes between the start and the
domain; every valid name's public URL routes back to it, with or without a port.
"""

from __future__ import annotations

import re

from fuzz_support import fuzz, instrumented

with instrumented():
    from tunnelgate.errors import HTTPError
    from tunnelgate.gateway.hosts import HostRouter
    from tunnelgate.http1.request import RequestHead, RequestParser
    from tunnelgate.proto.names import normalize_name

DOMAIN = "tunnels.example.com"
LABEL = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")
PORTS = (80, 8080, None, 443)


def name(text: str) -> None:
    normal = normalize_name(text)
    if normal is None:
        return
    assert LABEL.fullmatch(normal), f"{text!r} was taken as {normal!r}"
    assert normalize_name(normal) == normal, "normalize_name is not stable"
    assert normal == text.lower(), f"{text!r} became {normal!r}"


def host(router: HostRouter, value: bytes) -> None:
    """As the gateway sees it: the request parser checks and lower-cases Host first."""
    request = b"GET / HTTP/1.1\r\nHost: " + value + b"\r\n\r\n"
    try:
        events = RequestParser().feed(request)
    except HTTPError:
        return
    head = events[0]
    assert isinstance(head, RequestHead)
    routed = router.tunnel_name(head.host)
    if routed is None:
        return
    assert head.host.startswith(routed.encode()), f"{head.host!r} routed to {routed!r}"
    rest = head.host[len(routed) :]
    assert rest == b"." + DOMAIN.encode() or rest.startswith(b"." + DOMAIN.encode() + b":")
    if normalize_name(routed) is not None:
        url = router.public_url(routed)
        back = url.split("://", 1)[1].encode()
        assert router.tunnel_name(back) == routed, f"{url} does not route back to {routed!r}"


def test_one_input(data: bytes) -> None:
    if not data:
        return
    router = HostRouter(DOMAIN, PORTS[data[0] & 3], 8443 if data[0] & 8 else None)
    if data[0] & 4:
        host(router, data[1:])
    else:
        name(data[1:].decode("utf-8", "replace"))


if __name__ == "__main__":
    fuzz(test_one_input)
