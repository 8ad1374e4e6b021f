"""The gateway's own short answers: error pages marked with X-Tunnelgate-Error."""

from __future__ import annotations

from http import HTTPStatus


def error_page(
    status: int, code: str, message: str, *, close: bool = True, retry_after: int | None = None
) -> bytes:
    """A complete HTTP/1.1 response saying what happened (and for which host)."""
    reason = HTTPStatus(status).phrase
    body = f"{status} {reason}: {message}\n".encode()
    head = (
        f"HTTP/1.1 {status} {reason}\r\n"
        f"Content-Type: text/plain; charset=utf-8\r\n"
        f"Content-Length: {len(body)}\r\n"
        f"X-Tunnelgate-Error: {code}\r\n"
        f"Cache-Control: no-store\r\n"
    )
    if status == 401:
        head += 'WWW-Authenticate: Bearer realm="tunnelgate"\r\n'
    if retry_after is not None:
        head += f"Retry-After: {retry_after}\r\n"
    if close:
        head += "Connection: close\r\n"
    return head.encode() + b"\r\n" + body


def plain_page(status: int, body: bytes, *, close: bool = False) -> bytes:
    reason = HTTPStatus(status).phrase
    head = (
        f"HTTP/1.1 {status} {reason}\r\n"
        f"Content-Type: text/plain; charset=utf-8\r\n"
        f"Content-Length: {len(body)}\r\n"
    )
    if close:
        head += "Connection: close\r\n"
    return head.encode() + b"\r\n" + body


def redirect_page(location: str, *, close: bool = False) -> bytes:
    """308 Permanent Redirect (RFC 9110 §15.4.9: the method and body are kept) to `location`."""
    head = (
        f"HTTP/1.1 308 Permanent Redirect\r\n"
        f"Location: {location}\r\n"
        f"Content-Length: 0\r\n"
        f"X-Tunnelgate-Error: redirect_https\r\n"
    )
    if close:
        head += "Connection: close\r\n"
    return head.encode("latin-1", "replace") + b"\r\n"
