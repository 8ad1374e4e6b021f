"""The request head as the local app receives it.

The app gets the method, target and end-to-end fields unchanged, in order. Everything
that describes one hop is dropped and restated for the next one (RFC 9110 §7.6.1), so a
client can never steer the framing or the connection between tunnel client and app; and
the X-Forwarded-* fields are ours alone (a client's own copies are not trusted, as nginx
`proxy_set_header X-Forwarded-For $remote_addr` does).
"""

from __future__ import annotations

import re

from ._framing import header_tokens
from .events import RequestHead

# RFC 9110 §7.6.1 and the proxy fields of §11.7; TE is hop-by-hop too. Trailer is not: it
# announces the trailer fields, which are forwarded with the chunked body.
_HOP_BY_HOP = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-connection",
        b"te",
        b"transfer-encoding",
        b"upgrade",
        b"proxy-authorization",
        b"proxy-authenticate",
    }
)
_UNTRUSTED = frozenset(
    {b"x-forwarded-for", b"x-forwarded-proto", b"x-forwarded-host", b"forwarded"}
)
# Content-Length is end-to-end, but the framing is restated from the parsed head, never
# copied: the bytes the app reads must be framed the way the gateway parsed them.
_DROPPED = _HOP_BY_HOP | _UNTRUSTED | {b"content-length"}
# A Connection header cannot make us drop Host (the app needs it).
_KEPT = frozenset({b"host"})

_ABSOLUTE = re.compile(rb"[Hh][Tt][Tt][Pp][Ss]?://([^/?#]*)")


def split_absolute_form(target: bytes) -> tuple[bytes | None, bytes]:
    """(authority, origin-form) of an http(s) absolute-form target; (None, target) if the
    target is not one. Like nginx, which always sends the origin-form upstream."""
    match = _ABSOLUTE.match(target)
    if match is None:
        return None, target
    rest = target[match.end() :]
    return match[1], rest if rest.startswith(b"/") else b"/" + rest


def serialize_head(
    head: RequestHead,
    *,
    client_ip: str,
    proto: str,
    public_host: bytes,
    host_override: bytes | None = None,
) -> bytes:
    """The head to send to the local app, ending with CRLFCRLF.

    client_ip, proto and public_host come from the gateway and are trusted as valid.
    """
    target = head.target
    host = host_override
    if not target.startswith(b"/") and target != b"*":
        authority, target = split_absolute_form(target)
        if host is None:
            host = authority  # RFC 9112 §3.2.2: the target's authority wins over Host
    version = b" HTTP/1.1\r\n" if head.version == "1.1" else b" HTTP/1.0\r\n"
    parts = [head.method, b" ", target, version]
    dropped = _DROPPED
    for name, value in head.headers:
        if len(name) == 10 and name.lower() == b"connection":
            dropped = dropped | (frozenset(header_tokens(value)) - _KEPT)
    upgrade: list[bytes] = []
    host_seen = False
    for name, value in head.headers:
        key = name.lower()
        if key in dropped:
            if key == b"upgrade":
                upgrade.append(value)
            continue
        if key == b"host":
            host_seen = True
            if host is not None:
                value = host
        parts += (name, b": ", value, b"\r\n")
    if not host_seen:  # an HTTP/1.0 request may come without Host
        parts[4:4] = (b"Host: ", public_host if host is None else host, b"\r\n")
    if head.chunked:
        parts.append(b"Transfer-Encoding: chunked\r\n")
    elif head.content_length is not None:
        parts.append(b"Content-Length: %d\r\n" % head.content_length)
    if head.upgrade is not None:
        token = b", ".join(upgrade) if upgrade else head.upgrade
        parts += (b"Connection: upgrade\r\nUpgrade: ", token, b"\r\n")
    elif head.keep_alive and head.version == "1.0":
        parts.append(b"Connection: keep-alive\r\n")
    parts += (
        b"X-Forwarded-For: ",
        client_ip.encode("ascii"),
        b"\r\nX-Forwarded-Proto: ",
        proto.encode("ascii"),
        b"\r\nX-Forwarded-Host: ",
        public_host,
        b"\r\n\r\n",
    )
    return b"".join(parts)


def restate_head(head: RequestHead) -> bytes:
    """The head as the client sent it, to parse again on another gateway of the cluster:
    request line and fields in order, unchanged (the strict parser took no whitespace or
    line ending it would have to normalise), framing fields included."""
    version = b" HTTP/1.1\r\n" if head.version == "1.1" else b" HTTP/1.0\r\n"
    parts = [head.method, b" ", head.target, version]
    for name, value in head.headers:
        parts += (name, b": ", value, b"\r\n")
    parts.append(b"\r\n")
    return b"".join(parts)
